//! The `[store]` block (and `[failover.secondary]`, which has the same
//! shape): which backend, and its options.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::de::{self, Endpoint, Secret};
use crate::ConfigError;

/// Which backend holds the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// In-process memory ([`MemoryStore`](crate::MemoryStore)); needs the
    /// `memory` feature.
    Memory,
    /// Redis standalone, Sentinel or Cluster; needs the `redis` feature.
    Redis,
    /// One or several Memcached servers; needs the `memcached` feature.
    Memcached,
    /// Sessions replicated in the app servers' own memory
    /// ([`ClusterStore`](https://docs.rs/session-cluster)); needs the
    /// `cluster` feature.
    Cluster,
}

impl StoreKind {
    /// The name written in config, which is also the Cargo feature that
    /// compiles the backend in.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
            Self::Memcached => "memcached",
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
            Self::Cluster => cfg!(feature = "cluster"),
        }
    }

    /// Whether a session can live in another process.
    fn is_remote(self) -> bool {
        !matches!(self, Self::Memory)
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
    /// ([`LazyStore`](crate::LazyStore)). Until the server answers, requests
    /// get the [error policy](crate::ErrorPolicy) — or, for the primary of
    /// a failover pair, the secondary.
    StartDegraded,
}

/// One store block: `kind` and the options of that kind. Setting an option
/// that belongs to another kind is an error, not silently ignored.
///
/// | key | kinds | meaning |
/// |---|---|---|
/// | `kind` | — | `memory`, `redis`, `memcached` or `cluster` (required) |
/// | `key_prefix` | all | prefix of every session key (default `session:`) |
/// | `max_capacity` | memory, cluster | most sessions held (default 100 000; cluster: 1 000 000 per node, tombstones included) |
/// | `operation_timeout` | redis, memcached, cluster | bound on one store call (default 500 ms; cluster: 1.5 s, the hop to the owner and the copy to the backups included) |
/// | `connect_timeout` | redis, memcached, cluster | bound on opening a connection (default 1 s; cluster: 300 ms, to a peer) |
/// | `on_unreachable` | redis, memcached | `fail` (default) or `start_degraded` |
/// | `url` | redis, memcached | `redis://…`, `redis+sentinel://…`, `redis+cluster://…`, `memcache://h1:p,h2:p` |
/// | `sentinels`, `service_name` | redis | Sentinel addresses and the master's name, instead of `url` |
/// | `username`, `password`, `db` | redis | the Sentinel master's credentials and database |
/// | `nodes` | redis | Cluster seed nodes, instead of `url` |
/// | `servers` | memcached | `host:port` list, instead of `url` |
/// | `pool_size`, `max_connections`, `item_size_limit`, `commit_attempts` | memcached | see [`MemcachedConfig`](https://docs.rs/session-memcached) |
/// | `node_id` | cluster | this node's name, unique in the cluster (required) |
/// | `listen` | cluster | `ip:port` for the peer link (TCP) and membership (UDP), one port (required) |
/// | `advertise` | cluster | `ip:port` peers reach this node at, when not `listen` (required when `listen` is `0.0.0.0`) |
/// | `seeds` | cluster | `host:port` list of peers to join through; listing every node, this one included, lets every node share one list |
/// | `cluster_secret`, `cluster_secret_file` | cluster | exactly one: the peer link's shared secret, at least 32 bytes, not the cookie secret |
/// | `replication_factor` | cluster | copies of each session (default 2) |
/// | `cluster_size` | cluster | nodes the cluster is meant to have; a node serves only while it sees a majority (default: the distinct seeds, this node included) |
/// | `max_in_flight_per_peer`, `settle_time`, `anti_entropy_interval`, `probe_period`, `suspect_timeout` | cluster | see [`ClusterConfig`](https://docs.rs/session-cluster) |
///
/// A cluster node has no `on_unreachable`: it always starts, with or
/// without its peers, and answers every request with the error policy (a
/// 503 by default) until it sees a majority of `cluster_size`. Seeds given
/// by host name are resolved once, when the store is built; each name
/// counts as one node (the first address of `listen`'s family), so
/// `localhost:7402` does not count twice for IPv4 and IPv6.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Which backend.
    pub kind: StoreKind,
    /// The prefix of every session key.
    pub key_prefix: Option<String>,
    /// The bound on one store call.
    #[serde(default, deserialize_with = "de::optional_duration")]
    pub operation_timeout: Option<Duration>,
    /// The bound on opening one connection.
    #[serde(default, deserialize_with = "de::optional_duration")]
    pub connect_timeout: Option<Duration>,
    /// What start-up does when the server cannot be reached.
    pub on_unreachable: Option<OnUnreachable>,
    /// Memory: the most sessions held.
    pub max_capacity: Option<u64>,
    /// Redis or Memcached: one URL naming the server(s).
    pub url: Option<Endpoint>,
    /// Redis Sentinel: the sentinels' URLs.
    pub sentinels: Option<Vec<Endpoint>>,
    /// Redis Sentinel: the name the master is monitored under.
    pub service_name: Option<String>,
    /// Redis Sentinel: the master's ACL user.
    pub username: Option<String>,
    /// Redis Sentinel: the master's password.
    pub password: Option<Secret>,
    /// Redis Sentinel: the master's database number.
    pub db: Option<i64>,
    /// Redis Cluster: seed nodes' URLs.
    pub nodes: Option<Vec<Endpoint>>,
    /// Memcached: the servers as `host:port`.
    pub servers: Option<Vec<Endpoint>>,
    /// Memcached: idle connections kept per server.
    pub pool_size: Option<usize>,
    /// Memcached: cap on connections per server.
    pub max_connections: Option<usize>,
    /// Memcached: the largest item written, in bytes.
    pub item_size_limit: Option<usize>,
    /// Memcached: CAS retries per commit.
    pub commit_attempts: Option<u32>,
    /// Cluster: this node's name.
    #[serde(default, deserialize_with = "de::optional_name")]
    pub node_id: Option<String>,
    /// Cluster: the address of the peer link (TCP) and membership (UDP).
    #[serde(default, deserialize_with = "de::optional_socket_addr")]
    pub listen: Option<SocketAddr>,
    /// Cluster: the address peers reach this node at, when not `listen`.
    #[serde(default, deserialize_with = "de::optional_socket_addr")]
    pub advertise: Option<SocketAddr>,
    /// Cluster: peers to join through, as `host:port`.
    pub seeds: Option<Vec<String>>,
    /// Cluster: the secret every node shares.
    pub cluster_secret: Option<Secret>,
    /// Cluster: a file holding the secret every node shares.
    pub cluster_secret_file: Option<PathBuf>,
    /// Cluster: copies of each session.
    pub replication_factor: Option<usize>,
    /// Cluster: the nodes the cluster is meant to have.
    pub cluster_size: Option<usize>,
    /// Cluster: the most calls in flight to one peer.
    pub max_in_flight_per_peer: Option<usize>,
    /// Cluster: how long after a membership change owners also ask the
    /// other nodes for a session.
    #[serde(default, deserialize_with = "de::optional_duration")]
    pub settle_time: Option<Duration>,
    /// Cluster: how often each node repairs missing copies.
    #[serde(default, deserialize_with = "de::optional_duration")]
    pub anti_entropy_interval: Option<Duration>,
    /// Cluster: how often membership probes a peer.
    #[serde(default, deserialize_with = "de::optional_duration")]
    pub probe_period: Option<Duration>,
    /// Cluster: how long a silent peer stays suspect before it is dead.
    #[serde(default, deserialize_with = "de::optional_duration")]
    pub suspect_timeout: Option<Duration>,
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only what is set, so a logged config reads like the file it came
        // from; `Endpoint` and `Secret` redact themselves.
        let mut out = f.debug_struct("StoreConfig");
        out.field("kind", &self.kind);
        macro_rules! set_fields {
            ($($field:ident),*) => {$(
                if let Some(value) = &self.$field {
                    out.field(stringify!($field), value);
                }
            )*};
        }
        set_fields!(
            key_prefix,
            operation_timeout,
            connect_timeout,
            on_unreachable,
            max_capacity,
            url,
            sentinels,
            service_name,
            username,
            password,
            db,
            nodes,
            servers,
            pool_size,
            max_connections,
            item_size_limit,
            commit_attempts,
            node_id,
            listen,
            advertise,
            seeds,
            cluster_secret,
            cluster_secret_file,
            replication_factor,
            cluster_size,
            max_in_flight_per_peer,
            settle_time,
            anti_entropy_interval,
            probe_period,
            suspect_timeout
        );
        out.finish()
    }
}

