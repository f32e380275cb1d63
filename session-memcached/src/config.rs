//! Which Memcached servers hold the sessions, and how long to wait for them.

use std::time::Duration;

use memcache::exp::MAX_KEY_LENGTH;
use session_core::ConfigError;

/// The smallest item size limit that leaves room for a session.
const MIN_ITEM_SIZE_LIMIT: usize = 1024;

/// The length of a session id's text form.
const SESSION_ID_LEN: usize = 22;

/// How a [`MemcachedStore`](crate::MemcachedStore) reaches Memcached.
///
/// Build it in code,
///
/// ```
/// use std::time::Duration;
/// use session_memcached::MemcachedConfig;
///
/// let config = MemcachedConfig::new(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"])
///     .with_key_prefix("shop:session:")
///     .with_operation_timeout(Duration::from_millis(250))
///     .with_pool_size(16);
/// assert!(config.validate().is_ok());
/// ```
///
/// or parse one URL:
///
/// ```
/// use session_memcached::MemcachedConfig;
///
/// let config = MemcachedConfig::from_url("memcache://10.0.0.1:11211,10.0.0.2:11211").unwrap();
/// assert_eq!(config.servers(), ["10.0.0.1:11211", "10.0.0.2:11211"]);
/// assert_eq!(MemcachedConfig::from_url("memcache://10.0.0.1").unwrap_err().key(), "servers");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "crate::block::MemcachedBlock")
)]
#[must_use]
pub struct MemcachedConfig {
    servers: Vec<String>,
    key_prefix: String,
    operation_timeout: Duration,
    connect_timeout: Duration,
    pool_size: usize,
    max_connections: Option<usize>,
    item_size_limit: Option<usize>,
    commit_attempts: u32,
}

impl MemcachedConfig {
    /// The default key prefix: every session item is `session:<id>`.
    pub const DEFAULT_KEY_PREFIX: &'static str = session_core::store::DEFAULT_KEY_PREFIX;
    /// The default per-operation timeout. A session read sits in front of every
    /// request; half a second is already a slow page, and past it the error
    /// policy answers instead of the request hanging.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
    /// The default timeout for opening one connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default number of idle connections kept open to each server.
    ///
    /// A connection carries one request at a time, so a server needs as
    /// many as it has requests in flight; connections are only opened when
    /// they are needed, so this bounds what is kept, not what is opened.
    /// Below the app's concurrency, every request past the pool's size
    /// opens a connection and closes it again (a TCP handshake, and work for
    /// memcached, on every such request): at 8 under the bench's 16
    /// concurrent requests, about a third of the requests did, and an `mg`
    /// cost the app thread twice the CPU of a Redis `GET`.
    pub const DEFAULT_POOL_SIZE: usize = 64;
    /// The default number of tries a commit makes when other commits to the same
    /// session keep winning the race.
    pub const DEFAULT_COMMIT_ATTEMPTS: u32 = 32;
    /// The largest [`with_max_connections`](MemcachedConfig::with_max_connections)
    /// accepted: one per local port.
    pub const MAX_CONNECTIONS: usize = 65_535;
    /// The longest key prefix: with the 22-character session id, every key stays
    /// within Memcached's 250-byte limit.
    pub const MAX_KEY_PREFIX_LEN: usize = MAX_KEY_LENGTH - SESSION_ID_LEN;

