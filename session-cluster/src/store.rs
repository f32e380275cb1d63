//! `ClusterStore`: the `SessionStore` every node serves, and the owner's side
//! of each operation.

use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures_util::{future::join_all, stream, StreamExt as _};
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, Owner, OwnerPass, Record, SessionStore,
    },
    ConfigError, ErrorKind, SessionId, StoreError,
};
use sha2::{Digest as _, Sha256};
use tokio::{
    net::{TcpListener, UdpSocket},
    sync::{mpsc, oneshot, watch},
    task::AbortHandle,
    time::Instant,
};
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    link::{self, Blocked, Counters, Handler, Link},
    local::{self, Entry, IndexDelta, Installed, Live, Local, Touched, OWNER_KEY_TAG},
    membership::{self, Command, Ident},
    placement::{Member, View},
    wire::{
        to_hex, EndOutcome, Msg, Reply, Signer, WireConditionalDelete, WireEntry, WireErrorKind,
        WireId, WireLive,
    },
    ClusterConfig,
};

/// Why a [`ClusterStore`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A setting is out of range; the error names it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The peer link (TCP) or membership (UDP) socket could not be bound.
    #[error("cannot listen on {addr} (TCP and UDP): {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// Not called from inside a tokio runtime, which the node's tasks need.
    #[error("ClusterStore::start must be called inside a tokio runtime")]
    NoRuntime,
}

/// What one node holds and has sent, for dashboards and for the tests that
/// measure placement and replication traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Live members this node sees, itself included.
    pub members: usize,
    /// The nodes the cluster is meant to have.
    pub cluster_size: usize,
    /// The members this node must see to serve: a majority of `cluster_size`.
    pub quorum: usize,
    /// Live sessions this node holds a copy of (all prefixes). Owner indexes
    /// are not sessions and are not counted here.
    pub sessions_held: usize,
    /// Owner indexes this node holds a copy of (all prefixes): one per
    /// owner with a live session, on `R` nodes each, like a session. See
    /// [Ending a user's sessions](crate#ending-a-users-sessions).
    pub owner_indexes_held: usize,
    /// Bytes this node wrote to peer-link connections, HTTP/2 framing
    /// included (membership datagrams are not counted).
    pub bytes_sent: u64,
    /// Bytes this node read from peer-link connections.
    pub bytes_received: u64,
    /// Requests this node sent to peers.
    pub requests_sent: u64,
    /// Peer requests this node refused for a missing or wrong signature.
    pub requests_refused: u64,
    /// Re-replication passes this node has completed.
    pub rebalances: u64,
}

