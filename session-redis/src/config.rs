//! Where the Redis is and how long to wait for it.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use session_core::{config::Endpoint, ConfigError};

/// Which Redis deployment holds the sessions.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// One server, by URL: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS (feature `tls`).
    Standalone {
        /// The server's URL.
        url: String,
    },
    /// A master found through Redis Sentinel, and found again when it
    /// changes.
    Sentinel {
        /// The sentinels' URLs (`redis://host:26379`). With `rediss://`
        /// (feature `tls`), TLS is spoken to the sentinels and to the master
        /// they name alike, as a deployment with `tls-replication` runs.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the master under.
        service_name: String,
        /// The master's ACL user, if it has one.
        username: Option<String>,
        /// The master's password, if it has one.
        password: Option<String>,
        /// The database number on the master.
        db: i64,
    },
    /// A Redis Cluster, discovered from seed nodes.
    Cluster {
        /// Some of the cluster's nodes, as URLs; credentials in them are used
        /// for every node, and `rediss://` (feature `tls`) means TLS to every
        /// node.
        nodes: Vec<String>,
    },
}

// URLs carry passwords (`redis://:pw@host`), and configs get logged: the
// Debug output shows every URL with its credentials replaced by `***`, and
// no password.
impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |url: &str| Endpoint::from(url).redacted();
        match self {
            Self::Standalone { url } => f
                .debug_struct("Standalone")
                .field("url", &redacted(url))
                .finish(),
            Self::Sentinel {
                sentinels,
                service_name,
                username,
                password,
                db,
            } => f
                .debug_struct("Sentinel")
                .field(
                    "sentinels",
                    &sentinels
                        .iter()
                        .map(|url| redacted(url))
                        .collect::<Vec<_>>(),
                )
                .field("service_name", service_name)
                .field("username", username)
                .field("password", &password.as_ref().map(|_| "***"))
                .field("db", db)
                .finish(),
            Self::Cluster { nodes } => f
                .debug_struct("Cluster")
                .field(
                    "nodes",
                    &nodes.iter().map(|url| redacted(url)).collect::<Vec<_>>(),
                )
                .finish(),
        }
    }
}

/// How a [`RedisStore`](crate::RedisStore) reaches Redis.
///
/// One value chooses the topology, so a deployment can move from one server to
/// Sentinel or Cluster by changing config, not code: either build it in code,
///
/// ```
/// use std::time::Duration;
/// use session_redis::RedisConfig;
///
/// let config = RedisConfig::sentinel(["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"], "sessions")
///     .with_key_prefix("shop:session:")
///     .with_operation_timeout(Duration::from_millis(250));
/// assert!(config.validate().is_ok());
/// ```
///
/// or parse one URL, whose scheme names the topology:
///
/// ```
/// use session_redis::{RedisConfig, Topology};
///
/// let config = RedisConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000").unwrap();
/// assert!(matches!(config.topology(), Topology::Cluster { nodes } if nodes.len() == 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "crate::block::RedisBlock")
)]
#[must_use]
pub struct RedisConfig {
    topology: Topology,
    key_prefix: String,
    operation_timeout: Duration,
    connect_timeout: Duration,
    tls_ca_cert_file: Option<PathBuf>,
    tls_client_cert: Option<(PathBuf, PathBuf)>,
}

impl RedisConfig {
    /// The default key prefix: every session hash is `session:<id>`.
    pub const DEFAULT_KEY_PREFIX: &'static str = session_core::store::DEFAULT_KEY_PREFIX;
    /// The default per-operation timeout. A session read sits in front of every
    /// request; half a second is already a slow page, and past it the error policy
    /// answers instead of the request hanging.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
    /// The default timeout for opening one connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

