//! The peer link, today's [`Transport`]: signed postcard messages in
//! length-prefixed frames on TCP, one multiplexed connection per peer.
//!
//! Why not HTTP/2 (the link up to v3): one hyper HTTP/2 round trip cost
//! 25.5 µs of CPU across both ends against 7.0 µs for frames on TCP
//! (`bench/examples/peer_round_trip.rs`), half of a cluster write's CPU.
//! The link needs none of HTTP's generality: one caller kind, one message
//! kind, its own authentication.
//!
//! A connection opens with a magic and version ([`frame::MAGIC`]), so a
//! wrong protocol is refused at once. Each request is a frame (layout in
//! [`frame`]) carrying a request id, so many calls share the connection and
//! replies may come back in any order. A request travels as a signed *head*
//! (request id, sender, time, budget, body length and a random nonce, with
//! its own tag) and a body whose tag is chained to the head's. The server
//! checks the head before it reads one byte of the body, so a stranger
//! without the secret is refused for the price of a head (at most
//! [`frame::MAX_HEAD`] bytes) and the connection is closed; it refuses a
//! nonce it has served (see [`replay`](crate::replay)) and then checks the
//! body's tag. Each reply's tag covers its request's nonce and body tag, so
//! no recorded reply can answer another request.
//!
//! Bounds, so a slow or dead peer cannot stall a request past its deadline:
//! - every call runs under the caller's deadline: waiting for a slot,
//!   connecting, sending and reading the reply;
//! - at most `max_in_flight_per_peer` calls are in flight to one peer; the
//!   rest wait for a slot within their deadline (back-pressure);
//! - a server runs at most [`MAX_SERVED`] requests at once and answers
//!   "busy" past that instead of queueing.
//!
//! Bounds on what anyone who reaches the port can hold:
//! - nothing of a body before its head's tag verified: strangers get a
//!   refusal for their first head and the connection is closed;
//! - at most [`MAX_CONNECTIONS`] connections at once (past it, a new one is
//!   closed at once), and a connection that has sent no signed request
//!   within [`VERIFY_TIMEOUT`] is closed, so a connection that never
//!   finishes its first frame (slowloris) or never sends any goes away;
//! - bodies of signed requests are read only within a budget of
//!   [`MAX_BUFFERED`] bytes across all connections (past it, "busy", and
//!   the body is skipped in small reads), each at most [`MAX_BODY`] and
//!   exactly the length its head declared;
//! - the nonces remembered against replays are bounded too
//!   ([`MAX_NONCES`](crate::replay::MAX_NONCES)); past it, "busy".
//!
//! A reply that never arrives whole (reset, EOF, a connection cut
//! mid-reply) is a transient failure, as a refused connection is, so a read
//! falls back to a backup; only a whole reply whose tag fails, or that does
//! not decode, is `Corrupt`.

mod client;
pub(crate) mod frame;
mod server;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{atomic::AtomicU64, atomic::Ordering, Arc, Mutex, Weak},
    task::{Context, Poll},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{ErrorKind, StoreError};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
    task::AbortHandle,
    time::Instant,
};

use crate::{protocol::Request as PeerRequest, sign::Signer, transport::Transport};

/// The most a signed request may be older or newer than the receiver's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(60);
/// The largest body either side accepts.
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;
/// The most requests a node serves at once for its peers; past it, "busy".
pub(crate) const MAX_SERVED: usize = 1024;
/// The most peer connections a node holds at once; past it, a new one is
/// closed as soon as it is accepted. A cluster needs one per peer (two for a
/// moment while a peer reconnects), so this leaves room for large clusters
/// while capping the sockets and tasks strangers can make it hold.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may stay open without sending a request whose
/// signed head verifies. A peer opens its connection only to send a request
/// at once, so this is only ever reached by strangers, among them a
/// slowloris that never finishes its first frame.
pub(crate) const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time before a peer connection's TCP keep-alive probes start, and
/// between probes. Probes keep stateful firewalls and NATs from forgetting
/// a quiet connection between nodes, and end one whose peer is gone (what
/// HTTP/2 pings did for the link up to v3), so calls stop waiting on it.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Sets up an accepted or connected peer socket: no Nagle delay (a frame
/// is written whole, and its caller waits for the answer), and keep-alive.
fn tune(stream: &tokio::net::TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE)
        .with_interval(KEEPALIVE);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

/// The most body bytes a node reads at once for signed requests, across all
/// connections: eight bodies of the largest size. Past it, "busy".
pub(crate) const MAX_BUFFERED: usize = 8 * MAX_BODY;

/// Bytes and requests through the link, for [`ClusterStats`](crate::ClusterStats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) requests_sent: AtomicU64,
    pub(crate) requests_refused: AtomicU64,
}