/// Sessions replicated across the app servers themselves: each session on
/// `R` of them, placed by rendezvous hashing, with no external store and no
/// sticky load balancer. See the [crate docs](crate) for the guarantees.
///
/// Cloning is cheap and shares the node. The node's tasks (peer link,
/// membership, re-replication) stop when the last clone is dropped; call
/// [`shutdown`](Self::shutdown) instead to hand this node's sessions to the
/// others first.
#[derive(Clone)]
pub struct ClusterStore {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStore")
            .field("node", &self.inner.me)
            .field("addr", &self.inner.addr)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct Tasks {
    handles: Vec<AbortHandle>,
    commands: mpsc::Sender<Command>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

pub(crate) struct Inner {
    me: Arc<str>,
    addr: SocketAddr,
    copies: usize,
    expected: usize,
    quorum: usize,
    operation_timeout: Duration,
    settle_time: Duration,
    local: Local,
    link: Link,
    views: watch::Receiver<Arc<View>>,
    locks: Box<[tokio::sync::Mutex<()>]>,
    counters: Arc<Counters>,
    rebalances: AtomicU64,
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    blocked: Blocked,
}

/// Commits retried after a conflict with a copy written by another
/// coordinator; more would mean the nodes disagree about the owner for
/// longer than a membership change takes.
const MAX_ATTEMPTS: usize = 5;
/// Entries per re-replication message.
const BATCH: usize = 512;
/// Conditional deletes one `delete_by_owner` keeps in flight: enough to end a
/// user's sessions in a few round trips, few enough to leave the per-peer
/// slots to the requests of other users.
const END_CONCURRENCY: usize = 32;
/// Hashed into every owner index key, so the key space is this crate's own.
const OWNER_KEY_DOMAIN: &[u8] = b"session-cluster owner index\0";

impl ClusterStore {
    /// Starts this node: binds `listen` (TCP for the peer link, UDP for
    /// membership, the same port), joins the seeds in the background and
    /// returns at once. Requests fail with `Unavailable` until the node sees
    /// a [quorum](ClusterConfig::quorum) of members; see
    /// [`wait_for_members`](Self::wait_for_members).
    ///
    /// # Errors
    /// A setting out of range, a port that cannot be bound, or no tokio
    /// runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use session_cluster::{ClusterConfig, ClusterStore};
    /// use session_core::store::SessionStore;
    ///
    /// // A one-node cluster on a free port: a majority of one is itself.
    /// let config = ClusterConfig::new("solo", "127.0.0.1:0".parse().unwrap(), [7u8; 32]).with_cluster_size(1);
    /// let store = ClusterStore::start(config).await.unwrap();
    /// assert!(store.wait_for_members(1, Duration::from_secs(5)).await);
    /// store.health().await.unwrap();
    /// # }
    /// ```
    pub async fn start(mut config: ClusterConfig) -> Result<Self, ClusterError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClusterError::NoRuntime);
        }
        config.read_secret_file()?;
        config.resolve_seed_hosts().await?;
        let (listener, socket) = bind(config.listen).await?;
        let bound = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: config.listen,
            source,
        })?;
        // `validate` refused a wildcard `listen` without `advertise`.
        let addr = config.advertise.unwrap_or(bound);
        let me: Arc<str> = config.node_id.as_str().into();
        let expected = config.expected_cluster_size();
        let counters = Arc::new(Counters::default());
        let blocked = Blocked::default();
        let link_signer = Signer::derive(&config.secret, "link");
        let (view_tx, views) = watch::channel(Arc::new(View::new(vec![Member::new(&me, addr)], 0)));
        let inner = Arc::new(Inner {
            me: Arc::clone(&me),
            addr,
            copies: config.replication_factor,
            expected,
            quorum: config.quorum(),
            operation_timeout: config.operation_timeout,
            settle_time: config.settle_time,
            local: Local::new(config.max_capacity),
            blocked: Arc::clone(&blocked),
            link: Link::new(
                Arc::clone(&blocked),
                link_signer.clone(),
                Arc::clone(&me),
                config.max_in_flight_per_peer,
                config.connect_timeout,
                Arc::clone(&counters),
            ),
            views,
            locks: (0..1024).map(|_| tokio::sync::Mutex::new(())).collect(),
            counters: Arc::clone(&counters),
            rebalances: AtomicU64::new(0),
        });
        let handler: Weak<dyn Handler> = Arc::downgrade(&inner) as Weak<dyn Handler>;
        let server = tokio::spawn(link::serve(
            listener,
            handler,
            link_signer,
            counters,
            config.operation_timeout,
        ));
        let (commands, command_rx) = mpsc::channel(1);
        let membership = tokio::spawn(membership::run(
            membership::Swim {
                socket,
                me: Ident::new(&me, addr),
                seeds: config.seeds.clone(),
                signer: Signer::derive(&config.secret, "gossip"),
                blocked,
                config: membership::swim_config(
                    config.probe_period,
                    config.suspect_timeout,
                    expected,
                ),
                expected,
            },
            view_tx,
            command_rx,
        ));
        let rebalancer = tokio::spawn(rebalance_loop(
            Arc::downgrade(&inner),
            inner.views.clone(),
            config.anti_entropy_interval,
            config.probe_period,
        ));
        Ok(Self {
            inner,
            _tasks: Arc::new(Tasks {
                handles: vec![
                    server.abort_handle(),
                    membership.abort_handle(),
                    rebalancer.abort_handle(),
                ],
                commands,
            }),
            prefix: config.key_prefix.into(),
        })
    }

    /// A view of the same node whose keys carry `prefix` instead, as two
    /// apps would share one Redis.
    #[must_use]
    pub fn prefixed(&self, prefix: impl Into<String>) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _tasks: Arc::clone(&self._tasks),
            prefix: prefix.into().into(),
        }
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.inner.me
    }

    /// The address peers reach this node at (the bound port when `listen`
    /// asked for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The ids of the live members this node sees, itself included, sorted.
    #[must_use]
    pub fn members(&self) -> Vec<String> {
        self.inner
            .view()
            .members
            .iter()
            .map(|m| m.name.to_string())
            .collect()
    }

    /// Waits until this node sees at least `members` live members (itself
    /// included), or `timeout` passes. Returns whether it does.
    pub async fn wait_for_members(&self, members: usize, timeout: Duration) -> bool {
        let mut views = self.inner.views.clone();
        tokio::time::timeout(timeout, views.wait_for(|view| view.len() >= members))
            .await
            .is_ok_and(|seen| seen.is_ok())
    }

    /// Whether this node holds a live copy of `id` under this store's prefix:
    /// for tests and tools that check placement.
    #[cfg(feature = "fault-injection")]
    pub async fn holds(&self, id: &SessionId) -> bool {
        self.inner
            .local
            .get(&self.key(id))
            .await
            .is_some_and(|entry| entry.live(SystemTime::now()).is_some())
    }

    /// Whether this node holds a live copy of the index of `owner`'s
    /// sessions under this store's prefix: for tests and tools that check
    /// placement.
    #[cfg(feature = "fault-injection")]
    pub async fn holds_owner_index(&self, owner: &str) -> bool {
        matches!(
            self.inner.local.get(&self.owner_key(owner)).await,
            Some(Entry::Index(_))
        )
    }

    /// The ids of the members that hold `id` under this store's prefix, as
    /// this node sees the membership now, the owner first: for tests and
    /// tools that check placement.
    #[cfg(feature = "fault-injection")]
    #[must_use]
    pub fn placement(&self, id: &SessionId) -> Vec<String> {
        self.inner.placement(&self.key(id))
    }

    /// The ids of the members that hold the index of `owner`'s sessions
    /// under this store's prefix, as this node sees the membership now, the
    /// index's owner node first: for tests and tools that check placement.
    #[cfg(feature = "fault-injection")]
    #[must_use]
    pub fn owner_index_placement(&self, owner: &str) -> Vec<String> {
        self.inner.placement(&self.owner_key(owner))
    }

    /// Counters of this node.
    #[must_use]
    pub fn stats(&self) -> ClusterStats {
        let counters = &self.inner.counters;
        let (sessions_held, owner_indexes_held) = self.inner.local.live_counts();
        ClusterStats {
            members: self.inner.view().len(),
            cluster_size: self.inner.expected,
            quorum: self.inner.quorum,
            sessions_held,
            owner_indexes_held,
            bytes_sent: counters.bytes_sent.load(Ordering::Relaxed),
            bytes_received: counters.bytes_received.load(Ordering::Relaxed),
            requests_sent: counters.requests_sent.load(Ordering::Relaxed),
            requests_refused: counters.requests_refused.load(Ordering::Relaxed),
            rebalances: self.inner.rebalances.load(Ordering::Relaxed),
        }
    }

    /// Leaves the cluster cleanly: hands every session this node holds to
    /// the nodes that hold it once this one is gone, then tells the others it
    /// is leaving. Bounded by `timeout`. Other clones of this store stop
    /// working.
    pub async fn shutdown(self, timeout: Duration) {
        let inner = Arc::clone(&self.inner);
        let _ = tokio::time::timeout(timeout, async move {
            let view = inner.view();
            let others: Vec<Member> = view
                .members
                .iter()
                .filter(|m| *m.name != *inner.me)
                .cloned()
                .collect();
            if !others.is_empty() {
                inner.rebalance(&View::new(others, view.epoch)).await;
            }
            let (done, left) = oneshot::channel();
            if self
                ._tasks
                .commands
                .send(Command::Leave(done))
                .await
                .is_ok()
            {
                let _ = left.await;
            }
        })
        .await;
    }

    /// Cuts this node off from the nodes at `peers`, in both directions for
    /// traffic this node sends or receives: membership datagrams are dropped
    /// and peer calls fail as if the network were down. Call it on both sides
    /// to model a partition; [`heal`](Self::heal) undoes it. For tests of
    /// partition behaviour only.
    #[cfg(feature = "fault-injection")]
    pub fn partition_from(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        self.inner
            .blocked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(peers);
    }

    /// Undoes every [`partition_from`](Self::partition_from).
    #[cfg(feature = "fault-injection")]
    pub fn heal(&self) {
        self.inner
            .blocked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 22);
        key.push_str(&self.prefix);
        key.push_str(&id.encode());
        key
    }

    /// The key of `owner`'s index: the prefix, then `owner:` and the hex
    /// SHA-256 of the name. The part after the prefix has a fixed length (70
    /// characters), unlike a session key's (22), so no two prefixes' keys
    /// can meet, whatever the prefixes and names; the hash resists names
    /// chosen to collide and bounds the key's length.
    fn owner_key(&self, owner: &str) -> String {
        let digest = Sha256::new()
            .chain_update(OWNER_KEY_DOMAIN)
            .chain_update(owner.as_bytes())
            .finalize();
        format!("{}{OWNER_KEY_TAG}{}", self.prefix, to_hex(&digest))
    }

    /// Adds `id` to `owner`'s index, acknowledged by every holder of the
    /// index: done before the session itself is written, so an owned
    /// session is never live unindexed.
    async fn index(
        &self,
        owner: &Owner,
        id: &SessionId,
        operation: &'static str,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let key = self.owner_key(&owner.name);
        let msg = Msg::IndexAdd {
            key: key.clone(),
            id: WireId(*id),
            until: owner.until,
        };
        match self.inner.route(&key, msg, operation, deadline).await? {
            Reply::Indexed => Ok(()),
            other => Err(unexpected(operation, other)),
        }
    }
}

