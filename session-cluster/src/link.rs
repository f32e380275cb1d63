//! The peer link, today's [`Transport`]: signed postcard messages over
//! HTTP/2 (prior knowledge, cleartext), one multiplexed connection per peer,
//! built on hyper.
//!
//! A request travels as a signed *head* (sender, time, budget, body length
//! and a random nonce, in headers with their own tag) and a body whose tag
//! is chained to the head's. The server checks the head before it reads one
//! byte of the body, so a stranger without the secret gets a `401` for the
//! price of a header block; it refuses a nonce it has served (see
//! [`replay`](crate::replay)) and then checks the body's tag. Each reply's
//! tag covers its request's nonce and body tag, so no recorded reply can
//! answer another request.
//!
//! Bounds, so a slow or dead peer cannot stall a request past its deadline:
//! - every call runs under the caller's deadline: waiting for a slot,
//!   connecting, sending and reading the reply;
//! - at most `max_in_flight_per_peer` calls are in flight to one peer; the
//!   rest wait for a slot within their deadline (back-pressure);
//! - a server runs at most [`MAX_SERVED`] requests at once and answers
//!   `503` past that instead of queueing.
//!
//! Bounds on what anyone who reaches the port can hold:
//! - nothing of a body before its head's tag verified: strangers hold at
//!   most a header block (at most [`MAX_HEADER_LIST`] bytes) per stream, for
//!   as long as it takes to refuse it;
//! - at most [`MAX_CONNECTIONS`] connections at once (past it, a new one is
//!   closed at once), and a connection that has sent no signed request
//!   within [`VERIFY_TIMEOUT`] is closed, so a connection that never
//!   finishes its headers (slowloris) or never sends any goes away;
//! - bodies of signed requests are read only within a budget of
//!   [`MAX_BUFFERED`] bytes across all connections (past it, `503`), each at
//!   most [`MAX_BODY`] and exactly the length its head declared;
//! - HTTP/2 caps the streams per connection at 256, what a peer's
//!   `max_in_flight_per_peer` allows by default;
//! - the nonces remembered against replays are bounded too
//!   ([`MAX_NONCES`]); past it, `503`.
//!
//! A reply read that fails (reset, EOF, a connection cut mid-reply) is a
//! transient failure, as a refused connection is, so a read falls back to a
//! backup; only a whole reply whose tag fails, or that does not decode, is
//! `Corrupt`.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, client::conn::http2::SendRequest, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use session_core::{ErrorKind, StoreError};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::AbortHandle,
    time::Instant,
};

use crate::{
    protocol::{Failure, Request as PeerRequest, WireErrorKind},
    replay::{Nonces, Use, MAX_NONCES},
    sign::{from_hex, to_hex, unix_millis, Head, Signer},
    transport::Transport,
};

/// The path of every peer request; the version is in it so a future format
/// can be served beside this one during a rolling upgrade. v2: the typed
/// protocol (one request enum per role, a reply type per request). v3: the
/// head signed apart from the body, with a nonce; replies bound to it;
/// lease renewals (`Request::Lease`).
pub(crate) const PATH: &str = "/session-cluster/v3";
/// Headers of a peer request: the signed head, and the two tags.
pub(crate) const H_NODE: &str = "x-sc-node";
pub(crate) const H_TIME: &str = "x-sc-time";
pub(crate) const H_BUDGET: &str = "x-sc-budget-ms";
pub(crate) const H_LENGTH: &str = "x-sc-length";
pub(crate) const H_NONCE: &str = "x-sc-nonce";
pub(crate) const H_HEAD_MAC: &str = "x-sc-head-mac";
/// The body's tag on a request; the reply's tag on a reply.
pub(crate) const H_MAC: &str = "x-sc-mac";
/// The most a signed request may be older or newer than the receiver's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(60);
/// The largest body either side accepts.
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;

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
}

