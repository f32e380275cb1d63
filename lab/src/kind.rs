//! The strategies the lab compares: what each one is, how many servers it
//! runs, what it needs installed, and what the run is expected to show.
//! How each is deployed is `strategy.rs`.

use serde::Serialize;

use crate::balancer::Routing;

/// The app servers of the larger variants (b5, c5), whatever `--nodes`
/// says: with the others at 3, memory per server and traffic per write
/// are seen against N = 3 and N = 5 in one run.
pub(crate) const LARGER: usize = 5;

/// One of the compared strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// Each node its own `MemoryStore`; a sticky balancer.
    StickyMemory,
    /// Session clustering: every node keeps every session and copies each
    /// write to every other node after answering (`replicated.rs`);
    /// round-robin.
    Clustering,
    /// The same on [`LARGER`] nodes.
    ClusteringLarger,
    /// A `ClusterStore` per node, `R = 2`; round-robin.
    Cluster,
    /// The same on [`LARGER`] nodes.
    ClusterLarger,
    /// One redis-server shared by every node; round-robin.
    Redis,
    /// A `FailoverStore` mirroring two redis-servers; round-robin.
    RedisFailover,
    /// A `FailoverStore` in standby mode over two redis-servers: writes to
    /// the primary only.
    RedisStandby,
    /// A `TieredStore`: a near-cache in each node in front of one Redis.
    RedisNearCache,
    /// A `FailoverStore` in standby mode: Redis, then PostgreSQL.
    RedisPostgres,
}

impl Kind {
    /// Every strategy, in the order of the table.
    pub(crate) const ALL: [Kind; 10] = [
        Kind::StickyMemory,
        Kind::Clustering,
        Kind::ClusteringLarger,
        Kind::Cluster,
        Kind::ClusterLarger,
        Kind::Redis,
        Kind::RedisFailover,
        Kind::RedisStandby,
        Kind::RedisNearCache,
        Kind::RedisPostgres,
    ];

