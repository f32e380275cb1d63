//! # session-kit
//!
//! Sessions for Rust web apps that run on more than one server.
//!
//! Multi-server apps lose sessions in three known ways: a sticky load balancer
//! logs out everyone on a server that dies; session clustering copies every
//! session everywhere and serves stale copies; one shared Redis or Memcached
//! takes every session down with it. session-kit gives you one session
//! contract, interchangeable stores, and adapters for Axum/Tower and
//! Actix-web that share the same signed cookie, so you can pick the storage
//! that fits and change it later without touching handlers.
//!
//! ## Features
//! | feature | gives you |
//! |---|---|
//! | `memory` (default) | [`MemoryStore`](memory::MemoryStore): in-process sessions on moka |
//! | `tower` | [`tower::SessionLayer`] for any tower-compatible server |
//! | `axum` | `tower` plus the [`tower::Session`] extractor |
//! | `actix` | the actix-web [`actix::SessionMiddleware`] and [`actix::Session`] extractor |
//! | `redis` | [`redis::RedisStore`]: Redis standalone, Sentinel or Cluster, from one URL |
//! | `tls` | `redis` plus TLS to it: `rediss://` on every topology, on rustls (no OpenSSL), with a CA file and a client certificate for mutual TLS |
//! | `memcached` | [`memcached::MemcachedStore`]: several Memcached servers, CAS delta commits |
//! | `postgres` | [`postgres::PostgresStore`]: PostgreSQL, one row per session; durable, and the low-cost standby behind Redis |
//! | `cluster` | [`cluster::ClusterStore`]: sessions replicated in the app servers' own memory, no external store |
//! | `tower-sessions` | [`tower_sessions::TowerSessionsStore`]: tower-sessions 0.14 apps (axum-login, axum-messages) on any of these stores |
//! | `migrate` | `redis` plus moving tower-sessions' and actix-session's users in on first contact, without logging them out: the `[migrate]` config block ([`config::MigrateSection`]), [`migrate::LegacyRedisSessions`]; guide in `docs/migrating.md` |
//!
//! Whatever the features, [`FailoverStore`](failover::FailoverStore) puts a secondary store behind a
//! primary (mirror or standby, with a circuit breaker on each), and with
//! `memory` [`TieredStore`](memory::TieredStore) puts a near-cache in front of a remote store.
//!
//! ## Axum
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{routing::get, Router};
//! use session_kit::{
//!     memory::MemoryStore,
//!     tower::{Error, Session, SessionLayer},
//!     Key, SessionManager,
//! };
//!
//! async fn counter(session: Session) -> Result<String, Error> {
//!     let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
//!     session.insert("count", count).await?;
//!     Ok(count.to_string())
//! }
//!
//! // In production the key comes from a secret of at least 32 bytes shared by
//! // every server: `Key::from_secret(std::env::var("SESSION_SECRET")?)`.
//! let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
//!     .build()
//!     .expect("valid session config");
//! let app: Router = Router::new()
//!     .route("/", get(counter))
//!     .layer(SessionLayer::new(manager));
//! # let _ = app; }
//! ```
//!
//! ## Actix-web
//! The same manager config, the same cookie: an actix service and an axum
//! service over one store and one key share their sessions.
//! ```
//! # #[cfg(feature = "actix")] {
//! use actix_web::{web, App};
//! use session_kit::{
//!     actix::{Error, Session, SessionMiddleware},
//!     memory::MemoryStore,
//!     Key, SessionManager,
//! };
//!
//! async fn counter(session: Session) -> Result<String, Error> {
//!     let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
//!     session.insert("count", count).await?;
//!     Ok(count.to_string())
//! }
//!
//! let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
//!     .build()
//!     .expect("valid session config");
//! // Inside `HttpServer::new(move || ...)`, once per worker:
//! let app = App::new()
//!     .wrap(SessionMiddleware::new(manager.clone()))
//!     .route("/", web::get().to(counter));
//! # let _ = app; }
//! ```
//!
//! ## Choosing a store
//! Every store speaks the same [`SessionStore`](store::SessionStore)
//! contract, so the choice is a line of config (`store.kind`), not code.
//! The README's "which store?" table gives measured figures for each.
//!
//! | store | survives the death of | costs | crate |
//! |---|---|---|---|
//! | [`MemoryStore`](memory::MemoryStore) | nothing: one process | in-process, the fastest | session-core |
//! | [`RedisStore`](redis::RedisStore) | any app server; Redis itself with Sentinel or Cluster | 1 round trip per read, 2 per write | [session-redis](https://docs.rs/session-redis) |
//! | [`MemcachedStore`](memcached::MemcachedStore) | any app server; a Memcached server loses its share | as Redis; no owner index | [session-memcached](https://docs.rs/session-memcached) |
//! | [`PostgresStore`](postgres::PostgresStore) | any app server; durable across its own restarts | the slowest; a row per session | [session-postgres](https://docs.rs/session-postgres) |
//! | [`ClusterStore`](cluster::ClusterStore) | up to `R − 1` app servers; no store to run | `R` copies across the servers | [session-cluster](https://docs.rs/session-cluster) |
//! | [`FailoverStore`](failover::FailoverStore) | either of two stores (mirror), or the primary with a standby | the second store's calls (mirror) or nothing while the primary is up (standby) | session-core |
//! | [`TieredStore`](memory::TieredStore) | as its far store | a near copy per server; saves the payload, not the round trip | session-core |
//!
//! ## From a config file
//! [`config::SessionConfig`] reads the whole stack (cookie, timeouts, store,
//! failover, near-cache) from TOML with `SESSION__…` environment
//! overrides; [`build_manager`], [`tower_layer`] and
//! [`actix_middleware`] turn it into a running stack. A bad value is refused
//! with the key that holds it.
//!
//! ## Log a user out everywhere
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use session_kit::{Key, SessionManager};
//! # let manager = SessionManager::builder(session_kit::memory::MemoryStore::new(), Key::generate()).build()?;
//! # let session = manager.start(std::iter::empty());
//! # let user_id = 42;
//! // at login
//! session.cycle_id().await?;
//! session.set_owner(user_id.to_string()).await?;
//!
//! // "log out everywhere", from one of the user's own sessions (this one included)
//! let ended = session.log_out_everywhere().await?;
//! // or from an admin tool, for any user
//! let ended = manager.end_all_for("42").await?;
//! # let _ = ended; Ok(()) }
//! ```
//! Every store that can enumerate an owner's sessions supports it;
//! Memcached answers [`ErrorKind::Unsupported`].
//!
//! ## A user's devices, "remember me", tokens in a header
//! [`Session::devices`], [`Session::end_device`] and
//! [`Session::log_out_other_sessions`] give a "your devices" page, and
//! `max_sessions_per_owner` caps sessions per user (see [`devices`]).
//! [`Session::set_lifetime`] gives one session a [`Lifetime`] of its own,
//! within `max_idle_timeout` and `max_absolute_timeout`. `transport =
//! "header"` ([`Transport::Header`]) carries the token in
//! `Authorization: Bearer` instead of a cookie, for API clients.
//!
//! ## Moving from tower-sessions or actix-session
//! With the `migrate` feature and a `[migrate]` block
//! ([`config::MigrateSection`]), users of tower-sessions 0.14 or
//! actix-session 0.11 keep their sessions: on first contact their old
//! cookie is checked with the old key, their Redis record is moved into
//! session-kit's store, and they get session-kit's cookie. The guide,
//! with the two APIs side by side, is
//! [docs/migrating.md](https://github.com/session-kit/session-kit/blob/main/docs/migrating.md).
//! Apps that would rather keep tower-sessions' API (axum-login,
//! axum-messages) use the `tower-sessions` feature's `TowerSessionsStore`
//! over any of these stores.
//!
//! ## Guarantees and caveats
//! - A request that never touches its session costs no store call; an
//!   unchanged session is not rewritten; a change is written as a delta.
//! - Concurrent requests that change different keys of one session both
//!   survive; on the same key the last one wins. A request does not see
//!   another request's commit made after it loaded the session.
//! - A forged, malformed or expired cookie gives a fresh session, never an
//!   error. An id the store does not know is never adopted.
//! - A store failure answers 503 by default (or serves reads as an empty
//!   session, if configured), within the per-operation timeout; a failed
//!   write is never acknowledged.
//! - [`MemoryStore`](memory::MemoryStore) is per process: with several servers, a request that
//!   lands on another server does not see the session. Use a shared or
//!   replicated store there.
//! - One store is one point of failure. [`FailoverStore`](failover::FailoverStore) in mirror mode
//!   survives the death of either of two stores with no acknowledged write
//!   lost; [`FailoverMode`](failover::FailoverMode) says exactly what each mode can lose. A store
//!   that comes back is found by a background probe within
//!   `failover.probe_interval` (1 s) and repaired from the other.
//! - A logout, `destroy` or "log out everywhere" acknowledged on one server
//!   is never undone on another, whatever the timing of loads, repairs and
//!   replays (mirror deletes leave tombstones in both stores first; a
//!   standby delete that cannot reach where the session lives fails
//!   instead). `cycle_id` carries over every commit acknowledged before it,
//!   or fails with nothing lost.
//! - Every `Session` method is cancel-safe; a failed or cancelled load never
//!   becomes an empty session that a write would turn into a new cookie.
//! - These are checked by racing them: gated tests that force one
//!   interleaving, and a schedule explorer with a history checker over
//!   every store (`session_conformance::race`).
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod build;
pub mod config;

