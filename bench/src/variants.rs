//! The variants: which framework, which session layer, which store; and
//! starting each one's server on its own thread.

use std::{error::Error, net::SocketAddr, sync::mpsc, time::Duration};

use session_cluster::{ClusterConfig, ClusterStore};
use session_kit::{
    failover::{FailoverMode, FailoverStore},
    memcached::{MemcachedConfig, MemcachedStore},
    memory::{MemoryStore, NearCache, TieredStore},
    postgres::{PostgresConfig, PostgresStore},
    redis::{RedisConfig, RedisStore},
    store::SessionStore,
    Key, SessionManager,
};

use crate::{
    apps::{self, ActixLayer},
    backends::Backends,
    ceiling::{self, RedisShape},
    report::Workload,
};

/// The framework a variant runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framework {
    Axum,
    Actix,
}

/// Where a variant keeps its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    None,
    Memory,
    Redis,
    Memcached,
    /// Redis in front of a second Redis.
    Failover,
    /// PostgreSQL alone.
    Postgres,
    /// Redis in front of PostgreSQL (standby or mirror).
    RedisPostgres,
    /// A near-cache in front of Redis.
    Tiered,
    /// Three in-process `ClusterStore` nodes with `R = 2`.
    Cluster,
    /// actix-session's cookie store: the session is the cookie.
    Cookie,
}

macro_rules! variants {
    ($($name:ident => $framework:ident, $store:ident, $label:literal;)*) => {
        /// One server setup the bench measures.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Variant { $($name,)* }

        impl Variant {
            /// Every variant, in table order.
            pub(crate) const ALL: &'static [Variant] = &[$(Variant::$name,)*];

            pub(crate) fn framework(self) -> Framework {
                match self { $(Variant::$name => Framework::$framework,)* }
            }

            pub(crate) fn store(self) -> Store {
                match self { $(Variant::$name => Store::$store,)* }
            }

            /// The variant's name in tables and on the command line.
            pub(crate) fn label(self) -> &'static str {
                match self { $(Variant::$name => $label,)* }
            }
        }
    };
}

variants! {
    AxumBare => Axum, None, "axum (bare)";
    AxumKitMemory => Axum, Memory, "axum + session-kit (memory)";
    AxumTowerSessionsMemory => Axum, Memory, "axum + tower-sessions (memory)";
    AxumTowerSessionsMoka => Axum, Memory, "axum + tower-sessions (moka)";
    AxumKitRedis => Axum, Redis, "axum + session-kit (Redis)";
    AxumTowerSessionsRedis => Axum, Redis, "axum + tower-sessions (Redis)";
    AxumKitMemcached => Axum, Memcached, "axum + session-kit (Memcached)";
    AxumKitFailover => Axum, Failover, "axum + session-kit (Redis + Redis failover)";
    AxumKitPostgres => Axum, Postgres, "axum + session-kit (Postgres)";
    AxumKitPostgresStandby => Axum, RedisPostgres, "axum + session-kit (Redis + Postgres standby)";
    AxumKitPostgresMirror => Axum, RedisPostgres, "axum + session-kit (Redis + Postgres mirror)";
    AxumKitTiered => Axum, Tiered, "axum + session-kit (near-cache + Redis)";
    AxumKitCluster => Axum, Cluster, "axum + session-kit (3-node cluster, R=2)";
    AxumCeilingRedisGet => Axum, Redis, "axum + raw Redis GET (ceiling)";
    AxumCeilingRedisHash => Axum, Redis, "axum + raw Redis HGETALL (ceiling)";
    AxumCeilingMemcached => Axum, Memcached, "axum + raw Memcached mg (ceiling)";
    ActixBare => Actix, None, "actix-web (bare)";
    ActixKitMemory => Actix, Memory, "actix + session-kit (memory)";
    ActixKitRedis => Actix, Redis, "actix + session-kit (Redis)";
    ActixActixSessionRedis => Actix, Redis, "actix + actix-session (Redis)";
    ActixActixSessionCookie => Actix, Cookie, "actix + actix-session (cookie)";
    ActixCeilingRedisHash => Actix, Redis, "actix + raw Redis HGETALL (ceiling)";
}

impl Variant {
    /// The bare framework this variant is measured against.
    pub(crate) fn bare(self) -> Variant {
        match self.framework() {
            Framework::Axum => Variant::AxumBare,
            Framework::Actix => Variant::ActixBare,
        }
    }

