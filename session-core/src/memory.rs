//! Sessions in this process's memory: the [`MemoryStore`], on quick_cache,
//! and the [`TieredStore`] that keeps a [`NearCache`] of a remote store's
//! sessions in this process, on moka (feature `memory`).

mod owners;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use crate::tiered::{NearCache, TieredStore};

use async_trait::async_trait;
use quick_cache::{
    sync::{Cache, EntryAction, EntryResult},
    DefaultHashBuilder, UnitWeighter,
};

use self::owners::{Evictions, OwnerIndex};
use crate::{
    Changes, Committed, ConditionalDelete, Created, Data, Lifetime, Owner, OwnerPass, Record,
    SessionId, SessionStore, StoreError,
};

/// A session as the cache holds it. The data sits behind its own `Arc` so a
/// `touch` replaces only the metadata instead of copying every value.
#[derive(Debug)]
struct Stored {
    data: Arc<Data>,
    created_at: SystemTime,
    expires_at: SystemTime,
    version: u64,
    owner: Option<Owner>,
    lifetime: Option<Lifetime>,
}

impl Stored {
    fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }
}

/// The cache's key: a session id under a key prefix. Kept as the id's
/// bytes, not the text `<prefix><id>` a remote store uses, so a call
/// neither encodes the id nor allocates a key (the prefix is shared).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    prefix: Arc<str>,
    id: SessionId,
}

type Sessions = Cache<CacheKey, Arc<Stored>, UnitWeighter, DefaultHashBuilder, Evictions>;

