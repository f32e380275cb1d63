//! From a [`SessionConfig`] to a running stack: stores connected, failover
//! and near-cache wrapped around them, the manager, and the framework's
//! layer or middleware.

use std::sync::Arc;

#[cfg(any(feature = "redis", feature = "memcached", feature = "postgres"))]
use crate::config::OnUnreachable;
use crate::{
    config::{SessionConfig, StoreConfig, StoreKind},
    store::{BoxError, SessionStore},
    ConfigError, KeyRing, SessionManager, StoreError,
};

/// Why the session stack could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A value in the config cannot work; the error names its key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A store's server did not answer at start-up and its block says
    /// `on_unreachable = "fail"` (the default).
    #[error(
        "invalid session config `{key}`: the {kind} store did not answer at start-up ({cause}); \
         check its address, or set {key}.on_unreachable = \"start_degraded\" to start without it"
    )]
    Unreachable {
        /// The store block: `store` or `failover.secondary`.
        key: String,
        /// Its kind.
        kind: StoreKind,
        /// The error and its causes, as one line.
        cause: String,
        /// The connect error.
        #[source]
        source: StoreError,
    },
    /// A store that runs inside this process could not start: a cluster
    /// node whose port is taken (`key` is then `store.listen`), or one built
    /// outside a tokio runtime.
    #[error("invalid session config `{key}`: the {kind} store could not start ({cause})")]
    Start {
        /// The setting to look at: `store.listen`, or the store block.
        key: String,
        /// The store's kind.
        kind: StoreKind,
        /// The error and its causes, as one line.
        cause: String,
        /// The start error.
        #[source]
        source: BoxError,
    },
}

impl BuildError {
    /// The config key the error is about.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Self::Config(err) => err.key(),
            Self::Unreachable { key, .. } | Self::Start { key, .. } => key,
        }
    }
}

/// Builds the store that `config` describes: connects to its servers, puts
/// the failover secondary behind it and the near-cache in front of it.
///
/// # Errors
/// [`BuildError::Config`] when the store blocks are invalid (checked in
/// full before anything connects; the cookie is not needed here),
/// [`BuildError::Unreachable`] when a server does not answer and its block
/// does not allow starting degraded, and [`BuildError::Start`] when a
/// cluster node cannot listen on `store.listen`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), session_kit::BuildError> {
/// use session_kit::config::SessionConfig;
///
/// let config = SessionConfig::from_toml(r#"
///     [store]
///     kind = "memory"
///     max_capacity = 10000
/// "#)?;
/// let store = session_kit::build_store(&config).await?;
/// # let _ = store; Ok(()) }
/// ```
pub async fn build_store(config: &SessionConfig) -> Result<Arc<dyn SessionStore>, BuildError> {
    config.validate_stores()?;
    build_validated_store(config).await
}

async fn build_validated_store(
    config: &SessionConfig,
) -> Result<Arc<dyn SessionStore>, BuildError> {
    // Boxed: unboxed, the connect futures nest so deeply that an app
    // awaiting `build_manager` hits rustc's query-depth limit ("queries
    // overflow the depth limit") in its own crate.
    let primary = Box::pin(backend(&config.store, "store")).await?;
    wrap_primary(config, primary).await
}

/// Puts the failover secondary behind `store` and the near-cache in front.
async fn wrap_primary(
    config: &SessionConfig,
    mut store: Arc<dyn SessionStore>,
) -> Result<Arc<dyn SessionStore>, BuildError> {
    if let Some(failover) = &config.failover {
        let secondary = Box::pin(backend(&failover.secondary, "failover.secondary")).await?;
        store = Arc::new(
            crate::failover::FailoverStore::builder(store, secondary)
                .with_config(failover.config.clone())
                .build()?,
        );
    }
    if let Some(near) = &config.near_cache {
        store = near_cache(near.max_bytes, store);
    }
    Ok(store)
}

#[cfg(feature = "memory")]
fn near_cache(max_bytes: u64, far: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
    Arc::new(crate::memory::TieredStore::new(
        crate::memory::NearCache::new().with_max_bytes(max_bytes),
        far,
    ))
}