#[cfg(feature = "actix")]
pub use build::actix_middleware;
#[cfg(feature = "tower")]
pub use build::tower_layer;
pub use build::{build_manager, build_store, BuildError};
pub use session_core::{
    ConfigError, CookieConfig, ErrorKind, ErrorPolicy, HeaderTransport, Key, KeyError, KeyRing,
    Lifetime, LifetimeError, SameSite, Session, SessionError, SessionId, SessionManager,
    StoreError, Transport,
};

/// For store authors: the [`SessionStore`](store::SessionStore) trait and
/// the records it moves (session-core's [`store`](session_core::store)).
pub mod store {
    pub use session_core::store::*;
}

/// For adapter authors: the signed cookie's codec (session-core's
/// [`cookie`](session_core::cookie)).
pub mod cookie {
    pub use session_core::cookie::*;
}

/// The clock timeouts are measured against, and a manual one for tests
/// (session-core's [`clock`](session_core::clock)).
pub mod clock {
    pub use session_core::clock::*;
}

/// For apps that configure a [`SessionManager`] in steps or from config,
/// and for adapter authors: the builder, [`ManagerConfig`](manager::ManagerConfig),
/// the [`Finish`](manager::Finish) a request ends with and the app's own
/// error responses ([`ErrorResponder`](manager::ErrorResponder)) (session-core's
/// [`manager`](session_core::manager)).
pub mod manager {
    pub use session_core::manager::*;
}