/// Peers this node cannot reach: empty unless a test cuts the network with
/// the `fault-injection` feature's `ClusterStore::partition_from`. Checked
/// by membership for its datagrams, and for peer calls by the
/// `transport::Partitioned` transport, which only that feature builds.
pub(crate) type Blocked = Arc<std::sync::RwLock<std::collections::HashSet<SocketAddr>>>;

pub(crate) fn is_blocked(blocked: &Blocked, addr: &SocketAddr) -> bool {
    blocked
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(addr)
}

/// What a node does with a verified request from a peer: the reply body, a
/// postcard-encoded `Result<R::Reply, Failure>` for the request's type `R`.
#[async_trait]
pub(crate) trait Handler: Send + Sync + 'static {
    async fn handle(
        &self,
        from: &str,
        deadline: Instant,
        request: PeerRequest,
    ) -> Result<Vec<u8>, postcard::Error>;

    /// Serves `request` at once when it has nothing to wait for (a change
    /// to a holder's copy while this node holds its lease, a lease
    /// confirmation), or hands it back to be served by
    /// [`handle`](Self::handle) in a task of its own. Most peer requests
    /// are copy changes, and a task, a timer and a slot cost more than the
    /// change itself.
    fn serve_now(&self, from: &str, request: PeerRequest) -> ServedNow;
}

/// What [`Handler::serve_now`] did with a request.
pub(crate) enum ServedNow {
    /// Served: the reply body.
    Replied(Result<Vec<u8>, postcard::Error>),
    /// To be served in a task of its own.
    Later(PeerRequest),
}

/// Why a peer call failed: the source of the [`StoreError`] it becomes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("cannot connect to peer {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("peer {addr} refused the request as unauthenticated: it does not share this node's secret, or the clocks differ by more than a minute")]
    Refused { addr: SocketAddr },
    #[error("peer {addr} is busy")]
    Busy { addr: SocketAddr },
    #[error("peer {addr} answered {status:?}")]
    Status {
        addr: SocketAddr,
        status: frame::Status,
    },
    #[error("peer {addr} sent a reply that fails its signature or does not decode")]
    BadReply { addr: SocketAddr },
    #[error("the connection to peer {addr} closed before its reply arrived whole")]
    CutOff { addr: SocketAddr },
}

/// The framed-TCP [`Transport`]: calls to peers, and the server that
/// answers theirs.
pub(crate) struct Link {
    signer: Signer,
    me: Arc<str>,
    peers: Mutex<std::collections::HashMap<SocketAddr, Arc<client::Peer>>>,
    max_in_flight: usize,
    connect_timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    /// The peer link's socket, until [`Transport::serve`] takes it.
    listener: Mutex<Option<TcpListener>>,
    /// The most time the server gives one request, whatever its caller's
    /// budget says.
    max_budget: Duration,
    /// The runtime the node started on, which runs its server, membership
    /// and leases. Connections to peers run their tasks there too, not on
    /// the runtime of the call that opened them: an app with a runtime per
    /// worker (actix-web), or a test app whose runtime ends with it, would
    /// otherwise leave the other callers a connection nobody drives.
    home: tokio::runtime::Handle,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link whose connections run on the calling runtime, the node's.
    ///
    /// # Panics
    /// Outside a tokio runtime (`ClusterStore::start` checks for one first).
    pub(crate) fn new(
        listener: TcpListener,
        signer: Signer,
        me: Arc<str>,
        max_in_flight: usize,
        connect_timeout: Duration,
        max_budget: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            signer,
            me,
            peers: Mutex::default(),
            max_in_flight,
            connect_timeout,
            counters,
            listener: Mutex::new(Some(listener)),
            max_budget,
            home: tokio::runtime::Handle::current(),
        }
    }
}

#[async_trait]
impl Transport for Link {
    async fn send(
        &self,
        to: SocketAddr,
        operation: &'static str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, StoreError> {
        match tokio::time::timeout_at(deadline, self.call(to, body, deadline)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(err)) => {
                let kind = match err {
                    LinkError::BadReply { .. } => ErrorKind::Corrupt,
                    _ => ErrorKind::Unavailable,
                };
                Err(StoreError::new(kind, operation).with_source(err))
            }
            Err(_) => Err(
                StoreError::new(ErrorKind::Timeout, operation).with_source(format!(
                    "peer {to} did not answer within the request timeout"
                )),
            ),
        }
    }

    fn serve(&self, handler: Weak<dyn Handler>) -> AbortHandle {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(listener) = listener else {
            // Served already: the socket belongs to the first server.
            return tokio::spawn(async {}).abort_handle();
        };
        let server = server::Server::new(
            handler,
            self.signer.clone(),
            Arc::clone(&self.counters),
            self.max_budget,
        );
        tokio::spawn(server::serve(listener, Arc::new(server))).abort_handle()
    }

    /// Forgets connections to peers that are no longer members.
    fn retain(&self, live: &dyn Fn(&SocketAddr) -> bool) {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|addr, _| live(addr));
    }
}

