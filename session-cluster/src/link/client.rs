//! The calling side of the link: one connection per peer, shared by every
//! call to it. Each call registers its request id, queues its frame for the
//! connection's writer task (which coalesces whatever is queued into one
//! write) and waits for the reader task to hand it the reply with its id.
//! When the connection dies, every waiting call fails at once as cut off
//! (`Unavailable`), and the next call opens a new connection.

use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncReadExt, BufReader},
    net::{tcp::OwnedReadHalf, TcpStream},
    sync::{mpsc, oneshot, Semaphore},
    task::AbortHandle,
    time::Instant,
};

use super::{
    frame::{self, ReplyHeader, RequestHead, Status, MAGIC, REPLY_HEADER_LEN},
    tune, write_frames, Counted, Link, LinkError, MAX_BODY,
};
use crate::{
    ids::IdHash,
    sign::{unix_millis, TAG_LEN},
};

/// What the link keeps for one peer.
pub(super) struct Peer {
    /// Calls in flight to the peer, at most `max_in_flight_per_peer`.
    slots: Semaphore,
    /// The connection calls use, while it lives.
    live: Mutex<Option<Arc<Conn>>>,
    /// Held while a call connects, so calls that find no live connection
    /// wait for one new connection instead of each opening its own.
    connecting: tokio::sync::Mutex<()>,
}

impl Peer {
    pub(super) fn live(&self) -> Option<Arc<Conn>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|conn| !conn.waiting.is_closed())
            .map(Arc::clone)
    }
}

/// One connection to a peer, and the tasks that write and read it; they
/// end when it is dropped (the peer left, or the node stopped).
pub(super) struct Conn {
    frames: mpsc::Sender<BytesMut>,
    waiting: Arc<Waiting>,
    next_id: AtomicU64,
    tasks: [AbortHandle; 2],
}

impl Drop for Conn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the reader task hands a waiting call.
enum Reply {
    Frame {
        header: ReplyHeader,
        body: Bytes,
    },
    /// Longer than any reply may be: whole enough to judge, and bad.
    TooLong,
}

/// The calls waiting on a connection, by request id (counted here, so a
/// multiply hashes them: [`IdHash`]).
type Calls = HashMap<u64, oneshot::Sender<Reply>, IdHash>;

/// Calls waiting for their replies, by request id.
struct Waiting {
    /// `None` once the connection died, so no call can start waiting on a
    /// dead connection.
    calls: Mutex<Option<Calls>>,
    /// The peer refused a request on this connection, and so closes it.
    /// The calls behind it were never looked at, but they carry the same
    /// key and clock, so they fail as refused too, not as cut off: a node
    /// with the wrong secret learns why.
    refused: AtomicBool,
}