/// When the next unprompted sweep of expired sessions is due, shared by
/// every prefix view of one cache.
#[derive(Debug)]
struct Sweeps {
    interval: Duration,
    /// Milliseconds since the Unix epoch.
    next_due: AtomicU64,
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Sessions in this process's memory, on a
/// [quick_cache](https://docs.rs/quick_cache) `sync::Cache`.
///
/// For development, tests and single-server apps: sessions are lost when the
/// process exits and are not seen by other servers. For several servers, use
/// the replicated cluster store or an external one.
///
/// - **Cost.** Every operation is one hash-map step under one of the
///   cache's shard locks; `load` copies the session's data out, `commit`
///   copies it once (copy-on-write) and `touch` not at all. quick_cache
///   replaced moka's `future::Cache` here for the write path: moka's atomic
///   `and_compute_with` cost about 18,500 instructions a call (its write
///   log, timer wheel and frequency sketch), and an axum app writing its
///   session on every request through it ran at 0.46x bare axum. Measured
///   with callgrind through `bench/instructions` (whole axum requests,
///   start-up cancelled out): the store's `commit` went from 19,228
///   instructions to 2,977 and its `load` from 5,224 to 1,019; a
///   `memory-write` request (a load and a commit) from 55,762 to 34,337, a
///   `memory-read` request from 28,712 to 26,629. A write never waits
///   for I/O under a shard's lock, only for another write's short step on
///   the same shard and the owner index's mutex.
/// - **Atomicity.** `create`, `commit`, `touch`, `delete`,
///   `delete_if_version` and each step of `delete_by_owner` are one atomic
///   step on the session's entry (under its shard's lock, or holding the
///   key's placeholder when the key is absent), and the owner index changes
///   inside that same step: `create` never overwrites a live session,
///   `commit` applies to the live session and bumps its version,
///   `delete_if_version` deletes only at that version.
/// - **Expiry.** Every operation checks the record's `expires_at`, so an
///   expired session is never served, committed to, touched or deleted by
///   version. Its memory is freed by a sweep: a write that finds the last
///   sweep older than [`with_sweep_interval`](MemoryStoreBuilder::with_sweep_interval)
///   (default a minute) runs one, and
///   [`run_pending_tasks`](Self::run_pending_tasks) runs one at once; an
///   expired session is never read again, so eviction also takes it early.
/// - **Capacity.** At most [`with_max_capacity`](MemoryStoreBuilder::with_max_capacity)
///   sessions (default 100 000), expired ones not yet swept included. The
///   cache is split in shards (a few per core) with an equal share each;
///   a shard past its share evicts by CLOCK-Pro (sessions not read since
///   they were written go first) in the insert that overflowed, and an
///   evicted session is gone, from its owner's index too.
/// - **Prefixes.** [`prefixed`](Self::prefixed) gives a view of the same
///   cache and owner index under another key prefix, as two apps would
///   share one Redis.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::{Duration, SystemTime};
/// use session_core::{SessionId, memory::MemoryStore, store::{Record, SessionStore}};
///
/// let store = MemoryStore::builder().with_max_capacity(10_000).build();
/// let now = SystemTime::now();
/// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
/// store.create(&record).await.unwrap();
/// assert_eq!(store.load(&record.id).await.unwrap(), Some(record));
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: Arc<Sessions>,
    owners: Arc<OwnerIndex>,
    sweeps: Arc<Sweeps>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for MemoryStore {
    // Never the entries: whole session ids (each one a bearer credential)
    // and their data must not reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("key_prefix", &self.prefix)
            .field("sessions", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// Configures a [`MemoryStore`].
///
/// ```
/// use session_core::memory::MemoryStore;
///
/// let store = MemoryStore::builder().with_max_capacity(50_000).with_key_prefix("shop:").build();
/// let other_app = store.prefixed("blog:");
/// # let _ = other_app;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_capacity: u64,
    key_prefix: String,
    sweep_interval: Duration,
}

impl MemoryStoreBuilder {
    /// The default [`with_max_capacity`](Self::with_max_capacity).
    pub const DEFAULT_MAX_CAPACITY: u64 = 100_000;
    /// The default [`with_key_prefix`](Self::with_key_prefix).
    pub const DEFAULT_KEY_PREFIX: &'static str = crate::store::DEFAULT_KEY_PREFIX;
    /// The default [`with_sweep_interval`](Self::with_sweep_interval).
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

    /// The most sessions held at once.
    pub fn with_max_capacity(mut self, sessions: u64) -> Self {
        self.max_capacity = sessions;
        self
    }

    /// The prefix of every key.
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// How often the memory of expired sessions is freed without anyone
    /// calling [`MemoryStore::run_pending_tasks`]: the first write after
    /// this long since the last sweep runs one. A sweep visits every
    /// session, one shard at a time, so a shorter interval frees memory
    /// sooner for more work; expired sessions are never served either way.
    pub fn with_sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Builds the store.
    #[must_use]
    pub fn build(self) -> MemoryStore {
        let owners = Arc::new(OwnerIndex::default());
        let cache = Cache::with_options(
            cache_options(self.max_capacity),
            UnitWeighter,
            DefaultHashBuilder::default(),
            Evictions {
                owners: Arc::clone(&owners),
            },
        );
        let sweeps = Sweeps {
            interval: self.sweep_interval,
            next_due: AtomicU64::new(unix_millis(SystemTime::now() + self.sweep_interval)),
        };
        MemoryStore {
            cache: Arc::new(cache),
            owners,
            sweeps: Arc::new(sweeps),
            prefix: self.key_prefix.into(),
        }
    }
}

/// The cache's shards and their capacity. quick_cache gives each shard the
/// capacity divided by the shard count, rounded up, which could hold a few
/// sessions over `max_capacity`; here the shard count is chosen as
/// quick_cache would (four per core, a power of two, at least 32 sessions
/// each) and the capacity rounded down to a multiple of it, so the shards
/// together never hold more than `max_capacity`.
fn cache_options(max_capacity: u64) -> quick_cache::Options {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut shards = u64::try_from(cores * 4)
        .unwrap_or(u64::MAX)
        .next_power_of_two();
    while shards > 1 && max_capacity / shards < 32 {
        shards /= 2;
    }
    quick_cache::OptionsBuilder::new()
        .shards(usize::try_from(shards).unwrap_or(1))
        .estimated_items_capacity(usize::try_from(max_capacity).unwrap_or(usize::MAX))
        .weight_capacity(max_capacity - max_capacity % shards)
        .build()
        .expect("every option is set")
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default capacity, prefix and sweep interval.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_capacity: MemoryStoreBuilder::DEFAULT_MAX_CAPACITY,
            key_prefix: MemoryStoreBuilder::DEFAULT_KEY_PREFIX.to_owned(),
            sweep_interval: MemoryStoreBuilder::DEFAULT_SWEEP_INTERVAL,
        }
    }

    /// Another handle on the same cache whose keys carry `key_prefix`
    /// instead: two apps (or two tests) share one cache without seeing each
    /// other's sessions.
    #[must_use]
    pub fn prefixed(&self, key_prefix: impl Into<String>) -> Self {
        Self {
            cache: Arc::clone(&self.cache),
            owners: Arc::clone(&self.owners),
            sweeps: Arc::clone(&self.sweeps),
            prefix: key_prefix.into().into(),
        }
    }

    /// How many sessions the cache holds, under every prefix: exact for the
    /// moment it was counted, with expired sessions not yet swept included
    /// (call [`run_pending_tasks`](Self::run_pending_tasks) first to leave
    /// them out).
    #[must_use]
    pub fn approximate_len(&self) -> u64 {
        u64::try_from(self.cache.len()).unwrap_or(u64::MAX)
    }

