//! [`TieredStore`]: a near-cache in this process in front of a remote store.

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;
use moka::future::Cache;

use crate::{
    expiry::UntilExpiresAt,
    telemetry::{self, Observed},
    Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionId, SessionStore,
    Stamp, StoreError,
};

/// The sessions a [`TieredStore`] keeps in this process: a moka cache
/// bounded by the bytes of session data it holds, each entry kept no longer
/// than its record's `expires_at`.
///
/// ```
/// use session_core::memory::NearCache;
///
/// let near = NearCache::new().with_max_bytes(16 * 1024 * 1024);
/// # let _ = near;
/// ```
pub struct NearCache {
    cache: Cache<SessionId, Arc<Record>>,
}

impl std::fmt::Debug for NearCache {
    // moka's own Debug lists every entry, session data included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("sessions", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// Bytes charged per entry on top of its keys and values: the record's
/// fixed fields, the map's and the cache's own bookkeeping, roughly.
const ENTRY_OVERHEAD: usize = 160;

fn weight(record: &Record) -> u32 {
    let data: usize = record
        .data
        .iter()
        .map(|(key, value)| key.len() + value.len() + 16)
        .sum();
    u32::try_from(data + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

impl Default for NearCache {
    fn default() -> Self {
        Self::new()
    }
}

impl NearCache {
    /// The default bound: 64 MiB of session data.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

    /// A near-cache of at most [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES).
    #[must_use]
    pub fn new() -> Self {
        Self {
            cache: Self::cache(Self::DEFAULT_MAX_BYTES),
        }
    }

    /// Holds at most about `bytes` of session keys and values; past that
    /// moka evicts by its TinyLFU policy. Set it before the cache is used:
    /// the cache is made anew, empty.
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.cache = Self::cache(bytes);
        self
    }

    fn cache(max_bytes: u64) -> Cache<SessionId, Arc<Record>> {
        Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, record: &Arc<Record>| weight(record))
            .expire_after(UntilExpiresAt)
            .build()
    }
}

/// A [`NearCache`] in this process in front of a remote store (`far`),
/// for speed, that never serves a session another server has changed.
///
/// # How it stays correct
/// Every `load` asks the far store for the session's
/// [`Stamp`] (its version and expiry) and serves the near copy only when
/// the versions are equal. Every commit on any server bumps the version,
/// so a copy with the current version is the current data; a touch moves
/// only the expiry, which the stamp carries too. A session deleted or
/// expired on the far store has no stamp, and the near copy is dropped.
/// So the near-cache saves the far store's reply **payload** and its
/// decoding, never the round trip: a load is one small command (Redis: one
/// `HMGET` of two fields) instead of the whole session. Writes go to the
/// far store first; a commit whose new version is exactly one past the near
/// copy's updates the near copy in place, so the next load is a hit.
///
/// The scheme needs the far store's versions to name one content each,
/// which every single store guarantees. Put the near-cache in front of a
/// [`FailoverStore`](crate::failover::FailoverStore), not inside one: in mirror mode,
/// two stores that drifted apart during an outage can hold different data
/// under one version until they are repaired.
///
/// # What it saves
/// The payload of the session: the bigger the session, the more. Stores
/// whose [`SessionStore::stamp`] is the default (which loads the whole
/// record, as Memcached's must: it cannot read part of a value) gain
/// nothing from it. `BENCHMARKS.md` has the figures for Redis.
///
/// A far store that fails fails the load: the near copy is not served
/// unchecked, because it might be stale.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::{Duration, SystemTime};
/// use session_core::{SessionId, memory::{MemoryStore, NearCache, TieredStore}, store::{Record, SessionStore}};
///
/// // In production the far store is, say, a RedisStore.
/// let store = TieredStore::new(NearCache::new(), MemoryStore::new());
/// let now = SystemTime::now();
/// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
/// store.create(&record).await.unwrap();
/// assert_eq!(store.load(&record.id).await.unwrap(), Some(record));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TieredStore {
    near: Arc<NearCache>,
    far: Arc<dyn SessionStore>,
}

impl TieredStore {
    /// Serves `far`'s sessions through `near`.
    #[must_use]
    pub fn new(near: NearCache, far: impl SessionStore) -> Self {
        Self {
            near: Arc::new(near),
            // Its calls get their own span and metrics, under its kind.
            far: Observed::wrap(Arc::new(far)),
        }
    }

    /// How many sessions the near-cache holds, approximately (moka counts
    /// evictions lazily).
    #[must_use]
    pub fn near_len(&self) -> u64 {
        self.near.cache.entry_count()
    }

    async fn keep(&self, record: &Record) {
        self.near
            .cache
            .insert(record.id, Arc::new(record.clone()))
            .await;
    }
}

fn count(result: &'static str) {
    metrics::counter!(telemetry::NEAR_CACHE_LOADS, "result" => result).increment(1);
}

#[async_trait]
impl SessionStore for TieredStore {
    fn kind(&self) -> &'static str {
        "tiered"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        if let Some(near) = self.near.cache.get(id).await {
            match self.far.stamp(id).await? {
                None => {
                    self.near.cache.invalidate(id).await;
                    count("gone");
                    return Ok(None);
                }
                Some(stamp) if stamp.version == near.version => {
                    count("hit");
                    let mut record = Record::clone(&near);
                    if record.expires_at != stamp.expires_at {
                        // Touched elsewhere: same data, later expiry.
                        record.expires_at = stamp.expires_at;
                        self.keep(&record).await;
                    }
                    return Ok(Some(record));
                }
                Some(_) => count("stale"),
            }
        } else {
            count("miss");
        }
        let loaded = self.far.load(id).await?;
        match &loaded {
            Some(record) => self.keep(record).await,
            None => self.near.cache.invalidate(id).await,
        }
        Ok(loaded)
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        self.far.stamp(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let created = self.far.create(record).await?;
        if created == Created::Created {
            self.keep(record).await;
        }
        Ok(created)
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let committed = self.far.commit(id, changes, expires_at).await;
        match (&committed, self.near.cache.get(id).await) {
            // Our delta on the version we hold is exactly the new version:
            // no other commit came in between.
            (Ok(Committed::Applied { version }), Some(near)) if near.version + 1 == *version => {
                let mut record = Record::clone(&near);
                changes.apply_to_record(&mut record);
                record.expires_at = expires_at;
                record.version = *version;
                self.keep(&record).await;
            }
            // Anything else, even an error (the commit may have landed):
            // the near copy can no longer be trusted to be the newest, and
            // the next load would notice anyway; dropping it saves that load
            // a wasted stamp.
            (_, Some(_)) => self.near.cache.invalidate(id).await,
            (_, None) => {}
        }
        committed
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        // The near copy keeps its old expiry; the stamp of the next load
        // carries the new one.
        self.far.touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.near.cache.invalidate(id).await;
        self.far.delete(id).await
    }

    /// Decided by the far store, whose versions are the ones that count;
    /// the near copy goes whatever the answer, as for `delete`.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.near.cache.invalidate(id).await;
        self.far.delete_if_version(id, version).await
    }

    /// Ends them in the far store only. A near copy of an ended session is
    /// never served: every near hit is checked against the far store's
    /// stamp, which is gone, and the copy is dropped then.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.far.delete_by_owner(owner).await
    }

    /// The far store's list: the near cache holds no index.
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.far.sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        self.far.indexes_owners()
    }

    fn generate_id(&self) -> SessionId {
        self.far.generate_id()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.far.health().await
    }
}