impl Waiting {
    fn new() -> Self {
        Self {
            calls: Mutex::new(Some(Calls::default())),
            refused: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Calls>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Why a call got no reply on this connection.
    fn lost(&self, addr: SocketAddr) -> LinkError {
        if self.refused.load(Ordering::Relaxed) {
            LinkError::Refused { addr }
        } else {
            LinkError::CutOff { addr }
        }
    }

    fn register(&self, id: u64, reply: oneshot::Sender<Reply>) -> bool {
        self.lock()
            .as_mut()
            .is_some_and(|waiting| waiting.insert(id, reply).is_none())
    }

    fn deliver(&self, id: u64, reply: Reply) {
        let waiting = self.lock().as_mut().and_then(|w| w.remove(&id));
        // A caller that gave up (its deadline passed) no longer listens.
        if let Some(waiting) = waiting {
            let _ = waiting.send(reply);
        }
    }

    fn forget(&self, id: u64) {
        if let Some(waiting) = self.lock().as_mut() {
            waiting.remove(&id);
        }
    }

    /// Fails every waiting call: dropping their senders wakes them.
    fn close(&self) {
        self.lock().take();
    }

    fn is_closed(&self) -> bool {
        self.lock().is_none()
    }
}

/// Closes a connection's [`Waiting`] when one of its tasks ends: returned,
/// aborted, or dropped with the runtime it ran on.
struct CloseOnDrop(Arc<Waiting>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Forgets a call's id when the call ends, answered or not (its caller's
/// deadline dropped it), so the map holds only calls still waiting.
struct Registered<'a> {
    waiting: &'a Waiting,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.waiting.forget(self.id);
    }
}

impl Link {
    pub(super) fn peer(&self, addr: SocketAddr) -> Arc<Peer> {
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(peers.entry(addr).or_insert_with(|| {
            Arc::new(Peer {
                slots: Semaphore::new(self.max_in_flight),
                live: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
        }))
    }

    /// One signed request to the peer at `addr` and its verified reply;
    /// the caller bounds it by `deadline`.
    pub(super) async fn call(
        &self,
        addr: SocketAddr,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, LinkError> {
        if body.len() > MAX_BODY {
            return Err(LinkError::Status {
                addr,
                status: Status::Malformed,
            });
        }
        let peer = self.peer(addr);
        // Closed only if the semaphore is dropped, which `peer` prevents.
        let _slot = peer
            .slots
            .acquire()
            .await
            .expect("the peer's semaphore is never closed");
        let conn = self.connection(&peer, addr).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let nonce = rand::random::<u128>();
        let budget = deadline.saturating_duration_since(Instant::now());
        let head = RequestHead {
            id,
            time: unix_millis(SystemTime::now()),
            budget: u64::try_from(budget.as_millis()).unwrap_or(u64::MAX),
            length: body.len() as u64,
            nonce,
            node: &*self.me,
        };
        let mut body_tag = [0; TAG_LEN];
        let request = frame::request(&head, &body, |head| {
            let head_tag = self.signer.head_tag(MAGIC, head);
            body_tag = self.signer.body_tag(&head_tag, &body);
            (head_tag, body_tag)
        });
        let (reply, answered) = oneshot::channel();
        if !conn.waiting.register(id, reply) {
            return Err(conn.waiting.lost(addr));
        }
        let _registered = Registered {
            waiting: &conn.waiting,
            id,
        };
        if conn.frames.send(request).await.is_err() {
            return Err(conn.waiting.lost(addr));
        }
        // A dropped sender: the connection died before the reply came whole.
        let (header, reply) = match answered.await {
            Ok(Reply::Frame { header, body }) => (header, body),
            Ok(Reply::TooLong) => return Err(LinkError::BadReply { addr }),
            Err(_) => return Err(conn.waiting.lost(addr)),
        };
        match header.status {
            Status::Served => {}
            Status::Refused => return Err(LinkError::Refused { addr }),
            Status::Busy => return Err(LinkError::Busy { addr }),
            status @ (Status::Malformed | Status::Failed) => {
                return Err(LinkError::Status { addr, status })
            }
        }
        let signed = self
            .signer
            .verify_reply(&nonce.to_be_bytes(), &body_tag, &reply, &header.tag);
        if !signed {
            return Err(LinkError::BadReply { addr });
        }
        Ok(reply)
    }

    /// The peer's live connection, or a new one.
    async fn connection(&self, peer: &Peer, addr: SocketAddr) -> Result<Arc<Conn>, LinkError> {
        if let Some(live) = peer.live() {
            return Ok(live);
        }
        let _connecting = peer.connecting.lock().await;
        if let Some(live) = peer.live() {
            return Ok(live);
        }
        let connect = |source| LinkError::Connect { addr, source };
        // Connected on the node's runtime, like the tasks below: a socket
        // is registered with the I/O driver of the runtime that opens it,
        // and only that driver wakes its readers. Opened from an actix
        // worker's runtime, it would wait on that worker's turns, and die
        // with it.
        let timeout = self.connect_timeout;
        let stream = self
            .home
            .spawn(async move { tokio::time::timeout(timeout, TcpStream::connect(addr)).await })
            .await
            .map_err(|_| connect(io::Error::other("the node's runtime is shutting down")))?
            .map_err(|_| connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(connect)?;
        tune(&stream).map_err(connect)?;
        let (read, write) = stream.into_split();
        // Room for every call a slot allows, and the magic.
        let (frames, queued) = mpsc::channel(self.max_in_flight + 1);
        frames
            .try_send(BytesMut::from(&MAGIC[..]))
            .expect("a new queue has room");
        let waiting = Arc::new(Waiting::new());
        // On the node's runtime (see `Link::home`). Each task closes the
        // connection however it ends, dropped with its runtime included, so
        // no call waits on a connection nobody drives and the next call
        // opens a new one.
        let writer = {
            let (closing, write) = (
                CloseOnDrop(Arc::clone(&waiting)),
                Counted::new(write, &self.counters),
            );
            self.home.spawn(async move {
                let _closing = closing;
                write_frames(write, queued).await;
            })
        };
        let reader = {
            let read = BufReader::with_capacity(64 * 1024, Counted::new(read, &self.counters));
            let closing = CloseOnDrop(Arc::clone(&waiting));
            self.home.spawn(async move {
                if let Err(err) = read_replies(read, &closing.0).await {
                    tracing::debug!(%addr, error = %err, "peer connection closed");
                }
            })
        };
        let live = Arc::new(Conn {
            frames,
            waiting,
            next_id: AtomicU64::new(0),
            tasks: [writer.abort_handle(), reader.abort_handle()],
        });
        *peer
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&live));
        Ok(live)
    }
}

/// Hands each reply to the call waiting for its id, until the connection
/// ends (EOF, an error, or a frame no server sends).
async fn read_replies(
    mut read: BufReader<Counted<OwnedReadHalf>>,
    waiting: &Waiting,
) -> io::Result<()> {
    // One reply a turn; it ends with the connection.
    loop {
        let mut fixed = [0; REPLY_HEADER_LEN];
        read.read_exact(&mut fixed).await?;
        let header = ReplyHeader::decode(&fixed)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown reply status"))?;
        if header.len > MAX_BODY {
            waiting.deliver(header.id, Reply::TooLong);
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
        }
        let mut body = BytesMut::zeroed(header.len);
        read.read_exact(&mut body).await?;
        if header.status == Status::Refused {
            waiting.refused.store(true, Ordering::Relaxed);
        }
        waiting.deliver(
            header.id,
            Reply::Frame {
                header,
                body: body.freeze(),
            },
        );
    }
}