/// Why a peer call failed: the source of the [`StoreError`] it becomes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("cannot connect to peer {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("HTTP/2 to peer {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("peer {addr} refused the request as unauthenticated: it does not share this node's secret, or the clocks differ by more than a minute")]
    Refused { addr: SocketAddr },
    #[error("peer {addr} is busy (503)")]
    Busy { addr: SocketAddr },
    #[error("peer {addr} answered {status}")]
    Status {
        addr: SocketAddr,
        status: StatusCode,
    },
    #[error("peer {addr} sent a reply that fails its signature or does not decode")]
    BadReply { addr: SocketAddr },
    #[error("peer {addr}'s reply was cut off: {source}")]
    CutOff {
        addr: SocketAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The HTTP/2 [`Transport`]: calls to peers, and the server that answers
/// theirs.
pub(crate) struct Link {
    signer: Signer,
    me: Arc<str>,
    peers: Mutex<HashMap<SocketAddr, Arc<Peer>>>,
    max_in_flight: usize,
    connect_timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    /// The peer link's socket, until [`Transport::serve`] takes it.
    listener: Mutex<Option<TcpListener>>,
    /// The most time the server gives one request, whatever its caller's
    /// budget says.
    max_budget: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

struct Peer {
    slots: Semaphore,
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Link {
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
        }
    }

    fn peer(&self, addr: SocketAddr) -> Arc<Peer> {
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(peers.entry(addr).or_insert_with(|| {
            Arc::new(Peer {
                slots: Semaphore::new(self.max_in_flight),
                conn: tokio::sync::Mutex::new(None),
            })
        }))
    }

    async fn call_inner(
        &self,
        addr: SocketAddr,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, LinkError> {
        let peer = self.peer(addr);
        // Closed only if the semaphore is dropped, which `peer` prevents.
        let _slot = peer
            .slots
            .acquire()
            .await
            .expect("the peer's semaphore is never closed");
        let mut sender = self.sender(&peer, addr).await?;
        let time = unix_millis(SystemTime::now()).to_string();
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            .to_string();
        let length = body.len().to_string();
        let nonce = format!("{:032x}", rand::random::<u128>());
        let head_tag = self.signer.head_tag(&Head {
            path: PATH.as_bytes(),
            node: self.me.as_bytes(),
            time: time.as_bytes(),
            budget: budget.as_bytes(),
            length: length.as_bytes(),
            nonce: nonce.as_bytes(),
        });
        let tag = self.signer.body_tag(&head_tag, &body);
        let request = Request::post(format!("http://{addr}{PATH}"))
            .header(H_NODE, &*self.me)
            .header(H_TIME, time)
            .header(H_BUDGET, budget)
            .header(H_LENGTH, length)
            .header(H_NONCE, &nonce)
            .header(H_HEAD_MAC, to_hex(&head_tag))
            .header(H_MAC, to_hex(&tag))
            .body(Full::new(body))
            .expect("the request is built from valid parts");
        let http = |source| LinkError::Http { addr, source };
        let response = async {
            sender.ready().await?;
            sender.send_request(request).await
        }
        .await;
        let response = match response {
            Ok(response) => response,
            Err(source) => {
                // The connection is broken; the next call opens a new one.
                *peer.conn.lock().await = None;
                return Err(http(source));
            }
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(LinkError::Refused { addr }),
            StatusCode::SERVICE_UNAVAILABLE => return Err(LinkError::Busy { addr }),
            status => return Err(LinkError::Status { addr, status }),
        }
        let reply_tag = response
            .headers()
            .get(H_MAC)
            .and_then(|v| from_hex(v.as_bytes()));
        let reply = match Limited::new(response.into_body(), MAX_BODY).collect().await {
            Ok(reply) => reply.to_bytes(),
            // Longer than any reply may be: whole enough to judge, and bad.
            Err(err) if err.is::<LengthLimitError>() => return Err(LinkError::BadReply { addr }),
            // Reset, EOF, a peer that died mid-reply: the reply never
            // arrived, and a backup may answer.
            Err(source) => return Err(LinkError::CutOff { addr, source }),
        };
        let signed =
            reply_tag.is_some_and(|t| self.signer.verify_reply(nonce.as_bytes(), &tag, &reply, &t));
        if !signed {
            return Err(LinkError::BadReply { addr });
        }
        Ok(reply)
    }

    async fn sender(
        &self,
        peer: &Peer,
        addr: SocketAddr,
    ) -> Result<SendRequest<Full<Bytes>>, LinkError> {
        let mut conn = peer.conn.lock().await;
        if let Some(sender) = conn.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let connect = |source| LinkError::Connect { addr, source };
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .handshake(TokioIo::new(Counted::new(stream, &self.counters)))
            .await
            .map_err(|source| LinkError::Http { addr, source })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%addr, error = %err, "peer connection closed");
            }
        });
        *conn = Some(sender.clone());
        Ok(sender)
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
        // Lease renewals are counted apart (`ClusterStats::lease_requests`),
        // so this counts the requests that sessions and indexes cost.
        if operation != <crate::lease::Confirm as crate::protocol::Call>::NAME {
            self.counters.requests_sent.fetch_add(1, Ordering::Relaxed);
        }
        match tokio::time::timeout_at(deadline, self.call_inner(to, body, deadline)).await {
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
        let server = Server {
            handler,
            signer: self.signer.clone(),
            counters: Arc::clone(&self.counters),
            slots: Semaphore::new(MAX_SERVED),
            buffered: Semaphore::new(MAX_BUFFERED),
            nonces: Nonces::new(MAX_SKEW, MAX_NONCES),
            max_budget: self.max_budget,
        };
        tokio::spawn(serve(listener, Arc::new(server))).abort_handle()
    }

    /// Forgets connections to peers that are no longer members.
    fn retain(&self, live: &dyn Fn(&SocketAddr) -> bool) {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|addr, _| live(addr));
    }
}