/// Applies the options every remote kind shares. Both backend configs name
/// these setters alike, so one definition serves both.
#[cfg(any(feature = "redis", feature = "memcached"))]
macro_rules! with_common_options {
    ($config:expr, $block:expr) => {{
        let mut config = $config;
        if let Some(prefix) = &$block.key_prefix {
            config = config.with_key_prefix(prefix.clone());
        }
        if let Some(timeout) = $block.operation_timeout {
            config = config.with_operation_timeout(timeout);
        }
        if let Some(timeout) = $block.connect_timeout {
            config = config.with_connect_timeout(timeout);
        }
        config
    }};
}

use StoreKind::{Cluster, Memcached, Memory, Redis};

impl StoreConfig {
    /// A block of `kind` with every option at its default.
    #[must_use]
    pub fn new(kind: StoreKind) -> Self {
        Self {
            kind,
            key_prefix: None,
            operation_timeout: None,
            connect_timeout: None,
            on_unreachable: None,
            max_capacity: None,
            url: None,
            sentinels: None,
            service_name: None,
            username: None,
            password: None,
            db: None,
            nodes: None,
            servers: None,
            pool_size: None,
            max_connections: None,
            item_size_limit: None,
            commit_attempts: None,
            node_id: None,
            listen: None,
            advertise: None,
            seeds: None,
            cluster_secret: None,
            cluster_secret_file: None,
            replication_factor: None,
            cluster_size: None,
            max_in_flight_per_peer: None,
            settle_time: None,
            anti_entropy_interval: None,
            probe_period: None,
            suspect_timeout: None,
        }
    }

