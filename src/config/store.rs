//! The `[store]` block (and `[failover.secondary]`, which has the same
//! shape): `kind`, then the options of that kind, read by the backend's
//! own config type.

use std::fmt;

use figment::value::Value;
use serde::{Deserialize, Deserializer};

use super::block::{fields_of, from_block, nest};
use crate::ConfigError;

/// Which backend holds the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In-process memory ([`MemoryStore`](crate::memory::MemoryStore)); needs
    /// the `memory` feature.
    Memory,
    /// Redis standalone, Sentinel or Cluster; needs the `redis` feature.
    Redis,
    /// One or several Memcached servers; needs the `memcached` feature.
    Memcached,
    /// A PostgreSQL table; needs the `postgres` feature.
    Postgres,
    /// Sessions replicated in the app servers' own memory
    /// ([`ClusterStore`](https://docs.rs/session-cluster)); needs the
    /// `cluster` feature.
    Cluster,
}

impl StoreKind {
    /// Every kind, in the order the docs list them.
    const ALL: [Self; 5] = [
        Self::Memory,
        Self::Redis,
        Self::Memcached,
        Self::Postgres,
        Self::Cluster,
    ];

    /// The name written in config, which is also the Cargo feature that
    /// compiles the backend in.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Memcached => "memcached",
            Self::Postgres => "postgres",
            Self::Cluster => "cluster",
        }
    }

    /// Whether this build has the backend.
    #[must_use]
    pub fn is_compiled_in(self) -> bool {
        match self {
            Self::Memory => cfg!(feature = "memory"),
            Self::Redis => cfg!(feature = "redis"),
            Self::Memcached => cfg!(feature = "memcached"),
            Self::Postgres => cfg!(feature = "postgres"),
            Self::Cluster => cfg!(feature = "cluster"),
        }
    }

    /// The options a block of this kind takes, as its config type reads
    /// them; `None` for a kind this build lacks.
    fn options(self) -> Option<Vec<&'static str>> {
        let mut options = match self {
            Self::Memory => fields_of::<MemoryConfig>(),
            #[cfg(feature = "redis")]
            Self::Redis => fields_of::<session_redis::RedisConfig>(),
            #[cfg(feature = "memcached")]
            Self::Memcached => fields_of::<session_memcached::MemcachedConfig>(),
            #[cfg(feature = "postgres")]
            Self::Postgres => fields_of::<session_postgres::PostgresConfig>(),
            #[cfg(feature = "cluster")]
            Self::Cluster => fields_of::<session_cluster::ClusterConfig>(),
            #[allow(unreachable_patterns)] // a kind not compiled in
            _ => return None,
        };
        if self.connects_at_start() {
            options.push(ON_UNREACHABLE);
        }
        Some(options)
    }

    /// Whether the backend connects to a server of its own, which can be
    /// down when the app starts (the kinds `on_unreachable` applies to).
    fn connects_at_start(self) -> bool {
        matches!(self, Self::Redis | Self::Memcached | Self::Postgres)
    }

    /// The error for a block whose kind this build lacks.
    fn not_compiled_in(self) -> ConfigError {
        ConfigError::new(
            "kind",
            format!(
                "store kind `{self}` needs the Cargo feature `{self}`; enable it with \
                 session-kit = {{ features = [\"{self}\"] }}"
            ),
        )
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The option the facade adds to the kinds that connect at start-up.
const ON_UNREACHABLE: &str = "on_unreachable";

/// What start-up does when a store's server cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnUnreachable {
    /// The default: building the stack fails with
    /// [`BuildError::Unreachable`](crate::BuildError::Unreachable), so a
    /// misconfigured deployment stops at once instead of serving 503s.
    #[default]
    Fail,
    /// Start anyway and keep connecting in the background
    /// ([`LazyStore`](crate::lazy::LazyStore)). Until the server answers,
    /// requests get the [error policy](crate::ErrorPolicy) — or, for the
    /// primary of a failover pair, the secondary.
    StartDegraded,
}

/// The options of a `memory` block.
///
/// | key | default |
/// |---|---|
/// | `max_capacity` | 100 000 sessions |
/// | `key_prefix` | `session:` |
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The most sessions held.
    pub max_capacity: Option<u64>,
    /// The prefix of every session key.
    pub key_prefix: Option<String>,
}