/// Binds TCP and UDP on one port. Port 0 picks a port free for both.
async fn bind(listen: SocketAddr) -> Result<(TcpListener, UdpSocket), ClusterError> {
    let mut last = None;
    for _ in 0..if listen.port() == 0 { 20 } else { 1 } {
        let listener = match TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(source) => {
                return Err(ClusterError::Bind {
                    addr: listen,
                    source,
                })
            }
        };
        let tcp = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: listen,
            source,
        })?;
        match UdpSocket::bind(tcp).await {
            Ok(socket) => return Ok((listener, socket)),
            Err(err) => last = Some(err),
        }
    }
    Err(ClusterError::Bind {
        addr: listen,
        source: last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")),
    })
}

fn failed(err: &StoreError) -> Reply {
    Reply::Failed {
        kind: err.kind().into(),
        reason: err.to_line(),
    }
}

fn unexpected(operation: &'static str, reply: Reply) -> StoreError {
    match reply {
        Reply::Failed { kind, reason } => {
            StoreError::new(kind.into(), operation).with_source(reason)
        }
        other => StoreError::new(ErrorKind::Corrupt, operation).with_source(format!(
            "a peer answered {operation} with {}",
            reply_name(&other)
        )),
    }
}

fn reply_name(reply: &Reply) -> &'static str {
    match reply {
        Reply::Loaded(_) => "Loaded",
        Reply::Created(_) => "Created",
        Reply::Committed(_) => "Committed",
        Reply::Touched(_) => "Touched",
        Reply::Deleted => "Deleted",
        Reply::Entry(_) => "Entry",
        Reply::Accepted => "Accepted",
        Reply::Conflict(_) => "Conflict",
        Reply::NeedRecord => "NeedRecord",
        Reply::Want(_) => "Want",
        Reply::Indexed => "Indexed",
        Reply::Index(_) => "Index",
        Reply::Ended(_) => "Ended",
        Reply::Failed { .. } => "Failed",
        Reply::DeletedIf(_) => "DeletedIf",
    }
}

impl Inner {
    fn view(&self) -> Arc<View> {
        Arc::clone(&self.views.borrow())
    }

    fn check_quorum(&self, view: &View, operation: &'static str) -> Result<(), StoreError> {
        if view.len() >= self.quorum {
            return Ok(());
        }
        Err(
            StoreError::new(ErrorKind::Unavailable, operation).with_source(format!(
            "this node sees {} of {} cluster nodes, fewer than the majority of {}: it is on the \
             minority side of a partition, or the cluster has not formed yet, so it serves nothing \
             rather than diverge",
            view.len(),
            self.expected,
            self.quorum
        )),
        )
    }