/// A user's devices: the sessions of one owner, listed for a "your
/// devices" page by opaque handles, ended one by one, and capped per user
/// (session-core's [`devices`](session_core::devices)).
pub mod devices {
    pub use session_core::devices::*;
}

/// The `tracing` spans and the `metrics` session-kit emits, with the table
/// of every metric's name, type and labels (session-core's
/// [`telemetry`](session_core::telemetry)).
pub mod telemetry {
    pub use session_core::telemetry::*;
}

/// A primary and a secondary store behind circuit breakers:
/// [`FailoverStore`](failover::FailoverStore), mirror or standby.
///
/// ```no_run
/// # #[cfg(all(feature = "redis", feature = "memcached", feature = "memory"))]
/// # fn run(redis: session_kit::redis::RedisStore, memcached: session_kit::memcached::MemcachedStore) -> Result<(), session_kit::ConfigError> {
/// use session_kit::{failover::{FailoverMode, FailoverStore}, memory::MemoryStore};
///
/// // Mirror (the default): every write to both; either one may die.
/// let mirror = FailoverStore::new(redis.clone(), memcached);
/// // Standby: writes to the primary; the secondary takes new sessions while it is down.
/// let standby = FailoverStore::builder(redis, MemoryStore::new())
///     .with_mode(FailoverMode::Standby)
///     .build()?;
/// # let _ = (mirror, standby); Ok(()) }
/// # fn main() {}
/// ```
///
/// [`FailoverMode`](failover::FailoverMode) says what each mode can lose,
/// and when; the [session-core docs](session_core::failover) how.
pub mod failover {
    pub use session_core::failover::*;
}