    /// The peer crate's variant on the same framework and store, for a
    /// session-kit variant that has one: the one the table's `× peer`
    /// column reads against. For the in-process store that is
    /// tower-sessions' own `MemoryStore` (a locked map, the same kind of
    /// store); [`peers`](Self::peers) adds its moka store.
    pub(crate) fn peer(self) -> Option<Variant> {
        self.peers().first().copied()
    }

    /// Every peer variant on the same framework and kind of store, which
    /// the targets hold this variant against.
    pub(crate) fn peers(self) -> &'static [Variant] {
        match self {
            Variant::AxumKitMemory => &[
                Variant::AxumTowerSessionsMemory,
                Variant::AxumTowerSessionsMoka,
            ],
            Variant::AxumKitRedis => &[Variant::AxumTowerSessionsRedis],
            Variant::ActixKitRedis => &[Variant::ActixActixSessionRedis],
            _ => &[],
        }
    }

    /// The ceiling row a session variant is read against: the same
    /// framework making the same store round trips through the same client
    /// with no session layer (see [`crate::ceiling`]).
    pub(crate) fn ceiling(self) -> Option<Variant> {
        match self {
            Variant::AxumKitRedis | Variant::AxumKitTiered => Some(Variant::AxumCeilingRedisHash),
            Variant::AxumTowerSessionsRedis => Some(Variant::AxumCeilingRedisGet),
            Variant::AxumKitMemcached => Some(Variant::AxumCeilingMemcached),
            Variant::ActixKitRedis | Variant::ActixActixSessionRedis => {
                Some(Variant::ActixCeilingRedisHash)
            }
            _ => None,
        }
    }

    /// Whether this is one of session-kit's own variants.
    pub(crate) fn is_kit(self) -> bool {
        self.label().contains("session-kit")
    }

    /// The Redis logical database this variant keeps its sessions in, if
    /// it uses Redis: one per variant, so the bytes one stores per session
    /// can be read off its keys alone.
    pub(crate) fn redis_db(self) -> Option<u8> {
        match self {
            Variant::AxumKitRedis => Some(1),
            Variant::AxumTowerSessionsRedis => Some(2),
            Variant::ActixActixSessionRedis => Some(3),
            Variant::ActixKitRedis => Some(4),
            Variant::AxumKitFailover => Some(5),
            Variant::AxumKitTiered => Some(6),
            Variant::AxumKitPostgresStandby => Some(7),
            Variant::AxumKitPostgresMirror => Some(8),
            Variant::AxumCeilingRedisGet => Some(9),
            Variant::AxumCeilingRedisHash => Some(10),
            Variant::ActixCeilingRedisHash => Some(11),
            _ => None,
        }
    }

    /// The PostgreSQL database this variant keeps its sessions in, if it
    /// uses PostgreSQL: one per variant, so `pg_stat_database` counts each
    /// one's transactions apart (and the bench's own `psql`, which connects
    /// to `postgres`, in none of them).
    pub(crate) fn postgres_db(self) -> Option<&'static str> {
        match self {
            Variant::AxumKitPostgres => Some("bench_postgres"),
            Variant::AxumKitPostgresStandby => Some("bench_postgres_standby"),
            Variant::AxumKitPostgresMirror => Some("bench_postgres_mirror"),
            _ => None,
        }
    }

    /// Whether this variant runs `workload` when the command line names no
    /// workload. The Postgres variants leave out `untouched`: a handler
    /// that never touches the session makes no store call, so it measures
    /// the same as every other session-kit variant on axum, and the three
    /// would add a minute to the default run for nothing.
    pub(crate) fn runs_by_default(self, workload: Workload) -> bool {
        self.postgres_db().is_none() || workload != Workload::Untouched
    }
}

/// A variant's server, running on its own thread until the process ends.
pub(crate) struct Running {
    /// Where the load goes: one address, or one per cluster node.
    pub(crate) addrs: Vec<SocketAddr>,
    /// The cluster's nodes, for their peer-link counters.
    pub(crate) cluster: Vec<ClusterStore>,
}

type BoxError = Box<dyn Error + Send + Sync>;
type Started = Result<Running, BoxError>;

/// How long a variant's server may take to start: the cluster's includes
/// up to 20 s to form and its settle time.
const START_TIMEOUT: Duration = Duration::from_secs(45);