    /// Sweeps expired sessions out of the cache now, freeing their memory,
    /// so [`approximate_len`](Self::approximate_len) counts live sessions
    /// only. Writes also sweep, at most once per
    /// [`with_sweep_interval`](MemoryStoreBuilder::with_sweep_interval);
    /// this is for reports, tests and idle-time housekeeping. O(sessions),
    /// one shard at a time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = session_core::memory::MemoryStore::new();
    /// store.run_pending_tasks().await;
    /// assert_eq!(store.approximate_len(), 0);
    /// # }
    /// ```
    #[allow(clippy::unused_async)] // async as it was on moka: callers await it
    pub async fn run_pending_tasks(&self) {
        self.sweep(SystemTime::now());
    }

    /// Drops every session expired at `now`, each with its owner-index
    /// entry, inside the shard's lock as any other removal.
    fn sweep(&self, now: SystemTime) {
        self.cache.retain(|key, stored| {
            let live = stored.is_live(now);
            if !live {
                self.owners.forget(key, stored);
            }
            live
        });
    }

    /// Runs a [`sweep`](Self::sweep) if the last one is older than the
    /// interval: one write per interval pays for it (one compare-and-swap
    /// picks that write), every other write pays one atomic load. A sweep
    /// costs about 160 instructions a session held (callgrind, 100,000
    /// sessions, half expired: 15.9 million), so at the default capacity
    /// one write a minute pays a few milliseconds; it holds one shard's
    /// lock at a time, so other requests wait for one shard's pass at most
    /// (a fraction of that), not for the whole cache's.
    fn sweep_if_due(&self, now: SystemTime) {
        let now_millis = unix_millis(now);
        let due = self.sweeps.next_due.load(Ordering::Relaxed);
        if now_millis < due {
            return;
        }
        let next = unix_millis(now + self.sweeps.interval);
        if self
            .sweeps
            .next_due
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.sweep(now);
        }
    }

    fn key(&self, id: &SessionId) -> CacheKey {
        CacheKey {
            prefix: Arc::clone(&self.prefix),
            id: *id,
        }
    }

    /// Runs `change` on the live session at `id` as one atomic step (under
    /// its shard's lock): `Some(stored)` replaces it, `None` leaves it.
    /// `None` when the session is missing or expired.
    fn update<T>(
        &self,
        id: &SessionId,
        now: SystemTime,
        change: impl FnOnce(&CacheKey, &Stored) -> (Stored, T),
    ) -> Option<T> {
        let result = self.cache.entry(&self.key(id), None, |key, held| {
            if !held.is_live(now) {
                return EntryAction::Retain(None);
            }
            let (next, answer) = change(key, held);
            *held = Arc::new(next);
            EntryAction::Retain(Some(answer))
        });
        match result {
            EntryResult::Retained(answer) => answer,
            // Absent: the guard holds the key's placeholder and leaves
            // nothing when dropped.
            EntryResult::Vacant(_) => None,
            EntryResult::Removed(..) | EntryResult::Replaced(..) | EntryResult::Timeout => {
                unreachable!("an update only retains its entry, and waits without a timeout")
            }
        }
    }

    /// The second half of a `delete_by_owner` pass: ends each session at
    /// `keys` (read from `owner`'s index) that still has this owner.
    fn end_owned(&self, owner: &str, keys: Vec<CacheKey>) -> OwnerPass {
        let now = SystemTime::now();
        let mut pass = OwnerPass::default();
        for key in keys {
            pass.indexed.push(key.id);
            let result = self.cache.entry(&key, None, |key, held| {
                // Under the shard's lock no write to this session can
                // interleave, so the index changes with the session.
                self.owners.remove(owner, key);
                let ours =
                    held.is_live(now) && held.owner.as_ref().is_some_and(|held| held.name == owner);
                if ours {
                    EntryAction::Remove
                } else {
                    EntryAction::Retain(())
                }
            });
            match result {
                EntryResult::Removed(..) => pass.ended += 1,
                // The session is gone. The guard holds the key's
                // placeholder, so no create of the key comes between.
                EntryResult::Vacant(placeholder) => {
                    self.owners.remove(owner, &key);
                    drop(placeholder);
                }
                EntryResult::Retained(()) | EntryResult::Replaced(..) | EntryResult::Timeout => {}
            }
        }
        pass
    }
}