    fn others<'v>(&self, members: impl IntoIterator<Item = &'v Member>) -> Vec<&'v Member> {
        members
            .into_iter()
            .filter(|m| *m.name != *self.me)
            .collect()
    }

    #[cfg(feature = "fault-injection")]
    fn placement(&self, key: &str) -> Vec<String> {
        self.view()
            .replicas(key, self.copies)
            .iter()
            .map(|m| m.name.to_string())
            .collect()
    }

    /// Sends `msg` for `key` to its owner, or serves it here when this node
    /// is the owner, all before `deadline`.
    async fn route(
        &self,
        key: &str,
        msg: Msg,
        operation: &'static str,
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let view = self.view();
        self.check_quorum(&view, operation)?;
        let replicas = view.replicas(key, self.copies);
        let owner = replicas[0];
        if *owner.name == *self.me {
            return Ok(self.coordinate(msg, deadline).await);
        }
        if !matches!(msg, Msg::Load { .. } | Msg::IndexRead { .. }) {
            return self.link.call(owner.addr, &msg, deadline).await;
        }
        // A read may fall back to another holder when the owner does not
        // answer: every holder has every acknowledged commit. The owner gets
        // two thirds of the time so the fallback has some left.
        let now = Instant::now();
        let first = now + (deadline - now) * 2 / 3;
        let err = match self.link.call(owner.addr, &msg, first).await {
            Ok(reply) => return Ok(reply),
            Err(err) => err,
        };
        if !err.kind().is_transient() {
            return Err(err);
        }
        for backup in &replicas[1..] {
            if *backup.name == *self.me {
                return Ok(self.coordinate(msg, deadline).await);
            }
            if let Ok(reply) = self.link.call(backup.addr, &msg, deadline).await {
                return Ok(reply);
            }
        }
        Err(err)
    }

    fn lock(&self, key: &str) -> &tokio::sync::Mutex<()> {
        let stripe =
            usize::try_from(xxh3_64(key.as_bytes()) % self.locks.len() as u64).unwrap_or(0);
        &self.locks[stripe]
    }

    /// The owner's side of a client operation: serialised per key, applied
    /// here and on every other holder before the answer.
    async fn coordinate(&self, msg: Msg, deadline: Instant) -> Reply {
        let view = self.view();
        let operation = msg.name();
        if let Err(err) = self.check_quorum(&view, operation) {
            return failed(&err);
        }
        let key = match &msg {
            Msg::Load { key }
            | Msg::Create { key, .. }
            | Msg::Commit { key, .. }
            | Msg::Touch { key, .. }
            | Msg::Delete { key }
            | Msg::IndexAdd { key, .. }
            | Msg::IndexRead { key }
            | Msg::IndexRemove { key, .. }
            | Msg::EndOwned { key, .. }
            | Msg::DeleteIfVersion { key, .. } => key.clone(),
            other => return self.serve_copy(other).await,
        };
        let result = if let Msg::Load { .. } = msg {
            self.read_base(&key, &view, deadline).await.map(|entry| {
                Reply::Loaded(
                    entry
                        .as_ref()
                        .and_then(|e| e.live(SystemTime::now()))
                        .map(WireLive::from),
                )
            })
        } else if let Msg::IndexRead { .. } = msg {
            self.read_base(&key, &view, deadline).await.map(|entry| {
                let now = SystemTime::now();
                Reply::Index(match entry {
                    Some(Entry::Index(index)) => index
                        .sessions
                        .iter()
                        .filter(|(_, until)| **until > now)
                        .map(|(id, until)| (WireId(*id), *until))
                        .collect(),
                    _ => Vec::new(),
                })
            })
        } else {
            let Ok(_guard) = tokio::time::timeout_at(deadline, self.lock(&key).lock()).await else {
                return failed(
                    &StoreError::new(ErrorKind::Timeout, operation)
                        .with_source("the session is busy with other commits on its owner"),
                );
            };
            let holders = view.replicas(&key, self.copies);
            let holders = self.others(holders);
            match msg {
                Msg::Create { record, .. } => {
                    self.create_here(&key, record.into(), &view, &holders, deadline)
                        .await
                }
                Msg::Commit {
                    changes,
                    expires_at,
                    ..
                } => {
                    self.commit_here(&key, &changes.into(), expires_at, &view, &holders, deadline)
                        .await
                }
                Msg::Touch { expires_at, .. } => {
                    self.touch_here(&key, expires_at, &view, &holders, deadline)
                        .await
                }
                Msg::Delete { .. } => self.delete_here(&key, &view, &holders, deadline).await,
                Msg::IndexAdd { id, until, .. } => {
                    let change = IndexChange::Add(id.0, until);
                    self.index_here(&key, &change, &view, &holders, deadline)
                        .await
                }
                Msg::IndexRemove { ids, .. } => {
                    let change = IndexChange::Remove(ids.into_iter().map(|id| id.0).collect());
                    self.index_here(&key, &change, &view, &holders, deadline)
                        .await
                }
                Msg::EndOwned { owner, until, .. } => {
                    self.end_owned_here(&key, &owner, until, &view, &holders, deadline)
                        .await
                }
                Msg::DeleteIfVersion { version, .. } => {
                    self.delete_if_version_here(&key, version, &view, &holders, deadline)
                        .await
                }
                _ => unreachable!("matched above"),
            }
        };
        result.unwrap_or_else(|err| failed(&err))
    }

    /// The newest entry for `key` this owner can know of: its own copy, and
    /// the other holders' when it has none or the membership changed
    /// recently (a new owner may not have been handed the session yet). A
    /// newer copy found elsewhere is kept here (read repair).
    async fn read_base(
        &self,
        key: &str,
        view: &View,
        deadline: Instant,
    ) -> Result<Option<Entry>, StoreError> {
        let local = self.local.get(key).await;
        let unsettled = view.changed_at.elapsed() < self.settle_time;
        let ask: Vec<&Member> = if unsettled {
            self.others(&view.members)
        } else if local.is_none() {
            self.others(view.replicas(key, self.copies))
        } else {
            Vec::new()
        };
        if ask.is_empty() {
            return Ok(local);
        }
        let msg = Msg::Fetch {
            key: key.to_owned(),
        };
        let answers = join_all(ask.iter().map(|m| self.link.call(m.addr, &msg, deadline))).await;
        let mut best = local.clone();
        let mut unanswered = None;
        for answer in answers {
            match answer {
                Ok(Reply::Entry(entry)) => best = Entry::newest(best, entry.map(Entry::from)),
                Ok(other) => unanswered = Some(unexpected("load", other)),
                Err(err) => unanswered = Some(err),
            }
        }
        if let (None, Some(err)) = (&best, unanswered) {
            // Saying "no such session" would end it for its user; a holder
            // that did not answer may have it.
            return Err(err);
        }
        if let Some(found) = &best {
            if local.as_ref().is_none_or(|l| found.supersedes(l)) {
                let _ = self.local.install(key, found.clone()).await;
            }
        }
        Ok(best.filter(|entry| entry.is_current(SystemTime::now())))
    }

    /// Sends one message to each holder in parallel.
    async fn to_holders(
        &self,
        holders: &[&Member],
        msg: &Msg,
        deadline: Instant,
    ) -> Vec<Result<Reply, StoreError>> {
        join_all(
            holders
                .iter()
                .map(|m| self.link.call(m.addr, msg, deadline)),
        )
        .await
    }

    async fn create_here(
        &self,
        key: &str,
        live: Live,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        if self.read_base(key, view, deadline).await?.is_some() {
            return Ok(Reply::Created(false));
        }
        let msg = Msg::CreateCopy {
            key: key.to_owned(),
            record: (&live).into(),
        };
        for answer in self.to_holders(holders, &msg, deadline).await {
            match answer? {
                Reply::Accepted => {}
                Reply::Conflict(_) => return Ok(Reply::Created(false)),
                other => return Err(unexpected("create", other)),
            }
        }
        Ok(Reply::Created(matches!(
            self.local.create(key, live).await,
            Installed::Accepted
        )))
    }

    async fn commit_here(
        &self,
        key: &str,
        changes: &Changes,
        expires_at: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = base.and_then(|e| e.into_live(SystemTime::now())) else {
                return Ok(Reply::Committed(None));
            };
            let mut data = session_core::store::Data::clone(&current.data);
            changes.apply_to(&mut data);
            let owner = match changes.owner() {
                Some(owner) => owner.cloned(),
                None => current.owner.clone(),
            };
            let next = Entry::Live(Live {
                data: Arc::new(data),
                created_at: current.created_at,
                expires_at,
                version: current.version + 1,
                owner,
            });
            match self.replicate(key, &next, holders, deadline).await? {
                None => return Ok(Reply::Committed(Some(current.version + 1))),
                // Another coordinator got there first (the nodes briefly
                // disagreed about the owner): apply this commit on top of
                // its result, as two commits on one owner would be.
                Some(newer) => base = Some(newer),
            }
        }
        Err(kept_losing("commit"))
    }

    /// Installs `next` on every other holder, then here. `Some(entry)` when
    /// a holder (or this node) has something newer: the caller retries on it.
    async fn replicate(
        &self,
        key: &str,
        next: &Entry,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Option<Entry>, StoreError> {
        let msg = Msg::Install {
            key: key.to_owned(),
            entry: next.into(),
        };
        let mut gathered = Gathered::default();
        for answer in self.to_holders(holders, &msg, deadline).await {
            if let Some(other) = gathered.add(answer) {
                gathered.error = Some(unexpected(msg.name(), other));
            }
        }
        self.settle(key, next.clone(), gathered).await
    }

    /// After every holder answered: a newer copy wins (and is installed
    /// here), an error means not acknowledged (a holder may or may not have
    /// the copy; the next commit or re-replication settles it by version),
    /// and otherwise `next` is installed here last.
    async fn settle(
        &self,
        key: &str,
        next: Entry,
        gathered: Gathered,
    ) -> Result<Option<Entry>, StoreError> {
        if let Some(newer) = gathered.newer {
            let _ = self.local.install(key, newer.clone()).await;
            return Ok(Some(newer));
        }
        if let Some(err) = gathered.error {
            return Err(err);
        }
        match self.local.install(key, next).await {
            Installed::Accepted => Ok(None),
            Installed::Conflict(entry) => Ok(Some(entry)),
        }
    }

    async fn touch_here(
        &self,
        key: &str,
        expires_at: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = base.and_then(|e| e.into_live(SystemTime::now())) else {
                return Ok(Reply::Touched(false));
            };
            let msg = Msg::TouchCopy {
                key: key.to_owned(),
                version: current.version,
                expires_at,
            };
            let touched = Entry::Live(Live {
                expires_at,
                ..current.clone()
            });
            let mut newer = None;
            for (holder, answer) in holders
                .iter()
                .zip(self.to_holders(holders, &msg, deadline).await)
            {
                match answer? {
                    Reply::Accepted => {}
                    // A holder without this version gets the whole record.
                    Reply::NeedRecord => {
                        let install = Msg::Install {
                            key: key.to_owned(),
                            entry: (&touched).into(),
                        };
                        match self.link.call(holder.addr, &install, deadline).await? {
                            Reply::Accepted => {}
                            Reply::Conflict(entry) => {
                                newer = Entry::newest(newer, Some(entry.into()));
                            }
                            other => return Err(unexpected("touch", other)),
                        }
                    }
                    Reply::Conflict(entry) => newer = Entry::newest(newer, Some(entry.into())),
                    other => return Err(unexpected("touch", other)),
                }
            }
            if newer.is_none() {
                match self.local.touch(key, current.version, expires_at).await {
                    Touched::Applied => return Ok(Reply::Touched(true)),
                    Touched::Conflict(entry) => newer = Some(entry),
                    Touched::NeedRecord => {
                        let _ = self.local.install(key, touched).await;
                        return Ok(Reply::Touched(true));
                    }
                }
            }
            if let Some(newer) = &newer {
                let _ = self.local.install(key, newer.clone()).await;
            }
            base = newer;
        }
        Err(kept_losing("touch"))
    }

    async fn delete_here(
        &self,
        key: &str,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        self.tombstone(key, base.as_ref(), None, holders, deadline, "delete")
            .await?;
        Ok(Reply::Deleted)
    }

    /// Replaces the session at `key` (now `base`) with a tombstone on every
    /// holder. Ids are never reused, so the tombstone can outrank every
    /// version; it lasts as long as any copy of the record could, and at
    /// least until `at_least`.
    async fn tombstone(
        &self,
        key: &str,
        base: Option<&Entry>,
        at_least: Option<SystemTime>,
        holders: &[&Member],
        deadline: Instant,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        let floor = SystemTime::now() + self.settle_time;
        let until = base
            .map(Entry::until)
            .into_iter()
            .chain(at_least)
            .fold(floor, SystemTime::max);
        let gone = Entry::Gone {
            version: u64::MAX,
            until,
        };
        match self.replicate(key, &gone, holders, deadline).await? {
            None | Some(Entry::Gone { .. }) => Ok(()),
            Some(_) => Err(StoreError::new(ErrorKind::Other, operation)
                .with_source("a live copy outranked a tombstone, which versions forbid")),
        }
    }

    /// The owner's side of `delete_if_version`: under the session's lock,
    /// so a commit racing it is applied wholly before (and the answer is
    /// `Changed`) or finds the tombstone.
    async fn delete_if_version_here(
        &self,
        key: &str,
        version: u64,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        let answer = match &base {
            Some(Entry::Live(live)) if live.expires_at > SystemTime::now() => {
                if live.version != version {
                    return Ok(Reply::DeletedIf(WireConditionalDelete::Changed));
                }
                WireConditionalDelete::Deleted
            }
            _ => return Ok(Reply::DeletedIf(WireConditionalDelete::Missing)),
        };
        self.tombstone(
            key,
            base.as_ref(),
            None,
            holders,
            deadline,
            "delete_if_version",
        )
        .await?;
        Ok(Reply::DeletedIf(answer))
    }

    /// The owner's side of one conditional delete of `delete_by_owner`:
    /// under the session's lock, so a commit racing it is applied wholly
    /// before (and deleted with the session) or finds it missing.
    async fn end_owned_here(
        &self,
        key: &str,
        owner: &str,
        until: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        let ended = match &base {
            Some(Entry::Live(live)) if live.expires_at > SystemTime::now() => {
                if !live.owned_by(owner) {
                    return Ok(Reply::Ended(EndOutcome::Kept));
                }
                EndOutcome::Ended
            }
            Some(Entry::Gone { .. }) => return Ok(Reply::Ended(EndOutcome::Absent)),
            // Not a session; nothing of this owner's to end.
            Some(Entry::Index(_)) => return Ok(Reply::Ended(EndOutcome::Kept)),
            // Expired, or not written yet: a create that indexed this id may
            // still be on its way. The tombstone makes it find the id taken,
            // so once its entry leaves the index no session can appear
            // behind it; the index entry's `until` is as long as it could live.
            _ => EndOutcome::Absent,
        };
        self.tombstone(
            key,
            base.as_ref(),
            Some(until),
            holders,
            deadline,
            "delete_by_owner",
        )
        .await?;
        Ok(Reply::Ended(ended))
    }

    /// The index owner's side of an index change: under the index's lock,
    /// computed from the newest copy, and on every holder before the answer.
    async fn index_here(
        &self,
        key: &str,
        change: &IndexChange,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        let none = HashMap::new();
        for _ in 0..MAX_ATTEMPTS {
            let (version, sessions, expires_at) = match &base {
                Some(Entry::Index(index)) => (index.version, &*index.sessions, index.expires_at),
                Some(Entry::Gone { version, until }) => (*version, &none, *until),
                None => (0, &none, SystemTime::UNIX_EPOCH),
                Some(Entry::Live(_)) => {
                    return Err(StoreError::new(ErrorKind::Corrupt, "index").with_source(
                        "an owner index key holds a session, which key derivation rules out",
                    ))
                }
            };
            let outcome = match change.plan(version, sessions, expires_at, SystemTime::now()) {
                Planned::Nothing => return Ok(Reply::Indexed),
                Planned::Change(delta) => {
                    self.replicate_index(key, &delta, sessions, holders, deadline)
                        .await?
                }
                Planned::Empty(gone) => self.replicate(key, &gone, holders, deadline).await?,
            };
            match outcome {
                None => return Ok(Reply::Indexed),
                // Another coordinator changed it first (the nodes briefly
                // disagreed about the owner): apply this change on top.
                Some(newer) => base = Some(newer),
            }
        }
        Err(kept_losing("index"))
    }

    /// [`replicate`](Self::replicate) for an index change: holders with the
    /// version it was computed from get only the change, the others the
    /// whole result, so adding to a long index does not resend it.
    async fn replicate_index(
        &self,
        key: &str,
        delta: &IndexDelta,
        base: &HashMap<SessionId, SystemTime>,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Option<Entry>, StoreError> {
        let next = Entry::Index(delta.apply(base));
        let msg = Msg::IndexCopy {
            key: key.to_owned(),
            delta: delta.into(),
        };
        let mut gathered = Gathered::default();
        let mut behind = Vec::new();
        for (holder, answer) in holders
            .iter()
            .zip(self.to_holders(holders, &msg, deadline).await)
        {
            match gathered.add(answer) {
                None => {}
                Some(Reply::NeedRecord) => behind.push(*holder),
                Some(other) => gathered.error = Some(unexpected(msg.name(), other)),
            }
        }
        if !behind.is_empty() {
            let install = Msg::Install {
                key: key.to_owned(),
                entry: (&next).into(),
            };
            for answer in self.to_holders(&behind, &install, deadline).await {
                if let Some(other) = gathered.add(answer) {
                    gathered.error = Some(unexpected(install.name(), other));
                }
            }
        }
        self.settle(key, next, gathered).await
    }

    /// A holder's side: operations on this node's copies only.
    async fn serve_copy(&self, msg: &Msg) -> Reply {
        let now = SystemTime::now();
        match msg {
            Msg::Fetch { key } => {
                Reply::Entry(self.local.get(key).await.as_ref().map(WireEntry::from))
            }
            Msg::Install { key, entry } => {
                match self.local.install(key, entry.clone().into()).await {
                    Installed::Accepted => Reply::Accepted,
                    Installed::Conflict(entry) => Reply::Conflict((&entry).into()),
                }
            }
            Msg::CreateCopy { key, record } => {
                match self.local.create(key, record.clone().into()).await {
                    Installed::Accepted => Reply::Accepted,
                    Installed::Conflict(entry) => Reply::Conflict((&entry).into()),
                }
            }
            Msg::TouchCopy {
                key,
                version,
                expires_at,
            } => match self.local.touch(key, *version, *expires_at).await {
                Touched::Applied => Reply::Accepted,
                Touched::NeedRecord => Reply::NeedRecord,
                Touched::Conflict(entry) => Reply::Conflict((&entry).into()),
            },
            Msg::IndexCopy { key, delta } => {
                match self.local.change_index(key, &delta.clone().into()).await {
                    Touched::Applied => Reply::Accepted,
                    Touched::NeedRecord => Reply::NeedRecord,
                    Touched::Conflict(entry) => Reply::Conflict((&entry).into()),
                }
            }
            Msg::Offer { entries } => {
                let mut want = Vec::new();
                for (index, (key, version, until, gone)) in entries.iter().enumerate() {
                    let offered = if *gone {
                        Entry::Gone {
                            version: *version,
                            until: *until,
                        }
                    } else {
                        // Only version and expiry decide whether it is wanted.
                        Entry::Live(Live {
                            data: Arc::default(),
                            created_at: now,
                            expires_at: *until,
                            version: *version,
                            owner: None,
                        })
                    };
                    let wanted = match self.local.get(key).await {
                        None => offered.is_current(now),
                        Some(held) => offered.supersedes(&held),
                    };
                    if wanted {
                        want.push(u32::try_from(index).unwrap_or(u32::MAX));
                    }
                }
                Reply::Want(want)
            }
            Msg::Push { entries } => {
                for (key, entry) in entries {
                    let _ = self.local.install(key, entry.clone().into()).await;
                }
                Reply::Accepted
            }
            _ => Reply::Failed {
                kind: WireErrorKind::Other,
                reason: format!("{} is not an operation on copies", msg.name()),
            },
        }
    }

    /// Hands every entry this node holds to the holders `view` gives it,
    /// then drops the entries this node no longer holds once they are safe
    /// elsewhere. Offers first, so an up-to-date peer costs only a digest.
    async fn rebalance(&self, view: &View) {
        let mut per_peer: HashMap<SocketAddr, Vec<(String, Entry)>> = HashMap::new();
        let mut leaving = Vec::new();
        for (key, entry) in self.local.snapshot() {
            let holders = view.replicas(&key, self.copies);
            let stays = holders.iter().any(|m| *m.name == *self.me);
            let targets: Vec<SocketAddr> = self.others(holders).iter().map(|m| m.addr).collect();
            for addr in &targets {
                per_peer
                    .entry(*addr)
                    .or_default()
                    .push((key.clone(), entry.clone()));
            }
            if !stays {
                leaving.push((key, entry, targets));
            }
        }
        let results = join_all(per_peer.into_iter().map(|(addr, entries)| async move {
            let ok = self.hand_over(addr, entries).await;
            (addr, ok)
        }))
        .await;
        let failed: Vec<SocketAddr> = results
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(addr, _)| addr)
            .collect();
        for (key, entry, targets) in leaving {
            if !targets.is_empty() && targets.iter().all(|t| !failed.contains(t)) {
                self.local.forget_if_unchanged(&key, &entry).await;
            }
        }
        self.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    async fn hand_over(&self, addr: SocketAddr, entries: Vec<(String, Entry)>) -> bool {
        for batch in entries.chunks(BATCH) {
            let deadline = Instant::now() + self.operation_timeout;
            let offer = Msg::Offer {
                entries: batch
                    .iter()
                    .map(|(key, entry)| {
                        (
                            key.clone(),
                            entry.version(),
                            entry.until(),
                            matches!(entry, Entry::Gone { .. }),
                        )
                    })
                    .collect(),
            };
            let Ok(Reply::Want(wanted)) = self.link.call(addr, &offer, deadline).await else {
                return false;
            };
            let push: Vec<(String, WireEntry)> = wanted
                .iter()
                .filter_map(|i| batch.get(usize::try_from(*i).ok()?))
                .map(|(key, entry)| (key.clone(), WireEntry::from(entry)))
                .collect();
            if push.is_empty() {
                continue;
            }
            let deadline = Instant::now() + self.operation_timeout;
            if !matches!(
                self.link
                    .call(addr, &Msg::Push { entries: push }, deadline)
                    .await,
                Ok(Reply::Accepted)
            ) {
                return false;
            }
        }
        true
    }
}