    /// Its letter in the table.
    pub(crate) fn letter(self) -> &'static str {
        match self {
            Kind::StickyMemory => "a",
            Kind::Clustering => "b",
            Kind::ClusteringLarger => "b5",
            Kind::Cluster => "c",
            Kind::ClusterLarger => "c5",
            Kind::Redis => "d",
            Kind::RedisFailover => "e",
            Kind::RedisStandby => "f",
            Kind::RedisNearCache => "g",
            Kind::RedisPostgres => "h",
        }
    }

    /// A stable name for the JSON.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Kind::StickyMemory => "sticky-memory",
            Kind::Clustering => "clustering",
            Kind::ClusteringLarger => "clustering-5",
            Kind::Cluster => "cluster",
            Kind::ClusterLarger => "cluster-5",
            Kind::Redis => "redis",
            Kind::RedisFailover => "redis-failover",
            Kind::RedisStandby => "redis-standby",
            Kind::RedisNearCache => "redis-near-cache",
            Kind::RedisPostgres => "redis-postgres-standby",
        }
    }

    /// Its name in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::StickyMemory => "local memory, sticky balancer",
            Kind::Clustering => "session clustering, round-robin",
            Kind::ClusteringLarger => "session clustering, 5 servers",
            Kind::Cluster => "session-kit cluster R=2, round-robin",
            Kind::ClusterLarger => "session-kit cluster R=2, 5 servers",
            Kind::Redis => "one Redis, round-robin",
            Kind::RedisFailover => "Redis + failover mirror, round-robin",
            Kind::RedisStandby => "Redis + standby Redis, round-robin",
            Kind::RedisNearCache => "Redis + near-cache, round-robin",
            Kind::RedisPostgres => "Redis + standby PostgreSQL",
        }
    }

    /// A short name, for the timeline's strips.
    pub(crate) fn short_name(self) -> &'static str {
        match self {
            Kind::StickyMemory => "memory, sticky",
            Kind::Clustering => "clustering, copy to all",
            Kind::ClusteringLarger => "clustering, 5 servers",
            Kind::Cluster => "cluster R=2",
            Kind::ClusterLarger => "cluster R=2, 5 servers",
            Kind::Redis => "one Redis",
            Kind::RedisFailover => "Redis + mirror",
            Kind::RedisStandby => "Redis + standby",
            Kind::RedisNearCache => "Redis + near-cache",
            Kind::RedisPostgres => "Redis + PostgreSQL",
        }
    }

    /// How many app servers it runs, when the others run `nodes`.
    pub(crate) fn nodes(self, nodes: usize) -> usize {
        match self {
            Kind::ClusteringLarger | Kind::ClusterLarger => LARGER,
            _ => nodes,
        }
    }

    /// How it is set up, in a sentence.
    pub(crate) fn setup(self) -> &'static str {
        match self {
            Kind::StickyMemory => {
                "Each node keeps sessions in its own MemoryStore; the balancer pins each user \
                 to one node with its own cookie and re-pins when that node is down."
            }
            Kind::Clustering | Kind::ClusteringLarger => {
                "Tomcat DeltaManager's way: each node keeps every session in its own memory \
                 and, after answering a write, copies the session to every other node over a \
                 peer link (TCP), asynchronously, from a queue sent every 200 ms; a copy is \
                 applied on arrival, the last to arrive wins. A restarted node first takes \
                 every session from a peer."
            }
            Kind::Cluster | Kind::ClusterLarger => {
                "Each node runs a session_cluster::ClusterStore: every session lives on 2 of \
                 the nodes, any node serves any session; no external server."
            }
            Kind::Redis => "Every node keeps its sessions in one shared redis-server.",
            Kind::RedisFailover => {
                "Every node keeps its sessions in a FailoverStore that mirrors them on two \
                 redis-servers behind circuit breakers."
            }
            Kind::RedisStandby => {
                "A FailoverStore in standby mode over two redis-servers: every write goes to \
                 the primary only; the standby takes new sessions while the primary is down."
            }
            Kind::RedisNearCache => {
                "A TieredStore in each node: a near-cache (moka) in front of one shared \
                 redis-server, each read checked against Redis's version of the session."
            }
            Kind::RedisPostgres => {
                "A FailoverStore in standby mode: Redis first, PostgreSQL as the standby that \
                 takes new sessions while Redis is down (it costs nothing while Redis is up)."
            }
        }
    }

    /// What the run shows about it.
    pub(crate) fn expectation(self) -> &'static str {
        match self {
            Kind::StickyMemory => {
                "Works while every node lives. When a node dies its users are re-pinned to \
                 another node, which has never seen their sessions: they are logged out. \
                 The restarted node gets no one back, so the load stays uneven."
            }
            Kind::Clustering | Kind::ClusteringLarger => {
                "Any node serves any session, but a request that reaches a node before the \
                 copy of the user's last write reads the older session: stale reads and lost \
                 increments with no fault at all, and a new session whose copy has not arrived \
                 yet logs the user out. Every node holds every session (N copies), and every \
                 write sends N-1 copies."
            }
            Kind::Cluster | Kind::ClusterLarger => {
                "Killing a node loses nothing: every session has a second copy. For about \
                 a second, until the others declare the node dead, writes to the sessions it \
                 held fail (503) rather than be acknowledged with one copy; the node cut off \
                 by the partition refuses (503) until it heals. Memory per node is about 2/N \
                 of the sessions, not all of them."
            }
            Kind::Redis => {
                "Any node serves any session, so killing a node costs nothing; killing Redis \
                 fails every request (503) until it is back, and it comes back empty: every \
                 user is logged out."
            }
            Kind::RedisFailover => {
                "Killing the primary Redis moves every request to the secondary within a \
                 breaker trip; the restarted, empty primary is repaired from the secondary. \
                 No session and no acknowledged increment is lost."
            }
            Kind::RedisStandby | Kind::RedisPostgres => {
                "Costs one store call per operation, as Redis alone. When the primary dies \
                 its sessions cannot be read: those users are logged out, and start again on \
                 the standby, which keeps serving them after the primary is back."
            }
            Kind::RedisNearCache => {
                "Reads cost a version check instead of the whole session. It is one Redis \
                 all the same: killing it fails requests, and its empty restart logs every \
                 user out."
            }
        }
    }

    /// Whether its app nodes talk to each other, so a partition between
    /// them means something.
    pub(crate) fn has_peers(self) -> bool {
        matches!(
            self,
            Kind::Clustering | Kind::ClusteringLarger | Kind::Cluster | Kind::ClusterLarger
        )
    }

    /// Whether it promises to lose nothing through the run's faults, so
    /// the test asks 0 lost sessions, 0 stale reads and 0 lost increments
    /// of it: the cluster, and the failover mirror. A standby and a
    /// near-cache are cheaper, and lose what their modes say.
    pub(crate) fn loses_nothing(self) -> bool {
        matches!(
            self,
            Kind::Cluster | Kind::ClusterLarger | Kind::RedisFailover
        )
    }

    /// Whether it needs redis-server.
    pub(crate) fn needs_redis(self) -> bool {
        matches!(
            self,
            Kind::Redis
                | Kind::RedisFailover
                | Kind::RedisStandby
                | Kind::RedisNearCache
                | Kind::RedisPostgres
        )
    }

    /// Whether it needs PostgreSQL.
    pub(crate) fn needs_postgres(self) -> bool {
        matches!(self, Kind::RedisPostgres)
    }

    /// How many redis-servers it runs: the first is the one the Redis
    /// faults kill.
    pub(crate) fn redis_servers(self) -> usize {
        match self {
            Kind::Redis | Kind::RedisNearCache | Kind::RedisPostgres => 1,
            Kind::RedisFailover | Kind::RedisStandby => 2,
            _ => 0,
        }
    }

    /// How its balancer picks a node.
    pub(crate) fn routing(self) -> Routing {
        match self {
            Kind::StickyMemory => Routing::Sticky,
            _ => Routing::RoundRobin,
        }
    }
}