/// The most requests a node serves at once for its peers; past it, `503`.
pub(crate) const MAX_SERVED: usize = 1024;
/// The most peer connections a node holds at once; past it, a new one is
/// closed as soon as it is accepted. A cluster needs one per peer (two for a
/// moment while a peer reconnects), so this leaves room for large clusters
/// while capping the sockets and tasks strangers can make it hold.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// How long a connection may stay open without sending a request whose
/// signed head verifies. A peer opens its connection only to send a request
/// at once, so this is only ever reached by strangers, among them a
/// slowloris that never finishes its headers.
pub(crate) const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// The most body bytes a node reads at once for signed requests, across all
/// connections: eight bodies of the largest size. Past it, `503`.
pub(crate) const MAX_BUFFERED: usize = 8 * MAX_BODY;
/// The largest header block a peer request may have: ours take about 400
/// bytes.
pub(crate) const MAX_HEADER_LIST: u32 = 8 * 1024;
/// Streams per connection: as many as a peer's default
/// `max_in_flight_per_peer`, since a peer opens one connection.
const MAX_STREAMS: u32 = 256;

/// What the server's connections share.
struct Server {
    handler: Weak<dyn Handler>,
    signer: Signer,
    counters: Arc<Counters>,
    /// Requests being served, at most [`MAX_SERVED`].
    slots: Semaphore,
    /// Body bytes being read or served, at most [`MAX_BUFFERED`].
    buffered: Semaphore,
    nonces: Nonces,
    max_budget: Duration,
}

impl Server {
    fn refuse(&self, reason: &'static str) -> Response<Full<Bytes>> {
        self.counters
            .requests_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(reason, "refused a peer request");
        status(StatusCode::UNAUTHORIZED)
    }
}

/// The server side: accepts peer connections until the task is aborted.
async fn serve(listener: TcpListener, server: Arc<Server>) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Connections live in this set, so aborting the server (the store was
    // dropped) closes them too, as a crashed process would.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %err, "peer link accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            // Dropping the stream closes it: no queue of waiting sockets.
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "peer link at its connection limit; closed a new connection"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Counted::new(stream, &server.counters));
        let server = Arc::clone(&server);
        connections.spawn(async move {
            let _permit = permit;
            let verified = Arc::new(AtomicBool::new(false));
            let service = {
                let verified = Arc::clone(&verified);
                service_fn(move |request| {
                    let (server, verified) = (Arc::clone(&server), Arc::clone(&verified));
                    async move {
                        Ok::<_, std::convert::Infallible>(answer(request, &server, &verified).await)
                    }
                })
            };
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .max_header_list_size(MAX_HEADER_LIST)
                .keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5));
            tokio::select! {
                result = builder.serve_connection(io, service) => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "peer connection ended");
                    }
                }
                () = unverified_after(VERIFY_TIMEOUT, &verified) => {
                    tracing::debug!("closed a peer connection that sent no signed request");
                }
            }
        });
    }
}

/// Ready once `limit` has passed if `verified` is still unset then; never,
/// otherwise.
async fn unverified_after(limit: Duration, verified: &AtomicBool) {
    tokio::time::sleep(limit).await;
    if verified.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = code;
    response
}

