//! The clustering baseline: session replication as Tomcat's `DeltaManager`
//! does it, so the lab can show what session-kit's cluster is the answer
//! to.
//!
//! - Every app server keeps **every** session in its own memory.
//! - After a write (create, commit, touch, delete) the server answers at
//!   once, and queues a copy of the session for **every other** server: a
//!   copy per peer, so the traffic of one write grows with `N - 1`.
//! - Each peer's queue is sent by its own task over a real peer link
//!   (length-prefixed JSON frames over loopback TCP) every
//!   [`FLUSH_EVERY`], as an asynchronous sender's dispatch queue does: a
//!   copy leaves up to that long after the answer. A request that reaches
//!   another server before the copy reads the older session there: a
//!   **stale read**, with no fault at all.
//! - A copy is applied on arrival, whatever the receiver holds: no
//!   version is compared, as `DeltaManager` compares none. The last copy
//!   to arrive wins.
//! - A partition ([`ReplicatedStore::partition_from`]) drops the copies
//!   between the two sides, as a cut network would; nothing refuses a
//!   request, so both sides go on answering from what they hold.
//! - A server that starts while others run asks one of them for all its
//!   sessions first (`DeltaManager`'s state transfer), so a restarted
//!   server is not empty.
//!
//! `DeltaManager` sends the attributes a request changed; the lab's
//! sessions are two small attributes, so the whole record is sent, which
//! is the same size.
//!
//! Every loop here is bounded: the senders and the listener by the run's
//! [`Shutdown`] (and by the node's kill, which aborts them), a peer
//! connection by its peer (and the listener's end), the state transfer by
//! [`SYNC_TIMEOUT`] and [`MAX_FRAME`].

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use session_kit::{
    store::{Changes, Committed, ConditionalDelete, Created, Record, SessionStore},
    SessionId, StoreError,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};

use crate::shutdown::{self, Shutdown};

/// How often each sender sends what its queue holds. The lab's users send
/// their next request 100 ms after an answer, so a copy that waits for
/// the next flush misses that request about half the time when it lands
/// on another server (less on a loaded machine, whose answers come
/// later): the stand-in for a real page's bursts (a redirect after a
/// POST, parallel XHRs) that beat a copy of a few milliseconds. It is a
/// constant of the design, not of luck: stale reads need no slow machine
/// to show.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Copies one peer's queue holds; past it new copies for that peer are
/// dropped (and counted), never queued without bound.
const QUEUE: usize = 16_384;
/// How long connecting to a peer may take before the batch is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long writing one batch may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a starting server waits for one peer's state transfer.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame a server accepts: far above a lab session.
const MAX_FRAME: u32 = 1 << 20;

/// What travels on the peer link, one per frame.
#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// A session as the sender holds it now.
    Put(WireRecord),
    /// The session is gone on the sender.
    Delete(String),
    /// "Send me every session you hold": a starting server's state
    /// transfer.
    SyncRequest,
    /// The end of a state transfer.
    SyncDone,
}

/// A [`Record`] on the wire. The owner is not sent: the lab's sessions
/// have none.
#[derive(Debug, Serialize, Deserialize)]
struct WireRecord {
    id: String,
    data: HashMap<String, String>,
    created_at_ms: u64,
    expires_at_ms: u64,
    version: u64,
}

fn to_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl WireRecord {
    fn from_record(record: &Record) -> Self {
        Self {
            id: record.id.encode(),
            data: record.data.clone(),
            created_at_ms: to_ms(record.created_at),
            expires_at_ms: to_ms(record.expires_at),
            version: record.version,
        }
    }

    fn into_record(self) -> Option<Record> {
        let id = SessionId::decode(&self.id)?;
        let mut record = Record::new(
            id,
            self.data,
            from_ms(self.created_at_ms),
            from_ms(self.expires_at_ms),
        );
        record.version = self.version;
        Some(record)
    }
}

