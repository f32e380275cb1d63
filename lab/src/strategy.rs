//! The ways of keeping sessions the lab compares, each a complete
//! deployment of its own: app nodes, a balancer, and its store(s).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use session_kit::{
    cluster::{ClusterConfig, ClusterStore},
    failover::{FailoverMode, FailoverStore},
    memory::{MemoryStore, NearCache, TieredStore},
    postgres::{PostgresConfig, PostgresStore},
    redis::{RedisConfig, RedisStore},
    store::SessionStore,
    CookieConfig, Key, SessionManager,
};

pub(crate) use crate::kind::Kind;
use crate::{
    app::{self, NodeServer},
    balancer::Balancer,
    error::LabError,
    postgres::Postgres,
    redis::Redis,
    replicated::ReplicatedStore,
    shutdown::Shutdown,
};

/// The bound on each store call of the session manager. With two calls
/// per request (a load, then a commit) it keeps every request under the
/// users' timeout, see `workload::REQUEST_TIMEOUT`.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(1);
/// The cluster's bound on one call, the hop to the owner and the copy to
/// the backups included: under [`OPERATION_TIMEOUT`], so a slow peer shows
/// as the cluster's error rather than the manager's.
const CLUSTER_OPERATION_TIMEOUT: Duration = Duration::from_millis(800);
/// The Redis client's bound on one command.
const REDIS_TIMEOUT: Duration = Duration::from_millis(400);
/// The failover's bound on one call to either Redis: under
/// [`REDIS_TIMEOUT`], so a hung server trips the breaker at once, and at
/// most a third of [`OPERATION_TIMEOUT`], as `FailoverStore` asks.
const FAILOVER_CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// Loopback only, and the process's lifetime only: a constant does.
const CLUSTER_SECRET: &[u8; 32] = b"session-lab cluster secret 32 b!";
/// How long cluster nodes may take to see each other.
const CLUSTER_FORMING: Duration = Duration::from_secs(20);

/// What one node keeps: what its session manager runs on, and what the
/// memory figures read at the end.
#[derive(Debug, Clone)]
enum NodeStore {
    Memory(MemoryStore),
    Cluster(ClusterStore),
    Replicated(ReplicatedStore),
    /// A near-cache in the node in front of Redis.
    Tiered(TieredStore),
    /// Redis, with or without failover: nothing kept in the node itself.
    Remote(Arc<dyn SessionStore>),
}

#[derive(Debug)]
struct Node {
    http: SocketAddr,
    server: Option<NodeServer>,
    store: Option<NodeStore>,
}

/// A running strategy: its nodes, balancer and stores.
#[derive(Debug)]
pub(crate) struct Deployment {
    /// One cookie key for every node, as a real deployment shares its secret.
    key: Key,
    nodes: Vec<Node>,
    balancer: Balancer,
    stores: Stores,
    /// Peer-link bytes sent by nodes (cluster or clustering) that were
    /// killed since.
    peer_bytes_retired: u64,
    /// Peer-link bytes sent before the load started.
    peer_bytes_baseline: u64,
    /// Copies the clustering nodes killed since had dropped.
    copies_dropped_retired: u64,
    /// Requests each node had answered when a node was killed.
    answered_at_kill: Option<Vec<u64>>,
    /// Requests each node had answered when the killed node came back.
    answered_at_return: Option<Vec<u64>>,
    /// When the servers stop, for the restarted ones too.
    shutdown: Shutdown,
}

/// What a strategy's nodes keep their sessions in, and how a node gets a
/// fresh store.
#[derive(Debug)]
struct Stores {
    kind: Kind,
    /// d, g, h: the server; e, f: the primary, then the secondary.
    redis: Vec<Redis>,
    /// h: the standby PostgreSQL.
    postgres: Option<Postgres>,
    /// The cluster nodes' (or the clustering nodes') peer addresses, by
    /// node.
    peers: Vec<SocketAddr>,
    /// The clustering nodes' peer listeners, bound before any node starts
    /// so each knows every other's address; taken by each node's start.
    peer_listeners: Vec<Option<tokio::net::TcpListener>>,
    /// How many nodes the strategy has.
    nodes: usize,
    /// When the servers stop: the clustering nodes' senders and listeners
    /// run until then.
    shutdown: Shutdown,
}

