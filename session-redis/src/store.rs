//! `RedisStore`: the `SessionStore` contract on Redis.

use std::{
    borrow::Cow,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures_util::future::try_join_all;
use redis::RedisResult;
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, Owner, OwnerPass, Record, SessionStore,
        Stamp,
    },
    ErrorKind, SessionId, StoreError,
};

use crate::{
    affinity::Connection,
    error::store_error,
    hash::{self, data_field, millis},
    index::{self, Outcome},
    script::{Script, Scripts},
    RedisConfig,
};

/// Sessions in Redis: standalone, Sentinel or Cluster, chosen by
/// [`RedisConfig`].
///
/// Each session is one hash under `<prefix><id>` (see the crate docs for its
/// fields) that Redis itself expires with `PEXPIREAT`. A session with an
/// [`Owner`] is also a member of its owner's index, a sorted set under
/// `<prefix>owner:<name>` scored by the owner's `until`, which
/// [`delete_by_owner`](SessionStore::delete_by_owner) reads.
///
/// | operation | Redis work | round trips |
/// |---|---|---|
/// | `load` | `HGETALL` | 1 |
/// | `create` | Lua: `EXISTS`, `HSET`, `PEXPIREAT` | 1 |
/// | `create` with an owner | the same, plus on the index `ZADD`, `ZREMRANGEBYSCORE`, `ZRANGE`, `PEXPIREAT`: in the same script, or on Cluster in a script of its own first | 1 (Cluster: 2) |
/// | `commit` | Lua: `HGET` (the version), `HDEL` (removals only), one `HSET` (the new version, `expires_at` and the values), `PEXPIREAT` | 1 |
/// | `commit` that sets a new owner | the same (the owner rides in the `HSET`), plus the index work of `create`, placed as there | 1 (Cluster: 2) |
/// | `commit` that removes the owner | the same, plus `HDEL owner owner_until`; the index is left alone | 1 |
/// | `touch` | Lua: `EXISTS`, `HSET`, `PEXPIREAT` | 1 |
/// | `delete` | `UNLINK` | 1 |
/// | `delete_if_version` | Lua: `HGET version`, then `UNLINK` if it is the one given | 1 |
/// | `delete_by_owner` | `ZRANGEBYSCORE` (live entries), then per session a Lua `HGET owner` and `UNLINK` if it matches, all pipelined (on Cluster, to each session's node at once), then one `ZREM` of the settled entries | 3 however many sessions (1 when there are none) |
///
/// Scripts go as `EVALSHA`, with one `EVAL` the first time a server has not
/// seen them. Every operation is bounded by the
/// [operation timeout](RedisConfig::with_operation_timeout) (default
/// 500 ms), connecting included; on Cluster and for `delete_by_owner` that
/// bound covers all of the operation's round trips together.
///
/// # Owners
/// An owner's index entry is written with the session, when it gets the
/// owner, and never again: `until` does not move, so commits that keep the
/// owner and `touch` cost exactly what they cost without owners.
/// Standalone and Sentinel write the session and its index entry in one
/// script, so the two never disagree.
///
/// On **Cluster** the index key and the session key hash to different slots
/// (usually on different nodes), so no one script can write both. The store
/// handles each node on its own rather than pinning keys together with hash
/// tags, because a session's key must be computable from its id alone (every
/// `load` starts from a cookie), and the id does not name its owner. It
/// writes the index entry first, in a script of its own, then the session:
/// a session with an owner is never live unindexed, and the only
/// disagreement possible is an entry whose session was never written (a
/// create that failed or found its id taken), which `delete_by_owner` skips
/// (the session is absent, or names another owner) and which leaves with
/// its score. For the same reason
/// `delete_by_owner` on Cluster leaves the entries of absent sessions to
/// their score instead of removing them: the session may be a create still
/// on its way.
///
/// `delete_by_owner` ends a session only if its hash still names the owner,
/// and a commit to an ended session answers `Missing`, so no commit brings
/// one back. It relies on the session's `expires_at` never passing its
/// owner's `until`, as [`SessionManager`](session_core::SessionManager)
/// ensures: a session that outlived its entry would not be found. Owners
/// need Redis 6.2 or later (`ZADD GT`).
///
/// Cloning is cheap and clones share its connections: the one opened by
/// [`connect`](Self::connect), and one per worker thread that calls it
/// from a current-thread runtime of its own (each actix-web worker),
/// opened in the background on that thread's first call so that no later
/// call crosses threads (the first calls use the shared one meanwhile).
/// So Redis counts one client per store, plus one per such worker.
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
    /// The shared connection, for readers of other libraries' records
    /// in the same Redis.
    #[cfg(feature = "migrate")]
    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The key prefix of this store's own keys.
    #[cfg(feature = "migrate")]
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Connects to the Redis that `config` names.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the config is invalid (its source is a
    /// [`ConfigError`](session_core::ConfigError) naming the key), and
    /// [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`] when the first
    /// connection cannot be made within the connect timeout. Over TLS, a
    /// refused certificate is `Unavailable` with rustls's reason as the
    /// source, and so is a handshake that gets no answer (a plain-text port,
    /// say) by the connect timeout.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        const OPERATION: &str = "connect";
        config
            .validate()
            .map_err(|err| StoreError::new(ErrorKind::Config, OPERATION).with_source(err))?;
        // Standalone makes up to two attempts (one retry), Sentinel asks a
        // sentinel and then connects: each step has the connect timeout.
        let limit = config.connect_timeout().saturating_mul(2);
        let connection = bounded(OPERATION, limit, async { Connection::open(&config).await })
            .await
            .map_err(|err| {
                if config.uses_tls() && err.kind() == ErrorKind::Timeout {
                    // A plain-text Redis takes the TLS ClientHello for the start
                    // of an inline command and waits for the rest: the handshake
                    // gets no answer at all, which on its own would read as a
                    // bare timeout. Say what the likely cause is, and report it
                    // as the outage it is for the caller.
                    StoreError::new(ErrorKind::Unavailable, OPERATION).with_source(format!(
                        "no answer to the TLS handshake within {limit:?}: a server whose port \
                     speaks plain text never answers one (use redis:// for it), nor does a \
                     hung one"
                    ))
                } else {
                    err
                }
            })?;
        Ok(Self {
            connection,
            scripts: Arc::new(Scripts::new()),
            prefix: config.key_prefix().into(),
            operation_timeout: config.operation_timeout(),
        })
    }

    /// The owner index's entries that have not passed their `until` (older
    /// ones name sessions that must be gone), and the session ids they name:
    /// one `ZRANGEBYSCORE`, shared by `delete_by_owner` and `sessions_of`.
    async fn live_entries(
        &self,
        operation: &'static str,
        index_key: &str,
    ) -> Result<(Vec<Vec<u8>>, Vec<SessionId>), StoreError> {
        let members: Vec<Vec<u8>> = self
            .connection
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(index_key)
                    .arg(millis(SystemTime::now()))
                    .arg("+inf"),
            )
            .await
            .map_err(|err| store_error(operation, err))?;
        let ids = members
            .iter()
            .map(|member| index::member_id(member))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| StoreError::new(ErrorKind::Corrupt, operation).with_source(err))?;
        Ok((members, ids))
    }

    /// The same connection under another key prefix, as a second app on the
    /// same Redis would use.
    #[must_use]
    pub fn prefixed(&self, prefix: impl Into<Arc<str>>) -> Self {
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

    /// Runs `script` on `key` with `first_args`, then `rest`, and adds
    /// `entry` to its owner's index.
    ///
    /// Standalone and Sentinel do both in `script`, which takes the index as
    /// `KEYS[2]` and the entry's arguments between `first_args` and `rest`.
    /// On Cluster the index is written first, by a script of its own, and
    /// `script` gets neither: see "Owners" in the type's docs.
    async fn run_indexed<'a, T: redis::FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        entry: Option<&'a index::Entry>,
        first_args: Vec<Cow<'a, str>>,
        rest: impl IntoIterator<Item = Cow<'a, str>>,
    ) -> RedisResult<T> {
        let mut args = first_args;
        let mut keys = vec![key];
        match entry {
            Some(entry) if self.connection.splits_slots() => {
                self.connection
                    .run_script::<()>(&self.scripts.index_owner, &[&entry.key], &entry.args)
                    .await?;
            }
            Some(entry) => {
                keys.push(&entry.key);
                args.extend(entry.args.iter().cloned());
            }
            None => {}
        }
        args.extend(rest);
        self.connection.run_script(script, &keys, &args).await
    }
}

