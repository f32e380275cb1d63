//! The answering side of the link: accepts peer connections, checks each
//! request's signed head before it reads the body, and serves each verified
//! request in a task of its own, so a slow request does not hold up the
//! connection's others. Replies go back through the connection's writer
//! task in the order they are ready.

use std::{
    sync::{atomic::Ordering, Arc, Weak},
    time::{Duration, SystemTime},
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, BufReader},
    net::{tcp::OwnedReadHalf, TcpListener, TcpStream},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};

use super::{
    frame::{self, Header, RequestHead, Status, HEADER_LEN, MAGIC},
    tune, write_frames, Counted, Counters, Handler, ServedNow, MAX_BODY, MAX_BUFFERED,
    MAX_CONNECTIONS, MAX_SERVED, MAX_SKEW, VERIFY_TIMEOUT,
};
use crate::{
    protocol::{Failure, Request as PeerRequest, WireErrorKind},
    replay::{Nonces, Use, MAX_NONCES},
    sign::{unix_millis, Signer, TAG_LEN},
};

/// What the server's connections share.
pub(super) struct Server {
    handler: Weak<dyn Handler>,
    signer: Signer,
    counters: Arc<Counters>,
    /// Requests being served, at most [`MAX_SERVED`].
    slots: Arc<Semaphore>,
    /// Body bytes being read or served, at most [`MAX_BUFFERED`].
    buffered: Arc<Semaphore>,
    nonces: Nonces,
    max_budget: Duration,
}

impl Server {
    pub(super) fn new(
        handler: Weak<dyn Handler>,
        signer: Signer,
        counters: Arc<Counters>,
        max_budget: Duration,
    ) -> Self {
        Self {
            handler,
            signer,
            counters,
            slots: Arc::new(Semaphore::new(MAX_SERVED)),
            buffered: Arc::new(Semaphore::new(MAX_BUFFERED)),
            nonces: Nonces::new(MAX_SKEW, MAX_NONCES),
            max_budget,
        }
    }
}

/// The server side: accepts peer connections until the task is aborted.
pub(super) async fn serve(listener: TcpListener, server: Arc<Server>) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Connections live in this set, so aborting the server (the store was
    // dropped) closes them too, as a crashed process would.
    let mut connections = JoinSet::new();
    // One accepted connection a turn, until the task is aborted.
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
        connections.spawn(connection(stream, Arc::clone(&server), permit));
    }
}

/// Serves one connection until the peer closes it or breaks the protocol.
async fn connection(stream: TcpStream, server: Arc<Server>, _permit: OwnedSemaphorePermit) {
    if let Err(err) = tune(&stream) {
        tracing::debug!(error = %err, "could not set up a peer connection's socket");
    }
    let (read, write) = stream.into_split();
    let read = BufReader::with_capacity(16 * 1024, Counted::new(read, &server.counters));
    // As many replies as requests can be served at once.
    let (replies, queued) = mpsc::channel(MAX_SERVED);
    let writer = write_frames(Counted::new(write, &server.counters), queued);
    tokio::join!(read_requests(read, &server, replies), writer);
}

/// What became of one request frame.
enum Next {
    /// Read whole: the connection can go on.
    Continue,
    /// Answered without its body, which is this long: thrown away in small
    /// reads (never held), so the connection stays framed for the next.
    Skip(usize),
    /// Refused with a body too long to skip, or the stream broke: the rest
    /// of the connection cannot be trusted to be framed, so it is closed.
    Close,
}

/// The longest body of a refused request that is skipped rather than the
/// connection closed: a member with the wrong secret or clock learns why on
/// each of its (small) requests, and a stranger's large body is never read.
const MAX_SKIPPED: usize = 64 * 1024;