/// `message` as one frame: its length (4 bytes, big-endian), then JSON.
fn frame(message: &Message) -> Bytes {
    // The messages are plain data: encoding cannot fail.
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// Reads one frame; `None` at the end of the stream or on a bad frame,
/// which ends the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Message> {
    let mut length = [0_u8; 4];
    stream.read_exact(&mut length).await.ok()?;
    let length = u32::from_be_bytes(length);
    if length > MAX_FRAME {
        return None;
    }
    let mut body = vec![0_u8; usize::try_from(length).ok()?];
    stream.read_exact(&mut body).await.ok()?;
    serde_json::from_slice(&body).ok()
}

/// What a server's store, its listener and its senders share.
#[derive(Debug)]
struct Shared {
    sessions: Mutex<HashMap<SessionId, Record>>,
    /// One queue per peer.
    outboxes: Vec<mpsc::Sender<Bytes>>,
    /// Bytes written to the peer links: copies and state transfers.
    bytes_sent: AtomicU64,
    /// Copies that never left: a full queue, or a peer that was down.
    copies_dropped: AtomicU64,
    /// Peers this server is cut off from (a partition): their copies are
    /// dropped.
    blocked: Mutex<HashSet<SocketAddr>>,
}

impl Shared {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Record>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `message` for every peer; never waits.
    fn replicate(&self, message: &Message) {
        let frame = frame(message);
        for outbox in &self.outboxes {
            if outbox.try_send(frame.clone()).is_err() {
                self.copies_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn is_blocked(&self, peer: SocketAddr) -> bool {
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&peer)
    }

    fn put(&self, record: &Record) {
        self.replicate(&Message::Put(WireRecord::from_record(record)));
    }

    fn gone(&self, id: &SessionId) {
        self.replicate(&Message::Delete(id.encode()));
    }

    /// A peer's copy: applied as it is, the last to arrive wins.
    fn apply(&self, message: Message) {
        match message {
            Message::Put(wire) => {
                if let Some(record) = wire.into_record() {
                    self.sessions().insert(record.id, record);
                }
            }
            Message::Delete(id) => {
                if let Some(id) = SessionId::decode(&id) {
                    self.sessions().remove(&id);
                }
            }
            Message::SyncRequest | Message::SyncDone => {}
        }
    }
}

/// Aborts a server's listener and senders when its last store handle goes:
/// a killed server stops replicating at once, as a crashed one would.
#[derive(Debug)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One app server's session store in the clustering baseline: every
/// session in local memory, every write copied to every other server
/// after the answer (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct ReplicatedStore {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl ReplicatedStore {
    /// Starts a server's store: receives copies on `listener`, sends its
    /// own to `peers`. With `sync`, first takes every session of the first
    /// peer that answers (a restarted server); the copies that arrive
    /// meanwhile are kept, since the listener runs already.
    pub(crate) async fn start(
        listener: TcpListener,
        peers: &[SocketAddr],
        sync: bool,
        shutdown: &Shutdown,
    ) -> Self {
        let mut queues = Vec::with_capacity(peers.len());
        let mut outboxes = Vec::with_capacity(peers.len());
        for _ in peers {
            let (outbox, queue) = mpsc::channel(QUEUE);
            outboxes.push(outbox);
            queues.push(queue);
        }
        let shared = Arc::new(Shared {
            sessions: Mutex::new(HashMap::new()),
            outboxes,
            bytes_sent: AtomicU64::new(0),
            copies_dropped: AtomicU64::new(0),
            blocked: Mutex::new(HashSet::new()),
        });
        let mut tasks = vec![tokio::spawn(receive(
            Arc::clone(&shared),
            listener,
            shutdown.clone(),
        ))];
        for (&peer, queue) in peers.iter().zip(queues) {
            tasks.push(tokio::spawn(send(
                Arc::clone(&shared),
                peer,
                queue,
                shutdown.clone(),
            )));
        }
        if sync {
            for &peer in peers {
                if let Ok(Some(records)) = tokio::time::timeout(SYNC_TIMEOUT, sync_from(peer)).await
                {
                    let mut sessions = shared.sessions();
                    for record in records {
                        // A copy that arrived during the transfer is newer.
                        sessions.entry(record.id).or_insert(record);
                    }
                    break;
                }
            }
        }
        Self {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        }
    }

    /// Sessions this server holds, expired ones left out.
    pub(crate) fn sessions_held(&self) -> u64 {
        let now = SystemTime::now();
        let held = self
            .shared
            .sessions()
            .values()
            .filter(|record| record.expires_at > now)
            .count();
        u64::try_from(held).unwrap_or(u64::MAX)
    }

    /// The bytes of the sessions this server holds, as a store would
    /// count them: the id (16 bytes), each key and value, and the
    /// timestamps and version (8 bytes each). Allocator and map overhead
    /// is left out.
    pub(crate) fn bytes_held(&self) -> u64 {
        let now = SystemTime::now();
        let held: usize = self
            .shared
            .sessions()
            .values()
            .filter(|record| record.expires_at > now)
            .map(|record| {
                16 + 24
                    + record
                        .data
                        .iter()
                        .map(|(key, value)| key.len() + value.len())
                        .sum::<usize>()
            })
            .sum();
        u64::try_from(held).unwrap_or(u64::MAX)
    }

    /// Bytes this server wrote to its peer links.
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }

    /// Copies that never left this server (a full queue, a peer down).
    pub(crate) fn copies_dropped(&self) -> u64 {
        self.shared.copies_dropped.load(Ordering::Relaxed)
    }

    /// Cuts this server off from `peers`: the copies it would send them
    /// are dropped. Call it on both sides for a partition;
    /// [`heal`](Self::heal) undoes it. Copies dropped meanwhile are not
    /// sent again, as none would be after a real cut.
    pub(crate) fn partition_from(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        self.shared
            .blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(peers);
    }

    /// Undoes every [`partition_from`](Self::partition_from).
    pub(crate) fn heal(&self) {
        self.shared
            .blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn live(record: &Record) -> bool {
        record.expires_at > SystemTime::now()
    }
}

/// Receives copies (and state-transfer requests) until `shutdown`.
async fn receive(shared: Arc<Shared>, listener: TcpListener, shutdown: Shutdown) {
    shutdown::accept_until(listener, shutdown, move |stream| {
        serve_peer(Arc::clone(&shared), stream)
    })
    .await;
}

/// One peer connection: applies each copy; answers a state-transfer
/// request with every session and ends. Ends when the peer closes it.
async fn serve_peer(shared: Arc<Shared>, mut stream: TcpStream) {
    while let Some(message) = read_frame(&mut stream).await {
        if let Message::SyncRequest = message {
            let records: Vec<Message> = shared
                .sessions()
                .values()
                .filter(|record| ReplicatedStore::live(record))
                .map(|record| Message::Put(WireRecord::from_record(record)))
                .chain([Message::SyncDone])
                .collect();
            let mut out = Vec::new();
            for message in &records {
                out.extend_from_slice(&frame(message));
            }
            if stream.write_all(&out).await.is_ok() {
                shared.bytes_sent.fetch_add(
                    u64::try_from(out.len()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
            }
            return;
        }
        shared.apply(message);
    }
}

/// Asks `peer` for every session it holds; `None` if it does not answer
/// with a whole transfer.
async fn sync_from(peer: SocketAddr) -> Option<Vec<Record>> {
    let mut stream = TcpStream::connect(peer).await.ok()?;
    stream.write_all(&frame(&Message::SyncRequest)).await.ok()?;
    let mut records = Vec::new();
    // Bounded by the caller's timeout, and by the peer's finite answer.
    loop {
        match read_frame(&mut stream).await? {
            Message::Put(wire) => records.extend(wire.into_record()),
            Message::SyncDone => return Some(records),
            Message::Delete(_) | Message::SyncRequest => return None,
        }
    }
}

/// Sends `peer`'s queue every [`FLUSH_EVERY`] until `shutdown`: one write
/// of every queued copy, on a connection kept open between flushes. A
/// batch that cannot be written is dropped: the peer is down, and gets
/// the sessions by state transfer when it starts again.
async fn send(
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut queue: mpsc::Receiver<Bytes>,
    shutdown: Shutdown,
) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut link: Option<TcpStream> = None;
    let over = shutdown.requested();
    tokio::pin!(over);
    loop {
        tokio::select! {
            () = &mut over => return,
            _ = every.tick() => {}
        }
        let mut batch = Vec::new();
        let mut copies = 0_u64;
        while copies < QUEUE as u64 {
            let Ok(copy) = queue.try_recv() else { break };
            batch.extend_from_slice(&copy);
            copies += 1;
        }
        if copies == 0 {
            continue;
        }
        if shared.is_blocked(peer) {
            // Cut off: the batch is lost on the way, and so is the link.
            link = None;
            shared.copies_dropped.fetch_add(copies, Ordering::Relaxed);
            continue;
        }
        if link.is_none() {
            link = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer))
                .await
                .ok()
                .and_then(Result::ok);
            if let Some(stream) = &link {
                let _ = stream.set_nodelay(true);
            }
        }
        let written = match link.as_mut() {
            Some(stream) => matches!(
                tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&batch)).await,
                Ok(Ok(()))
            ),
            None => false,
        };
        if written {
            shared.bytes_sent.fetch_add(
                u64::try_from(batch.len()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        } else {
            link = None;
            shared.copies_dropped.fetch_add(copies, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl SessionStore for ReplicatedStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        Ok(self
            .shared
            .sessions()
            .get(id)
            .filter(|record| Self::live(record))
            .cloned())
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        {
            let mut sessions = self.shared.sessions();
            if sessions.get(&record.id).is_some_and(Self::live) {
                return Ok(Created::IdTaken);
            }
            sessions.insert(record.id, record.clone());
        }
        self.shared.put(record);
        Ok(Created::Created)
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let copy = {
            let mut sessions = self.shared.sessions();
            let Some(record) = sessions.get_mut(id).filter(|record| Self::live(record)) else {
                return Ok(Committed::Missing);
            };
            changes.apply_to_record(record);
            record.expires_at = expires_at;
            record.version += 1;
            record.clone()
        };
        self.shared.put(&copy);
        Ok(Committed::Applied {
            version: copy.version,
        })
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let copy = {
            let mut sessions = self.shared.sessions();
            let Some(record) = sessions.get_mut(id).filter(|record| Self::live(record)) else {
                return Ok(false);
            };
            record.expires_at = expires_at;
            record.clone()
        };
        self.shared.put(&copy);
        Ok(true)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.shared.sessions().remove(id);
        self.shared.gone(id);
        Ok(())
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        {
            let mut sessions = self.shared.sessions();
            match sessions.get(id).filter(|record| Self::live(record)) {
                None => return Ok(ConditionalDelete::Missing),
                Some(record) if record.version != version => return Ok(ConditionalDelete::Changed),
                Some(_) => {
                    sessions.remove(id);
                }
            }
        }
        self.shared.gone(id);
        Ok(ConditionalDelete::Deleted)
    }

    fn kind(&self) -> &'static str {
        "replicated-memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn listener() -> TcpListener {
        TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a loopback port")
    }

    fn record() -> Record {
        let now = SystemTime::now();
        Record::new(
            SessionId::generate(),
            HashMap::from([("count".to_owned(), "1".to_owned())]),
            now,
            now + Duration::from_secs(600),
        )
    }

    /// Two servers; returns them and the shutdown's trigger, which must
    /// outlive the test.
    async fn pair() -> (ReplicatedStore, ReplicatedStore, shutdown::Trigger) {
        let (trigger, until) = shutdown::channel();
        let (a, b) = (listener().await, listener().await);
        let (a_addr, b_addr) = (
            a.local_addr().expect("an address"),
            b.local_addr().expect("an address"),
        );
        let a = ReplicatedStore::start(a, &[b_addr], false, &until).await;
        let b = ReplicatedStore::start(b, &[a_addr], false, &until).await;
        (a, b, trigger)
    }

    async fn arrives(store: &ReplicatedStore, id: &SessionId, count: &str) -> bool {
        for _ in 0..100 {
            let held = store.load(id).await.expect("a memory load");
            if held.is_some_and(|r| r.data.get("count").map(String::as_str) == Some(count)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_write_is_answered_before_its_copy_reaches_the_other_server() {
        let (a, b, _trigger) = pair().await;
        let record = record();
        assert_eq!(a.create(&record).await.expect("create"), Created::Created);
        // Answered at once; the copy waits for the next flush.
        assert_eq!(b.load(&record.id).await.expect("load"), None);
        assert!(arrives(&b, &record.id, "1").await, "the copy never arrived");
        let mut changes = Changes::default();
        changes.set("count", "2");
        let later = SystemTime::now() + Duration::from_secs(600);
        assert!(matches!(
            a.commit(&record.id, &changes, later).await.expect("commit"),
            Committed::Applied { version: 2 }
        ));
        let on_b = b.load(&record.id).await.expect("load").expect("the copy");
        assert_eq!(on_b.data["count"], "1", "the stale copy, until the flush");
        assert!(
            arrives(&b, &record.id, "2").await,
            "the commit never arrived"
        );
        assert!(a.bytes_sent() > 0);
        assert_eq!(a.copies_dropped(), 0);
    }

    #[tokio::test]
    async fn a_partition_drops_the_copies_and_the_heal_lets_the_next_ones_through() {
        let (_trigger, until) = shutdown::channel();
        let (a_listener, b_listener) = (listener().await, listener().await);
        let b_addr = b_listener.local_addr().expect("an address");
        let a_addr = a_listener.local_addr().expect("an address");
        let a = ReplicatedStore::start(a_listener, &[b_addr], false, &until).await;
        let b = ReplicatedStore::start(b_listener, &[a_addr], false, &until).await;
        a.partition_from([b_addr]);
        b.partition_from([a_addr]);
        let record = record();
        let _ = a.create(&record).await.expect("create");
        // Two flushes: the copy is gone, not late.
        tokio::time::sleep(FLUSH_EVERY * 2 + Duration::from_millis(100)).await;
        assert_eq!(b.load(&record.id).await.expect("load"), None);
        assert_eq!(a.copies_dropped(), 1);
        a.heal();
        b.heal();
        let mut changes = Changes::default();
        changes.set("count", "2");
        let later = SystemTime::now() + Duration::from_secs(600);
        let _ = a.commit(&record.id, &changes, later).await.expect("commit");
        assert!(arrives(&b, &record.id, "2").await, "no copy after the heal");
    }

    #[tokio::test]
    async fn a_starting_server_takes_every_session_from_a_peer() {
        let (_trigger, until) = shutdown::channel();
        let a_listener = listener().await;
        let a_addr = a_listener.local_addr().expect("an address");
        let a = ReplicatedStore::start(a_listener, &[], false, &until).await;
        let record = record();
        let _ = a.create(&record).await.expect("create");
        let late = ReplicatedStore::start(listener().await, &[a_addr], true, &until).await;
        assert_eq!(late.sessions_held(), 1);
        assert!(late.load(&record.id).await.expect("load").is_some());
        assert!(a.bytes_sent() > 0, "the transfer is peer traffic too");
    }
}