/// A store connected in the background, so the app starts while its store
/// is down: [`LazyStore`](lazy::LazyStore).
pub mod lazy {
    pub use session_core::lazy::*;
}

/// Sessions in this process's memory: [`MemoryStore`](memory::MemoryStore),
/// and the [`TieredStore`](memory::TieredStore) near-cache in front of a
/// remote store.
///
/// ```no_run
/// # #[cfg(feature = "redis")]
/// # fn run(redis: session_kit::redis::RedisStore) {
/// use session_kit::memory::{NearCache, TieredStore};
///
/// let store = TieredStore::new(NearCache::new().with_max_bytes(64 << 20), redis);
/// # let _ = store; }
/// # fn main() {}
/// ```
#[cfg(feature = "memory")]
pub mod memory {
    pub use session_core::memory::*;
}

/// Moving another library's users in without logging them out: the
/// [`LegacySessions`](migrate::LegacySessions) source the manager consults
/// on first contact (session-core's [`migrate`](session_core::migrate)),
/// and with the `migrate` feature the Redis readers for tower-sessions and
/// actix-session (session-redis's `migrate`). From config: the `[migrate]`
/// block ([`MigrateSection`](config::MigrateSection)).
pub mod migrate {
    pub use session_core::migrate::*;
    #[cfg(feature = "migrate")]
    pub use session_redis::migrate::*;
}

/// Sessions in Redis: [`RedisStore`](redis::RedisStore) over a
/// [`RedisConfig`](redis::RedisConfig) that names a server, a Sentinel
/// service or a Cluster; the [session-redis docs](session_redis) give the
/// record's layout, the commands each operation costs, and the topologies.
///
/// ```no_run
/// # async fn run(key: session_kit::Key) -> Result<(), Box<dyn std::error::Error>> {
/// use session_kit::{redis::{RedisConfig, RedisStore}, SessionManager};
///
/// // redis://…, redis+sentinel://s1:26379,s2:26379/mymaster or
/// // redis+cluster://n1:7000,n2:7000 (rediss… with feature tls): the URL's scheme picks the topology.
/// let store = RedisStore::connect(RedisConfig::from_url(&std::env::var("REDIS_URL")?)?).await?;
/// let manager = SessionManager::builder(store, key).build()?;
/// # let _ = manager; Ok(()) }
/// # fn main() {}
/// ```
#[cfg(feature = "redis")]
pub mod redis {
    pub use session_redis::*;
}

/// Sessions in Memcached: [`MemcachedStore`](memcached::MemcachedStore)
/// over one or several servers, listed in a
/// [`MemcachedConfig`](memcached::MemcachedConfig); the
/// [session-memcached docs](session_memcached) give the envelope and the
/// commit's CAS loop.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use session_kit::memcached::{MemcachedConfig, MemcachedStore};
///
/// // memcache://host:port[,host:port…]: keys spread over the servers by
/// // rendezvous hashing.
/// let config = MemcachedConfig::from_url(&std::env::var("MEMCACHED_URL")?)?;
/// let store = MemcachedStore::connect(config).await?;
/// # let _ = store; Ok(()) }
/// # fn main() {}
/// ```
#[cfg(feature = "memcached")]
pub mod memcached {
    pub use session_memcached::*;
}

/// Sessions in PostgreSQL: [`PostgresStore`](postgres::PostgresStore) over
/// a [`PostgresConfig`](postgres::PostgresConfig) that names the database
/// and the table; the [session-postgres docs](session_postgres) give the
/// schema and the statement each operation runs.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use session_kit::postgres::{PostgresConfig, PostgresStore};
///
/// // postgres://user:password@host/db; the embedded migrations create the table on connect.
/// let config = PostgresConfig::new(std::env::var("DATABASE_URL")?).with_table("sessions");
/// let store = PostgresStore::connect(config).await?;
/// # let _ = store; Ok(()) }
/// # fn main() {}
/// ```
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use session_postgres::*;
}