#[cfg(not(feature = "memory"))]
fn near_cache(_: u64, _: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
    unreachable!("validate refuses [near_cache] without the memory feature")
}

/// Builds the [`SessionManager`] that `config` describes, store included.
///
/// # Errors
/// As [`build_store`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), session_kit::BuildError> {
/// use session_kit::config::SessionConfig;
///
/// let config = SessionConfig::from_toml(r#"
///     idle_timeout = "20m"
///     [cookie]
///     name = "sid"
///     secret = "a secret of at least thirty-two bytes, from a vault"
/// "#)?;
/// let manager = session_kit::build_manager(&config).await?;
/// assert_eq!(manager.codec().name(), "sid");
/// # Ok(()) }
/// ```
pub async fn build_manager(config: &SessionConfig) -> Result<SessionManager, BuildError> {
    let keys = validated_for_manager(config)?;
    let store = build_validated_store(config).await?;
    #[allow(unused_mut)] // without `migrate` nothing is added
    let mut builder = SessionManager::builder(store, keys).with_config(config.manager_config());
    #[cfg(feature = "migrate")]
    if let Some(migrate) = &config.migrate {
        // Boxed, as the stores are: see `build_validated_store`.
        builder = builder.with_legacy_sessions(Box::pin(legacy_sessions(config, migrate)).await?);
    }
    Ok(builder.build()?)
}

/// The `[migrate]` block's reader of the old library's sessions, on its
/// own connection to the Redis that holds them (`migrate.url`, else the
/// store's). Unlike a store, it has no degraded start: an app that cannot
/// read the old sessions would log every old user out.
#[cfg(feature = "migrate")]
async fn legacy_sessions(
    config: &SessionConfig,
    migrate: &crate::config::MigrateSection,
) -> Result<session_redis::migrate::LegacyRedisSessions, BuildError> {
    let redis = match (&migrate.url, &config.store) {
        (Some(url), _) => session_redis::RedisConfig::from_url(url)
            .map_err(|err| ConfigError::new("migrate.url", err.reason().to_owned()))?,
        (None, StoreConfig::Redis { config, .. }) => config.clone(),
        // `validate_stores` asks for `migrate.url` first.
        (None, _) => {
            return Err(
                ConfigError::new("migrate.url", "is required when [store] is not Redis").into(),
            )
        }
    };
    let store = session_redis::RedisStore::connect(redis)
        .await
        .map_err(|source| BuildError::Unreachable {
            key: "migrate".to_owned(),
            kind: StoreKind::Redis,
            cause: source.to_line(),
            source,
        })?;
    Ok(
        session_redis::migrate::LegacyRedisSessions::new(&store, migrate.config.clone()).map_err(
            |err| ConfigError::new(format!("migrate.{}", err.key()), err.reason().to_owned()),
        )?,
    )
}

/// Checks everything before the first connect, so a typo is not reported
/// only after a slow, failing connect.
fn validated_for_manager(config: &SessionConfig) -> Result<KeyRing, BuildError> {
    let keys = config.validated()?;
    if config.cookie.generate_secret {
        tracing::warn!(
            target: "session_kit::config",
            "cookie.generate_secret is on: sessions end when this process restarts and \
             other servers will not accept its cookies; set cookie.secret for production"
        );
    }
    Ok(keys)
}

