//! One `query` call over the three ways to reach Redis.
//!
//! - **Standalone:** the redis crate's `ConnectionManager`, which reconnects
//!   to the same address by itself.
//! - **Cluster:** the redis crate's `ClusterConnection`, which follows
//!   `MOVED`/`ASK` and refreshes the slot map by itself.
//! - **Sentinel:** [`SentinelConnection`], ours. The redis crate asks the
//!   sentinels for the master only when it connects, so after a failover its
//!   connection keeps pointing at the old master. Ours forgets the connection
//!   after a connection error, a timeout or a `READONLY` reply (the old master
//!   came back as a replica), and the next call asks the sentinels again.

use std::{
    borrow::Cow,
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
    AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, RedisConnectionInfo, RedisError,
    RedisResult, ServerErrorKind,
};

use crate::{error::needs_new_connection, script::Script, RedisConfig, Topology};

/// How many times the standalone manager retries a reconnect before the
/// call fails; the per-operation timeout bounds the wait anyway.
const RECONNECT_RETRIES: usize = 1;
/// How many times a cluster call follows a redirect or retries a node.
const CLUSTER_RETRIES: u32 = 3;

/// A connection to whichever topology the config names. Cheap to clone.
/// The store reaches it through [`Connection`](crate::affinity::Connection),
/// which keeps one per worker thread.
#[derive(Clone)]
pub(crate) enum Link {
    Standalone(ConnectionManager),
    Sentinel(Arc<SentinelConnection>),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Standalone(_) => "Standalone",
            Self::Sentinel(_) => "Sentinel",
            Self::Cluster(_) => "Cluster",
        })
    }
}

impl Link {
    /// Connects as `config` says, failing if the first connection fails.
    pub(crate) async fn open(config: &RedisConfig) -> RedisResult<Self> {
        let connect_timeout = config.connect_timeout();
        let response_timeout = config.operation_timeout();
        #[cfg(feature = "tls")]
        let certificates = if config.uses_tls() {
            crate::tls::ensure_crypto_provider();
            crate::tls::certificates(config).map_err(|err| {
                RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "bad TLS file",
                    err.to_string(),
                ))
            })?
        } else {
            None
        };
        match config.topology() {
            Topology::Standalone { url } => {
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(1));
                #[cfg(feature = "tls")]
                let client = match &certificates {
                    Some(certificates) => {
                        Client::build_with_tls(url.as_str(), certificates.clone())?
                    }
                    None => Client::open(url.as_str())?,
                };
                #[cfg(not(feature = "tls"))]
                let client = Client::open(url.as_str())?;
                let manager = ConnectionManager::new_with_config(client, manager_config).await?;
                Ok(Self::Standalone(manager))
            }
            Topology::Sentinel {
                sentinels,
                service_name,
                username,
                password,
                db,
            } => {
                let mut master = RedisConnectionInfo::default().set_db(*db);
                if let Some(username) = username {
                    master = master.set_username(username);
                }
                if let Some(password) = password {
                    master = master.set_password(password);
                }
                #[cfg(feature = "tls")]
                let client = if config.uses_tls() {
                    tls_sentinel_client(sentinels, service_name, master, certificates)?
                } else {
                    plain_sentinel_client(sentinels, service_name, master)?
                };
                #[cfg(not(feature = "tls"))]
                let client = plain_sentinel_client(sentinels, service_name, master)?;
                let connection_config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout));
                let connection = SentinelConnection::new(client, connection_config);
                connection.current().await?;
                Ok(Self::Sentinel(Arc::new(connection)))
            }
            Topology::Cluster { nodes } => {
                let builder = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    .retries(CLUSTER_RETRIES);
                // `rediss://` seeds alone mean TLS with the system's roots;
                // the CA and client certificate, if any, come here.
                #[cfg(feature = "tls")]
                let builder = match certificates {
                    Some(certificates) => builder.certs(certificates),
                    None => builder,
                };
                let connection = builder.build()?.get_async_connection().await?;
                Ok(Self::Cluster(connection))
            }
        }
    }

    /// Sends `cmd` and decodes the reply. Takes the (cheap) handle by
    /// value, so a caller can hand this future on without wrapping it in
    /// one of its own: every layer of nesting counts against the compiler's
    /// depth limit in the apps that hold a store's futures.
    pub(crate) async fn query<T: FromRedisValue>(self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Standalone(mut manager) => cmd.query_async(&mut manager).await,
            // Boxed: these two arms' futures are kilobytes (the cluster
            // router's, the sentinel lookup's), and a future is as large as
            // its largest arm. Every operation nests this one in its
            // timeout and its own future, moving it at each layer, so its
            // size is paid in copies on every call, on every topology.
            Self::Cluster(mut cluster) => Box::pin(cmd.query_async(&mut cluster)).await,
            Self::Sentinel(sentinel) => Box::pin(sentinel.query(cmd)).await,
        }
    }

    /// Whether keys in different hash slots may sit on different servers,
    /// so that one script cannot touch both (`CROSSSLOT`). Only on Cluster:
    /// Sentinel, like a single server, keeps every key on one master.
    pub(crate) fn splits_slots(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Runs `script` on `keys`: `EVALSHA`, then `EVAL` once if the server
    /// does not have the script cached.
    pub(crate) async fn run_script<T: FromRedisValue>(
        self,
        script: &Script,
        keys: &[&str],
        args: &[Cow<'_, str>],
    ) -> RedisResult<T> {
        match self.clone().query(&script.evalsha(keys, args)).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.query(&script.eval(keys, args)).await
            }
            result => result,
        }
    }
}

