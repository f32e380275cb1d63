//! `MemoryStore`: sessions in this process's memory, on moka.

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;
use moka::{
    future::Cache,
    ops::compute::{CompResult, Op},
};

use crate::{
    expiry::{ExpiresAt, UntilExpiresAt},
    Changes, Committed, Created, Data, Record, SessionId, SessionStore, StoreError,
};

/// A session as the cache holds it. The data sits behind its own `Arc` so a
/// `touch` replaces only the metadata instead of copying every value.
#[derive(Debug)]
struct Stored {
    data: Arc<Data>,
    created_at: SystemTime,
    expires_at: SystemTime,
    version: u64,
}

impl Stored {
    fn is_live(&self) -> bool {
        self.expires_at > SystemTime::now()
    }
}

impl ExpiresAt for Stored {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// Sessions in this process's memory, on a [moka](https://docs.rs/moka)
/// `future::Cache`.
///
/// For development, tests and single-server apps: sessions are lost when the
/// process exits and are not seen by other servers. For several servers, use
/// the replicated cluster store or an external one.
///
/// - **Expiry.** Each entry lives until its record's `expires_at` (moka's
///   per-entry `Expiry`); `load` also checks `expires_at` itself, so an entry
///   moka has not yet evicted is never served.
/// - **Capacity.** At most [`max_capacity`](MemoryStoreBuilder::max_capacity)
///   sessions (default 100 000). Past that moka evicts by its TinyLFU policy,
///   shortly after the insert that overflowed, and an evicted session is gone.
/// - **Cost.** `load`, `touch` and `delete` are O(1) hash-map operations;
///   `load` copies the session's data out. `create` and `commit` run as one
///   atomic compute on the entry, and `commit` copies the data once
///   (copy-on-write).
/// - **Prefixes.** [`with_prefix`](Self::with_prefix) gives a view of the same
///   cache under another key prefix, as two apps would share one Redis.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::{Duration, SystemTime};
/// use session_core::{MemoryStore, Record, SessionId, SessionStore};
///
/// let store = MemoryStore::builder().max_capacity(10_000).build();
/// let now = SystemTime::now();
/// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
/// store.create(&record).await.unwrap();
/// assert_eq!(store.load(&record.id).await.unwrap(), Some(record));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    cache: Cache<String, Arc<Stored>>,
    prefix: Arc<str>,
}

/// Configures a [`MemoryStore`].
///
/// ```
/// use session_core::MemoryStore;
///
/// let store = MemoryStore::builder().max_capacity(50_000).prefix("shop:").build();
/// let other_app = store.with_prefix("blog:");
/// # let _ = other_app;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_capacity: u64,
    prefix: String,
}

impl MemoryStoreBuilder {
    /// The most sessions held at once.
    pub fn max_capacity(mut self, sessions: u64) -> Self {
        self.max_capacity = sessions;
        self
    }

    /// The prefix of every key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Builds the store.
    #[must_use]
    pub fn build(self) -> MemoryStore {
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(self.max_capacity)
                .expire_after(UntilExpiresAt)
                .build(),
            prefix: self.prefix.into(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// The default session capacity.
    pub const DEFAULT_MAX_CAPACITY: u64 = 100_000;
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "session:";

    /// A store with the default capacity and prefix.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_capacity: Self::DEFAULT_MAX_CAPACITY,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
        }
    }

    /// A view of the same cache whose keys carry `prefix` instead.
    #[must_use]
    pub fn with_prefix(&self, prefix: impl Into<String>) -> Self {
        Self {
            cache: self.cache.clone(),
            prefix: prefix.into().into(),
        }
    }

    /// How many sessions the cache holds, approximately: expired and evicted
    /// entries leave moka's count lazily.
    #[must_use]
    pub fn approximate_len(&self) -> u64 {
        self.cache.entry_count()
    }

    fn key(&self, id: &SessionId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + crate::id::ENCODED_LEN);
        key.push_str(&self.prefix);
        key.push_str(&id.encode());
        key
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        Ok(self
            .cache
            .get(&self.key(id))
            .await
            .filter(|stored| stored.is_live())
            .map(|stored| Record {
                id: *id,
                data: Data::clone(&stored.data),
                created_at: stored.created_at,
                expires_at: stored.expires_at,
                version: stored.version,
            }))
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let result = self
            .cache
            .entry(self.key(&record.id))
            .and_compute_with(|existing| async move {
                if existing.is_some_and(|entry| entry.value().is_live()) {
                    return Op::Nop;
                }
                Op::Put(Arc::new(Stored {
                    data: Arc::new(record.data.clone()),
                    created_at: record.created_at,
                    expires_at: record.expires_at,
                    version: record.version,
                }))
            })
            .await;
        Ok(match result {
            CompResult::Unchanged(_) => Created::IdTaken,
            _ => Created::Created,
        })
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let result = self
            .cache
            .entry(self.key(id))
            .and_compute_with(|existing| async move {
                let Some(entry) = existing.filter(|entry| entry.value().is_live()) else {
                    return Op::Nop;
                };
                let current = entry.value();
                let mut data = Data::clone(&current.data);
                changes.apply_to(&mut data);
                Op::Put(Arc::new(Stored {
                    data: Arc::new(data),
                    created_at: current.created_at,
                    expires_at,
                    version: current.version + 1,
                }))
            })
            .await;
        Ok(match result {
            CompResult::ReplacedWith(entry) => Committed::Applied {
                version: entry.value().version,
            },
            _ => Committed::Missing,
        })
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let result = self
            .cache
            .entry(self.key(id))
            .and_compute_with(|existing| async move {
                let Some(entry) = existing.filter(|entry| entry.value().is_live()) else {
                    return Op::Nop;
                };
                let current = entry.value();
                Op::Put(Arc::new(Stored {
                    data: Arc::clone(&current.data),
                    created_at: current.created_at,
                    expires_at,
                    version: current.version,
                }))
            })
            .await;
        Ok(matches!(result, CompResult::ReplacedWith(_)))
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.cache.invalidate(&self.key(id)).await;
        Ok(())
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn record(lifetime: Duration) -> Record {
        let now = SystemTime::now();
        Record::new(SessionId::generate(), Data::new(), now, now + lifetime)
    }

    #[tokio::test]
    async fn capacity_bounds_the_number_of_sessions() {
        let store = MemoryStore::builder().max_capacity(10).build();
        for _ in 0..100 {
            let _ = store
                .create(&record(Duration::from_secs(600)))
                .await
                .unwrap();
        }
        store.cache.run_pending_tasks().await;
        assert!(store.approximate_len() <= 10, "{}", store.approximate_len());
    }

    #[tokio::test]
    async fn expired_sessions_leave_the_cache_not_just_the_answers() {
        let store = MemoryStore::new();
        let _ = store
            .create(&record(Duration::from_millis(100)))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            store.cache.run_pending_tasks().await;
            if store.approximate_len() == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moka never evicted the expired entry"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn touch_shares_the_data_instead_of_copying_it() {
        let store = MemoryStore::new();
        let record = record(Duration::from_secs(60));
        let _ = store.create(&record).await.unwrap();
        let before = store.cache.get(&store.key(&record.id)).await.unwrap();
        assert!(store
            .touch(&record.id, record.expires_at + Duration::from_secs(60))
            .await
            .unwrap());
        let after = store.cache.get(&store.key(&record.id)).await.unwrap();
        assert!(Arc::ptr_eq(&before.data, &after.data));
    }
}