/// What a deployment holds and moved, read at the end of the run.
#[derive(Debug)]
pub(crate) struct Footprint {
    /// Requests each node answered, from the balancer.
    pub(crate) requests_per_node: Vec<u64>,
    /// The same, counted only while every node was up: before the kill
    /// and from the return on. Over the whole run, the dead node's missing
    /// share would read as skew of any balancer, even a perfectly even one.
    pub(crate) requests_per_node_all_up: Vec<u64>,
    /// The same, counted from when the killed node came back.
    pub(crate) requests_per_node_since_return: Option<Vec<u64>>,
    /// Sessions each node holds in its own memory.
    pub(crate) sessions_per_node: Vec<u64>,
    /// Keys in each shared store (Redis), if any.
    pub(crate) shared_store_keys: Option<Vec<u64>>,
    /// Rows of PostgreSQL's sessions table (h).
    pub(crate) postgres_rows: Option<u64>,
    /// Servers the strategy runs besides its app servers (Redis,
    /// PostgreSQL).
    pub(crate) store_processes: usize,
    /// The bytes of every session copy the app servers hold, where the
    /// store can tell (the clustering baseline's maps); `None` elsewhere.
    pub(crate) app_bytes_held: Option<u64>,
    /// What the stores' copies take: Redis's `MEMORY USAGE` of every key,
    /// summed over its servers, plus PostgreSQL's sessions table
    /// (`pg_total_relation_size`).
    pub(crate) store_memory_bytes: u64,
    /// Bytes moved between nodes (cluster) or to and from the stores
    /// (Redis) since the load started.
    pub(crate) store_bytes: u64,
    /// Copies the clustering baseline's nodes never sent: a peer down or
    /// cut off, or a full queue. 0 for the other strategies.
    pub(crate) copies_dropped: u64,
}

impl Deployment {
    /// Starts the strategy's stores, `nodes` app nodes and its balancer,
    /// whose servers run until `shutdown`.
    pub(crate) async fn start(
        kind: Kind,
        nodes: usize,
        shutdown: Shutdown,
    ) -> Result<Self, LabError> {
        let mut redis = Vec::new();
        for _ in 0..kind.redis_servers() {
            redis.push(Redis::start().await?);
        }
        let postgres = if kind.needs_postgres() {
            Some(Postgres::start().await?)
        } else {
            None
        };
        let mut stores = Stores {
            kind,
            redis,
            postgres,
            peers: Vec::new(),
            peer_listeners: Vec::new(),
            nodes,
            shutdown: shutdown.clone(),
        };
        let mut fresh = Vec::with_capacity(nodes);
        for index in 0..nodes {
            fresh.push(stores.fresh(index).await?);
        }
        for store in &fresh {
            if let NodeStore::Cluster(cluster) = store {
                if !cluster.wait_for_members(nodes, CLUSTER_FORMING).await {
                    return Err(LabError::ClusterForming {
                        node: cluster.node_id().to_owned(),
                        members: cluster.members(),
                        seconds: CLUSTER_FORMING.as_secs(),
                    });
                }
            }
        }
        let key = Key::generate();
        let mut started = Vec::with_capacity(nodes);
        for (index, store) in fresh.into_iter().enumerate() {
            let app = app::router(manager(&key, &store)?, index);
            let (server, http) =
                NodeServer::start(([127, 0, 0, 1], 0).into(), app, shutdown.clone()).await?;
            started.push(Node {
                http,
                server: Some(server),
                store: Some(store),
            });
        }
        let addrs: Vec<SocketAddr> = started.iter().map(|n| n.http).collect();
        Ok(Self {
            key,
            nodes: started,
            balancer: Balancer::start(kind.routing(), &addrs, shutdown.clone()).await?,
            stores,
            peer_bytes_retired: 0,
            peer_bytes_baseline: 0,
            copies_dropped_retired: 0,
            answered_at_kill: None,
            answered_at_return: None,
            shutdown,
        })
    }