/// A sentinel client over plain TCP: each sentinel URL keeps its own
/// credentials.
fn plain_sentinel_client(
    sentinels: &[String],
    service_name: &str,
    master: RedisConnectionInfo,
) -> RedisResult<SentinelClient> {
    SentinelClient::build(
        sentinels.iter().map(String::as_str).collect(),
        // Owned: without the redis crate's TLS support, `build` takes a String.
        String::from(service_name),
        Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(master)),
        SentinelServerType::Master,
    )
}

/// A sentinel client over TLS, to the sentinels and to the master they name
/// alike, both trusting the same CA and showing the same client
/// certificate: a deployment that runs its sentinels on TLS runs its data
/// servers on TLS too (`tls-replication`). The redis crate's builder takes
/// one set of sentinel credentials, so the first sentinel URL's apply to
/// all.
#[cfg(feature = "tls")]
fn tls_sentinel_client(
    sentinels: &[String],
    service_name: &str,
    master: RedisConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
) -> RedisResult<SentinelClient> {
    use redis::{sentinel::SentinelClientBuilder, IntoConnectionInfo, TlsMode};

    let sentinels = sentinels
        .iter()
        .map(|url| url.as_str().into_connection_info())
        .collect::<RedisResult<Vec<_>>>()?;
    let mut builder = SentinelClientBuilder::new(
        sentinels.iter().map(|sentinel| sentinel.addr().clone()),
        service_name,
        SentinelServerType::Master,
    )?
    .set_client_to_redis_tls_mode(TlsMode::Secure)
    .set_client_to_redis_db(master.db());
    if let Some(username) = master.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = master.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(first) = sentinels.first().map(redis::ConnectionInfo::redis_settings) {
        if let Some(username) = first.username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = first.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    if let Some(certificates) = certificates {
        builder = builder
            .set_client_to_sentinel_certificates(certificates.clone())
            .set_client_to_redis_certificates(certificates);
    }
    builder.build()
}

/// A connection to the master that the sentinels name now.
pub(crate) struct SentinelConnection {
    /// Asks the sentinels. Behind an async lock so that, after a failover,
    /// one caller asks and the others wait for its answer instead of all
    /// asking at once.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The connection to the master, if one is believed good. Never held
    /// across an await.
    master: Mutex<Option<Master>>,
    /// Counts finished lookups, so a caller that waited for the lock can tell
    /// that another caller just looked.
    lookups: AtomicU64,
    config: AsyncConnectionConfig,
}

#[derive(Clone)]
struct Master {
    lookup: u64,
    connection: MultiplexedConnection,
}

impl SentinelConnection {
    fn new(sentinel: SentinelClient, config: AsyncConnectionConfig) -> Self {
        Self {
            sentinel: tokio::sync::Mutex::new(sentinel),
            master: Mutex::new(None),
            lookups: AtomicU64::new(0),
            config,
        }
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let master = self.current().await?;
        let result = cmd.query_async(&mut master.connection.clone()).await;
        match result {
            Err(err) if needs_new_connection(&err) => {
                self.forget(master.lookup);
                if err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
                    // The old master refused the write, so nothing was
                    // applied and sending it to the new master is safe.
                    let master = self.current().await?;
                    return cmd.query_async(&mut master.connection.clone()).await;
                }
                Err(err)
            }
            result => result,
        }
    }

    fn cached(&self) -> Option<Master> {
        self.master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The master's connection, asking the sentinels if there is none.
    async fn current(&self) -> RedisResult<Master> {
        let lookups_before = self.lookups.load(Ordering::Acquire);
        if let Some(master) = self.cached() {
            return Ok(master);
        }
        let mut sentinel = self.sentinel.lock().await;
        if self.lookups.load(Ordering::Acquire) != lookups_before {
            // Someone looked while this caller waited; share the outcome
            // rather than asking the sentinels twice.
            return self.cached().ok_or_else(no_master);
        }
        let connected = match sentinel.async_get_client().await {
            Ok(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            }
            Err(err) => Err(err),
        };
        let lookup = self.lookups.fetch_add(1, Ordering::AcqRel) + 1;
        let master = Master {
            lookup,
            connection: connected?,
        };
        *self.master.lock().unwrap_or_else(PoisonError::into_inner) = Some(master.clone());
        Ok(master)
    }

    /// Drops the connection from lookup `lookup`, unless a newer one already
    /// replaced it.
    fn forget(&self, lookup: u64) {
        let mut master = self.master.lock().unwrap_or_else(PoisonError::into_inner);
        if master
            .as_ref()
            .is_some_and(|master| master.lookup == lookup)
        {
            tracing::info!("redis master connection lost; asking the sentinels again");
            *master = None;
        }
    }
}

fn no_master() -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::NotConnected,
        "the sentinels named no reachable master just now",
    ))
}