/// The tower [`SessionLayer`](crate::tower::SessionLayer) that `config`
/// describes: one call from a config file to a layer for axum or any tower
/// server.
///
/// # Errors
/// As [`build_store`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("session-kit-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # std::env::set_current_dir(&dir)?;
/// # std::fs::write("session.toml", "[cookie]\nsecret = \"a secret of at least thirty-two bytes, from a vault\"\n")?;
/// use axum::{routing::get, Router};
/// use session_kit::{config::SessionConfig, tower::{Error, Session}};
///
/// async fn hello(session: Session) -> Result<&'static str, Error> {
///     session.insert("seen", true).await?;
///     Ok("hello")
/// }
///
/// let config = SessionConfig::load("session.toml")?;
/// let app: Router = Router::new()
///     .route("/", get(hello))
///     .layer(session_kit::tower_layer(&config).await?);
/// # let _ = app; std::fs::remove_dir_all(&dir)?; Ok(()) }
/// ```
#[cfg(feature = "tower")]
pub async fn tower_layer(config: &SessionConfig) -> Result<crate::tower::SessionLayer, BuildError> {
    Ok(crate::tower::SessionLayer::new(
        build_manager(config).await?,
    ))
}

/// The actix-web [`SessionMiddleware`](crate::actix::SessionMiddleware)
/// that `config` describes. Build it once, before `HttpServer::new`, and
/// clone it into each worker: the workers then share one store connection.
///
/// # Errors
/// As [`build_store`].
///
/// ```
/// # #[actix_web::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = std::env::temp_dir().join(format!("session-kit-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// # std::env::set_current_dir(&dir)?;
/// # std::fs::write("session.toml", "[cookie]\nsecret = \"a secret of at least thirty-two bytes, from a vault\"\n")?;
/// use actix_web::{web, App, HttpServer};
/// use session_kit::config::SessionConfig;
///
/// let config = SessionConfig::load("session.toml")?;
/// let sessions = session_kit::actix_middleware(&config).await?; // once, shared by every worker
/// let server = HttpServer::new(move || {
///     App::new()
///         .wrap(sessions.clone())
///         .route("/", web::get().to(|| async { "hello" }))
/// });
/// # let _ = server; std::fs::remove_dir_all(&dir)?; Ok(()) }
/// ```
#[cfg(feature = "actix")]
pub async fn actix_middleware(
    config: &SessionConfig,
) -> Result<crate::actix::SessionMiddleware, BuildError> {
    Ok(crate::actix::SessionMiddleware::new(
        build_manager(config).await?,
    ))
}

/// Connects the backend of one store block.
async fn backend(block: &StoreConfig, path: &str) -> Result<Arc<dyn SessionStore>, BuildError> {
    match block {
        #[cfg(feature = "memory")]
        StoreConfig::Memory(config) => Ok(Arc::new(StoreConfig::memory_store(config))),
        #[cfg(feature = "redis")]
        StoreConfig::Redis { config, .. } => {
            let config = config.clone();
            connect(block, path, move || {
                session_redis::RedisStore::connect(config.clone())
            })
            .await
        }
        #[cfg(feature = "memcached")]
        StoreConfig::Memcached { config, .. } => {
            let config = config.clone();
            connect(block, path, move || {
                session_memcached::MemcachedStore::connect(config.clone())
            })
            .await
        }
        #[cfg(feature = "postgres")]
        StoreConfig::Postgres { config, .. } => {
            let config = config.clone();
            connect(block, path, move || {
                session_postgres::PostgresStore::connect(config.clone())
            })
            .await
        }
        #[cfg(feature = "cluster")]
        StoreConfig::Cluster(config) => Ok(Arc::new(start_cluster(config, path).await?)),
        // Validation refuses a memory block without its feature first;
        // answer the same if it ever did not.
        #[allow(unreachable_patterns)]
        _ => Err(block
            .validate(path)
            .err()
            .unwrap_or_else(|| ConfigError::new(format!("{path}.kind"), "is not compiled in"))
            .into()),
    }
}