    /// Which strategy this is.
    pub(crate) fn kind(&self) -> Kind {
        self.stores.kind
    }

    /// Where its users connect.
    pub(crate) fn balancer_addr(&self) -> SocketAddr {
        self.balancer.addr()
    }

    /// Starts counting store traffic: called right before the load.
    pub(crate) async fn begin_counting(&mut self) -> Result<(), LabError> {
        self.peer_bytes_baseline = self.peer_bytes_live();
        for redis in &mut self.stores.redis {
            redis.begin_counting().await?;
        }
        Ok(())
    }

    /// Kills app node `index` as a crash would: its server with every
    /// connection, and its store. For the cluster, dropping the last clone
    /// of the `ClusterStore` stops its peer link and membership without
    /// handing anything over.
    pub(crate) fn kill_node(&mut self, index: usize) {
        self.answered_at_kill = Some(self.balancer.answered());
        let node = &mut self.nodes[index];
        self.peer_bytes_retired += node.store.as_ref().map_or(0, NodeStore::peer_bytes);
        if let Some(NodeStore::Replicated(replicated)) = &node.store {
            self.copies_dropped_retired += replicated.copies_dropped();
        }
        if let Some(server) = node.server.take() {
            server.kill();
        }
        node.store = None;
    }

    /// Starts app node `index` again on its old port, with a fresh store:
    /// an empty `MemoryStore`, a new `ClusterStore` joining the others, or
    /// new Redis clients.
    ///
    /// As a deployment's readiness check would, a cluster node takes
    /// traffic only once it sees the whole cluster again (bounded: past
    /// that it serves, or refuses, what it can).
    ///
    /// Returns a note for the user when the cluster node did not see the
    /// whole cluster in time.
    pub(crate) async fn restart_node(&mut self, index: usize) -> Result<Option<String>, LabError> {
        let store = self.stores.fresh(index).await?;
        let mut note = None;
        if let NodeStore::Cluster(cluster) = &store {
            if !cluster
                .wait_for_members(self.nodes.len(), CLUSTER_FORMING)
                .await
            {
                note = Some(format!(
                    "restarted cluster node {} sees only {:?} after {} s; it serves anyway",
                    cluster.node_id(),
                    cluster.members(),
                    CLUSTER_FORMING.as_secs()
                ));
            }
        }
        let app = app::router(manager(&self.key, &store)?, index);
        let node = &mut self.nodes[index];
        let (server, _) = NodeServer::start(node.http, app, self.shutdown.clone()).await?;
        node.server = Some(server);
        node.store = Some(store);
        self.answered_at_return = Some(self.balancer.answered());
        Ok(note)
    }