/// A change to an owner's index, as a client node asks for it.
#[derive(Debug)]
enum IndexChange {
    /// Index a session until the owner's `until`.
    Add(SessionId, SystemTime),
    /// Forget sessions `delete_by_owner` ended or found absent.
    Remove(Vec<SessionId>),
}

/// What an [`IndexChange`] does to the index the owner node holds.
#[derive(Debug)]
enum Planned {
    /// It is already so.
    Nothing,
    Change(IndexDelta),
    /// Nothing is left: a tombstone, so a holder that missed the change
    /// cannot hand the removed entries back.
    Empty(Entry),
}

impl IndexChange {
    /// The change to `sessions` (the index at `version`, living until
    /// `expires_at`), computed on the index's owner node at `now`. Every
    /// change also drops the entries whose `until` has passed.
    fn plan(
        &self,
        version: u64,
        sessions: &HashMap<SessionId, SystemTime>,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Planned {
        let remove: Vec<SessionId> = sessions
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| *id)
            .collect();
        let change = |remove, add, expires_at| {
            Planned::Change(IndexDelta {
                from_version: version,
                from_digest: local::digest(sessions),
                remove,
                add,
                expires_at,
            })
        };
        match self {
            // An entry already past its `until` would be dropped at once; its
            // session cannot be live either.
            Self::Add(_, until) if *until <= now => Planned::Nothing,
            Self::Add(id, until) => {
                // Never shorten an entry: the session may live until the
                // later of the two.
                let until = sessions.get(id).map_or(*until, |held| (*held).max(*until));
                if remove.is_empty() && sessions.get(id) == Some(&until) {
                    return Planned::Nothing;
                }
                // The largest `until`, computed here on the owner node under
                // the index's lock, so concurrent adds cannot shrink it.
                change(remove, Some((*id, until)), expires_at.max(until))
            }
            Self::Remove(ids) => {
                let mut gone: HashSet<SessionId> = remove.into_iter().collect();
                gone.extend(ids.iter().filter(|id| sessions.contains_key(id)));
                if gone.is_empty() {
                    return Planned::Nothing;
                }
                if gone.len() == sessions.len() {
                    return Planned::Empty(Entry::Gone {
                        version: version.saturating_add(1),
                        until: expires_at,
                    });
                }
                let left = sessions
                    .iter()
                    .filter(|(id, _)| !gone.contains(id))
                    .map(|(_, until)| *until)
                    .max()
                    .unwrap_or(expires_at);
                let remove = gone.into_iter().collect();
                change(remove, None, left)
            }
        }
    }
}