fn decimal(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A nonce as the client writes it: 32 lowercase hex digits.
fn nonce(text: &[u8]) -> Option<u128> {
    if text.len() != 32 {
        return None;
    }
    u128::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

async fn answer(
    request: Request<Incoming>,
    server: &Server,
    verified: &AtomicBool,
) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH || request.method() != http::Method::POST {
        return status(StatusCode::NOT_FOUND);
    }
    let (parts, body) = request.into_parts();
    let header = |name| parts.headers.get(name).map_or(&[][..], |v| v.as_bytes());
    let head = Head {
        path: PATH.as_bytes(),
        node: header(H_NODE),
        time: header(H_TIME),
        budget: header(H_BUDGET),
        length: header(H_LENGTH),
        nonce: header(H_NONCE),
    };
    // The head first, before one byte of the body is read.
    let head_tag = from_hex(header(H_HEAD_MAC)).unwrap_or_default();
    let now = unix_millis(SystemTime::now());
    let sent = decimal(head.time);
    let fresh = sent.is_some_and(|sent| now.abs_diff(sent) <= MAX_SKEW.as_millis() as u64);
    if !server.signer.verify_head(&head, &head_tag) || !fresh {
        return server.refuse("not signed with the cluster secret, or off this node's clock");
    }
    let (Some(sent), Some(budget), Some(length), Some(nonce), Ok(node)) = (
        sent,
        decimal(head.budget),
        decimal(head.length),
        nonce(head.nonce),
        std::str::from_utf8(head.node),
    ) else {
        return status(StatusCode::BAD_REQUEST);
    };
    match server.nonces.first_use(nonce, sent, now) {
        Use::First => {}
        Use::Repeated => return server.refuse("a replay of a request served before"),
        Use::Full => return status(StatusCode::SERVICE_UNAVAILABLE),
    }
    // A member sent this connection a signed request it had not sent before.
    verified.store(true, Ordering::Relaxed);
    let Some(length) = usize::try_from(length).ok().filter(|l| *l <= MAX_BODY) else {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    };
    let permits = u32::try_from(length).expect("MAX_BODY fits in u32");
    let Ok(_buffered) = server.buffered.try_acquire_many(permits) else {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Ok(body) = Limited::new(body, length).collect().await else {
        // Longer than its head said, or cut off: nobody to answer, or a liar.
        return status(StatusCode::BAD_REQUEST);
    };
    let body = body.to_bytes();
    if body.len() != length {
        return status(StatusCode::BAD_REQUEST);
    }
    let tag = from_hex(header(H_MAC)).unwrap_or_default();
    if !server.signer.verify_body(&head_tag, &body, &tag) {
        return server.refuse("a body that is not the one its head was signed with");
    }
    let Ok(request) = postcard::from_bytes::<PeerRequest>(&body) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let Ok(_slot) = server.slots.try_acquire() else {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    };
    let Some(handler) = server.handler.upgrade() else {
        return status(StatusCode::SERVICE_UNAVAILABLE);
    };
    // Keep a tenth of the caller's time for the reply's trip back.
    let deadline = Instant::now() + (Duration::from_millis(budget) * 9 / 10).min(server.max_budget);
    let reply =
        match tokio::time::timeout_at(deadline, handler.handle(node, deadline, request)).await {
            Ok(reply) => reply,
            Err(_) => Failure {
                kind: WireErrorKind::Timeout,
                reason: "the owner ran out of time".to_owned(),
            }
            .encode_as_reply(),
        };
    let Ok(reply) = reply else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let reply_tag = server.signer.reply_tag(head.nonce, &tag, &reply);
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    response.headers_mut().insert(
        H_MAC,
        to_hex(&reply_tag)
            .parse()
            .expect("hex is a valid header value"),
    );
    response
}

pin_project_lite::pin_project! {
    /// A TCP stream that counts the bytes through it: what the replication
    /// traffic figures measure, HTTP/2 framing and headers included.
    struct Counted {
        #[pin]
        inner: TcpStream,
        counters: Arc<Counters>,
    }
}

impl Counted {
    fn new(inner: TcpStream, counters: &Arc<Counters>) -> Self {
        Self {
            inner,
            counters: Arc::clone(counters),
        }
    }
}

impl AsyncRead for Counted {
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

impl AsyncWrite for Counted {
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

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = result {
            this.counters
                .bytes_sent
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