    /// The options that are set, each with the kinds it belongs to.
    fn set_options(&self) -> [(&'static str, bool, &'static [StoreKind]); 30] {
        const ALL: &[StoreKind] = &[Memory, Redis, Memcached, Cluster];
        const REMOTE: &[StoreKind] = &[Redis, Memcached, Cluster];
        // The kinds that connect to a server of their own, which can be down
        // when the app starts.
        const SERVER: &[StoreKind] = &[Redis, Memcached];
        [
            ("key_prefix", self.key_prefix.is_some(), ALL),
            (
                "operation_timeout",
                self.operation_timeout.is_some(),
                REMOTE,
            ),
            ("connect_timeout", self.connect_timeout.is_some(), REMOTE),
            ("on_unreachable", self.on_unreachable.is_some(), SERVER),
            (
                "max_capacity",
                self.max_capacity.is_some(),
                &[Memory, Cluster],
            ),
            ("url", self.url.is_some(), SERVER),
            ("sentinels", self.sentinels.is_some(), &[Redis]),
            ("service_name", self.service_name.is_some(), &[Redis]),
            ("username", self.username.is_some(), &[Redis]),
            ("password", self.password.is_some(), &[Redis]),
            ("db", self.db.is_some(), &[Redis]),
            ("nodes", self.nodes.is_some(), &[Redis]),
            ("servers", self.servers.is_some(), &[Memcached]),
            ("pool_size", self.pool_size.is_some(), &[Memcached]),
            (
                "max_connections",
                self.max_connections.is_some(),
                &[Memcached],
            ),
            (
                "item_size_limit",
                self.item_size_limit.is_some(),
                &[Memcached],
            ),
            (
                "commit_attempts",
                self.commit_attempts.is_some(),
                &[Memcached],
            ),
            ("node_id", self.node_id.is_some(), &[Cluster]),
            ("listen", self.listen.is_some(), &[Cluster]),
            ("advertise", self.advertise.is_some(), &[Cluster]),
            ("seeds", self.seeds.is_some(), &[Cluster]),
            ("cluster_secret", self.cluster_secret.is_some(), &[Cluster]),
            (
                "cluster_secret_file",
                self.cluster_secret_file.is_some(),
                &[Cluster],
            ),
            (
                "replication_factor",
                self.replication_factor.is_some(),
                &[Cluster],
            ),
            ("cluster_size", self.cluster_size.is_some(), &[Cluster]),
            (
                "max_in_flight_per_peer",
                self.max_in_flight_per_peer.is_some(),
                &[Cluster],
            ),
            ("settle_time", self.settle_time.is_some(), &[Cluster]),
            (
                "anti_entropy_interval",
                self.anti_entropy_interval.is_some(),
                &[Cluster],
            ),
            ("probe_period", self.probe_period.is_some(), &[Cluster]),
            (
                "suspect_timeout",
                self.suspect_timeout.is_some(),
                &[Cluster],
            ),
        ]
    }

