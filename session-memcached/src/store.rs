//! `MemcachedStore`: the `SessionStore` contract on Memcached.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use futures_util::future::join_all;
use moka::future::Cache;
use rand::Rng;
use session_core::{
    store::{Changes, Committed, ConditionalDelete, Created, Record, SessionStore},
    ErrorKind, SessionId, StoreError,
};

use crate::{
    client::{self, Client, Guarded, Item},
    envelope::{self, CorruptItem, Envelope},
    error::{store_error, MemcachedError},
    exptime::{self, Exptime},
    MemcachedConfig,
};

/// Memcached's own default item size limit (`-I 1m`).
const MEMCACHED_DEFAULT_ITEM_SIZE: usize = 1024 * 1024;
/// What Memcached adds to key and value when it sizes an item: its item
/// header (48 bytes on 64-bit builds), the CAS (8), the key's terminator,
/// the value's CRLF and the flags. Rounded up, so that an item the store
/// accepts is never one the server refuses: a refused `ms` makes the server
/// drop the item it already had.
const ITEM_OVERHEAD: usize = 96;
/// How long a CAS token read by `load` stays usable for the `commit` that
/// usually follows it within the same request.
const KNOWN_TTL: Duration = Duration::from_secs(5);
/// The most memory the remembered items may take.
const KNOWN_CAPACITY_BYTES: u64 = 16 * 1024 * 1024;
/// The longest pause between two tries of a commit that lost a race.
const MAX_BACKOFF: Duration = Duration::from_millis(32);
/// How many sessions at most have a commit queue at once; an idle queue is
/// dropped after [`QUEUE_IDLE`].
const QUEUE_CAPACITY: u64 = 100_000;
const QUEUE_IDLE: Duration = Duration::from_secs(5);

/// Sessions in Memcached, spread over several servers.
///
/// Each session is one item under `<prefix><id>`, holding a small binary
/// envelope (version, `created_at`, data) and expiring by Memcached's own
/// clock. Keys are placed by rendezvous hashing over the configured servers.
///
/// | operation | Memcached work | round trips |
/// |---|---|---|
/// | `load` | `mg v c t` | 1 |
/// | `create` | `ms` in add mode | 1 |
/// | `commit` | `ms C<cas>` with the token from `load`; on a lost race `mg`, then `ms C<cas>` again | 1, +2 per lost race |
/// | `touch` | `mg T` (meta touch: no data rewritten) | 1 |
/// | `delete` | `md` | 1 |
/// | `delete_if_version` | `mg v c`, then `md C<cas>` if the version is the one given; on a lost race both again | 2, +2 per lost race |
///
/// **Owners.** A session's [`Owner`](session_core::store::Owner) is kept in its
/// envelope, but [`delete_by_owner`](SessionStore::delete_by_owner) answers
/// [`ErrorKind::Unsupported`], and
/// "log out everywhere" with it. Memcached cannot list keys, so an index
/// would have to be an item of its own, and Memcached evicts items under
/// memory pressure whenever it likes: an evicted index would silently let
/// an owner's live sessions survive the call. No CAS scheme prevents that,
/// so this store refuses rather than end only some of them. Use Redis or
/// the cluster store, alone or as a failover pair, where users must be
/// logged out everywhere. For the same reason a user's devices cannot be
/// listed ([`sessions_of`](SessionStore::sessions_of) answers
/// `Unsupported` and says why), and a manager with a per-owner cap refuses
/// this store.
///
/// Commits to one session from this store take turns, so they never race
/// each other; the CAS check settles races with other processes.
///
/// Every operation is bounded by the
/// [operation timeout](MemcachedConfig::with_operation_timeout) (default
/// 500 ms), retries included.
///
/// Cloning is cheap and clones share the connections.
///
/// ```no_run
/// # async fn run() -> Result<(), session_core::StoreError> {
/// use session_core::{Key, SessionManager};
/// use session_memcached::{MemcachedConfig, MemcachedStore};
///
/// let config = MemcachedConfig::new(["10.0.0.1:11211", "10.0.0.2:11211"]);
/// let store = MemcachedStore::connect(config).await?;
/// let manager = SessionManager::builder(store, Key::generate()).build().unwrap();
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemcachedStore {
    client: Client,
    prefix: Arc<str>,
    operation_timeout: Duration,
    commit_attempts: u32,
    item_size_limit: usize,
    /// The CAS token and bytes of recently read or written items, by key, so
    /// that a commit after a load needs no second read. Only ever a starting
    /// point: the CAS check in Memcached decides, and a stale entry costs
    /// one lost race.
    known: Cache<String, Arc<Known>>,
    /// One queue per session with a commit in flight, so that this
    /// process's commits to one session take turns instead of racing each
    /// other on CAS: n racing commits cost O(n²) round trips, n queued ones
    /// O(n). Only an optimisation: a queue dropped early (by eviction) only
    /// lets commits race, and the CAS check still keeps them correct, as it
    /// does for commits from other processes.
    queues: Cache<String, Arc<tokio::sync::Mutex<()>>>,
}