    /// Cuts node `index` off from the other nodes, both ways, on the peer
    /// links only: the balancer still reaches it. The session-kit cluster
    /// uses session-cluster's own transport-level switch
    /// (`ClusterStore::partition_from`, feature `fault-injection`), which
    /// drops the membership datagrams and fails the peer calls as a cut
    /// network would; the clustering baseline drops its copies likewise.
    /// Nothing for the strategies without peer links.
    pub(crate) fn partition_node(&mut self, index: usize) {
        let Some(&cut) = self.stores.peers.get(index) else {
            return;
        };
        let others: Vec<SocketAddr> = self
            .stores
            .peers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != index)
            .map(|(_, &addr)| addr)
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            let away = if i == index {
                others.clone()
            } else {
                vec![cut]
            };
            match &node.store {
                Some(NodeStore::Cluster(cluster)) => cluster.partition_from(away),
                Some(NodeStore::Replicated(replicated)) => replicated.partition_from(away),
                _ => {}
            }
        }
    }

    /// Heals what [`partition_node`](Self::partition_node) cut.
    pub(crate) fn heal_partition(&mut self) {
        for node in &self.nodes {
            match &node.store {
                Some(NodeStore::Cluster(cluster)) => cluster.heal(),
                Some(NodeStore::Replicated(replicated)) => replicated.heal(),
                _ => {}
            }
        }
    }

    /// Kills the Redis server (d) or the primary (e); nothing for the
    /// others.
    pub(crate) async fn kill_redis(&mut self) -> Result<(), LabError> {
        match self.stores.redis.first_mut() {
            Some(redis) => redis.kill().await,
            None => Ok(()),
        }
    }

    /// Restarts what [`kill_redis`](Self::kill_redis) killed, empty.
    pub(crate) async fn restart_redis(&mut self) -> Result<(), LabError> {
        match self.stores.redis.first_mut() {
            Some(redis) => redis.restart().await,
            None => Ok(()),
        }
    }

    /// Reads what the deployment holds and moved: called after the load.
    pub(crate) async fn footprint(&mut self) -> Result<Footprint, LabError> {
        let memories: Vec<&MemoryStore> = self
            .nodes
            .iter()
            .filter_map(|node| match &node.store {
                Some(NodeStore::Memory(memory)) => Some(memory),
                _ => None,
            })
            .collect();
        settle(&memories).await;
        let mut sessions_per_node = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            sessions_per_node.push(match &node.store {
                Some(NodeStore::Memory(memory)) => memory.approximate_len(),
                Some(NodeStore::Cluster(cluster)) => {
                    u64::try_from(cluster.stats().sessions_held).unwrap_or(u64::MAX)
                }
                Some(NodeStore::Replicated(replicated)) => replicated.sessions_held(),
                Some(NodeStore::Tiered(tiered)) => tiered.near_len(),
                Some(NodeStore::Remote(_)) | None => 0,
            });
        }
        let app_bytes_held = self
            .nodes
            .iter()
            .filter_map(|node| match &node.store {
                Some(NodeStore::Replicated(replicated)) => Some(replicated.bytes_held()),
                _ => None,
            })
            .reduce(|a, b| a + b);
        let mut store_bytes = (self.peer_bytes_live() + self.peer_bytes_retired)
            .saturating_sub(self.peer_bytes_baseline);
        let mut keys = Vec::new();
        let mut store_memory_bytes = 0;
        for redis in &mut self.stores.redis {
            store_bytes += redis.bytes_counted().await?;
            keys.push(redis.keys().await?);
            store_memory_bytes += redis.memory_usage().await?;
        }
        let mut postgres_rows = None;
        if let Some(postgres) = &self.stores.postgres {
            let (rows, bytes) = postgres.sessions().await?;
            postgres_rows = Some(rows);
            store_memory_bytes += bytes;
        }
        let answered = self.balancer.answered();
        Ok(Footprint {
            requests_per_node_since_return: self
                .answered_at_return
                .as_ref()
                .map(|then| minus(&answered, then)),
            requests_per_node_all_up: while_all_up(
                &answered,
                self.answered_at_kill.as_deref(),
                self.answered_at_return.as_deref(),
            ),
            requests_per_node: answered,
            sessions_per_node,
            shared_store_keys: (!keys.is_empty()).then_some(keys),
            postgres_rows,
            store_processes: self.stores.redis.len() + usize::from(self.stores.postgres.is_some()),
            app_bytes_held,
            store_memory_bytes,
            store_bytes,
            copies_dropped: self.copies_dropped_retired
                + self
                    .nodes
                    .iter()
                    .filter_map(|node| match &node.store {
                        Some(NodeStore::Replicated(replicated)) => {
                            Some(replicated.copies_dropped())
                        }
                        _ => None,
                    })
                    .sum::<u64>(),
        })
    }

    fn peer_bytes_live(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|node| node.store.as_ref())
            .map(NodeStore::peer_bytes)
            .sum()
    }
}

impl NodeStore {
    /// Bytes this node wrote to its peer links (0 without any).
    fn peer_bytes(&self) -> u64 {
        match self {
            NodeStore::Cluster(cluster) => cluster.stats().bytes_sent,
            NodeStore::Replicated(replicated) => replicated.bytes_sent(),
            NodeStore::Memory(_) | NodeStore::Tiered(_) | NodeStore::Remote(_) => 0,
        }
    }
}

