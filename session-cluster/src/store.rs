//! `ClusterStore`: the public type, what it tells about the node, and the
//! `SessionStore` impl, which routes every operation to the key's owner
//! node (see `coordinator`).

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use session_core::{
    store::{Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore},
    SessionId, StoreError,
};
use tokio::{sync::oneshot, time::Instant};

use crate::{
    entry::Live,
    membership::Command,
    node::{Inner, Tasks},
    placement::{Member, View},
    protocol::{
        Commit, CommitOutcome, Create, CreateOutcome, Delete, DeleteIfVersion, Load, Touch,
    },
};

/// The most ids [`ClusterStore::generate_id`] draws looking for one this
/// node owns.
const MAX_ID_DRAWS: usize = 64;

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
    /// Bytes this node wrote to peer-link connections, frame headers and
    /// tags included (membership datagrams are not counted).
    pub bytes_sent: u64,
    /// Bytes this node read from peer-link connections.
    pub bytes_received: u64,
    /// Requests this node sent to peers for sessions and owner indexes
    /// (lease renewals are counted in `lease_requests`).
    pub requests_sent: u64,
    /// Lease renewal requests this node sent: one to each other member
    /// every third of a lease (see [Guarantees](crate#guarantees)).
    pub lease_requests: u64,
    /// Peer requests this node refused for a missing or wrong signature.
    pub requests_refused: u64,
    /// Re-replication passes this node has completed.
    pub rebalances: u64,
    /// Whether this node answers reads of the sessions it owns from its own
    /// copy. `false` (it asks every other member first) for the settle time
    /// after a membership change or after its lease came back from a lapse,
    /// and until every other member has handed it what it should hold; see
    /// [Guarantees](crate#guarantees).
    pub settled: bool,
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
    pub(crate) inner: Arc<Inner>,
    pub(crate) _tasks: Arc<Tasks>,
    pub(crate) prefix: Arc<str>,
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

impl ClusterStore {
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
            .is_some_and(|entry| entry.live(self.inner.clock.now()).is_some())
    }

    /// Whether this node holds a live copy of the index of `owner`'s
    /// sessions under this store's prefix: for tests and tools that check
    /// placement.
    #[cfg(feature = "fault-injection")]
    pub async fn holds_owner_index(&self, owner: &str) -> bool {
        matches!(
            self.inner.local.get(&self.owner_key(owner)),
            Some(crate::entry::Entry::Index(_))
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
            lease_requests: self.inner.lease.requests.load(Ordering::Relaxed),
            requests_refused: counters.requests_refused.load(Ordering::Relaxed),
            rebalances: self.inner.rebalances.load(Ordering::Relaxed),
            settled: self.inner.settled(&self.inner.view()),
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

    pub(crate) fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 22);
        key.push_str(&self.prefix);
        key.push_str(&id.encode());
        key
    }
}

#[async_trait]
impl SessionStore for ClusterStore {
    fn kind(&self) -> &'static str {
        "cluster"
    }

    /// A random id that this node owns, as far as its view of the
    /// membership goes: the requests that come back to the node that
    /// created the session (a load balancer keeps a kept-alive connection
    /// on one node) then load it from this node's own copy and commit it
    /// with one round trip, to its backup, instead of two. See
    /// [Performance](crate#performance).
    ///
    /// Draws ids from the CSPRNG until one hashes to this node; an attacker
    /// who knows which node made an id learns about `log2(N)` of its 128
    /// bits, nothing for a cluster of a few nodes. Placement is by hash as
    /// for any id, so nothing but speed depends on the pick: when every
    /// draw misses (or this node is not in its own view yet), the last
    /// draw is used as it is.
    fn generate_id(&self) -> SessionId {
        let view = self.inner.view();
        let me = &*self.inner.me;
        if !view.has(me) {
            return SessionId::generate();
        }
        // Each draw is this node's with odds 1/N: 8·N draws miss with odds
        // under e^-8, and the cap bounds the cost (N hashes a draw) on a
        // large cluster, where a miss costs a round trip, not correctness.
        let draws = view.len().saturating_mul(8).min(MAX_ID_DRAWS);
        let mut id = SessionId::generate();
        for _ in 1..draws {
            let owner = view.owner(&self.key(&id));
            if owner.is_some_and(|owner| *owner.name == *me) {
                break;
            }
            id = SessionId::generate();
        }
        id
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let key = self.key(id);
        let deadline = Instant::now() + self.inner.operation_timeout;
        let live = self.inner.route(Load { key }, "load", deadline).await?;
        Ok(live.map(|w| Live::from(w).to_record(*id)))
    }

    /// A record with an owner is added to the owner's index first, then
    /// written; see [Ending a user's sessions](crate#ending-a-users-sessions).
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let deadline = Instant::now() + self.inner.operation_timeout;
        if let Some(owner) = &record.owner {
            self.index(owner, &record.id, "create", deadline).await?;
        }
        let key = self.key(&record.id);
        let request = Create {
            key,
            record: (&Live::from_record(record)).into(),
        };
        Ok(match self.inner.route(request, "create", deadline).await? {
            CreateOutcome::Created => Created::Created,
            CreateOutcome::IdTaken => Created::IdTaken,
        })
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
        let request = Commit {
            key,
            changes: changes.into(),
            expires_at,
        };
        Ok(match self.inner.route(request, "commit", deadline).await? {
            CommitOutcome::Applied { version } => Committed::Applied { version },
            CommitOutcome::Missing => Committed::Missing,
        })
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let key = self.key(id);
        let deadline = Instant::now() + self.inner.operation_timeout;
        let request = Touch { key, expires_at };
        self.inner.route(request, "touch", deadline).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = self.key(id);
        let deadline = Instant::now() + self.inner.operation_timeout;
        self.inner.route(Delete { key }, "delete", deadline).await
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
        let request = DeleteIfVersion { key, version };
        Ok(self.inner.route(request, OPERATION, deadline).await?.into())
    }

    /// Reads the owner's index (from its owner node, or a backup when that
    /// one does not answer), ends each indexed session that still belongs
    /// to `owner` on the session's own owner node, 32 at a time, then takes
    /// the ended and absent ones out of the index. All of it within one
    /// [`with_operation_timeout`](crate::ClusterConfig::with_operation_timeout).
    /// An error means some sessions may not have ended; calling again is
    /// safe and finishes the job.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.end_sessions_of(owner).await
    }

    /// Reads the owner's index as [`delete_by_owner`](Self::delete_by_owner)
    /// does, then loads each indexed session through its owner node (32 at
    /// a time), keeping those that still belong to `owner`: each record is
    /// the owner node's answer, so no listed session is older than a commit
    /// acknowledged before the call. All within one operation timeout.
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.list_sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        true
    }

    /// `Ok` while this node sees a quorum of members.
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.check_quorum(&self.inner.view(), "health")
    }
}