async fn read_requests(
    mut read: BufReader<Counted<OwnedReadHalf>>,
    server: &Arc<Server>,
    replies: mpsc::Sender<BytesMut>,
) {
    let verify_by = Instant::now() + VERIFY_TIMEOUT;
    let mut magic = [0; MAGIC.len()];
    match tokio::time::timeout_at(verify_by, read.read_exact(&mut magic)).await {
        Ok(Ok(_)) if &magic == MAGIC => {}
        _ => {
            tracing::debug!("closed a peer connection that did not open with the link's magic");
            return;
        }
    }
    // Requests being served; dropped with the connection, which aborts them.
    let mut serving = JoinSet::new();
    let mut verified = false;
    // One request a turn, until the connection ends.
    loop {
        while serving.try_join_next().is_some() {}
        let framed = if verified {
            read_head(&mut read).await
        } else {
            // Until a head verifies, the connection runs against the clock:
            // a slowloris that never finishes a head goes too. A verified
            // head's body is read without it: only members get that far.
            tokio::time::timeout_at(verify_by, read_head(&mut read))
                .await
                .unwrap_or_else(|_| {
                    tracing::debug!("closed a peer connection that sent no signed request");
                    None
                })
        };
        let Some(framed) = framed else {
            break;
        };
        let next = request(
            framed,
            &mut read,
            server,
            &replies,
            &mut serving,
            &mut verified,
        )
        .await;
        let framed = match next {
            Next::Continue => true,
            Next::Close => false,
            Next::Skip(len) if verified => skip(&mut read, len).await,
            // A stranger's skipped bodies run against the clock too.
            Next::Skip(len) => tokio::time::timeout_at(verify_by, skip(&mut read, len))
                .await
                .unwrap_or(false),
        };
        if !framed {
            break;
        }
    }
    // Closing with unread bytes in the socket would reset it, and a reset
    // can destroy the refusal on its way to the caller, who would then see
    // a cut-off connection instead of its reason. So the writer sends what
    // is queued and its end of the stream while a little more input is
    // read and thrown away.
    drop((serving, replies));
    let (mut rest, mut sink) = ((&mut read).take(LINGER_BYTES), tokio::io::sink());
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut sink)).await;
}

/// How long a closing connection reads on, so its last replies arrive.
const LINGER: Duration = Duration::from_secs(1);
/// The most a closing connection reads on: a few heads and small bodies.
const LINGER_BYTES: u64 = 64 * 1024;

/// A request's fixed header, head and tags, as read off the connection
/// before anything of them is trusted. On the stack: a head is short.
struct Framed {
    header: Header,
    /// The head, then its tag and the body's.
    bytes: [u8; frame::MAX_HEAD + 2 * TAG_LEN],
}

impl Framed {
    fn head(&self) -> &[u8] {
        &self.bytes[..self.header.head_len]
    }

    fn head_tag(&self) -> [u8; TAG_LEN] {
        let at = self.header.head_len;
        self.bytes[at..at + TAG_LEN]
            .try_into()
            .expect("sized by the type")
    }

    fn body_tag(&self) -> [u8; TAG_LEN] {
        let at = self.header.head_len + TAG_LEN;
        self.bytes[at..at + TAG_LEN]
            .try_into()
            .expect("sized by the type")
    }
}

/// Reads the next request's head and tags: at most [`frame::MAX_HEAD`]
/// and two tags, whoever sent them. `None` when the connection ends or its
/// fixed header is impossible.
async fn read_head(read: &mut BufReader<Counted<OwnedReadHalf>>) -> Option<Framed> {
    let mut fixed = [0; HEADER_LEN];
    read.read_exact(&mut fixed).await.ok()?;
    // `decode` caps the head's length at `MAX_HEAD`.
    let header = Header::decode(&fixed)?;
    let mut framed = Framed {
        header,
        bytes: [0; frame::MAX_HEAD + 2 * TAG_LEN],
    };
    read.read_exact(&mut framed.bytes[..header.head_len + 2 * TAG_LEN])
        .await
        .ok()?;
    Some(framed)
}

fn bare(id: u64, status: Status) -> BytesMut {
    frame::reply(id, status, &[0; TAG_LEN], &[])
}

