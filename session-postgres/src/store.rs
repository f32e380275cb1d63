//! `PostgresStore`: the `SessionStore` contract on PostgreSQL.

use std::{
    collections::HashMap,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, Data, Owner, OwnerPass, Record,
        SessionStore, Stamp,
    },
    ErrorKind, Lifetime, SessionId, StoreError,
};
use sqlx::{
    pool::PoolConnection,
    postgres::{PgPoolOptions, PgRow},
    types::{time::OffsetDateTime, Json},
    PgPool, Postgres, Row,
};
use tokio::sync::oneshot;

use crate::{
    error::store_error,
    schema::{self, Table},
    sweep::Sweep,
    PostgresConfig,
};

/// Sessions in PostgreSQL: one row per session in a table of your choice.
///
/// | column | holds |
/// |---|---|
/// | `key_prefix`, `id` | the primary key: the store's key prefix and the session id |
/// | `data` | `jsonb`: each key's value as JSON (`data->'user'`) |
/// | `created_at`, `expires_at` | `timestamptz`, to the millisecond |
/// | `version` | `bigint`, one more with every commit |
/// | `owner`, `owner_until` | the [`Owner`], indexed with `key_prefix` |
/// | `lifetime` | the session's own [`Lifetime`] as [`Lifetime::encode`](session_core::Lifetime::encode) writes it, or NULL for the manager's timeouts (migration 2) |
///
/// Every operation is one statement, so one round trip (plus the pool's
/// check of the connection):
///
/// | operation | SQL |
/// |---|---|
/// | `load` | `SELECT … WHERE key_prefix = $1 AND id = $2 AND expires_at > $now` |
/// | `stamp` | the same, of `version` and `expires_at` only |
/// | `create` | `INSERT … ON CONFLICT DO UPDATE … WHERE` the row there has expired |
/// | `commit` | `UPDATE … SET data = (data - removed) \|\| set, version = version + 1 … WHERE` live `RETURNING version` |
/// | `touch` | `UPDATE … SET expires_at WHERE` live |
/// | `delete` | `DELETE` |
/// | `delete_if_version` | `DELETE … WHERE` live `AND version = $v`, with a read of the same snapshot to tell `Changed` from `Missing` |
/// | `delete_by_owner` | `DELETE … WHERE key_prefix = $1 AND owner = $2 RETURNING id` (indexed) |
///
/// PostgreSQL's row locks make each of them atomic with respect to the
/// others: two commits of one session run one after the other, each on
/// the other's result, so disjoint keys both survive and the same key
/// keeps the last one. A commit racing `delete_by_owner` either lands first
/// (and is then deleted with the row) or finds no row (`Missing`).
///
/// **Time** is the app servers' clock, never the database's `now()`: every
/// `expires_at` is written by the manager from its own clock, and the
/// near-cache (session-core's `TieredStore`) and
/// failover compare the expiries they read from several stores, so each
/// statement that asks "is it live?" passes this server's time as `$now`.
/// Comparing with the database's clock would let a skew between the two
/// serve a session the manager already counts as expired, or hide one it
/// counts as live. Keep the clocks in sync (NTP), as for any expiry shared
/// between machines.
///
/// **Expired rows** are never served: every read and write filters on
/// `expires_at > $now`. A background task deletes them every
/// [sweep interval](PostgresConfig::with_sweep_interval), at most
/// [a batch](PostgresConfig::with_sweep_batch) per statement, skipping
/// rows another server's sweep holds. It stops when the last clone of the
/// store is dropped.
///
/// **Values**: `data` is a `jsonb` object from each key to its value's
/// JSON text, as a string, the way Redis keeps each in a hash field. So a
/// value loads back byte for byte (a `jsonb` value would not: it reorders
/// an object's keys and drops whitespace), whatever text the app's codec
/// writes, and another service reads one with
/// `(data->>'user')::jsonb` or as text with `data->>'user'`.
///
/// Cloning is cheap and clones share one pool.
///
/// ```no_run
/// # async fn run() -> Result<(), session_core::StoreError> {
/// use session_core::{Key, SessionManager};
/// use session_postgres::{PostgresConfig, PostgresStore};
///
/// let store = PostgresStore::connect(PostgresConfig::new("postgres://app@127.0.0.1/app")).await?;
/// let manager = SessionManager::builder(store, Key::generate()).build().unwrap();
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The runtime [`connect`](Self::connect) ran on, which opens the
    /// pool's connections (see `connection`).
    home: tokio::runtime::Handle,
    statements: Arc<Statements>,
    prefix: Arc<str>,
    operation_timeout: Duration,
    /// Stops the sweep when the last clone goes.
    _sweep: Arc<SweepGuard>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials live in the URL, so the config is not shown.
        f.debug_struct("PostgresStore")
            .field("table", &self.statements.table)
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