    /// The servers, each as `host:port`. Keys are spread over all of them by
    /// rendezvous hashing; the order does not matter.
    pub fn new<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            pool_size: Self::DEFAULT_POOL_SIZE,
            max_connections: None,
            item_size_limit: None,
            commit_attempts: Self::DEFAULT_COMMIT_ATTEMPTS,
        }
    }

    /// The servers from one URL: `memcache://host:port[,host:port…]`
    /// (`memcached://` works too).
    ///
    /// # Errors
    /// A [`ConfigError`] for key `url` when the scheme is not one of those,
    /// or for key `servers` when a server is not `host:port`.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let hosts = url
            .strip_prefix("memcache://")
            .or_else(|| url.strip_prefix("memcached://"))
            .ok_or_else(|| ConfigError::new("url", "expected memcache://host:port[,host:port…]"))?;
        let config = Self::new(hosts.split(',').filter(|host| !host.is_empty()));
        config.validate()?;
        Ok(config)
    }

    /// The prefix of every session key (default `session:`). Apps that share
    /// Memcached servers keep apart by using different prefixes. At most
    /// [`Self::MAX_KEY_PREFIX_LEN`] bytes, printable ASCII with no spaces.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The most one store operation may take, every round trip and retry of
    /// it included (default 500 ms). Past it the operation fails with
    /// [`ErrorKind::Timeout`](session_core::ErrorKind::Timeout).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The most opening one connection may take (default 1 s), also the
    /// longest a call waits for a free connection under
    /// [`with_max_connections`](Self::with_max_connections).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Idle connections kept open to each server (default
    /// [`Self::DEFAULT_POOL_SIZE`], 64). A burst opens more, which close
    /// when it is over; keep it at the requests a server has in flight.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// A cap on the connections open to each server at once (default none).
    /// At the cap a call waits for a connection up to the connect timeout.
    pub fn with_max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max;
        self
    }

    /// The largest item the store will write, in bytes. By default the store
    /// asks each server for its `item_size_max` (memcached's `-I`, 1 MiB
    /// unless changed) when it connects, and uses the smallest. A limit set
    /// here can only lower that.
    pub fn with_item_size_limit(mut self, bytes: usize) -> Self {
        self.item_size_limit = Some(bytes);
        self
    }

    /// How many times a commit re-reads and re-applies when other commits to
    /// the same session win the race (default 32).
    pub fn with_commit_attempts(mut self, attempts: u32) -> Self {
        self.commit_attempts = attempts;
        self
    }

    /// The servers, as configured.
    #[must_use]
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The per-operation timeout.
    #[must_use]
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// The connect timeout.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Idle connections kept per server.
    #[must_use]
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The cap on connections per server, if any.
    #[must_use]
    pub fn max_connections(&self) -> Option<usize> {
        self.max_connections
    }

    /// The configured item size limit, if any.
    #[must_use]
    pub fn item_size_limit(&self) -> Option<usize> {
        self.item_size_limit
    }

    /// How many times a commit tries.
    #[must_use]
    pub fn commit_attempts(&self) -> u32 {
        self.commit_attempts
    }

    /// Checks what can be checked without a network.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key: `servers`, `key_prefix`,
    /// `operation_timeout`, `connect_timeout`, `pool_size`,
    /// `max_connections`, `item_size_limit` or `commit_attempts`. A config
    /// loader that nests this block prefixes the key with the block's path.
    ///
    /// ```
    /// use session_memcached::MemcachedConfig;
    ///
    /// let err = MemcachedConfig::new(["127.0.0.1:11211"])
    ///     .with_key_prefix("my app:")
    ///     .validate()
    ///     .unwrap_err();
    /// assert_eq!(err.key(), "key_prefix");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::new("servers", "give at least one host:port"));
        }
        for server in &self.servers {
            check_server(server)?;
        }
        check_prefix(&self.key_prefix)?;
        for (key, timeout) in [
            ("operation_timeout", self.operation_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::new(key, "must be longer than zero"));
            }
        }
        if self.pool_size == 0 {
            return Err(ConfigError::new("pool_size", "must be at least 1"));
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError::new(
                "max_connections",
                "must be at least 1, or unset for no cap",
            ));
        }
        // One client cannot open more connections to a server than it has
        // local ports; the cap also keeps the connection semaphore within
        // what tokio accepts.
        if self
            .max_connections
            .is_some_and(|max| max > Self::MAX_CONNECTIONS)
        {
            return Err(ConfigError::new(
                "max_connections",
                format!(
                    "must be at most {}, or unset for no cap",
                    Self::MAX_CONNECTIONS
                ),
            ));
        }
        if self
            .item_size_limit
            .is_some_and(|limit| limit < MIN_ITEM_SIZE_LIMIT)
        {
            return Err(ConfigError::new(
                "item_size_limit",
                format!("must be at least {MIN_ITEM_SIZE_LIMIT} bytes"),
            ));
        }
        if self.commit_attempts == 0 {
            return Err(ConfigError::new("commit_attempts", "must be at least 1"));
        }
        Ok(())
    }
}

fn check_server(server: &str) -> Result<(), ConfigError> {
    let bad = || {
        ConfigError::new(
            "servers",
            format!("`{server}` is not host:port (for example 10.0.0.1:11211)"),
        )
    };
    let (host, port) = server.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(bad());
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.len() > MemcachedConfig::MAX_KEY_PREFIX_LEN {
        return Err(ConfigError::new(
            "key_prefix",
            format!(
                "is {} bytes; with the session id a key must fit Memcached's {MAX_KEY_LENGTH}, so at most {}",
                prefix.len(),
                MemcachedConfig::MAX_KEY_PREFIX_LEN
            ),
        ));
    }
    // The text protocol ends a key at whitespace; control bytes are refused.
    if !prefix.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "key_prefix",
            "must be printable ASCII with no spaces",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_list_the_servers() {
        let config = MemcachedConfig::from_url("memcached://a:11211,[::1]:11212").unwrap();
        assert_eq!(config.servers(), ["a:11211", "[::1]:11212"]);
        assert_eq!(
            MemcachedConfig::from_url("redis://a:1").unwrap_err().key(),
            "url"
        );
        assert_eq!(
            MemcachedConfig::from_url("memcache://").unwrap_err().key(),
            "servers"
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        let base = || MemcachedConfig::new(["127.0.0.1:11211"]);
        let key = |config: MemcachedConfig| config.validate().unwrap_err().key().to_owned();
        assert_eq!(key(MemcachedConfig::new(Vec::<String>::new())), "servers");
        assert_eq!(key(MemcachedConfig::new(["a:0"])), "servers");
        assert_eq!(key(MemcachedConfig::new(["a:port"])), "servers");
        assert_eq!(key(base().with_key_prefix("x".repeat(229))), "key_prefix");
        assert_eq!(key(base().with_key_prefix("tab\t")), "key_prefix");
        assert_eq!(key(base().with_key_prefix("é")), "key_prefix");
        assert_eq!(
            key(base().with_operation_timeout(Duration::ZERO)),
            "operation_timeout"
        );
        assert_eq!(
            key(base().with_connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        assert_eq!(key(base().with_pool_size(0)), "pool_size");
        assert_eq!(key(base().with_max_connections(Some(0))), "max_connections");
        assert_eq!(key(base().with_item_size_limit(10)), "item_size_limit");
        assert_eq!(key(base().with_commit_attempts(0)), "commit_attempts");
        assert!(base().with_key_prefix("x".repeat(228)).validate().is_ok());
    }
}