impl From<&Record> for Stored {
    fn from(record: &Record) -> Self {
        Self {
            data: Arc::new(record.data.clone()),
            created_at: record.created_at,
            expires_at: record.expires_at,
            version: record.version,
            owner: record.owner.clone(),
            lifetime: record.lifetime,
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let now = SystemTime::now();
        Ok(self
            .cache
            .get(&self.key(id))
            .filter(|stored| stored.is_live(now))
            .map(|stored| Record {
                id: *id,
                data: Data::clone(&stored.data),
                created_at: stored.created_at,
                expires_at: stored.expires_at,
                version: stored.version,
                owner: stored.owner.clone(),
                lifetime: stored.lifetime,
            }))
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let now = SystemTime::now();
        let key = self.key(&record.id);
        let result = self.cache.entry(&key, None, |key, held| {
            if held.is_live(now) {
                return EntryAction::Retain(Created::IdTaken);
            }
            // The expired record's index entry may already be gone (a pass
            // of `delete_by_owner` drops entries of expired sessions), so
            // the new owner is added whatever the old one was.
            self.owners.forget(key, held);
            if let Some(owner) = &record.owner {
                self.owners.add(owner, key);
            }
            *held = Arc::new(Stored::from(record));
            EntryAction::Retain(Created::Created)
        });
        let created = match result {
            EntryResult::Retained(created) => created,
            // The key is absent and this call holds its placeholder: every
            // other write of the key waits until it is filled, so the index
            // and the session change as one step here too.
            EntryResult::Vacant(placeholder) => {
                if let Some(owner) = &record.owner {
                    self.owners.add(owner, &key);
                }
                // Only a `remove` or a plain `insert` of the key takes a
                // placeholder away, and this store calls neither.
                let inserted = placeholder.insert(Arc::new(Stored::from(record)));
                debug_assert!(inserted.is_ok(), "the placeholder left the cache");
                Created::Created
            }
            EntryResult::Removed(..) | EntryResult::Replaced(..) | EntryResult::Timeout => {
                unreachable!("a create only retains its entry, and waits without a timeout")
            }
        };
        self.sweep_if_due(now);
        Ok(created)
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let now = SystemTime::now();
        let version = self.update(id, now, |key, current| {
            let mut data = Data::clone(&current.data);
            changes.apply_to(&mut data);
            let owner = match changes.owner() {
                Some(owner) => {
                    self.owners.update(key, current.owner.as_ref(), owner);
                    owner.cloned()
                }
                None => current.owner.clone(),
            };
            let version = current.version + 1;
            let next = Stored {
                data: Arc::new(data),
                created_at: current.created_at,
                expires_at,
                version,
                owner,
                lifetime: changes.lifetime().unwrap_or(current.lifetime),
            };
            (next, version)
        });
        self.sweep_if_due(now);
        Ok(version.map_or(Committed::Missing, |version| Committed::Applied { version }))
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let now = SystemTime::now();
        let touched = self.update(id, now, |_, current| {
            let next = Stored {
                data: Arc::clone(&current.data),
                created_at: current.created_at,
                expires_at,
                version: current.version,
                owner: current.owner.clone(),
                lifetime: current.lifetime,
            };
            (next, ())
        });
        self.sweep_if_due(now);
        Ok(touched.is_some())
    }

    /// One atomic step on the entry: the session and its owner-index entry
    /// leave together.
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = self.key(id);
        let _ = self.cache.remove_if(&key, |stored| {
            self.owners.forget(&key, stored);
            true
        });
        Ok(())
    }

    /// One atomic step on the entry, as `commit` is, so the two are
    /// ordered; the session leaves its owner's index in the same step.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let now = SystemTime::now();
        let key = self.key(id);
        let mut outcome = ConditionalDelete::Missing;
        let _ = self.cache.remove_if(&key, |stored| {
            if !stored.is_live(now) {
                return false;
            }
            if stored.version != version {
                outcome = ConditionalDelete::Changed;
                return false;
            }
            self.owners.forget(&key, stored);
            outcome = ConditionalDelete::Deleted;
            true
        });
        Ok(outcome)
    }

    /// Reads the owner's entries from the index, then removes each session
    /// that still has this owner in one atomic step on its entry, so a
    /// commit racing it either lands first (and is deleted with it) or finds
    /// it gone. The same step drops the entry of a session that is gone
    /// or has another owner; an entry whose session is live with this owner
    /// leaves only with the session. O(the owner's sessions).
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        let keys = self.owners.keys(owner, &self.prefix);
        Ok(self.end_owned(owner, keys))
    }

    /// Reads the owner's entries from the index, then each entry's session.
    /// O(the owner's sessions).
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        for key in self.owners.keys(owner, &self.prefix) {
            if let Some(record) = self.load(&key.id).await? {
                if record.owner.as_ref().is_some_and(|held| held.name == owner) {
                    records.push(record);
                }
            }
        }
        Ok(records)
    }

    fn indexes_owners(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