    /// One server at `url`.
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::new(Topology::Standalone { url: url.into() })
    }

    /// The master that `sentinels` know as `service_name`, with no
    /// credentials and database 0; see [`with_master_auth`](Self::with_master_auth).
    pub fn sentinel<S: Into<String>>(
        sentinels: impl IntoIterator<Item = S>,
        service_name: impl Into<String>,
    ) -> Self {
        Self::new(Topology::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            service_name: service_name.into(),
            username: None,
            password: None,
            db: 0,
        })
    }

    /// The cluster that `nodes` belong to.
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        Self::new(Topology::Cluster {
            nodes: nodes.into_iter().map(Into::into).collect(),
        })
    }

    /// Any topology, from one URL:
    ///
    /// | URL | topology |
    /// |---|---|
    /// | `redis://[user:pass@]host:port[/db]`, `rediss://…` | [`Standalone`](Topology::Standalone) |
    /// | `redis+sentinel://[user:pass@]s1:26379,s2:26379/service[/db]` | [`Sentinel`](Topology::Sentinel); the credentials and db are the master's |
    /// | `redis+cluster://[user:pass@]n1:7000,n2:7000` | [`Cluster`](Topology::Cluster); the credentials apply to every node |
    /// | `rediss+sentinel://…`, `rediss+cluster://…` | the same over TLS (feature `tls`): every sentinel and node URL is `rediss://` |
    ///
    /// # Errors
    /// A [`ConfigError`] for key `url` when the scheme is unknown or a part
    /// is missing.
    ///
    /// ```
    /// use session_redis::{RedisConfig, Topology};
    ///
    /// let config = RedisConfig::from_url("redis+sentinel://:secret@10.0.0.1:26379/sessions/2").unwrap();
    /// let Topology::Sentinel { service_name, password, db, .. } = config.topology() else { panic!() };
    /// assert_eq!((service_name.as_str(), password.as_deref(), *db), ("sessions", Some("secret"), 2));
    ///
    /// assert_eq!(RedisConfig::from_url("mysql://x").unwrap_err().key(), "url");
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::new("url", reason);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected a URL such as redis://host:6379".to_owned()))?;
        let topology = match scheme {
            "redis" | "rediss" | "unix" | "redis+unix" => Topology::Standalone {
                url: url.to_owned(),
            },
            "redis+sentinel" => parse_sentinel("redis", rest).map_err(bad)?,
            "rediss+sentinel" => parse_sentinel("rediss", rest).map_err(bad)?,
            "redis+cluster" => parse_cluster("redis", rest).map_err(bad)?,
            "rediss+cluster" => parse_cluster("rediss", rest).map_err(bad)?,
            other => {
                return Err(bad(format!(
                    "unknown scheme `{other}`; use redis, rediss, redis+sentinel, \
                     rediss+sentinel, redis+cluster or rediss+cluster"
                )))
            }
        };
        let config = Self::new(topology);
        config.validate()?;
        Ok(config)
    }

    fn new(topology: Topology) -> Self {
        Self {
            topology,
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            tls_ca_cert_file: None,
            tls_client_cert: None,
        }
    }

    /// Sets the Sentinel master's credentials. Has no effect on other
    /// topologies, whose credentials travel in their URLs.
    pub fn with_master_auth(mut self, username: Option<String>, password: Option<String>) -> Self {
        if let Topology::Sentinel {
            username: user,
            password: pass,
            ..
        } = &mut self.topology
        {
            *user = username;
            *pass = password;
        }
        self
    }

    /// Sets the Sentinel master's database number (default 0). Has no effect
    /// on other topologies: a standalone URL names its database, and a
    /// Cluster has only database 0.
    pub fn with_master_db(mut self, db: i64) -> Self {
        if let Topology::Sentinel { db: current, .. } = &mut self.topology {
            *current = db;
        }
        self
    }

    /// The prefix of every session key (default `session:`). Apps that share
    /// one Redis keep apart by using different prefixes.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The most one store operation may take, connecting included (default
    /// 500 ms). Past it the operation fails with
    /// [`ErrorKind::Timeout`](session_core::ErrorKind::Timeout).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The most opening one connection may take (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts only the CA certificates in this PEM file for `rediss://`
    /// connections, instead of the system's roots: for a private CA, or to
    /// pin the managed service's own. Needs feature `tls`.
    pub fn with_tls_ca_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_cert_file = Some(path.into());
        self
    }

    /// Shows this client certificate (PEM, the chain if there is one) with
    /// its private key (PEM: PKCS#8, PKCS#1 or SEC1) on `rediss://`
    /// connections, for servers that require one (mutual TLS,
    /// `tls-auth-clients yes`). Needs feature `tls`.
    pub fn with_tls_client_cert(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.tls_client_cert = Some((cert_file.into(), key_file.into()));
        self
    }

    /// The topology.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.topology
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

    /// The CA file `rediss://` connections trust, if one is set.
    #[must_use]
    pub fn tls_ca_cert_file(&self) -> Option<&Path> {
        self.tls_ca_cert_file.as_deref()
    }

    /// The client certificate and key files, if set.
    #[must_use]
    pub fn tls_client_cert(&self) -> Option<(&Path, &Path)> {
        self.tls_client_cert
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()))
    }

    /// Whether the URLs ask for TLS (`rediss://`). Mixed schemes are refused
    /// by [`validate`](Self::validate).
    pub(crate) fn uses_tls(&self) -> bool {
        let urls = match &self.topology {
            Topology::Standalone { url } => std::slice::from_ref(url),
            Topology::Sentinel { sentinels, .. } => sentinels.as_slice(),
            Topology::Cluster { nodes } => nodes.as_slice(),
        };
        urls.first().is_some_and(|url| is_tls(url))
    }

    /// Checks what can be checked without a network: every list non-empty,
    /// every URL parseable, every timeout non-zero, and every TLS file
    /// readable PEM of the right kind (read now, and again on connect).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key (`url`, `sentinels`, `service_name`,
    /// `nodes`, `operation_timeout`, `connect_timeout`, `tls_ca_cert_file`,
    /// `tls_cert_file`, `tls_key_file`). A config loader that nests this
    /// block prefixes the key with the block's path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.topology {
            Topology::Standalone { url } => check_url("url", url)?,
            Topology::Sentinel {
                sentinels,
                service_name,
                ..
            } => {
                check_urls("sentinels", sentinels)?;
                check_one_scheme("sentinels", sentinels)?;
                if service_name.is_empty() {
                    return Err(ConfigError::new(
                        "service_name",
                        "name the master the sentinels monitor",
                    ));
                }
            }
            Topology::Cluster { nodes } => {
                check_urls("nodes", nodes)?;
                check_one_scheme("nodes", nodes)?;
            }
        }
        self.check_tls_files()?;
        for (key, timeout) in [
            ("operation_timeout", self.operation_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if timeout.is_zero() {
                return Err(ConfigError::new(key, "must be longer than zero"));
            }
        }
        Ok(())
    }
}