/// Runs `call`, mapping its error and failing with `Timeout` past `limit`.
async fn bounded<T>(
    operation: &'static str,
    limit: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> Result<T, StoreError> {
    within(operation, limit, async {
        call.await.map_err(|err| store_error(operation, err))
    })
    .await
}

/// Runs `call`, failing with `Timeout` past `limit`.
async fn within<T>(
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

#[async_trait]
impl SessionStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

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
        let entry = record
            .owner
            .as_ref()
            .map(|owner| index::Entry::new(&self.prefix, &record.id, owner, SystemTime::now()));
        let stored: u8 = self
            .run(
                "create",
                self.run_indexed(
                    &self.scripts.create,
                    &self.key(&record.id),
                    entry.as_ref(),
                    vec![Cow::Owned(millis(record.expires_at).to_string())],
                    hash::record_fields(record),
                ),
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
        // An owner change travels as ordinary field removals and sets; only
        // a new owner needs an index entry.
        let (owner_removals, owner_sets, entry) = match changes.owner() {
            None => (&[][..], None, None),
            Some(None) => (&hash::OWNER_FIELDS[..], None, None),
            Some(Some(owner)) => (
                &[][..],
                Some(hash::owner_fields(owner)),
                Some(index::Entry::new(
                    &self.prefix,
                    id,
                    owner,
                    SystemTime::now(),
                )),
            ),
        };
        // A lifetime change too: one field, removed or set.
        let (lifetime_removals, lifetime_sets) = match changes.lifetime() {
            None => (&[][..], None),
            Some(None) => (&[hash::LIFETIME][..], None),
            Some(Some(lifetime)) => (&[][..], Some(hash::lifetime_fields(&lifetime))),
        };
        let mut tail: Vec<Cow<'_, str>> =
            Vec::with_capacity(1 + removals.len() + owner_removals.len() + 2 * sets.len() + 6);
        tail.push(Cow::Owned(
            (removals.len() + owner_removals.len() + lifetime_removals.len()).to_string(),
        ));
        tail.extend(removals.iter().map(|key| Cow::Owned(data_field(key))));
        tail.extend(owner_removals.iter().map(|&field| Cow::Borrowed(field)));
        tail.extend(lifetime_removals.iter().map(|&field| Cow::Borrowed(field)));
        for (key, value) in sets {
            tail.push(Cow::Owned(data_field(key)));
            tail.push(Cow::Borrowed(value.as_str()));
        }
        tail.extend(owner_sets.into_iter().flatten());
        tail.extend(lifetime_sets.into_iter().flatten());
        // Room for the index entry's arguments and the tail, so the
        // arguments are allocated once.
        let mut head = Vec::with_capacity(2 + 3 + tail.len());
        head.push(Cow::Owned(millis(expires_at).to_string()));
        head.push(Cow::Borrowed(if changes.clears() { "1" } else { "0" }));
        let version: Option<u64> = self
            .run(
                "commit",
                self.run_indexed(
                    &self.scripts.commit,
                    &self.key(id),
                    entry.as_ref(),
                    head,
                    tail,
                ),
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
                    .run_script(&self.scripts.touch, &[&self.key(id)], &args),
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

    /// One script: `HGET version`, and `UNLINK` when it matches.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        const OPERATION: &str = "delete_if_version";
        let args = [Cow::Owned(version.to_string())];
        let answer: i64 = self
            .run(
                OPERATION,
                self.connection.run_script(
                    &self.scripts.delete_if_version,
                    &[&self.key(id)],
                    &args,
                ),
            )
            .await?;
        match answer {
            1 => Ok(ConditionalDelete::Deleted),
            0 => Ok(ConditionalDelete::Missing),
            -1 => Ok(ConditionalDelete::Changed),
            _ => Err(StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(
                "the delete_if_version script answered something other than 1, 0 or -1",
            )),
        }
    }

    /// One `ZRANGEBYSCORE` of the owner's live entries, one `end_owned`
    /// script per session (sent together, so they cost about one round
    /// trip), and one `ZREM` of the entries settled: see the type's docs.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        const OPERATION: &str = "delete_by_owner";
        if Owner::check_name(owner).is_err() {
            // No session can have been given this name.
            return Ok(OwnerPass::default());
        }
        let index_key = index::key(&self.prefix, owner);
        let redis_error = |err| store_error(OPERATION, err);
        let corrupt = |err| StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(err);
        within(OPERATION, self.operation_timeout, async {
            let (members, ids) = self.live_entries(OPERATION, &index_key).await?;
            let now = millis(SystemTime::now()).to_string();
            let name = [Cow::Borrowed(owner), Cow::Owned(now)];
            let answers: Vec<i64> = try_join_all(ids.iter().map(|id| {
                let key = self.key(id);
                let name = &name;
                async move {
                    self.connection
                        .run_script(&self.scripts.end_owned, &[&key], name)
                        .await
                }
            }))
            .await
            .map_err(redis_error)?;

            let mut ended = 0;
            let mut settled = Vec::with_capacity(members.len());
            for (member, answer) in members.iter().zip(answers) {
                match Outcome::try_from(answer).map_err(corrupt)? {
                    Outcome::Ended => {
                        ended += 1;
                        settled.push(member);
                    }
                    // On Cluster an absent session may be a create whose
                    // index entry went first; removing the entry would
                    // leave that session unindexed. Its score removes it.
                    Outcome::Absent if !self.connection.splits_slots() => settled.push(member),
                    // A session that moved to another owner may move back;
                    // its entry must stay.
                    Outcome::Absent | Outcome::Kept => {}
                }
            }
            if !settled.is_empty() {
                let _: u64 = self
                    .connection
                    .query(redis::cmd("ZREM").arg(&index_key).arg(settled))
                    .await
                    .map_err(redis_error)?;
            }
            Ok(OwnerPass {
                ended,
                indexed: ids,
            })
        })
        .await
    }

    /// `ZRANGEBYSCORE` of the owner's live index entries, then one
    /// `HGETALL` per session, all at once (on Cluster, each to its own
    /// node), keeping those whose hash still names the owner: 2 round trips
    /// however many sessions (1 when there are none), within one operation
    /// timeout. Each session is read as one `HGETALL` reads it, so a listed
    /// record is one `load` would have returned.
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        const OPERATION: &str = "sessions_of";
        if Owner::check_name(owner).is_err() {
            return Ok(Vec::new());
        }
        let index_key = index::key(&self.prefix, owner);
        let redis_error = |err| store_error(OPERATION, err);
        within(OPERATION, self.operation_timeout, async {
            let (_, ids) = self.live_entries(OPERATION, &index_key).await?;
            let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = try_join_all(ids.iter().map(|id| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.key(id));
                async move { self.connection.query(&cmd).await }
            }))
            .await
            .map_err(redis_error)?;
            let now = SystemTime::now();
            let mut records = Vec::with_capacity(ids.len());
            for (id, fields) in ids.into_iter().zip(hashes) {
                let record = hash::decode(id, fields, now).map_err(|err| {
                    StoreError::new(ErrorKind::Corrupt, OPERATION).with_source(err)
                })?;
                records.extend(
                    record.filter(|record| record.owner.as_ref().is_some_and(|o| o.name == owner)),
                );
            }
            Ok(records)
        })
        .await
    }

    /// Always: every topology indexes owners (Cluster node by node).
    fn indexes_owners(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.run("health", self.connection.query(&redis::cmd("PING")))
            .await
    }
}