/// Starts `variant`'s server on a new thread, which inherits the calling
/// thread's CPU affinity, and waits (bounded) until it listens.
pub(crate) fn start(variant: Variant, backends: &Backends) -> Started {
    let (sender, receiver) = mpsc::channel::<Started>();
    let redis = backends.redis_url(variant);
    let secondary = backends.secondary_url(variant);
    let memcached = backends.memcached_url();
    let postgres = backends.postgres_url(variant);
    let thread = std::thread::Builder::new().name(format!("server {}", variant.label()));
    match variant.framework() {
        Framework::Axum => thread.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let urls = Urls {
                    redis,
                    secondary,
                    memcached,
                    postgres,
                };
                let started = start_axum(variant, urls).await;
                let _ = sender.send(started);
                std::future::pending::<()>().await;
            });
        })?,
        Framework::Actix => thread.spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let started = start_actix(variant, redis).await;
                let _ = sender.send(started);
                std::future::pending::<()>().await;
            });
        })?,
    };
    receiver
        .recv_timeout(START_TIMEOUT)
        .map_err(|err| match err {
            mpsc::RecvTimeoutError::Timeout => {
                format!(
                    "{} did not start within {} s",
                    variant.label(),
                    START_TIMEOUT.as_secs()
                )
            }
            mpsc::RecvTimeoutError::Disconnected => {
                format!(
                    "{}'s server thread panicked while starting",
                    variant.label()
                )
            }
        })?
}

fn manager(store: impl SessionStore) -> Result<SessionManager, BoxError> {
    signed_manager(store, Key::generate())
}

/// A manager over `store` signing with `key`, shared by app servers that
/// serve the same users.
fn signed_manager(store: impl SessionStore, key: Key) -> Result<SessionManager, BoxError> {
    Ok(SessionManager::builder(store, key).build()?)
}

async fn redis_store(url: &str) -> Result<RedisStore, BoxError> {
    Ok(RedisStore::connect(RedisConfig::from_url(url)?).await?)
}

/// The default config on `url` (its own database), as an app would start.
async fn postgres_store(url: &str) -> Result<PostgresStore, BoxError> {
    Ok(PostgresStore::connect(PostgresConfig::new(url)).await?)
}

/// Redis in front of PostgreSQL in `mode`, with the default breaker.
async fn redis_postgres(urls: &Urls, mode: FailoverMode) -> Result<FailoverStore, BoxError> {
    Ok(FailoverStore::builder(
        redis_store(&urls.redis).await?,
        postgres_store(&urls.postgres).await?,
    )
    .with_mode(mode)
    .build()?)
}

/// Where an axum variant's stores are.
struct Urls {
    redis: String,
    secondary: String,
    memcached: String,
    postgres: String,
}

fn one(addr: SocketAddr) -> Running {
    Running {
        addrs: vec![addr],
        cluster: Vec::new(),
    }
}

async fn start_axum(variant: Variant, urls: Urls) -> Started {
    let Urls {
        redis,
        secondary,
        memcached,
        ..
    } = &urls;
    let app = match variant {
        Variant::AxumBare => apps::axum_bare(),
        Variant::AxumKitMemory => apps::axum_kit(manager(MemoryStore::new())?),
        Variant::AxumKitRedis => apps::axum_kit(manager(redis_store(redis).await?)?),
        Variant::AxumKitMemcached => {
            let store = MemcachedStore::connect(MemcachedConfig::from_url(memcached)?).await?;
            apps::axum_kit(manager(store)?)
        }
        Variant::AxumKitFailover => {
            let store =
                FailoverStore::new(redis_store(redis).await?, redis_store(secondary).await?);
            apps::axum_kit(manager(store)?)
        }
        Variant::AxumKitPostgres => apps::axum_kit(manager(postgres_store(&urls.postgres).await?)?),
        Variant::AxumKitPostgresStandby => apps::axum_kit(manager(
            redis_postgres(&urls, FailoverMode::Standby).await?,
        )?),
        Variant::AxumKitPostgresMirror => {
            apps::axum_kit(manager(redis_postgres(&urls, FailoverMode::Mirror).await?)?)
        }
        Variant::AxumKitTiered => {
            let store = TieredStore::new(NearCache::new(), redis_store(redis).await?);
            apps::axum_kit(manager(store)?)
        }
        Variant::AxumKitCluster => return start_cluster().await,
        Variant::AxumCeilingRedisGet => {
            ceiling::axum_redis(ceiling::redis_connection(redis).await?, RedisShape::String)
        }
        Variant::AxumCeilingRedisHash => {
            ceiling::axum_redis(ceiling::redis_connection(redis).await?, RedisShape::Hash)
        }
        Variant::AxumCeilingMemcached => {
            let servers = MemcachedConfig::from_url(memcached)?.servers().to_vec();
            ceiling::axum_memcached(ceiling::memcached_client(&servers).await?)
        }
        Variant::AxumTowerSessionsMemory => {
            apps::axum_tower_sessions(tower_sessions::MemoryStore::default())
        }
        Variant::AxumTowerSessionsMoka => {
            apps::axum_tower_sessions(tower_sessions_moka_store::MokaStore::new(Some(
                session_kit::memory::MemoryStoreBuilder::DEFAULT_MAX_CAPACITY,
            )))
        }
        Variant::AxumTowerSessionsRedis => {
            use tower_sessions_redis_store::{fred::prelude::*, RedisStore};
            // As tower-sessions-redis-store's own docs set it up.
            let pool = Pool::new(Config::from_url(redis)?, None, None, None, 6)?;
            // The connection task runs on its own; its handle is not needed.
            drop(pool.connect());
            pool.wait_for_connect().await?;
            apps::axum_tower_sessions(RedisStore::new(pool))
        }
        other => return Err(format!("{} is not an axum variant", other.label()).into()),
    };
    Ok(one(apps::serve_axum(app).await?))
}