pin_project_lite::pin_project! {
    /// One direction of a TCP stream that counts the bytes through it: what
    /// the replication traffic figures measure, frame headers and tags
    /// included.
    struct Counted<T> {
        #[pin]
        inner: T,
        counters: Arc<Counters>,
    }
}

impl<T> Counted<T> {
    fn new(inner: T, counters: &Arc<Counters>) -> Self {
        Self {
            inner,
            counters: Arc::clone(counters),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        let read = buf.filled().len() - before;
        this.counters
            .bytes_received
            .fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = result {
            this.counters
                .bytes_sent
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The most bytes one write gathers from queued frames: enough to carry
/// many small frames in one system call, little enough that a large frame
/// does not wait for others.
const COALESCE: usize = 64 * 1024;

/// Writes queued frames until every sender is gone or the socket fails,
/// each time gathering what else is queued already into the same write:
/// under load, many calls share one system call.
async fn write_frames(
    mut write: Counted<tokio::net::tcp::OwnedWriteHalf>,
    mut queued: tokio::sync::mpsc::Receiver<bytes::BytesMut>,
) {
    use tokio::io::AsyncWriteExt as _;
    // One write a turn; it ends with the connection.
    while let Some(mut out) = queued.recv().await {
        // Let the tasks that are ready run first: under load they queue
        // their frames too, and one write carries them all.
        tokio::task::yield_now().await;
        while out.len() < COALESCE {
            match queued.try_recv() {
                Ok(frame) => out.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        if let Err(err) = write.write_all(&out).await {
            tracing::debug!(error = %err, "peer connection write failed");
            return;
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Encoded, Fetch};

    /// Answers every request at once with the same body.
    struct Answers;

    #[async_trait]
    impl Handler for Answers {
        async fn handle(
            &self,
            _: &str,
            _: Instant,
            _: PeerRequest,
        ) -> Result<Vec<u8>, postcard::Error> {
            Ok(b"answer".to_vec())
        }

        fn serve_now(&self, _: &str, _: PeerRequest) -> ServedNow {
            ServedNow::Replied(Ok(b"answer".to_vec()))
        }
    }

    async fn link(name: &str) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Link::new(
            listener,
            Signer::derive(&[7; 32], "link"),
            name.into(),
            8,
            Duration::from_secs(1),
            Duration::from_secs(5),
            Arc::default(),
        )
    }

    /// One call from a current-thread runtime of its own, on a thread of
    /// its own (as an actix-web worker's), which ends after the call.
    fn call_from_a_runtime_that_ends(link: &Arc<Link>, to: SocketAddr) -> Result<Bytes, String> {
        let link = Arc::clone(link);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let body = Encoded::new(Fetch {
                    key: "k".to_owned(),
                })
                .unwrap()
                .body;
                let deadline = Instant::now() + Duration::from_secs(5);
                link.call(to, body, deadline)
                    .await
                    .map_err(|err| err.to_string())
            })
        })
        .join()
        .unwrap()
    }

    #[test]
    fn a_connection_outlives_the_runtime_of_the_call_that_opened_it() {
        // The nodes' runtime, which lives on (an app's main runtime).
        let home = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (server, client) =
            home.block_on(async { (link("server").await, link("client").await) });
        let to = server
            .listener
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .local_addr()
            .unwrap();
        let handler: Arc<dyn Handler> = Arc::new(Answers);
        let _serving = home.block_on(async { server.serve(Arc::downgrade(&handler)) });
        let client = Arc::new(client);
        // The first worker's call opens the connection; then its runtime ends.
        assert_eq!(
            call_from_a_runtime_that_ends(&client, to).unwrap(),
            "answer"
        );
        // The connection must live on: its socket belongs to the nodes'
        // runtime, not to the one that just ended (whose I/O driver, had
        // it opened the socket, fails the socket's reader as it shuts down).
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            client.peer(to).live().is_some(),
            "the connection died with the runtime of the call that opened it"
        );
        // A second worker's call must not find a connection nobody drives.
        assert_eq!(
            call_from_a_runtime_that_ends(&client, to).unwrap(),
            "answer"
        );
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    #[tokio::test]
    async fn peer_sockets_probe_idle_connections_and_send_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(!socket.keepalive().unwrap(), "keep-alive is on by default");
        tune(&stream).unwrap();
        assert!(socket.keepalive().unwrap());
        assert!(stream.nodelay().unwrap());
    }
}