/// One store block: `kind`, then the options of that kind, each read and
/// checked by the backend's own config type. An option of another kind is
/// refused, naming the kinds it belongs to.
///
/// | `kind` | options |
/// |---|---|
/// | `memory` | see [`MemoryConfig`] |
/// | `redis` | see `RedisConfig` in [session-redis](https://docs.rs/session-redis): `url` (`redis://…`, `redis+sentinel://…`, `redis+cluster://…`), or `sentinels` with `service_name` (and `username`, `password`, `db`), or `nodes`; `key_prefix`, `operation_timeout`, `connect_timeout`; with the `tls` feature and `rediss://` URLs (`rediss+sentinel://`, `rediss+cluster://`), `tls_ca_cert_file` (PEM; default: the system's roots) and `tls_cert_file` with `tls_key_file` (PEM, for mutual TLS) |
/// | `memcached` | see `MemcachedConfig` in [session-memcached](https://docs.rs/session-memcached): `url` (`memcache://h1:p,h2:p`) or `servers`; `key_prefix`, `operation_timeout`, `connect_timeout`, `pool_size`, `max_connections`, `item_size_limit`, `commit_attempts` |
/// | `postgres` | see `PostgresConfig` in [session-postgres](https://docs.rs/session-postgres): `url` (`postgres://user:password@host/db`), `table` (default `sessions`), `pool_size`, `migrate` (default true), `key_prefix`, `operation_timeout`, `connect_timeout`, `sweep_interval`, `sweep_batch` |
/// | `cluster` | see `ClusterConfig` in [session-cluster](https://docs.rs/session-cluster): `node_id`, `listen`, `advertise`, `seeds`, `cluster_secret` or `cluster_secret_file`, `replication_factor`, `cluster_size`, `key_prefix`, `operation_timeout`, `connect_timeout`, `max_capacity`, `max_in_flight_per_peer`, `settle_time`, `anti_entropy_interval`, `probe_period`, `suspect_timeout` |
///
/// `redis`, `memcached` and `postgres` also take `on_unreachable`: `fail` (the
/// default) or `start_degraded` (see [`OnUnreachable`]). A cluster node has
/// no `on_unreachable`: it always starts, with or without its peers, and
/// answers every request with the error policy (a 503 by default) until it
/// sees a majority of `cluster_size`. Seeds given by host name are
/// resolved once, when the node starts; each name counts as one node.
// Read once at start-up and held by one config: the size of the largest
// backend's config costs nothing, and boxing it would show in every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StoreConfig {
    /// In-process memory; building it needs the `memory` feature.
    Memory(MemoryConfig),
    /// Redis: standalone, Sentinel or Cluster.
    #[cfg(feature = "redis")]
    Redis {
        /// Where the Redis is and how long to wait for it.
        config: session_redis::RedisConfig,
        /// What start-up does when it cannot be reached.
        on_unreachable: OnUnreachable,
    },
    /// One or several Memcached servers.
    #[cfg(feature = "memcached")]
    Memcached {
        /// Which servers, and how long to wait for them.
        config: session_memcached::MemcachedConfig,
        /// What start-up does when they cannot be reached.
        on_unreachable: OnUnreachable,
    },
    /// A PostgreSQL table.
    #[cfg(feature = "postgres")]
    Postgres {
        /// Which database and table, and how long to wait for them.
        config: session_postgres::PostgresConfig,
        /// What start-up does when the database cannot be reached.
        on_unreachable: OnUnreachable,
    },
    /// A node of a cluster that replicates sessions in the app servers'
    /// own memory.
    #[cfg(feature = "cluster")]
    Cluster(session_cluster::ClusterConfig),
}

impl Default for StoreConfig {
    /// A memory store with its defaults.
    fn default() -> Self {
        Self::Memory(MemoryConfig::default())
    }
}

impl StoreConfig {
    /// Which backend this block describes.
    #[must_use]
    pub fn kind(&self) -> StoreKind {
        match self {
            Self::Memory(_) => StoreKind::Memory,
            #[cfg(feature = "redis")]
            Self::Redis { .. } => StoreKind::Redis,
            #[cfg(feature = "memcached")]
            Self::Memcached { .. } => StoreKind::Memcached,
            #[cfg(feature = "postgres")]
            Self::Postgres { .. } => StoreKind::Postgres,
            #[cfg(feature = "cluster")]
            Self::Cluster(_) => StoreKind::Cluster,
        }
    }

    /// What start-up does when the server is down; always
    /// [`OnUnreachable::Fail`] for the kinds that have no server of their
    /// own.
    #[must_use]
    pub fn on_unreachable(&self) -> OnUnreachable {
        match self {
            #[cfg(feature = "redis")]
            Self::Redis { on_unreachable, .. } => *on_unreachable,
            #[cfg(feature = "memcached")]
            Self::Memcached { on_unreachable, .. } => *on_unreachable,
            #[cfg(feature = "postgres")]
            Self::Postgres { on_unreachable, .. } => *on_unreachable,
            _ => OnUnreachable::Fail,
        }
    }

    /// Whether a session can live in another process.
    pub(crate) fn is_remote(&self) -> bool {
        self.kind() != StoreKind::Memory
    }