/// The cluster secret; any 32 bytes do for a bench on loopback.
const CLUSTER_SECRET: &[u8; 32] = b"session-bench-cluster-secret-32b";

/// Three nodes on this thread's runtime, each behind its own axum app, as
/// three app servers would be; the load spreads over the three.
async fn start_cluster() -> Started {
    const NODES: usize = 3;
    let config = |name: &str| {
        ClusterConfig::new(
            name,
            "127.0.0.1:0".parse().expect("a literal address"),
            CLUSTER_SECRET,
        )
        .with_cluster_size(NODES)
        .with_replication_factor(2)
    };
    let first = ClusterStore::start(config("node-0")).await?;
    let seed = first.local_addr();
    let mut nodes = vec![first];
    for i in 1..NODES {
        nodes.push(ClusterStore::start(config(&format!("node-{i}")).with_seeds([seed])).await?);
    }
    for node in &nodes {
        if !node.wait_for_members(NODES, Duration::from_secs(20)).await {
            return Err(format!("{} sees only {:?}", node.node_id(), node.members()).into());
        }
    }
    // Until a node is settled (the settle time after a membership change,
    // and every other node's hand-over to it), an owner asks every other
    // node for a newer copy before each operation. That is the cost of a
    // cluster that has just changed, not of one at work: measuring it would
    // depend on how soon after start-up the cluster's turn comes (`--only`
    // and `--workload` make it early), so wait it out.
    let limit = ClusterConfig::DEFAULT_SETTLE_TIME + Duration::from_secs(20);
    let waiting = std::time::Instant::now();
    while !nodes.iter().all(|node| node.stats().settled) {
        if waiting.elapsed() > limit {
            return Err(format!("the cluster did not settle within {limit:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One signing key for the three apps, as app servers behind one
    // balancer share theirs: a cookie one node set verifies on the others.
    let key = Key::generate();
    let mut addrs = Vec::with_capacity(NODES);
    for node in &nodes {
        let manager = signed_manager(node.clone(), key.clone())?;
        addrs.push(apps::serve_axum(apps::axum_kit(manager)).await?);
    }
    Ok(Running {
        addrs,
        cluster: nodes,
    })
}

async fn start_actix(variant: Variant, redis: String) -> Started {
    let layer = match variant {
        Variant::ActixBare => ActixLayer::Bare,
        Variant::ActixKitMemory => ActixLayer::Kit(manager(MemoryStore::new())?),
        Variant::ActixKitRedis => ActixLayer::Kit(manager(redis_store(&redis).await?)?),
        Variant::ActixActixSessionRedis => ActixLayer::ActixSessionRedis(
            actix_session::storage::RedisSessionStore::new(redis)
                .await
                .map_err(|err| err.to_string())?,
        ),
        Variant::ActixActixSessionCookie => ActixLayer::ActixSessionCookie,
        Variant::ActixCeilingRedisHash => {
            let connection = ceiling::redis_connection(&redis).await?;
            return Ok(one(ceiling::serve_actix_redis(
                connection,
                RedisShape::Hash,
            )?));
        }
        other => return Err(format!("{} is not an actix variant", other.label()).into()),
    };
    Ok(one(apps::serve_actix(layer)?))
}