/// An item as this store last saw it.
struct Known {
    cas: u64,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("item_size_limit", &self.item_size_limit)
            .finish_non_exhaustive()
    }
}

impl MemcachedStore {
    /// Connects to the servers that `config` lists.
    ///
    /// It asks every server for its item size limit, which also checks that
    /// it answers. A server that does not answer is logged and left to fail
    /// its own keys with `Unavailable` until it is back; the store then
    /// assumes Memcached's default limit (1 MiB) unless every server answered.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the config is invalid (its source is a
    /// [`ConfigError`](session_core::ConfigError) naming the key), and
    /// [`ErrorKind::Unavailable`] or [`ErrorKind::Timeout`] when no server
    /// answers within the connect timeout.
    pub async fn connect(config: MemcachedConfig) -> Result<Self, StoreError> {
        const OPERATION: &str = "connect";
        config
            .validate()
            .map_err(|err| StoreError::new(ErrorKind::Config, OPERATION).with_source(err))?;
        let client = Client::new(&config)
            .await
            .map_err(|err| store_error(OPERATION, err))?;
        let item_size_limit = item_size_limit(&config).await?;
        Ok(Self {
            client,
            prefix: config.key_prefix().into(),
            operation_timeout: config.operation_timeout(),
            commit_attempts: config.commit_attempts(),
            item_size_limit,
            known: Cache::builder()
                .max_capacity(KNOWN_CAPACITY_BYTES)
                .weigher(|key: &String, known: &Arc<Known>| {
                    u32::try_from(key.len() + known.bytes.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(KNOWN_TTL)
                .build(),
            queues: Cache::builder()
                .max_capacity(QUEUE_CAPACITY)
                .time_to_idle(QUEUE_IDLE)
                .build(),
        })
    }

    /// The same connections under another key prefix, as a second app on
    /// the same servers would use.
    #[must_use]
    pub fn prefixed(&self, prefix: impl Into<Arc<str>>) -> Self {
        Self {
            prefix: prefix.into(),
            ..self.clone()
        }
    }

    /// The largest item this store writes, in bytes: the smallest
    /// `item_size_max` of the servers, or the configured limit if lower.
    #[must_use]
    pub fn item_size_limit(&self) -> usize {
        self.item_size_limit
    }

    /// The key of `id`'s item. At most 250 bytes: the config caps the prefix.
    fn key(&self, id: &SessionId) -> String {
        format!("{}{}", self.prefix, id.encode())
    }

    /// Runs `call` under the operation timeout.
    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.operation_timeout, call)
            .await
            .unwrap_or_else(|elapsed| {
                Err(StoreError::new(ErrorKind::Timeout, operation).with_source(elapsed))
            })
    }

    /// Refuses an item the servers would refuse. Checked before sending,
    /// because Memcached answers a too-large `ms` by also deleting the item
    /// it had under that key.
    fn check_size(
        &self,
        operation: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let size = key.len() + bytes.len() + ITEM_OVERHEAD;
        if size <= self.item_size_limit {
            return Ok(());
        }
        Err(
            StoreError::new(ErrorKind::TooLarge, operation).with_source(MemcachedError::new(
                format!(
                    "the session item would take {size} bytes, over the Memcached item size limit of {} bytes (memcached -I)",
                    self.item_size_limit
                ),
            )),
        )
    }

    async fn remember(&self, key: String, cas: u64, bytes: Vec<u8>) {
        self.known.insert(key, Arc::new(Known { cas, bytes })).await;
    }

    /// One try of a commit from the item as `base` holds it. Keeps what the
    /// store remembers of the item true: the new bytes and CAS on success,
    /// nothing otherwise.
    async fn try_commit(
        &self,
        key: &str,
        base: &Known,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Guarded<u64>, StoreError> {
        const OPERATION: &str = "commit";
        let mut envelope = Envelope::decode(&base.bytes).map_err(|err| corrupt(OPERATION, err))?;
        envelope.apply(changes);
        let version = envelope.version;
        match exptime::exptime(expires_at, SystemTime::now()) {
            // An expiry in the past ends the session: delete, never store
            // with exptime 0, which Memcached reads as "keep forever".
            Exptime::Past => {
                let deleted = self
                    .client
                    .delete(key, Some(base.cas))
                    .await
                    .map_err(|err| store_error(OPERATION, err))?;
                // Deleted, gone, or changed by someone else: either way what
                // this store remembers of the item is no longer true.
                self.known.invalidate(key).await;
                Ok(deleted.with(version))
            }
            Exptime::Wire(exptime) => {
                let bytes = envelope.encode();
                self.check_size(OPERATION, key, &bytes)?;
                let stored = self
                    .client
                    .replace(key, &bytes, exptime, base.cas)
                    .await
                    .map_err(|err| store_error(OPERATION, err))?;
                match stored {
                    Guarded::Done(cas) => self.remember(key.to_owned(), cas, bytes).await,
                    // Stale: drop it, so the next commit does not lose to it
                    // again.
                    Guarded::Conflict | Guarded::Missing => self.known.invalidate(key).await,
                }
                Ok(stored.with(version))
            }
        }
    }

    async fn commit_with_retries(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        const OPERATION: &str = "commit";
        let key = self.key(id);
        let queue = self
            .queues
            .get_with_by_ref(&key, async { Arc::default() })
            .await;
        let _turn = queue.lock().await;
        let mut base = self.known.get(&key).await;
        for attempt in 0..self.commit_attempts {
            let known = match base.take() {
                Some(known) => known,
                None => match self.read(OPERATION, &key).await? {
                    Some(item) => Arc::new(Known {
                        cas: item.cas,
                        bytes: item.value,
                    }),
                    None => return Ok(Committed::Missing),
                },
            };
            match self.try_commit(&key, &known, changes, expires_at).await? {
                Guarded::Done(version) => return Ok(Committed::Applied { version }),
                Guarded::Missing => return Ok(Committed::Missing),
                Guarded::Conflict => {
                    tracing::trace!(attempt, "a concurrent commit won; re-reading");
                    // Let the winner's neighbours through before trying again.
                    if attempt > 0 {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
            }
        }
        Err(
            StoreError::new(ErrorKind::Other, OPERATION).with_source(MemcachedError::new(format!(
                "{} tries all lost the race to other commits of the same session",
                self.commit_attempts
            ))),
        )
    }

    /// Reads the item under `key`.
    async fn read(&self, operation: &'static str, key: &str) -> Result<Option<Item>, StoreError> {
        self.client
            .get(key)
            .await
            .map_err(|err| store_error(operation, err))
    }
}

/// A random pause, up to twice as long after each lost race, so that many
/// commits to one session spread out instead of colliding again.
fn backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(1 << attempt.min(5)).min(MAX_BACKOFF);
    rand::rng().random_range(Duration::ZERO..=ceiling)
}

fn corrupt(operation: &'static str, err: CorruptItem) -> StoreError {
    StoreError::new(ErrorKind::Corrupt, operation).with_source(err)
}

/// The item size limit for `config`: the smallest `item_size_max` of the
/// servers, capped by the configured limit.
async fn item_size_limit(config: &MemcachedConfig) -> Result<usize, StoreError> {
    let answers = join_all(
        config
            .servers()
            .iter()
            .map(|server| client::item_size_max(server, config.connect_timeout())),
    )
    .await;
    let mut limit = config.item_size_limit().unwrap_or(usize::MAX);
    let mut answered = 0;
    let mut first_error = None;
    for (server, answer) in config.servers().iter().zip(answers) {
        match answer {
            Ok(size) => {
                answered += 1;
                limit = limit.min(size);
            }
            Err(err) => {
                tracing::warn!(
                    server = %server,
                    error = %err,
                    "a Memcached server did not answer; its sessions fail until it is back"
                );
                // Its limit is unknown: assume it was never raised.
                limit = limit.min(MEMCACHED_DEFAULT_ITEM_SIZE);
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) if answered == 0 => {
            let kind = if err.kind() == std::io::ErrorKind::TimedOut {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unavailable
            };
            Err(StoreError::new(kind, "connect").with_source(err))
        }
        _ => Ok(limit),
    }
}

#[async_trait]
impl SessionStore for MemcachedStore {
    fn kind(&self) -> &'static str {
        "memcached"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        const OPERATION: &str = "load";
        let key = self.key(id);
        let Some(item) = self.bounded(OPERATION, self.read(OPERATION, &key)).await? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        let envelope = Envelope::decode(&item.value).map_err(|err| corrupt(OPERATION, err))?;
        let expires_at =
            exptime::expires_at(item.ttl, now).map_err(|err| corrupt(OPERATION, err))?;
        self.remember(key, item.cas, item.value).await;
        let mut record = Record::new(*id, envelope.data, envelope.created_at, expires_at);
        record.version = envelope.version;
        record.owner = envelope.owner;
        record.lifetime = envelope.lifetime;
        Ok(Some(record))
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        const OPERATION: &str = "create";
        let key = self.key(&record.id);
        let taken = |taken: bool| {
            if taken {
                Created::IdTaken
            } else {
                Created::Created
            }
        };
        self.bounded(OPERATION, async {
            let exptime = match exptime::exptime(record.expires_at, SystemTime::now()) {
                // Born expired: nothing to store, but a live holder of the id
                // still makes it taken.
                Exptime::Past => {
                    let live = self.client.exists(&key).await;
                    return live.map(taken).map_err(|err| store_error(OPERATION, err));
                }
                Exptime::Wire(exptime) => exptime,
            };
            let bytes = envelope::encode_with(
                record.version,
                record.created_at,
                record.owner.as_ref(),
                record.lifetime.as_ref(),
                &record.data,
            );
            self.check_size(OPERATION, &key, &bytes)?;
            let added = self
                .client
                .add(&key, &bytes, exptime)
                .await
                .map_err(|err| store_error(OPERATION, err))?;
            match added {
                Some(cas) => {
                    self.remember(key, cas, bytes).await;
                    Ok(Created::Created)
                }
                None => Ok(Created::IdTaken),
            }
        })
        .await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.bounded("commit", self.commit_with_retries(id, changes, expires_at))
            .await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        const OPERATION: &str = "touch";
        let key = self.key(id);
        self.bounded(OPERATION, async {
            match exptime::exptime(expires_at, SystemTime::now()) {
                Exptime::Past => {
                    self.known.invalidate(&key).await;
                    let deleted = self.client.delete(&key, None).await;
                    deleted
                        .map(|deleted| deleted == Guarded::Done(()))
                        .map_err(|err| store_error(OPERATION, err))
                }
                Exptime::Wire(exptime) => self
                    .client
                    .touch(&key, exptime)
                    .await
                    .map_err(|err| store_error(OPERATION, err)),
            }
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        const OPERATION: &str = "delete";
        let key = self.key(id);
        self.known.invalidate(&key).await;
        self.bounded(OPERATION, async {
            let deleted = self.client.delete(&key, None).await;
            deleted.map(drop).map_err(|err| store_error(OPERATION, err))
        })
        .await
    }

    /// `mg` for the item's version and CAS token, then `md C<cas>`: the
    /// delete lands only if nothing changed the item since it was read. A
    /// lost race (a commit, or a touch, which moves the token too) reads
    /// again, as `commit` does.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        const OPERATION: &str = "delete_if_version";
        let key = self.key(id);
        self.bounded(OPERATION, async {
            for attempt in 0..self.commit_attempts {
                let Some(item) = self.read(OPERATION, &key).await? else {
                    return Ok(ConditionalDelete::Missing);
                };
                let envelope =
                    Envelope::decode(&item.value).map_err(|err| corrupt(OPERATION, err))?;
                if envelope.version != version {
                    return Ok(ConditionalDelete::Changed);
                }
                let deleted = self
                    .client
                    .delete(&key, Some(item.cas))
                    .await
                    .map_err(|err| store_error(OPERATION, err))?;
                match deleted {
                    Guarded::Done(()) => {
                        self.known.invalidate(&key).await;
                        return Ok(ConditionalDelete::Deleted);
                    }
                    Guarded::Missing => return Ok(ConditionalDelete::Missing),
                    Guarded::Conflict if attempt > 0 => {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    Guarded::Conflict => {}
                }
            }
            Err(
                StoreError::new(ErrorKind::Other, OPERATION).with_source(MemcachedError::new(
                    format!(
                        "{} tries all lost the race to other writes of the same session",
                        self.commit_attempts
                    ),
                )),
            )
        })
        .await
    }

    /// Answers [`ErrorKind::Unsupported`],
    /// saying why: Memcached cannot enumerate keys, so this store keeps no
    /// owner index to list (see "Owners" in the type's docs), and a list
    /// that might miss sessions would hide a device from its owner.
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        let _ = owner;
        Err(StoreError::unsupported("sessions_of").with_source(
            "memcached cannot enumerate keys, so it keeps no owner index to list a user's sessions; \
             use Redis, PostgreSQL or the cluster store for a user's devices",
        ))
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.bounded("health", async {
            self.client
                .noop()
                .await
                .map_err(|err| store_error("health", err))
        })
        .await
    }
}