/// The holders' answers to one copy: the newest conflicting entry and the
/// last error.
#[derive(Default)]
struct Gathered {
    newer: Option<Entry>,
    error: Option<StoreError>,
}

impl Gathered {
    /// Takes one holder's answer; any reply other than accepted or a
    /// conflict is handed back for the caller to judge.
    fn add(&mut self, answer: Result<Reply, StoreError>) -> Option<Reply> {
        match answer {
            Ok(Reply::Accepted) => None,
            Ok(Reply::Conflict(entry)) => {
                self.newer = Entry::newest(self.newer.take(), Some(entry.into()));
                None
            }
            Ok(other) => Some(other),
            Err(err) => {
                self.error = Some(err);
                None
            }
        }
    }
}

/// A write that lost to a newer copy on every try: the membership is
/// changing under it, and the caller may retry once it has settled.
fn kept_losing(operation: &'static str) -> StoreError {
    StoreError::new(ErrorKind::Unavailable, operation)
        .with_source("the holders kept answering with newer copies; the membership is changing")
}

async fn rebalance_loop(
    inner: Weak<Inner>,
    mut views: watch::Receiver<Arc<View>>,
    every: Duration,
    debounce: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        // Nodes often come and go together (a deploy, a partition): let the
        // view settle for a moment so one pass covers them.
        tokio::time::sleep(debounce).await;
        let Some(inner) = inner.upgrade() else { return };
        let view = inner.view();
        inner
            .link
            .retain(|addr| view.members.iter().any(|m| m.addr == *addr));
        if view.len() > 1 {
            inner.rebalance(&view).await;
        }
    }
}