/// Checks a request's head, then reads its body and starts serving it, or
/// refuses it.
async fn request(
    framed: Framed,
    read: &mut BufReader<Counted<OwnedReadHalf>>,
    server: &Arc<Server>,
    replies: &mpsc::Sender<BytesMut>,
    serving: &mut JoinSet<()>,
    verified: &mut bool,
) -> Next {
    let (header, head, head_tag, body_tag) = (
        framed.header,
        framed.head(),
        framed.head_tag(),
        framed.body_tag(),
    );
    // The head first, before one byte of the body is read.
    let now = unix_millis(SystemTime::now());
    let decoded = RequestHead::decode(head);
    let signed = server.signer.verify_head(MAGIC, head, &head_tag);
    let Some(head) = decoded.filter(|h| signed && now.abs_diff(h.time) <= millis(MAX_SKEW)) else {
        // The id is unsigned here, but only routes the refusal back.
        let id = head.get(..8).map_or(0, |b| {
            u64::from_be_bytes(b.try_into().expect("eight bytes"))
        });
        refuse(
            server,
            replies,
            id,
            "not signed with the cluster secret, or off this node's clock",
        )
        .await;
        return skip_or_close(header.body_len);
    };
    let id = head.id;
    if head.length != header.body_len as u64 || header.body_len > MAX_BODY {
        let _ = replies.send(bare(id, Status::Malformed)).await;
        return Next::Close;
    }
    match server.nonces.first_use(head.nonce, head.time, now) {
        Use::First => {}
        Use::Repeated => {
            refuse(server, replies, id, "a replay of a request served before").await;
            return skip_or_close(header.body_len);
        }
        Use::Full => {
            let _ = replies.send(bare(id, Status::Busy)).await;
            return Next::Skip(header.body_len);
        }
    }
    // A member sent this connection a signed request it had not sent before.
    *verified = true;
    let permits = u32::try_from(header.body_len).expect("MAX_BODY fits in u32");
    let Ok(buffered) = Arc::clone(&server.buffered).try_acquire_many_owned(permits) else {
        let _ = replies.send(bare(id, Status::Busy)).await;
        return Next::Skip(header.body_len);
    };
    let mut body = vec![0; header.body_len];
    if read.read_exact(&mut body).await.is_err() {
        return Next::Close;
    }
    if !server.signer.verify_body(&head_tag, &body, &body_tag) {
        refuse(
            server,
            replies,
            id,
            "a body that is not the one its head was signed with",
        )
        .await;
        return Next::Continue;
    }
    let Ok(request) = postcard::from_bytes::<PeerRequest>(&body) else {
        let _ = replies.send(bare(id, Status::Malformed)).await;
        return Next::Continue;
    };
    drop(body);
    let Some(handler) = server.handler.upgrade() else {
        let _ = replies.send(bare(id, Status::Busy)).await;
        return Next::Continue;
    };
    let request = match handler.serve_now(&head.node, request) {
        ServedNow::Replied(reply) => {
            let _ = replies
                .send(reply_frame(server, &head, &body_tag, reply))
                .await;
            return Next::Continue;
        }
        ServedNow::Later(request) => request,
    };
    drop(handler);
    let Ok(slot) = Arc::clone(&server.slots).try_acquire_owned() else {
        let _ = replies.send(bare(id, Status::Busy)).await;
        return Next::Continue;
    };
    let served = Served {
        head,
        body_tag,
        request,
        _held: (buffered, slot),
    };
    serving.spawn(answer(Arc::clone(server), served, replies.clone()));
    Next::Continue
}

async fn refuse(server: &Server, replies: &mpsc::Sender<BytesMut>, id: u64, reason: &'static str) {
    server
        .counters
        .requests_refused
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(reason, "refused a peer request");
    let _ = replies.send(bare(id, Status::Refused)).await;
}

fn skip_or_close(len: usize) -> Next {
    if len <= MAX_SKIPPED {
        Next::Skip(len)
    } else {
        Next::Close
    }
}

/// Reads `len` bytes and throws them away; whether they all came.
async fn skip(read: &mut (impl AsyncRead + Unpin), len: usize) -> bool {
    let mut sink = tokio::io::sink();
    let skipped = tokio::io::copy(&mut read.take(len as u64), &mut sink).await;
    skipped.is_ok_and(|skipped| skipped == len as u64)
}

/// A verified request, and the bounds it holds while it is served: its
/// body's bytes (now decoded) and a serving slot.
struct Served {
    head: RequestHead,
    body_tag: [u8; TAG_LEN],
    request: PeerRequest,
    _held: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

async fn answer(server: Arc<Server>, served: Served, replies: mpsc::Sender<BytesMut>) {
    let Some(handler) = server.handler.upgrade() else {
        let _ = replies.send(bare(served.head.id, Status::Busy)).await;
        return;
    };
    // Keep a tenth of the caller's time for the reply's trip back.
    let budget = Duration::from_millis(served.head.budget / 10 * 9).min(server.max_budget);
    let deadline = Instant::now() + budget;
    let reply = match tokio::time::timeout_at(
        deadline,
        handler.handle(&served.head.node, deadline, served.request),
    )
    .await
    {
        Ok(reply) => reply,
        Err(_) => Failure {
            kind: WireErrorKind::Timeout,
            reason: "the owner ran out of time".to_owned(),
        }
        .encode_as_reply(),
    };
    drop(handler);
    let frame = reply_frame(&server, &served.head, &served.body_tag, reply);
    let _ = replies.send(frame).await;
}

/// The reply frame for a served request: signed, and bound to the request
/// by its nonce and body tag.
fn reply_frame(
    server: &Server,
    head: &RequestHead,
    body_tag: &[u8; TAG_LEN],
    reply: Result<Vec<u8>, postcard::Error>,
) -> BytesMut {
    match reply {
        Ok(reply) => {
            let nonce = head.nonce.to_be_bytes();
            let tag = server.signer.reply_tag(&nonce, body_tag, &reply);
            frame::reply(head.id, Status::Served, &tag, &reply)
        }
        Err(_) => bare(head.id, Status::Failed),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