impl RedisConfig {
    /// The TLS files: given only with `rediss://` URLs, and (with feature
    /// `tls`) readable PEM; without the feature, refused by name.
    fn check_tls_files(&self) -> Result<(), ConfigError> {
        let key = if self.tls_ca_cert_file.is_some() {
            "tls_ca_cert_file"
        } else if self.tls_client_cert.is_some() {
            "tls_cert_file"
        } else {
            return Ok(());
        };
        if !cfg!(feature = "tls") {
            return Err(ConfigError::new(
                key,
                "needs TLS support: turn on the `tls` feature of session-redis (or of session-kit)",
            ));
        }
        if !self.uses_tls() {
            return Err(ConfigError::new(
                key,
                "applies only to TLS connections: use rediss:// URLs (rediss+sentinel://, \
                 rediss+cluster://)",
            ));
        }
        #[cfg(feature = "tls")]
        crate::tls::certificates(self)?;
        Ok(())
    }
}

/// Whether `url` asks for TLS.
fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// Sentinels or cluster nodes all with TLS or all without: one client
/// config serves them all.
fn check_one_scheme(key: &'static str, urls: &[String]) -> Result<(), ConfigError> {
    if urls.iter().any(|url| is_tls(url)) && !urls.iter().all(|url| is_tls(url)) {
        return Err(ConfigError::new(
            key,
            "mixes rediss:// and redis:// URLs; use one scheme for all",
        ));
    }
    Ok(())
}

fn check_urls(key: &'static str, urls: &[String]) -> Result<(), ConfigError> {
    if urls.is_empty() {
        return Err(ConfigError::new(key, "give at least one address"));
    }
    urls.iter().try_for_each(|url| check_url(key, url))
}

fn check_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    if is_tls(url) && !cfg!(feature = "tls") {
        return Err(ConfigError::new(
            key,
            format!(
                "`{}` asks for TLS, which needs the `tls` feature of session-redis (or of \
                 session-kit)",
                redacted(url)
            ),
        ));
    }
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(drop)
        .map_err(|err| {
            ConfigError::new(
                key,
                format!("`{}` is not a Redis URL: {err}", redacted(url)),
            )
        })
}

/// `url` without its password, for error messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// Splits `[userinfo@]host1,host2[/path]` into its parts.
fn split_hosts(rest: &str) -> (Option<&str>, Vec<&str>, &str) {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let hosts = hosts.split(',').filter(|host| !host.is_empty()).collect();
    (userinfo, hosts, path)
}

fn node_url(scheme: &str, userinfo: Option<&str>, host: &str) -> String {
    match userinfo {
        Some(userinfo) => format!("{scheme}://{userinfo}@{host}"),
        None => format!("{scheme}://{host}"),
    }
}