/// Sessions replicated in the app servers' own memory:
/// [`ClusterStore`](cluster::ClusterStore) over a
/// [`ClusterConfig`](cluster::ClusterConfig) that names this node, its peer
/// address and its seeds. Each session lives on `R` of the servers, any
/// server serves any session, and losing up to `R-1` servers loses none;
/// the [session-cluster crate docs](https://docs.rs/session-cluster) say
/// exactly what is guaranteed.
///
/// From config, `[store] kind = "cluster"` (see
/// [`StoreConfig`](crate::config::StoreConfig)) works with
/// [`build_manager`] like any kind; [`cluster::build_manager`] also
/// returns the node, for its [`stats`](cluster::ClusterStore::stats) and
/// for [`shutdown`](cluster::ClusterStore::shutdown).
///
/// ```no_run
/// # #[cfg(feature = "axum")]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use session_kit::{config::SessionConfig, tower::SessionLayer};
///
/// let config = SessionConfig::load("session.toml")?; // + SESSION__STORE__NODE_ID, …
/// let (manager, node) = session_kit::cluster::build_manager(&config).await?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(SessionLayer::new(manager));
/// // … serve until SIGTERM, then hand this node's sessions over, and leave:
/// node.shutdown(Duration::from_secs(10)).await;
/// # let _ = app; Ok(()) }
/// # fn main() {}
/// ```
#[cfg(feature = "cluster")]
pub mod cluster {
    pub use session_cluster::*;

    use crate::{config::SessionConfig, BuildError, SessionManager};

    /// Builds the [`SessionManager`] of a config whose `[store]` is a
    /// cluster node, as [`build_manager`](crate::build_manager) does, and
    /// returns the node too: its [`members`](ClusterStore::members) and
    /// [`stats`](ClusterStore::stats) for a status page, and
    /// [`shutdown`](ClusterStore::shutdown) for when the process is asked
    /// to stop, which hands this node's sessions to the others before it
    /// leaves (a node that just exits is noticed as dead about a second
    /// later, and its writes fail with the error policy until then).
    ///
    /// The node starts at once and serves sessions once it sees a majority
    /// of `cluster_size`; [`wait_for_members`](ClusterStore::wait_for_members)
    /// waits for that.
    ///
    /// # Errors
    /// As [`build_manager`](crate::build_manager); also a [`BuildError::Config`]
    /// for `store.kind` when the store is not a cluster, and a
    /// [`BuildError::Start`] for `store.listen` when the port is taken.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), session_kit::BuildError> {
    /// use std::time::Duration;
    /// use session_kit::config::SessionConfig;
    ///
    /// // A cluster of one on a free port: a majority of one is itself.
    /// let config = SessionConfig::from_toml(r#"
    ///     [cookie]
    ///     secret = "a secret of at least thirty-two bytes, from a vault"
    ///     [store]
    ///     kind = "cluster"
    ///     node_id = "a"
    ///     listen = "127.0.0.1:0"
    ///     cluster_size = 1
    ///     cluster_secret = "another secret, shared by every node of the cluster"
    /// "#)?;
    /// let (manager, node) = session_kit::cluster::build_manager(&config).await?;
    /// assert!(node.wait_for_members(1, Duration::from_secs(5)).await);
    /// assert_eq!(node.members(), ["a"]);
    /// # let _ = manager;
    /// node.shutdown(Duration::from_secs(5)).await;
    /// # Ok(()) }
    /// ```
    pub async fn build_manager(
        config: &SessionConfig,
    ) -> Result<(SessionManager, ClusterStore), BuildError> {
        crate::build::build_cluster_manager(config).await
    }
}

/// Actix-web support: the [`SessionMiddleware`](actix::SessionMiddleware)
/// and the [`Session`](actix::Session) extractor.
#[cfg(feature = "actix")]
pub mod actix {
    pub use session_actix::*;
}

/// Tower and Axum support: the [`SessionLayer`](tower::SessionLayer), and
/// with the `axum` feature the [`Session`](tower::Session) extractor.
#[cfg(feature = "tower")]
pub mod tower {
    pub use session_tower::*;
}

/// tower-sessions interop: [`TowerSessionsStore`](tower_sessions::TowerSessionsStore)
/// runs tower-sessions apps, axum-login and axum-messages among them, on
/// any session-kit store. Its docs state which guarantees carry over.
#[cfg(feature = "tower-sessions")]
pub mod tower_sessions {
    pub use session_tower_sessions::*;
}
