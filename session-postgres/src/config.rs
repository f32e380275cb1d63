//! Where the database is, which table holds the sessions, and how long to
//! wait for it.

use std::{fmt, str::FromStr, time::Duration};

use session_core::{config::Endpoint, ConfigError};
use sqlx::postgres::PgConnectOptions;

use crate::schema::Table;

/// How a [`PostgresStore`](crate::PostgresStore) reaches PostgreSQL.
///
/// ```
/// use std::time::Duration;
/// use session_postgres::PostgresConfig;
///
/// let config = PostgresConfig::new("postgres://app:secret@db.internal/app")
///     .with_table("web_sessions")
///     .with_pool_size(16)
///     .with_operation_timeout(Duration::from_millis(250));
/// assert!(config.validate().is_ok());
/// assert_eq!(config.table(), "web_sessions");
///
/// // A table name is an identifier, quoted in every statement: nothing
/// // else is accepted, and the error names the key.
/// let err = PostgresConfig::new("postgres://localhost/app").with_table("x; drop").validate();
/// assert_eq!(err.unwrap_err().key(), "table");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "crate::block::PostgresBlock")
)]
#[must_use]
pub struct PostgresConfig {
    url: String,
    table: String,
    key_prefix: String,
    pool_size: u32,
    migrate: bool,
    operation_timeout: Duration,
    connect_timeout: Duration,
    sweep_interval: Duration,
    sweep_batch: u32,
}

// The URL carries the password, and configs get logged.
impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &Endpoint::from(self.url.as_str()).redacted())
            .field("table", &self.table)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("migrate", &self.migrate)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("sweep_batch", &self.sweep_batch)
            .finish()
    }
}

impl PostgresConfig {
    /// The default table: `sessions`, in the connection's search path.
    pub const DEFAULT_TABLE: &'static str = "sessions";
    /// The default key prefix, as for every backend: rows carry it in their
    /// `key_prefix` column, so two apps can share one table.
    pub const DEFAULT_KEY_PREFIX: &'static str = session_core::store::DEFAULT_KEY_PREFIX;
    /// The default pool size: ten connections serve thousands of session
    /// reads a second (each is one short statement), and stay well under
    /// PostgreSQL's default `max_connections` of 100 with several app servers.
    pub const DEFAULT_POOL_SIZE: u32 = 10;
    /// The default per-operation timeout, as for Redis: a session read sits
    /// in front of every request, and past half a second the error policy (or
    /// failover) answers instead of the request hanging.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(500);
    /// The default timeout for the first connection, migrations included.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// How often the sweep deletes expired rows. Expired rows are never
    /// served in the meantime; the sweep only gives their space back.
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
    /// The most rows one sweep statement deletes, so a sweep never holds
    /// locks on a large share of the table at once.
    pub const DEFAULT_SWEEP_BATCH: u32 = 1000;

    /// The database at `url` (`postgres://user:password@host:5432/db`, any
    /// form libpq takes, `?sslmode=require` for TLS), with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            table: Self::DEFAULT_TABLE.to_owned(),
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            migrate: true,
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            sweep_interval: Self::DEFAULT_SWEEP_INTERVAL,
            sweep_batch: Self::DEFAULT_SWEEP_BATCH,
        }
    }

    /// The table that holds the sessions: a lower-case SQL identifier
    /// (`[a-z_][a-z0-9_]*`, at most 48 bytes), optionally schema-qualified
    /// (`auth.sessions`). It is quoted in every statement.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The prefix every session of this store is kept under (the
    /// `key_prefix` column), so two apps can share one table without seeing
    /// each other's sessions.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// The most connections the pool opens.
    pub fn with_pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// Whether [`connect`](crate::PostgresStore::connect) creates or updates
    /// the table (the default). Turn it off where the app's role may not
    /// change the schema, and run the migrations another way
    /// ([`PostgresStore::migrations`](crate::PostgresStore::migrations) gives their SQL).
    pub fn with_migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// How long one operation may take in all, waiting for a pooled
    /// connection included. Also the server-side `statement_timeout`, so a
    /// statement given up on does not run on.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How long [`connect`](crate::PostgresStore::connect) waits for the
    /// first connection and the migrations.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the background sweep deletes expired rows; zero turns it
    /// off (for a table another job cleans).
    pub fn with_sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The most rows one sweep statement deletes.
    pub fn with_sweep_batch(mut self, batch: u32) -> Self {
        self.sweep_batch = batch;
        self
    }

    /// The database URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The table name, as configured.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The key prefix.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The pool size.
    #[must_use]
    pub fn pool_size(&self) -> u32 {
        self.pool_size
    }

    /// Whether `connect` runs the migrations.
    #[must_use]
    pub fn migrate(&self) -> bool {
        self.migrate
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

    /// The sweep interval; zero when the sweep is off.
    #[must_use]
    pub fn sweep_interval(&self) -> Duration {
        self.sweep_interval
    }

    /// The most rows one sweep statement deletes.
    #[must_use]
    pub fn sweep_batch(&self) -> u32 {
        self.sweep_batch
    }

    /// Checks every value.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key (`url`, `table`, `pool_size`,
    /// `operation_timeout`, `connect_timeout`, `sweep_batch`). A config
    /// loader that nests this block prefixes the key with the block's path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connect_options()?;
        Table::parse(&self.table)?;
        if self.pool_size == 0 {
            return Err(ConfigError::new(
                "pool_size",
                "must be at least 1 connection",
            ));
        }
        if self.sweep_batch == 0 {
            return Err(ConfigError::new("sweep_batch", "must be at least 1 row"));
        }
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

    /// The URL as sqlx's connect options.
    pub(crate) fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        let bad = |why: String| {
            ConfigError::new(
                "url",
                format!(
                    "`{}` is not a PostgreSQL URL: {why}",
                    Endpoint::from(self.url.as_str()).redacted()
                ),
            )
        };
        // sqlx reads any scheme as Postgres; a `mysql://` URL is a mistake
        // to name now, not a connection refused later.
        if !["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| self.url.starts_with(scheme))
        {
            return Err(bad(
                "expected postgres://user:password@host:5432/db".to_owned()
            ));
        }
        PgConnectOptions::from_str(&self.url).map_err(|err| bad(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_names_the_key() {
        let key = |config: PostgresConfig| config.validate().unwrap_err().key().to_owned();
        let good = || PostgresConfig::new("postgres://localhost/app");
        assert!(good().validate().is_ok());
        assert_eq!(key(PostgresConfig::new("mysql://x")), "url");
        assert_eq!(key(good().with_table("Sessions")), "table");
        assert_eq!(key(good().with_table("")), "table");
        assert_eq!(key(good().with_pool_size(0)), "pool_size");
        assert_eq!(key(good().with_sweep_batch(0)), "sweep_batch");
        assert_eq!(
            key(good().with_operation_timeout(Duration::ZERO)),
            "operation_timeout"
        );
    }

    #[test]
    fn debug_and_errors_hide_the_password() {
        let config = PostgresConfig::new("postgres://app:hunter2@db/app");
        assert!(!format!("{config:?}").contains("hunter2"));
        let err = PostgresConfig::new("postgres://app:hunter2@db:notaport/app")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
