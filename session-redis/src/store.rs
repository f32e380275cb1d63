//! `RedisStore`: the `SessionStore` contract on Redis.

use std::{
    borrow::Cow,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use redis::RedisResult;
use session_core::{
    Changes, Committed, Created, ErrorKind, Record, SessionId, SessionStore, Stamp, StoreError,
};

use crate::{
    error::store_error,
    hash::{self, data_field, millis},
    script::Scripts,
    topology::Connection,
    RedisConfig,
};

/// Sessions in Redis: standalone, Sentinel or Cluster, chosen by
/// [`RedisConfig`].
///
/// Each session is one hash under `<prefix><id>` (see the crate docs for its
/// fields) that Redis itself expires with `PEXPIREAT`.
///
/// | operation | Redis work | round trips |
/// |---|---|---|
/// | `load` | `HGETALL` | 1 |
/// | `create` | Lua: `EXISTS`, `HSET`, `PEXPIREAT` | 1 |
/// | `commit` | Lua: `HGET` (the version), `HDEL` (removals only), one `HSET` (values and `expires_at`), `HINCRBY`, `PEXPIREAT` | 1 |
/// | `touch` | Lua: `EXISTS`, `HSET`, `PEXPIREAT` | 1 |
/// | `delete` | `UNLINK` | 1 |
///
/// Scripts go as `EVALSHA`, with one `EVAL` the first time a server has not
/// seen them. Every operation is bounded by the
/// [operation timeout](RedisConfig::with_operation_timeout) (default
/// 500 ms), connecting included.
///
/// Cloning is cheap and clones share one connection.
///
/// ```no_run
/// # async fn run() -> Result<(), session_core::StoreError> {
/// use session_core::{Key, SessionManager};
/// use session_redis::{RedisConfig, RedisStore};
///
/// let store = RedisStore::connect(RedisConfig::standalone("redis://127.0.0.1:6379")).await?;
/// let manager = SessionManager::builder(store, Key::generate()).build().unwrap();
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    scripts: Arc<Scripts>,
    prefix: Arc<str>,
    operation_timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials live in the URLs, so the config is not shown.
        f.debug_struct("RedisStore")
            .field("topology", &self.connection)
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis that `config` names.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the config is invalid (its source is a
    /// [`ConfigError`](session_core::ConfigError) naming the key), and
    /// [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`] when the first
    /// connection cannot be made within the connect timeout.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        const OPERATION: &str = "connect";
        config
            .validate()
            .map_err(|err| StoreError::new(ErrorKind::Config, OPERATION).with_source(err))?;
        // Standalone makes up to two attempts (one retry), Sentinel asks a
        // sentinel and then connects: each step has the connect timeout.
        let connection = bounded(
            OPERATION,
            config.connect_timeout().saturating_mul(2),
            async { Connection::open(&config).await },
        )
        .await?;
        Ok(Self {
            connection,
            scripts: Arc::new(Scripts::new()),
            prefix: config.key_prefix().into(),
            operation_timeout: config.operation_timeout(),
        })
    }

    /// The same connection under another key prefix, as a second app on the
    /// same Redis would use.
    #[must_use]
    pub fn with_prefix(&self, prefix: impl Into<Arc<str>>) -> Self {
        Self {
            prefix: prefix.into(),
            ..self.clone()
        }
    }

    /// The key of `id`'s hash.
    fn key(&self, id: &SessionId) -> String {
        format!("{}{}", self.prefix, id.encode())
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        bounded(operation, self.operation_timeout, call).await
    }
}

/// Runs `call`, mapping its error and failing with `Timeout` past `limit`.
async fn bounded<T>(
    operation: &'static str,
    limit: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(|err| store_error(operation, err)),
        Err(elapsed) => Err(StoreError::new(ErrorKind::Timeout, operation).with_source(elapsed)),
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        const OPERATION: &str = "load";
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self
            .run(
                OPERATION,
                self.connection
                    .query(redis::cmd("HGETALL").arg(self.key(id))),
            )
            .await?;
        hash::decode(*id, fields, SystemTime::now())
            .map_err(|err| StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(err))
    }

    /// One `HMGET` of two small fields, whatever the session's size.
    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        const OPERATION: &str = "stamp";
        let (version, expires_at): (Option<Vec<u8>>, Option<Vec<u8>>) = self
            .run(
                OPERATION,
                self.connection.query(
                    redis::cmd("HMGET")
                        .arg(self.key(id))
                        .arg(&hash::STAMP_FIELDS[..]),
                ),
            )
            .await?;
        hash::decode_stamp([version, expires_at], SystemTime::now())
            .map_err(|err| StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(err))
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let mut args = vec![Cow::Owned(millis(record.expires_at).to_string())];
        args.extend(hash::record_fields(record));
        let stored: u8 = self
            .run(
                "create",
                self.connection
                    .run_script(&self.scripts.create, &self.key(&record.id), &args),
            )
            .await?;
        Ok(if stored == 1 {
            Created::Created
        } else {
            Created::IdTaken
        })
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let removals = changes.removals();
        let sets = changes.sets();
        let mut args: Vec<Cow<'_, str>> = Vec::with_capacity(3 + removals.len() + 2 * sets.len());
        args.push(Cow::Owned(millis(expires_at).to_string()));
        args.push(Cow::Borrowed(if changes.clears() { "1" } else { "0" }));
        args.push(Cow::Owned(removals.len().to_string()));
        args.extend(removals.iter().map(|key| Cow::Owned(data_field(key))));
        for (key, value) in sets {
            args.push(Cow::Owned(data_field(key)));
            args.push(Cow::Borrowed(value.as_str()));
        }
        let version: Option<u64> = self
            .run(
                "commit",
                self.connection
                    .run_script(&self.scripts.commit, &self.key(id), &args),
            )
            .await?;
        Ok(version.map_or(Committed::Missing, |version| Committed::Applied { version }))
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let args = [Cow::Owned(millis(expires_at).to_string())];
        let live: u8 = self
            .run(
                "touch",
                self.connection
                    .run_script(&self.scripts.touch, &self.key(id), &args),
            )
            .await?;
        Ok(live == 1)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        // UNLINK frees a large hash off Redis's main thread.
        self.run(
            "delete",
            self.connection
                .query(redis::cmd("UNLINK").arg(self.key(id))),
        )
        .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.run("health", self.connection.query(&redis::cmd("PING")))
            .await
    }
}