/// `now - then`, node by node.
fn minus(now: &[u64], then: &[u64]) -> Vec<u64> {
    now.iter()
        .zip(then)
        .map(|(now, then)| now.saturating_sub(*then))
        .collect()
}

/// The requests each node answered while every node was up, from the
/// counts at the end (`answered`), at the kill and at the return: those
/// before the kill plus those from the return on. With no kill, all of
/// them; with a kill and no return, those before the kill.
fn while_all_up(answered: &[u64], at_kill: Option<&[u64]>, at_return: Option<&[u64]>) -> Vec<u64> {
    match (at_kill, at_return) {
        (Some(before), Some(back)) => before
            .iter()
            .zip(minus(answered, back))
            .map(|(before, after)| before + after)
            .collect(),
        (Some(before), None) => before.to_vec(),
        (None, _) => answered.to_vec(),
    }
}

/// The session manager of a node over `store`, signing with the strategy's
/// `key`: session-kit's defaults (a 503 when the store fails) but for the
/// shorter operation timeout.
fn manager(key: &Key, store: &NodeStore) -> Result<SessionManager, LabError> {
    let store: Arc<dyn SessionStore> = match store.clone() {
        NodeStore::Memory(memory) => Arc::new(memory),
        NodeStore::Cluster(cluster) => Arc::new(cluster),
        NodeStore::Replicated(replicated) => Arc::new(replicated),
        NodeStore::Tiered(tiered) => Arc::new(tiered),
        NodeStore::Remote(remote) => remote,
    };
    Ok(SessionManager::builder(store, key.clone())
        // Plain HTTP on loopback: a browser would drop a `Secure` cookie
        // here (the lab's users keep it either way).
        .with_cookie(CookieConfig::default().with_secure(false))
        .with_operation_timeout(OPERATION_TIMEOUT)
        .build()?)
}

impl Stores {
    /// A fresh store for node `index`.
    async fn fresh(&mut self, index: usize) -> Result<NodeStore, LabError> {
        Ok(match self.kind {
            Kind::StickyMemory => NodeStore::Memory(MemoryStore::new()),
            Kind::Clustering | Kind::ClusteringLarger => {
                NodeStore::Replicated(self.clustering_node(index).await?)
            }
            Kind::Cluster | Kind::ClusterLarger => {
                NodeStore::Cluster(self.cluster_node(index).await?)
            }
            Kind::Redis => NodeStore::Remote(Arc::new(self.redis_store(0).await?)),
            Kind::RedisFailover => NodeStore::Remote(Arc::new(failover(
                self.redis_store(0).await?,
                self.redis_store(1).await?,
                FailoverMode::Mirror,
            )?)),
            Kind::RedisStandby => NodeStore::Remote(Arc::new(failover(
                self.redis_store(0).await?,
                self.redis_store(1).await?,
                FailoverMode::Standby,
            )?)),
            Kind::RedisNearCache => NodeStore::Tiered(TieredStore::new(
                NearCache::new(),
                self.redis_store(0).await?,
            )),
            Kind::RedisPostgres => NodeStore::Remote(Arc::new(failover(
                self.redis_store(0).await?,
                self.postgres_store().await?,
                FailoverMode::Standby,
            )?)),
        })
    }

    async fn postgres_store(&self) -> Result<PostgresStore, LabError> {
        let url = self
            .postgres
            .as_ref()
            .map(Postgres::url)
            .unwrap_or_default()
            .to_owned();
        // The same bound as Redis's: the failover's call timeout is under
        // it, so a hung PostgreSQL trips the breaker, not the request.
        let config = PostgresConfig::new(url)
            .with_operation_timeout(REDIS_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(5));
        PostgresStore::connect(config)
            .await
            .map_err(|source| LabError::Store {
                strategy: self.kind.key(),
                source,
            })
    }