#[async_trait]
impl Handler for Inner {
    async fn handle(&self, _from: &str, deadline: Instant, msg: Msg) -> Reply {
        self.coordinate(msg, deadline).await
    }
}

#[async_trait]
impl SessionStore for ClusterStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let key = self.key(id);
        let deadline = Instant::now() + self.inner.operation_timeout;
        match self
            .inner
            .route(&key.clone(), Msg::Load { key }, "load", deadline)
            .await?
        {
            Reply::Loaded(live) => Ok(live.map(|w| Live::from(w).to_record(*id))),
            other => Err(unexpected("load", other)),
        }
    }

    /// A record with an owner is added to the owner's index first, then
    /// written; see [Ending a user's sessions](crate#ending-a-users-sessions).
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let deadline = Instant::now() + self.inner.operation_timeout;
        if let Some(owner) = &record.owner {
            self.index(owner, &record.id, "create", deadline).await?;
        }
        let key = self.key(&record.id);
        let msg = Msg::Create {
            key: key.clone(),
            record: (&Live::from_record(record)).into(),
        };
        match self.inner.route(&key, msg, "create", deadline).await? {
            Reply::Created(true) => Ok(Created::Created),
            Reply::Created(false) => Ok(Created::IdTaken),
            other => Err(unexpected("create", other)),
        }
    }

    /// Changes that give the session a new owner add it to that owner's
    /// index first; all other commits cost what they did before owners.
    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let deadline = Instant::now() + self.inner.operation_timeout;
        if let Some(Some(owner)) = changes.owner() {
            self.index(owner, id, "commit", deadline).await?;
        }
        let key = self.key(id);
        let msg = Msg::Commit {
            key: key.clone(),
            changes: changes.into(),
            expires_at,
        };
        match self.inner.route(&key, msg, "commit", deadline).await? {
            Reply::Committed(Some(version)) => Ok(Committed::Applied { version }),
            Reply::Committed(None) => Ok(Committed::Missing),
            other => Err(unexpected("commit", other)),
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let key = self.key(id);
        let deadline = Instant::now() + self.inner.operation_timeout;
        match self
            .inner
            .route(
                &key.clone(),
                Msg::Touch { key, expires_at },
                "touch",
                deadline,
            )
            .await?
        {
            Reply::Touched(done) => Ok(done),
            other => Err(unexpected("touch", other)),
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = self.key(id);
        let deadline = Instant::now() + self.inner.operation_timeout;
        match self
            .inner
            .route(&key.clone(), Msg::Delete { key }, "delete", deadline)
            .await?
        {
            Reply::Deleted => Ok(()),
            other => Err(unexpected("delete", other)),
        }
    }

    /// Routed to the session's owner node, which checks the version and
    /// leaves a tombstone on every holder under the session's lock, as for
    /// `delete`.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        const OPERATION: &str = "delete_if_version";
        let key = self.key(id);
        let deadline = Instant::now() + self.inner.operation_timeout;
        let msg = Msg::DeleteIfVersion {
            key: key.clone(),
            version,
        };
        match self.inner.route(&key, msg, OPERATION, deadline).await? {
            Reply::DeletedIf(answer) => Ok(answer.into()),
            other => Err(unexpected(OPERATION, other)),
        }
    }

    /// Reads the owner's index (from its owner node, or a backup when that
    /// one does not answer), ends each indexed session that still belongs
    /// to `owner` on the session's own owner node, 32 at a time, then takes
    /// the ended and absent ones out of the index. All of it within one
    /// [`with_operation_timeout`](ClusterConfig::with_operation_timeout).
    /// An error means some sessions may not have ended; calling again is
    /// safe and finishes the job.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        const OPERATION: &str = "delete_by_owner";
        let deadline = Instant::now() + self.inner.operation_timeout;
        let index = self.owner_key(owner);
        let read = Msg::IndexRead { key: index.clone() };
        let entries = match self.inner.route(&index, read, OPERATION, deadline).await? {
            Reply::Index(entries) => entries,
            other => return Err(unexpected(OPERATION, other)),
        };
        let indexed = entries.iter().map(|(id, _)| id.0).collect();
        let results: Vec<(WireId, Result<Reply, StoreError>)> = stream::iter(entries)
            .map(|(id, until)| async move {
                let key = self.key(&id.0);
                let msg = Msg::EndOwned {
                    key: key.clone(),
                    owner: owner.to_owned(),
                    until,
                };
                (id, self.inner.route(&key, msg, OPERATION, deadline).await)
            })
            .buffer_unordered(END_CONCURRENCY)
            .collect()
            .await;
        let mut ended = 0;
        let mut settled = Vec::new();
        let mut error = None;
        for (id, result) in results {
            match result {
                Ok(Reply::Ended(EndOutcome::Ended)) => {
                    ended += 1;
                    settled.push(id);
                }
                Ok(Reply::Ended(EndOutcome::Absent)) => settled.push(id),
                // It belongs to someone else now, but a commit giving it
                // back to this owner may have indexed it already: the entry
                // stays until its `until`.
                Ok(Reply::Ended(EndOutcome::Kept)) => {}
                Ok(other) => {
                    error.get_or_insert(unexpected(OPERATION, other));
                }
                Err(err) => {
                    error.get_or_insert(err);
                }
            }
        }
        if !settled.is_empty() {
            let remove = Msg::IndexRemove {
                key: index.clone(),
                ids: settled,
            };
            // Tidying only: entries left behind point at tombstones, which
            // the next call counts as absent, and leave by their `until`.
            match self.inner.route(&index, remove, OPERATION, deadline).await {
                Ok(Reply::Indexed) => {}
                Ok(other) => tracing::debug!(
                    error = %unexpected(OPERATION, other).to_line(),
                    "ended sessions stay in their owner's index for now"
                ),
                Err(err) => tracing::debug!(
                    error = %err.to_line(),
                    "ended sessions stay in their owner's index for now"
                ),
            }
        }
        match error {
            Some(err) => Err(err),
            None => Ok(OwnerPass { ended, indexed }),
        }
    }

    fn indexes_owners(&self) -> bool {
        true
    }

    /// `Ok` while this node sees a quorum of members.
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.check_quorum(&self.inner.view(), "health")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + n)
    }

    #[test]
    fn an_add_prunes_what_has_passed_and_never_shrinks_the_index() {
        let (old, kept, new) = (
            SessionId::generate(),
            SessionId::generate(),
            SessionId::generate(),
        );
        let sessions: HashMap<_, _> = [(old, secs(5)), (kept, secs(50))].into_iter().collect();
        let Planned::Change(delta) =
            IndexChange::Add(new, secs(20)).plan(3, &sessions, secs(90), secs(10))
        else {
            panic!("an add changed nothing");
        };
        assert_eq!(delta.from_version, 3);
        assert_eq!(delta.remove, vec![old]);
        // The index keeps living as long as it did: a concurrent add with a
        // later `until` may have set that.
        assert_eq!(delta.expires_at, secs(90));
        let after = delta.apply(&sessions);
        assert_eq!(after.version, 4);
        assert_eq!(
            after.sessions.as_ref(),
            &[(kept, secs(50)), (new, secs(20))]
                .into_iter()
                .collect::<HashMap<_, _>>()
        );
        // Again, with nothing to prune: nothing to do.
        assert!(matches!(
            IndexChange::Add(new, secs(20)).plan(4, &after.sessions, secs(90), secs(10)),
            Planned::Nothing
        ));
        // An earlier `until` for an indexed session keeps the later one.
        assert!(matches!(
            IndexChange::Add(new, secs(15)).plan(4, &after.sessions, secs(90), secs(10)),
            Planned::Nothing
        ));
        // A later one moves the index's own expiry.
        let Planned::Change(delta) =
            IndexChange::Add(new, secs(200)).plan(4, &after.sessions, secs(90), secs(10))
        else {
            panic!("a later until changed nothing");
        };
        assert_eq!(delta.expires_at, secs(200));
        // An entry already past its `until` is not added.
        assert!(matches!(
            IndexChange::Add(SessionId::generate(), secs(9)).plan(
                0,
                &HashMap::new(),
                secs(0),
                secs(10)
            ),
            Planned::Nothing
        ));
    }

    #[test]
    fn removing_the_last_entries_leaves_a_tombstone() {
        let (a, b, c) = (
            SessionId::generate(),
            SessionId::generate(),
            SessionId::generate(),
        );
        let sessions: HashMap<_, _> = [(a, secs(40)), (b, secs(60)), (c, secs(5))]
            .into_iter()
            .collect();
        // Removing b drops c too (past), and the index shrinks to a's until.
        let Planned::Change(delta) =
            IndexChange::Remove(vec![b, b]).plan(8, &sessions, secs(60), secs(10))
        else {
            panic!("a removal changed nothing");
        };
        let mut removed = delta.remove.clone();
        removed.sort_by_key(SessionId::encode);
        let mut expected = vec![b, c];
        expected.sort_by_key(SessionId::encode);
        assert_eq!(removed, expected);
        assert_eq!(delta.expires_at, secs(40));
        // Ids it does not hold change nothing.
        let after = delta.apply(&sessions);
        assert!(matches!(
            IndexChange::Remove(vec![b, SessionId::generate()]).plan(
                9,
                &after.sessions,
                secs(40),
                secs(10)
            ),
            Planned::Nothing
        ));
        assert!(matches!(
            IndexChange::Remove(vec![a]).plan(9, &after.sessions, secs(40), secs(10)),
            Planned::Empty(Entry::Gone { version: 10, until }) if until == secs(40)
        ));
    }
}