/// Dropping it closes the channel the sweep task waits on.
#[derive(Debug)]
struct SweepGuard(#[allow(dead_code)] Option<oneshot::Sender<()>>);

/// Every statement, with the table's quoted name filled in once.
#[derive(Debug)]
pub(crate) struct Statements {
    table: String,
    load: String,
    stamp: String,
    create: String,
    commit: String,
    touch: String,
    delete: String,
    delete_if_version: String,
    delete_by_owner: String,
    sessions_of: String,
    pub(crate) sweep: String,
}

impl Statements {
    fn new(table: &Table) -> Self {
        let t = table.quoted();
        Self {
            load: format!(
                "SELECT data, created_at, expires_at, version, owner, owner_until, lifetime FROM {t} \
                 WHERE key_prefix = $1 AND id = $2 AND expires_at > $3"
            ),
            stamp: format!(
                "SELECT version, expires_at FROM {t} \
                 WHERE key_prefix = $1 AND id = $2 AND expires_at > $3"
            ),
            // An expired row still there (the sweep has not reached it) must
            // not make its id look taken: it is replaced, in the same
            // statement, so no other create can slip in between.
            create: format!(
                "INSERT INTO {t} AS s \
                   (key_prefix, id, data, created_at, expires_at, version, owner, owner_until, \
                    lifetime) \
                 VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $10) \
                 ON CONFLICT (key_prefix, id) DO UPDATE SET \
                   data = EXCLUDED.data, created_at = EXCLUDED.created_at, \
                   expires_at = EXCLUDED.expires_at, version = EXCLUDED.version, \
                   owner = EXCLUDED.owner, owner_until = EXCLUDED.owner_until, \
                   lifetime = EXCLUDED.lifetime \
                 WHERE s.expires_at <= $9 \
                 RETURNING 1"
            ),
            // Clear, then removals, then sets, as `Changes::apply_to` orders
            // them; the owner only when the changes name one ($6), the
            // lifetime only when they name one ($11).
            commit: format!(
                "UPDATE {t} SET \
                   data = ((CASE WHEN $3 THEN '{{}}'::jsonb ELSE data END) - $4::text[]) \
                          || $5::jsonb, \
                   expires_at = $9, version = version + 1, \
                   owner = CASE WHEN $6 THEN $7 ELSE owner END, \
                   owner_until = CASE WHEN $6 THEN $8 ELSE owner_until END, \
                   lifetime = CASE WHEN $11 THEN $12 ELSE lifetime END \
                 WHERE key_prefix = $1 AND id = $2 AND expires_at > $10 \
                 RETURNING version"
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = $3 \
                 WHERE key_prefix = $1 AND id = $2 AND expires_at > $4"
            ),
            delete: format!("DELETE FROM {t} WHERE key_prefix = $1 AND id = $2"),
            // The outer SELECT reads the snapshot the statement started
            // with, so it tells whether the row the DELETE left alone was
            // live (another version: Changed) or not (Missing).
            delete_if_version: format!(
                "WITH gone AS ( \
                   DELETE FROM {t} WHERE key_prefix = $1 AND id = $2 \
                     AND expires_at > $4 AND version = $3 RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM gone) AS deleted, \
                   EXISTS (SELECT 1 FROM {t} WHERE key_prefix = $1 AND id = $2 \
                     AND expires_at > $4) AS live"
            ),
            // Expired rows of the owner go too (nothing is lost); only the
            // live ones are counted and reported.
            delete_by_owner: format!(
                "DELETE FROM {t} WHERE key_prefix = $1 AND owner = $2 \
                 RETURNING id, expires_at > $3 AS live"
            ),
            // The owner column's index serves this as it serves
            // delete_by_owner.
            sessions_of: format!(
                "SELECT id, data, created_at, expires_at, version, owner, owner_until, lifetime FROM {t} \
                 WHERE key_prefix = $1 AND owner = $2 AND expires_at > $3"
            ),
            // SKIP LOCKED: several app servers sweep the same table, and
            // none waits for a row another is deleting or a request holds.
            sweep: format!(
                "DELETE FROM {t} WHERE (key_prefix, id) IN ( \
                   SELECT key_prefix, id FROM {t} WHERE expires_at <= $1 \
                   LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            table: t,
        }
    }
}

impl PostgresStore {
    /// Connects to the database `config` names, creates or updates the table
    /// unless [migrations are off](PostgresConfig::with_migrate), and starts
    /// the sweep.
    ///
    /// Must be called within a tokio runtime, which the pool and the sweep
    /// run on: call it on the app's own runtime (`main`'s), which runs as
    /// long as the store is used. The pool opens its connections there,
    /// whichever runtime asks for one, so an actix-web worker's runtime,
    /// which ends with the worker, never owns a connection another worker
    /// may be handed.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the config is invalid (its source is a
    /// [`ConfigError`](session_core::ConfigError) naming the key) or the
    /// database refuses the credentials, and [`ErrorKind::Unavailable`] or
    /// [`ErrorKind::Timeout`] when the first connection and the migrations
    /// do not succeed within the connect timeout.
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        const OPERATION: &str = "connect";
        let config_error = |err| StoreError::new(ErrorKind::Config, OPERATION).with_source(err);
        config.validate().map_err(config_error)?;
        let table = Table::parse(config.table()).map_err(config_error)?;
        let timeout_ms = config.operation_timeout().as_millis().to_string();
        let options = config
            .connect_options()
            .map_err(config_error)?
            .application_name("session-kit")
            // A statement given up on by the client stops on the server too.
            .options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_size())
            .min_connections(0)
            // Waiting for a connection counts against the operation's
            // budget; `within` bounds the whole of it anyway.
            .acquire_timeout(config.operation_timeout())
            .connect_lazy_with(options);
        within(OPERATION, config.connect_timeout(), async {
            if config.migrate() {
                schema::migrate(&pool, &table).await
            } else {
                // Fail now, not at the first request, when it is unreachable.
                pool.acquire()
                    .await
                    .map(drop)
                    .map_err(|err| store_error(OPERATION, err))
            }
        })
        .await?;
        let statements = Arc::new(Statements::new(&table));
        let guard = if config.sweep_interval().is_zero() {
            SweepGuard(None)
        } else {
            let (stop, stopped) = oneshot::channel();
            Sweep {
                pool: pool.clone(),
                statements: Arc::clone(&statements),
                interval: config.sweep_interval(),
                batch: config.sweep_batch(),
                operation_timeout: config.operation_timeout(),
            }
            .spawn(stopped);
            SweepGuard(Some(stop))
        };
        Ok(Self {
            pool,
            home: tokio::runtime::Handle::current(),
            statements,
            prefix: config.key_prefix().into(),
            operation_timeout: config.operation_timeout(),
            _sweep: Arc::new(guard),
        })
    }

    /// The SQL the migrations run for `table`, in order, for a DBA who
    /// applies them by hand (with [`with_migrate(false)`](PostgresConfig::with_migrate)).
    ///
    /// ```
    /// let sql = session_postgres::PostgresStore::migrations("auth.sessions").unwrap();
    /// assert!(sql[0].contains("CREATE TABLE IF NOT EXISTS \"auth\".\"sessions\""));
    /// ```
    ///
    /// # Errors
    /// A [`ConfigError`](session_core::ConfigError) for key `table` when the
    /// name is not one [`PostgresConfig::with_table`] takes.
    pub fn migrations(table: &str) -> Result<Vec<String>, session_core::ConfigError> {
        Ok(schema::migration_sql(&Table::parse(table)?))
    }

    /// The same pool and table under another key prefix, as a second app
    /// sharing the table would use.
    #[must_use]
    pub fn prefixed(&self, prefix: impl Into<Arc<str>>) -> Self {
        Self {
            prefix: prefix.into(),
            ..self.clone()
        }
    }

    /// Runs `call` on a connection of the pool, failing with `Timeout` past
    /// the operation timeout (the wait for the connection included).
    async fn run<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(PoolConnection<Postgres>) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        within(operation, self.operation_timeout, async {
            let conn = self
                .connection()
                .await
                .map_err(|err| store_error(operation, err))?;
            call(conn).await.map_err(|err| store_error(operation, err))
        })
        .await
    }

    /// A connection of the pool, taken on the runtime the store was
    /// connected on (`home`), where the pool also opens any new one. A
    /// connection's socket is driven by the runtime that opened it, and dies
    /// with it. An actix-web app runs a runtime per worker, and a worker's
    /// runtime ends with the worker (at shutdown, or when actix restarts
    /// one); a connection opened by one of its requests and handed later to
    /// another worker's request failed with "a Tokio 1.x context was found,
    /// but it is being shutdown", which the app answered with a 503. The
    /// home runtime is the app's own, which lives as long as the store is
    /// used; if it has ended all the same, the connection is taken here, as
    /// before. The whole acquire runs there, not only the opening, so an
    /// idle connection is still checked (sqlx's `test_before_acquire`)
    /// before it is used: `Pool::try_acquire` would skip that.
    async fn connection(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        match self.home.spawn(self.pool.acquire()).await {
            Ok(acquired) => acquired,
            Err(_) => self.pool.acquire().await,
        }
    }
}