    /// The error for a block whose kind this build lacks.
    pub(crate) fn not_compiled_in(&self, path: &str) -> ConfigError {
        let kind = self.kind;
        ConfigError::new(
            format!("{path}.kind"),
            format!(
                "store kind `{kind}` needs the Cargo feature `{kind}`; \
                 enable it with session-kit = {{ features = [\"{kind}\"] }}"
            ),
        )
    }

    /// What start-up does when the server is down.
    #[must_use]
    pub fn on_unreachable(&self) -> OnUnreachable {
        self.on_unreachable.unwrap_or_default()
    }

    /// Checks everything that needs no network, naming keys under `path`
    /// (`store` or `failover.secondary`).
    pub(crate) fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if !self.kind.is_compiled_in() {
            return Err(self.not_compiled_in(path));
        }
        for (option, set, kinds) in self.set_options() {
            if set && !kinds.contains(&self.kind) {
                let owners = kinds.iter().map(|kind| kind.name()).collect::<Vec<_>>();
                // The one option a cluster user is likely to reach for by
                // habit gets the reason it does not apply.
                let why = if (option, self.kind) == ("on_unreachable", Cluster) {
                    "; a cluster node always starts, and answers with the error policy until it \
                     sees a majority of cluster_size"
                } else {
                    ""
                };
                return Err(ConfigError::new(
                    format!("{path}.{option}"),
                    format!(
                        "is an option of store kind {}, not of `{}`{why}",
                        owners.join(" or "),
                        self.kind
                    ),
                ));
            }
        }
        match self.kind {
            Memory => self.validate_memory(path),
            #[cfg(feature = "redis")]
            Redis => self.redis_config(path).map(drop),
            #[cfg(feature = "memcached")]
            Memcached => self.memcached_config(path).map(drop),
            #[cfg(feature = "cluster")]
            Cluster => self.validate_cluster(path),
            #[allow(unreachable_patterns)] // a kind not compiled in: refused above
            _ => Ok(()),
        }
    }

    fn validate_memory(&self, path: &str) -> Result<(), ConfigError> {
        if self.max_capacity == Some(0) {
            return Err(ConfigError::new(
                format!("{path}.max_capacity"),
                "must be at least 1 session",
            ));
        }
        Ok(())
    }

    /// The in-process store this block describes.
    #[cfg(feature = "memory")]
    pub(crate) fn memory_store(&self) -> crate::MemoryStore {
        let mut builder = crate::MemoryStore::builder();
        if let Some(capacity) = self.max_capacity {
            builder = builder.max_capacity(capacity);
        }
        if let Some(prefix) = &self.key_prefix {
            builder = builder.prefix(prefix.clone());
        }
        builder.build()
    }

    /// The Redis connection settings this block describes: exactly one of
    /// `url`, `sentinels` (with `service_name`) and `nodes`.
    #[cfg(feature = "redis")]
    pub(crate) fn redis_config(
        &self,
        path: &str,
    ) -> Result<session_redis::RedisConfig, ConfigError> {
        use session_redis::RedisConfig;

        let key = |option: &str| format!("{path}.{option}");
        let strings = |list: &[Endpoint]| {
            list.iter()
                .map(|e| e.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let given = [
            self.url.is_some(),
            self.sentinels.is_some(),
            self.nodes.is_some(),
        ];
        if given.iter().filter(|set| **set).count() != 1 {
            return Err(ConfigError::new(
                key("url"),
                "give exactly one of url (redis://, redis+sentinel:// or redis+cluster://), \
                 sentinels with service_name, or nodes",
            ));
        }
        let master_only = [
            ("service_name", self.service_name.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("db", self.db.is_some()),
        ];
        if self.sentinels.is_none() {
            if let Some((option, _)) = master_only.iter().find(|(_, set)| *set) {
                let url_variable =
                    format!("SESSION__{}__URL", path.replace('.', "__")).to_uppercase();
                return Err(ConfigError::new(
                    key(option),
                    format!(
                        "applies only with sentinels; for one server or a cluster put credentials \
                         and database in the URL (redis://user:password@host:6379/0), which \
                         {url_variable} can override"
                    ),
                ));
            }
        }
        let mut config = if let Some(url) = &self.url {
            RedisConfig::from_url(url.as_str()).map_err(|err| nest(path, &err))?
        } else if let Some(sentinels) = &self.sentinels {
            let service_name = self.service_name.clone().ok_or_else(|| {
                ConfigError::new(key("service_name"), "name the master the sentinels monitor")
            })?;
            let mut config = RedisConfig::sentinel(strings(sentinels), service_name)
                .with_master_auth(
                    self.username.clone(),
                    self.password.as_ref().map(|p| p.expose().to_owned()),
                );
            if let Some(db) = self.db {
                config = config.with_master_db(db);
            }
            config
        } else {
            RedisConfig::cluster(strings(self.nodes.as_deref().unwrap_or_default()))
        };
        config = with_common_options!(config, self);
        config.validate().map_err(|err| nest(path, &err))?;
        Ok(config)
    }

    /// The Memcached settings this block describes: `url` or `servers`.
    #[cfg(feature = "memcached")]
    pub(crate) fn memcached_config(
        &self,
        path: &str,
    ) -> Result<session_memcached::MemcachedConfig, ConfigError> {
        use session_memcached::MemcachedConfig;

        let mut config = match (&self.url, &self.servers) {
            (Some(url), None) => {
                MemcachedConfig::from_url(url.as_str()).map_err(|err| nest(path, &err))?
            }
            (None, Some(servers)) => {
                MemcachedConfig::new(servers.iter().map(|server| server.as_str().to_owned()))
            }
            _ => {
                return Err(ConfigError::new(
                    format!("{path}.servers"),
                    "give exactly one of servers (a list of host:port) and url (memcache://host:port,…)",
                ))
            }
        };
        config = with_common_options!(config, self);
        if let Some(size) = self.pool_size {
            config = config.with_pool_size(size);
        }
        if self.max_connections.is_some() {
            config = config.with_max_connections(self.max_connections);
        }
        if let Some(bytes) = self.item_size_limit {
            config = config.with_item_size_limit(bytes);
        }
        if let Some(attempts) = self.commit_attempts {
            config = config.with_commit_attempts(attempts);
        }
        config.validate().map_err(|err| nest(path, &err))?;
        Ok(config)
    }

    /// Whether a session can live in another process.
    pub(crate) fn is_remote(&self) -> bool {
        self.kind.is_remote()
    }
}

/// `err`, with its key moved under `path`: a backend's own config names its
/// keys relative to its block.
#[cfg(any(feature = "redis", feature = "memcached"))]
fn nest(path: &str, err: &ConfigError) -> ConfigError {
    ConfigError::new(format!("{path}.{}", err.key()), err.reason().to_owned())
}