fn parse_sentinel(scheme: &str, rest: &str) -> Result<Topology, String> {
    let (userinfo, hosts, path) = split_hosts(rest);
    let (service_name, db) = path.split_once('/').unwrap_or((path, ""));
    if hosts.is_empty() || service_name.is_empty() {
        return Err(format!(
            "expected {scheme}+sentinel://host:26379[,host:26379…]/service_name[/db]"
        ));
    }
    let db = if db.is_empty() {
        0
    } else {
        db.parse()
            .map_err(|_| format!("database `{db}` is not a number"))?
    };
    // The redis crate decodes percent-escapes in credentials; let it, on a
    // URL made only for that (plain, so that it parses without TLS support).
    let master =
        redis::IntoConnectionInfo::into_connection_info(node_url("redis", userinfo, hosts[0]))
            .map_err(|err| format!("bad credentials: {err}"))?;
    let settings = master.redis_settings();
    Ok(Topology::Sentinel {
        sentinels: hosts
            .iter()
            .map(|host| node_url(scheme, None, host))
            .collect(),
        service_name: service_name.to_owned(),
        username: settings.username().map(str::to_owned),
        password: settings.password().map(str::to_owned),
        db,
    })
}

fn parse_cluster(scheme: &str, rest: &str) -> Result<Topology, String> {
    let (userinfo, hosts, _) = split_hosts(rest);
    if hosts.is_empty() {
        return Err(format!(
            "expected {scheme}+cluster://host:7000[,host:7000…]"
        ));
    }
    Ok(Topology::Cluster {
        nodes: hosts
            .iter()
            .map(|host| node_url(scheme, userinfo, host))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_is_standalone() {
        let config = RedisConfig::from_url("redis://:pw@127.0.0.1:6379/3").unwrap();
        assert_eq!(
            config.topology(),
            &Topology::Standalone {
                url: "redis://:pw@127.0.0.1:6379/3".into()
            }
        );
    }

    #[test]
    fn a_sentinel_url_names_hosts_service_credentials_and_db() {
        let config =
            RedisConfig::from_url("redis+sentinel://ann:p%40ss@a:26379,b:26380/main/4").unwrap();
        assert_eq!(
            config.topology(),
            &Topology::Sentinel {
                sentinels: vec!["redis://a:26379".into(), "redis://b:26380".into()],
                service_name: "main".into(),
                username: Some("ann".into()),
                password: Some("p@ss".into()),
                db: 4,
            }
        );
    }

    #[test]
    fn a_cluster_url_gives_every_node_the_credentials() {
        let config = RedisConfig::from_url("redis+cluster://:pw@a:7000,b:7001").unwrap();
        assert_eq!(
            config.topology(),
            &Topology::Cluster {
                nodes: vec!["redis://:pw@a:7000".into(), "redis://:pw@b:7001".into()]
            }
        );
    }

    #[test]
    fn bad_config_names_the_key() {
        let key = |result: Result<RedisConfig, ConfigError>| result.unwrap_err().key().to_owned();
        assert_eq!(key(RedisConfig::from_url("redis+sentinel://a:1")), "url");
        assert_eq!(key(RedisConfig::from_url("redis+cluster://")), "url");
        assert_eq!(key(RedisConfig::from_url("localhost:6379")), "url");

        let err = |config: RedisConfig| config.validate().unwrap_err().key().to_owned();
        assert_eq!(err(RedisConfig::standalone("http://x")), "url");
        assert_eq!(err(RedisConfig::cluster(Vec::<String>::new())), "nodes");
        assert_eq!(
            err(RedisConfig::sentinel(["redis://a:1"], "")),
            "service_name"
        );
        assert_eq!(
            err(RedisConfig::standalone("redis://a").with_operation_timeout(Duration::ZERO)),
            "operation_timeout"
        );
    }

    #[test]
    fn tls_schemes_give_rediss_urls_and_mixed_schemes_are_refused() {
        let config = RedisConfig::from_url("rediss+cluster://:pw@a:7000,b:7001");
        let sentinel = RedisConfig::from_url("rediss+sentinel://a:26379,b:26379/main");
        if cfg!(feature = "tls") {
            assert_eq!(
                config.unwrap().topology(),
                &Topology::Cluster {
                    nodes: vec!["rediss://:pw@a:7000".into(), "rediss://:pw@b:7001".into()]
                }
            );
            let Topology::Sentinel { sentinels, .. } = sentinel.unwrap().topology().clone() else {
                panic!("a sentinel URL gives a sentinel topology")
            };
            assert_eq!(sentinels, ["rediss://a:26379", "rediss://b:26379"]);
            let mixed = RedisConfig::cluster(["rediss://a:7000", "redis://b:7000"]);
            assert_eq!(mixed.validate().unwrap_err().key(), "nodes");
        } else {
            let err = config.unwrap_err();
            assert_eq!(err.key(), "nodes");
            assert!(err.to_string().contains("`tls` feature"), "{err}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn error_messages_hide_passwords() {
        let err = RedisConfig::standalone("redis://:hunter2@a:1/not-a-db")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Redis URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