/// Runs `call`, failing with `Timeout` past `limit`.
pub(crate) async fn within<T>(
    operation: &'static str,
    limit: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|elapsed| {
            Err(StoreError::new(ErrorKind::Timeout, operation).with_source(elapsed))
        })
}

/// `time` to the millisecond, the precision every store keeps (so a record
/// loads back equal from Postgres and from Redis).
pub(crate) fn timestamp(time: SystemTime) -> OffsetDateTime {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    // Past year 9999 PostgreSQL refuses it anyway; saturate rather than fail.
    let nanos = i128::try_from(millis).unwrap_or(i128::MAX / 1_000_000) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn system_time(at: OffsetDateTime) -> SystemTime {
    let nanos = at.unix_timestamp_nanos();
    u64::try_from(nanos).map_or(UNIX_EPOCH, |nanos| UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// `pairs` as one JSON object whose values are strings: each value's own
/// JSON text, kept byte for byte (see "Values" in the type's docs).
fn json_object<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let object: HashMap<&str, &str> = pairs
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    // A map of strings always serializes.
    serde_json::to_string(&object).unwrap_or_default()
}

/// The record in `row` (the `load` columns).
fn record_from(id: SessionId, row: &PgRow) -> Result<Record, sqlx::Error> {
    let Json(data): Json<Data> = row.try_get("data")?;
    let version: i64 = row.try_get("version")?;
    let owner = match (
        row.try_get::<Option<String>, _>("owner")?,
        row.try_get::<Option<OffsetDateTime>, _>("owner_until")?,
    ) {
        (Some(name), Some(until)) => Some(Owner {
            name,
            until: system_time(until),
        }),
        (None, None) => None,
        _ => return Err(sqlx::Error::Decode("owner without owner_until".into())),
    };
    let mut record = Record::new(
        id,
        data,
        system_time(row.try_get("created_at")?),
        system_time(row.try_get("expires_at")?),
    );
    record.version =
        u64::try_from(version).map_err(|_| sqlx::Error::Decode("a negative version".into()))?;
    record.owner = owner;
    record.lifetime = row
        .try_get::<Option<String>, _>("lifetime")?
        .map(|text| {
            Lifetime::decode(&text)
                .ok_or_else(|| sqlx::Error::Decode("a lifetime that does not decode".into()))
        })
        .transpose()?;
    Ok(record)
}

fn corrupt(operation: &'static str, why: &'static str) -> StoreError {
    StoreError::new(ErrorKind::Corrupt, operation).with_source(why)
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        const OPERATION: &str = "load";
        let row = self
            .run(OPERATION, |mut conn| async move {
                sqlx::query(&self.statements.load)
                    .bind(&*self.prefix)
                    .bind(id.encode())
                    .bind(timestamp(SystemTime::now()))
                    .fetch_optional(&mut *conn)
                    .await
            })
            .await?;
        row.map(|row| record_from(*id, &row))
            .transpose()
            .map_err(|err| StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(err))
    }

    /// Two small columns, without reading the data.
    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        const OPERATION: &str = "stamp";
        let row: Option<(i64, OffsetDateTime)> = self
            .run(OPERATION, |mut conn| async move {
                sqlx::query_as(&self.statements.stamp)
                    .bind(&*self.prefix)
                    .bind(id.encode())
                    .bind(timestamp(SystemTime::now()))
                    .fetch_optional(&mut *conn)
                    .await
            })
            .await?;
        row.map(|(version, expires_at)| {
            Ok(Stamp {
                version: u64::try_from(version)
                    .map_err(|_| corrupt(OPERATION, "a negative version"))?,
                expires_at: system_time(expires_at),
            })
        })
        .transpose()
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        const OPERATION: &str = "create";
        let data = json_object(record.data.iter());
        let version = i64::try_from(record.version)
            .map_err(|_| StoreError::new(ErrorKind::TooLarge, OPERATION))?;
        let stored = self
            .run(OPERATION, |mut conn| async move {
                sqlx::query(&self.statements.create)
                    .bind(&*self.prefix)
                    .bind(record.id.encode())
                    .bind(data)
                    .bind(timestamp(record.created_at))
                    .bind(timestamp(record.expires_at))
                    .bind(version)
                    .bind(record.owner.as_ref().map(|owner| owner.name.as_str()))
                    .bind(record.owner.as_ref().map(|owner| timestamp(owner.until)))
                    .bind(timestamp(SystemTime::now()))
                    .bind(record.lifetime.as_ref().map(Lifetime::encode))
                    .fetch_optional(&mut *conn)
                    .await
            })
            .await?;
        Ok(if stored.is_some() {
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
        const OPERATION: &str = "commit";
        let sets = json_object(changes.sets().iter());
        let removals: Vec<&str> = changes.removals().iter().map(String::as_str).collect();
        let (owner_changes, owner) = match changes.owner() {
            None => (false, None),
            Some(owner) => (true, owner),
        };
        let version: Option<i64> = self
            .run(OPERATION, |mut conn| async move {
                sqlx::query_scalar(&self.statements.commit)
                    .bind(&*self.prefix)
                    .bind(id.encode())
                    .bind(changes.clears())
                    .bind(removals)
                    .bind(sets)
                    .bind(owner_changes)
                    .bind(owner.map(|owner| owner.name.as_str()))
                    .bind(owner.map(|owner| timestamp(owner.until)))
                    .bind(timestamp(expires_at))
                    .bind(timestamp(SystemTime::now()))
                    .bind(changes.lifetime().is_some())
                    .bind(
                        changes
                            .lifetime()
                            .flatten()
                            .map(|lifetime| lifetime.encode()),
                    )
                    .fetch_optional(&mut *conn)
                    .await
            })
            .await?;
        version.map_or(Ok(Committed::Missing), |version| {
            Ok(Committed::Applied {
                version: u64::try_from(version)
                    .map_err(|_| corrupt(OPERATION, "a negative version"))?,
            })
        })
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let done = self
            .run("touch", |mut conn| async move {
                sqlx::query(&self.statements.touch)
                    .bind(&*self.prefix)
                    .bind(id.encode())
                    .bind(timestamp(expires_at))
                    .bind(timestamp(SystemTime::now()))
                    .execute(&mut *conn)
                    .await
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.run("delete", |mut conn| async move {
            sqlx::query(&self.statements.delete)
                .bind(&*self.prefix)
                .bind(id.encode())
                .execute(&mut *conn)
                .await
        })
        .await
        .map(drop)
    }

    /// One statement: the conditional `DELETE`, and a read of the snapshot
    /// it started from.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        const OPERATION: &str = "delete_if_version";
        let Ok(version) = i64::try_from(version) else {
            // No stored version is that high; the record, if any, has another.
            return Ok(match self.stamp(id).await? {
                Some(_) => ConditionalDelete::Changed,
                None => ConditionalDelete::Missing,
            });
        };
        let (deleted, live): (bool, bool) = self
            .run(OPERATION, |mut conn| async move {
                sqlx::query_as(&self.statements.delete_if_version)
                    .bind(&*self.prefix)
                    .bind(id.encode())
                    .bind(version)
                    .bind(timestamp(SystemTime::now()))
                    .fetch_one(&mut *conn)
                    .await
            })
            .await?;
        Ok(match (deleted, live) {
            (true, _) => ConditionalDelete::Deleted,
            (false, true) => ConditionalDelete::Changed,
            (false, false) => ConditionalDelete::Missing,
        })
    }

    /// One indexed `DELETE … RETURNING`: see the type's docs.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        const OPERATION: &str = "delete_by_owner";
        if Owner::check_name(owner).is_err() {
            // No session can have been given this name.
            return Ok(OwnerPass::default());
        }
        let rows: Vec<(String, bool)> = self
            .run(OPERATION, |mut conn| async move {
                sqlx::query_as(&self.statements.delete_by_owner)
                    .bind(&*self.prefix)
                    .bind(owner)
                    .bind(timestamp(SystemTime::now()))
                    .fetch_all(&mut *conn)
                    .await
            })
            .await?;
        let mut pass = OwnerPass::default();
        for (id, live) in rows {
            if !live {
                continue;
            }
            let id = SessionId::decode(&id)
                .ok_or_else(|| corrupt(OPERATION, "a session id column that is not an id"))?;
            pass.ended += 1;
            pass.indexed.push(id);
        }
        Ok(pass)
    }

    /// One indexed `SELECT` of the owner's live rows: one statement, so
    /// every row is read as of one snapshot.
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        const OPERATION: &str = "sessions_of";
        if Owner::check_name(owner).is_err() {
            return Ok(Vec::new());
        }
        let rows = self
            .run(OPERATION, |mut conn| async move {
                sqlx::query(&self.statements.sessions_of)
                    .bind(&*self.prefix)
                    .bind(owner)
                    .bind(timestamp(SystemTime::now()))
                    .fetch_all(&mut *conn)
                    .await
            })
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id").map_err(|err| {
                    StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(err)
                })?;
                let id = SessionId::decode(&id)
                    .ok_or_else(|| corrupt(OPERATION, "a session id column that is not an id"))?;
                record_from(id, row)
                    .map_err(|err| StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(err))
            })
            .collect()
    }

    fn indexes_owners(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.run("health", |mut conn| async move {
            sqlx::query("SELECT 1").execute(&mut *conn).await
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_travel_as_their_own_text() {
        let data: Data = [
            ("a".to_owned(), r#"{"x":[1,2]}"#.to_owned()),
            ("k\"ey".to_owned(), "not json".to_owned()),
        ]
        .into();
        let object = json_object(data.iter());
        let back: Data = serde_json::from_str(&object).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn times_keep_whole_milliseconds() {
        let time = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        assert_eq!(
            system_time(timestamp(time)),
            UNIX_EPOCH + Duration::from_millis(1_764_000_000_123)
        );
    }
}