    /// Starts cluster node `index`: on a fresh port the first time, seeded
    /// with the nodes started before it; on its old port, with its old id,
    /// seeded with all the others, when it comes back.
    ///
    /// Coming back with the old id and address is what the membership
    /// layer expects of a restarted node: SWIM tells identities apart by
    /// address, and the new incarnation carries a newer generation, which
    /// replaces the dead one (see session-cluster's `membership.rs`).
    /// Placement is by id, so the node owns the same sessions as before,
    /// and the others hand them back to it.
    async fn cluster_node(&mut self, index: usize) -> Result<ClusterStore, LabError> {
        let listen = self
            .peers
            .get(index)
            .copied()
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
        let seeds: Vec<SocketAddr> = self
            .peers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != index)
            .map(|(_, &addr)| addr)
            .collect();
        let config = ClusterConfig::new(format!("node-{index}"), listen, CLUSTER_SECRET.to_vec())
            .with_cluster_size(self.nodes)
            .with_replication_factor(2)
            .with_operation_timeout(CLUSTER_OPERATION_TIMEOUT)
            .with_seeds(seeds);
        let cluster = ClusterStore::start(config).await?;
        if self.peers.len() == index {
            self.peers.push(cluster.local_addr());
        }
        Ok(cluster)
    }

    /// Starts clustering node `index`. The first time every node's peer
    /// listener is bound at once, so each node starts knowing all the
    /// others; a node that comes back binds its old address again and
    /// takes every session from a peer before it serves.
    async fn clustering_node(&mut self, index: usize) -> Result<ReplicatedStore, LabError> {
        if self.peer_listeners.is_empty() {
            for _ in 0..self.nodes {
                let listener = app::bind(([127, 0, 0, 1], 0).into()).await?;
                let addr = ([127, 0, 0, 1], 0).into();
                self.peers.push(
                    listener
                        .local_addr()
                        .map_err(|source| LabError::Bind { addr, source })?,
                );
                self.peer_listeners.push(Some(listener));
            }
        }
        let (listener, restarted) = match self.peer_listeners[index].take() {
            Some(listener) => (listener, false),
            None => (app::bind(self.peers[index]).await?, true),
        };
        let others: Vec<SocketAddr> = self
            .peers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != index)
            .map(|(_, &addr)| addr)
            .collect();
        Ok(ReplicatedStore::start(listener, &others, restarted, &self.shutdown).await)
    }

    async fn redis_store(&self, which: usize) -> Result<RedisStore, LabError> {
        let config = RedisConfig::standalone(self.redis[which].url())
            .with_operation_timeout(REDIS_TIMEOUT)
            .with_connect_timeout(REDIS_TIMEOUT);
        RedisStore::connect(config)
            .await
            .map_err(|source| LabError::Store {
                strategy: self.kind.key(),
                source,
            })
    }
}

/// A `FailoverStore` over `primary` and `secondary` in `mode`, fast enough
/// to skip a dead primary within a few requests, as the facade's failover
/// tests configure it.
fn failover(
    primary: impl SessionStore,
    secondary: impl SessionStore,
    mode: FailoverMode,
) -> Result<FailoverStore, LabError> {
    Ok(FailoverStore::builder(primary, secondary)
        .with_mode(mode)
        .with_call_timeout(FAILOVER_CALL_TIMEOUT)
        .with_failure_threshold(2)
        .with_open_for(Duration::from_millis(300))
        .with_max_open_for(Duration::from_secs(1))
        .build()?)
}

/// Sweeps expired sessions out of the `MemoryStore`s, so their counts are
/// of live sessions: a store frees expired sessions' memory otherwise only
/// once per sweep interval, on a write.
async fn settle(stores: &[&MemoryStore]) {
    for store in stores {
        store.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_all_up_counts_leave_out_the_dead_node_s_downtime() {
        // 10 each before the kill; 20 each for the two live nodes while
        // node 0 was down; 5 each after its return.
        let at_kill = [10, 10, 10];
        let at_return = [10, 30, 30];
        let answered = [15, 35, 35];
        assert_eq!(
            while_all_up(&answered, Some(&at_kill), Some(&at_return)),
            [15, 15, 15]
        );
        assert_eq!(while_all_up(&answered, Some(&at_kill), None), at_kill);
        assert_eq!(while_all_up(&answered, None, None), answered);
    }
}