/// Connects once; on failure either fails or, when the block allows it,
/// starts a [`LazyStore`](crate::lazy::LazyStore) that keeps trying.
#[cfg(any(feature = "redis", feature = "memcached", feature = "postgres"))]
async fn connect<S, F, Fut>(
    block: &StoreConfig,
    path: &str,
    connect: F,
) -> Result<Arc<dyn SessionStore>, BuildError>
where
    S: SessionStore,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<S, StoreError>> + Send + 'static,
{
    let source = match connect().await {
        Ok(store) => return Ok(Arc::new(store)),
        Err(err) => err,
    };
    let cause = source.to_line();
    match block.on_unreachable() {
        OnUnreachable::Fail => Err(BuildError::Unreachable {
            key: path.to_owned(),
            kind: block.kind(),
            cause,
            source,
        }),
        OnUnreachable::StartDegraded => {
            tracing::warn!(
                target: "session_kit::config",
                store = path,
                kind = %block.kind(),
                error = %cause,
                "store did not answer at start-up; starting degraded and connecting in the background"
            );
            let lazy = crate::lazy::LazyStore::builder(format!("{path} ({})", block.kind()))
                // Memcached cannot index owners; a failover pair over it
                // must refuse "log out everywhere" before it connects, as
                // after.
                .with_indexes_owners(block.kind() != StoreKind::Memcached)
                // Labelled as the store it connects, before and after.
                .with_kind(block.kind().name())
                .connect_in_background(connect)
                .map_err(|err| {
                    ConfigError::new(
                        format!("{path}.on_unreachable"),
                        format!("cannot start degraded: {}", err.to_line()),
                    )
                })?;
            Ok(Arc::new(lazy))
        }
    }
}

/// Starts the cluster node a block describes. It returns at once: the node
/// joins its seeds in the background and serves once it sees a quorum.
#[cfg(feature = "cluster")]
async fn start_cluster(
    config: &session_cluster::ClusterConfig,
    path: &str,
) -> Result<session_cluster::ClusterStore, BuildError> {
    use session_cluster::{ClusterError, ClusterStore};

    let start_error = |key: String, err: BoxError| BuildError::Start {
        key,
        kind: StoreKind::Cluster,
        cause: err.to_string(),
        source: err,
    };
    // Resolving seeds needs the runtime as much as the node does; without
    // one, tokio's resolver would panic instead of returning an error.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(start_error(path.to_owned(), ClusterError::NoRuntime.into()));
    }
    let (expected, quorum) = (config.expected_cluster_size(), config.quorum());
    let store = ClusterStore::start(config.clone())
        .await
        .map_err(|err| match err {
            ClusterError::Config(err) => BuildError::Config(nest_cluster(path, &err)),
            err @ ClusterError::Bind { .. } => start_error(format!("{path}.listen"), err.into()),
            err => start_error(path.to_owned(), err.into()),
        })?;
    tracing::info!(
        target: "session_kit::config",
        store = path,
        node = store.node_id(),
        addr = %store.local_addr(),
        cluster_size = expected,
        quorum,
        "cluster node started; it serves sessions once it sees a quorum of members"
    );
    Ok(store)
}

/// A cluster error, keyed under the block's `path`; the node calls its
/// secret `secret`, which the block spells `cluster_secret`.
#[cfg(feature = "cluster")]
fn nest_cluster(path: &str, err: &ConfigError) -> ConfigError {
    let option = match err.key() {
        "secret" => "cluster_secret",
        other => other,
    };
    ConfigError::new(format!("{path}.{option}"), err.reason().to_owned())
}

/// The manager of a `[store] kind = "cluster"` config, and the node's
/// handle: see [`cluster::build_manager`](crate::cluster::build_manager).
#[cfg(feature = "cluster")]
pub(crate) async fn build_cluster_manager(
    config: &SessionConfig,
) -> Result<(SessionManager, session_cluster::ClusterStore), BuildError> {
    let keys = validated_for_manager(config)?;
    let StoreConfig::Cluster(cluster) = &config.store else {
        return Err(ConfigError::new(
            "store.kind",
            format!(
                "is `{}`; cluster::build_manager builds a cluster node, so it needs \
                 store.kind = \"cluster\" (build_manager builds any kind)",
                config.store.kind()
            ),
        )
        .into());
    };
    let node = Box::pin(start_cluster(cluster, "store")).await?;
    let store = wrap_primary(config, Arc::new(node.clone())).await?;
    let manager = SessionManager::builder(store, keys)
        .with_config(config.manager_config())
        .build()?;
    Ok((manager, node))
}