    /// Checks what reading the block could not: that a memory block's
    /// backend is compiled in. Keys are named under `path` (`store` or
    /// `failover.secondary`).
    pub(crate) fn validate(&self, path: &str) -> Result<(), ConfigError> {
        match self {
            Self::Memory(_) if !cfg!(feature = "memory") => {
                Err(nest(path, &StoreKind::Memory.not_compiled_in()))
            }
            _ => Ok(()),
        }
    }

    /// The in-process store this block describes.
    #[cfg(feature = "memory")]
    pub(crate) fn memory_store(config: &MemoryConfig) -> crate::memory::MemoryStore {
        let mut builder = crate::memory::MemoryStore::builder();
        if let Some(capacity) = config.max_capacity {
            builder = builder.with_max_capacity(capacity);
        }
        if let Some(prefix) = &config.key_prefix {
            builder = builder.with_key_prefix(prefix.clone());
        }
        builder.build()
    }

    /// Reads a block: its `kind`, then the rest by that kind's config type.
    /// Keys in errors are relative to the block.
    pub(crate) fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let Some(block) = value.as_dict() else {
            return Err(ConfigError::new(
                "",
                format!(
                    "expected a table with a `kind`, found {}",
                    value.to_actual()
                ),
            ));
        };
        let kind: StoreKind = match block.get("kind") {
            Some(kind) => from_block(kind).map_err(|err| nest("kind", &err))?,
            None => {
                // A key no kind takes is the likelier mistake: name it first.
                let known = |key: &str| {
                    StoreKind::ALL
                        .into_iter()
                        .any(|kind| kind.options().is_some_and(|own| own.contains(&key)))
                };
                if let Some(unknown) = block.keys().find(|key| !known(key)) {
                    return Err(ConfigError::new(
                        unknown.clone(),
                        format!("unknown field `{unknown}`"),
                    ));
                }
                return Err(ConfigError::new("kind", "missing field `kind`"));
            }
        };
        let mut options = block.clone();
        options.remove("kind");
        // Every option must be one of this kind's: an option of another
        // kind is named with the kinds it belongs to.
        if let Some(own) = kind.options() {
            if let Some(option) = options.keys().find(|key| !own.contains(&key.as_str())) {
                return Err(other_kinds_option(kind, option));
            }
        }
        let on_unreachable = match options.remove(ON_UNREACHABLE) {
            Some(value) => from_block(&value).map_err(|err| nest(ON_UNREACHABLE, &err))?,
            None => OnUnreachable::default(),
        };
        let options = Value::from(options);
        #[cfg(not(any(feature = "redis", feature = "memcached", feature = "postgres")))]
        let _ = on_unreachable;
        match kind {
            StoreKind::Memory => {
                let config: MemoryConfig = from_block(&options)?;
                if config.max_capacity == Some(0) {
                    return Err(ConfigError::new(
                        "max_capacity",
                        "must be at least 1 session",
                    ));
                }
                Ok(Self::Memory(config))
            }
            #[cfg(feature = "redis")]
            StoreKind::Redis => Ok(Self::Redis {
                config: from_block(&options)?,
                on_unreachable,
            }),
            #[cfg(feature = "memcached")]
            StoreKind::Memcached => Ok(Self::Memcached {
                config: from_block(&options)?,
                on_unreachable,
            }),
            #[cfg(feature = "postgres")]
            StoreKind::Postgres => Ok(Self::Postgres {
                config: from_block(&options)?,
                on_unreachable,
            }),
            #[cfg(feature = "cluster")]
            StoreKind::Cluster => Ok(Self::Cluster(from_block(&options)?)),
            #[allow(unreachable_patterns)] // a kind not compiled in
            other => Err(other.not_compiled_in()),
        }
    }
}

/// The error for `option`, which a block of `kind` does not take: the kinds
/// that do take it, where this build knows them.
fn other_kinds_option(kind: StoreKind, option: &str) -> ConfigError {
    let owners: Vec<&str> = StoreKind::ALL
        .into_iter()
        .filter(|other| {
            other
                .options()
                .is_some_and(|options| options.contains(&option))
        })
        .map(StoreKind::name)
        .collect();
    if owners.is_empty() {
        let own = kind.options().unwrap_or_default();
        return ConfigError::new(
            option.to_owned(),
            format!(
                "unknown field `{option}`; a `{kind}` block takes {}",
                own.join(", ")
            ),
        );
    }
    // The one option a cluster user is likely to reach for by habit gets the
    // reason it does not apply.
    let why = if (option, kind) == (ON_UNREACHABLE, StoreKind::Cluster) {
        "; a cluster node always starts, and answers with the error policy until it sees a \
         majority of cluster_size"
    } else {
        ""
    };
    ConfigError::new(
        option.to_owned(),
        format!(
            "is an option of store kind {}, not of `{kind}`{why}",
            owners.join(" or ")
        ),
    )
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <Value as Deserialize>::deserialize(deserializer)?;
        Self::from_value(&value).map_err(ConfigError::into_de_error)
    }
}