#[cfg(test)]
mod tests {
    use session_conformance::testkit::{RedisSentinel, RedisServer};

    use super::*;

    /// `query`'s future is one type for every topology, as large as its
    /// largest arm, and every store operation moves it through several
    /// layers (its timeout, `bounded`, the operation's own future). At
    /// 3,224 bytes, before the cluster and sentinel arms were boxed, those
    /// copies were 24,000 of a Redis read's 86,000 instructions (callgrind).
    #[tokio::test]
    async fn the_query_future_stays_small() {
        let server = RedisServer::start();
        let link = Link::open(&RedisConfig::standalone(server.url()))
            .await
            .unwrap();
        let cmd = redis::cmd("GET");
        let future = link.query::<Option<Vec<u8>>>(&cmd);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 256, "Link::query's future is {size} bytes");
    }

    /// The port of the one replica that `master` reports.
    fn replica_port(master: &RedisServer) -> u16 {
        let info = master.cli(&["INFO", "replication"]);
        info.lines()
            .find_map(|line| line.strip_prefix("slave0:"))
            .and_then(|slave| slave.split(',').find_map(|part| part.strip_prefix("port=")))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no replica in {info}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_readonly_reply_moves_to_the_master_the_sentinels_name_and_retries_once() {
        let mut group = RedisSentinel::start();
        let master_port = group.master_port();
        let replica_port = replica_port(group.server(master_port));
        let config = RedisConfig::sentinel(group.sentinel_urls(), group.service_name());
        let Link::Sentinel(sentinel) = Link::open(&config).await.unwrap() else {
            panic!("a sentinel config opens a sentinel connection");
        };

        // What a connection to a demoted master that kept its clients looks
        // like: writes reach a replica.
        let replica = Client::open(format!("redis://127.0.0.1:{replica_port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        *sentinel.master.lock().unwrap() = Some(Master {
            lookup: u64::MAX,
            connection: replica,
        });

        let reply: String = sentinel
            .query(redis::cmd("SET").arg("written").arg("once"))
            .await
            .expect("READONLY is retried on the master");
        assert_eq!(reply, "OK");
        assert_eq!(group.server(master_port).cli(&["GET", "written"]), "once");
        assert_ne!(sentinel.cached().unwrap().lookup, u64::MAX);
    }
}
