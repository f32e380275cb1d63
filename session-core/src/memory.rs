//! Sessions in this process's memory, on moka: the [`MemoryStore`], and the
//! [`TieredStore`] that keeps a [`NearCache`] of a remote store's sessions in
//! this process (feature `memory`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

pub use crate::tiered::{NearCache, TieredStore};

use async_trait::async_trait;
use moka::{
    future::Cache,
    notification::RemovalCause,
    ops::compute::{CompResult, Op},
};

use crate::{
    expiry::{ExpiresAt, UntilExpiresAt},
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

/// The cache's key: a session id under a key prefix. Kept as the id's
/// bytes, not the text `<prefix><id>` a remote store uses, so a call
/// neither encodes the id nor allocates a key (the prefix is shared).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    prefix: Arc<str>,
    id: SessionId,
}

/// Owner name → the cache keys of that owner's sessions, each with its
/// owner's `until`. Shared by every prefix view; a key carries its prefix,
/// so a view picks out its own.
///
/// Entries are added inside the same atomic compute that stores the
/// session, so a session with an owner is never live unindexed. They leave
/// when the session leaves the cache (the eviction listener), when their
/// `until` has passed (swept on the next add for that owner), or when
/// `delete_by_owner` finds, inside the compute on the session's entry, that
/// the session is gone or has another owner. An entry never leaves while
/// its session is live with its owner, so every pass of `delete_by_owner`
/// sees every such session, however many passes run at once.
#[derive(Default)]
struct OwnerIndex {
    owners: Mutex<HashMap<String, HashMap<CacheKey, SystemTime>>>,
}

impl OwnerIndex {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, HashMap<CacheKey, SystemTime>>) -> T,
    ) -> T {
        // Every critical section leaves the maps consistent, so a panic in
        // another thread cannot have left them half-changed.
        f(&mut self.owners.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn add(&self, owner: &Owner, key: &CacheKey) {
        let now = SystemTime::now();
        self.with(|owners| {
            let keys = owners.entry(owner.name.clone()).or_default();
            keys.retain(|_, until| *until > now);
            keys.insert(key.clone(), owner.until);
        });
    }

    fn remove(&self, owner: &str, key: &CacheKey) {
        self.with(|owners| {
            if let Some(keys) = owners.get_mut(owner) {
                keys.remove(key);
                if keys.is_empty() {
                    owners.remove(owner);
                }
            }
        });
    }

    /// The keys of `owner`'s sessions under `prefix`, left in the index: an
    /// entry leaves only with its session (see the type's docs), so a pass
    /// that fails or is dropped half-way leaves no live session unindexed.
    fn keys(&self, owner: &str, prefix: &str) -> Vec<CacheKey> {
        self.with(|owners| {
            owners.get(owner).map_or_else(Vec::new, |keys| {
                keys.keys()
                    .filter(|key| &*key.prefix == prefix)
                    .cloned()
                    .collect()
            })
        })
    }

    /// Keeps the index in step with a store write of `key`: indexes the new
    /// owner, and forgets the old one when it changed.
    fn update(&self, key: &CacheKey, old: Option<&Owner>, new: Option<&Owner>) {
        if let Some(old) = old.filter(|old| new.is_none_or(|new| new.name != old.name)) {
            self.remove(&old.name, key);
        }
        if let Some(new) = new {
            if old != Some(new) {
                self.add(new, key);
            }
        }
    }
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
/// - **Capacity.** At most [`with_max_capacity`](MemoryStoreBuilder::with_max_capacity)
///   sessions (default 100 000). Past that moka evicts by its TinyLFU policy,
///   shortly after the insert that overflowed, and an evicted session is gone.
/// - **Cost.** `load`, `touch` and `delete` are O(1) hash-map operations;
///   `load` copies the session's data out. `create` and `commit` run as one
///   atomic compute on the entry, and `commit` copies the data once
///   (copy-on-write).
/// - **Prefixes.** [`prefixed`](Self::prefixed) gives a view of the same
///   cache under another key prefix, as two apps would share one Redis.
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
    cache: Cache<CacheKey, Arc<Stored>>,
    owners: Arc<OwnerIndex>,
    prefix: Arc<str>,
}

impl std::fmt::Debug for MemoryStore {
    // moka's own Debug lists every entry: whole session ids (each one a
    // bearer credential) and their data. A log line must show neither.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("key_prefix", &self.prefix)
            .field("sessions", &self.cache.entry_count())
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
}

impl MemoryStoreBuilder {
    /// The default [`with_max_capacity`](Self::with_max_capacity).
    pub const DEFAULT_MAX_CAPACITY: u64 = 100_000;
    /// The default [`with_key_prefix`](Self::with_key_prefix).
    pub const DEFAULT_KEY_PREFIX: &'static str = crate::store::DEFAULT_KEY_PREFIX;

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

    /// Builds the store.
    #[must_use]
    pub fn build(self) -> MemoryStore {
        let owners = Arc::new(OwnerIndex::default());
        let listener = {
            let owners = Arc::clone(&owners);
            move |key: Arc<CacheKey>, stored: Arc<Stored>, cause: RemovalCause| {
                // A replacement is a write, and the write kept the index.
                if cause != RemovalCause::Replaced {
                    if let Some(owner) = &stored.owner {
                        owners.remove(&owner.name, &key);
                    }
                }
            }
        };
        MemoryStore {
            cache: Cache::builder()
                .max_capacity(self.max_capacity)
                .expire_after(UntilExpiresAt)
                .eviction_listener(listener)
                .build(),
            owners,
            prefix: self.key_prefix.into(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default capacity and prefix.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_capacity: MemoryStoreBuilder::DEFAULT_MAX_CAPACITY,
            key_prefix: MemoryStoreBuilder::DEFAULT_KEY_PREFIX.to_owned(),
        }
    }

    /// Another handle on the same cache whose keys carry `key_prefix`
    /// instead: two apps (or two tests) share one cache without seeing each
    /// other's sessions.
    #[must_use]
    pub fn prefixed(&self, key_prefix: impl Into<String>) -> Self {
        Self {
            cache: self.cache.clone(),
            owners: Arc::clone(&self.owners),
            prefix: key_prefix.into().into(),
        }
    }

    /// How many sessions the cache holds, approximately: expired and evicted
    /// entries leave moka's count lazily.
    #[must_use]
    pub fn approximate_len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Runs the cache's pending maintenance now: expired and evicted
    /// sessions leave, and [`approximate_len`](Self::approximate_len) catches
    /// up. It otherwise runs a little at a time during later calls, so a
    /// store nobody calls keeps expired sessions in memory (never serving
    /// them). For reports, tests and idle-time housekeeping.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = session_core::memory::MemoryStore::new();
    /// store.run_pending_tasks().await;
    /// assert_eq!(store.approximate_len(), 0);
    /// # }
    /// ```
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    fn key(&self, id: &SessionId) -> CacheKey {
        CacheKey {
            prefix: Arc::clone(&self.prefix),
            id: *id,
        }
    }

    /// The second half of a `delete_by_owner` pass: ends each session at
    /// `keys` (read from `owner`'s index) that still has this owner.
    async fn end_owned(&self, owner: &str, keys: Vec<CacheKey>) -> OwnerPass {
        let mut pass = OwnerPass::default();
        for key in keys {
            pass.indexed.push(key.id);
            let result = self
                .cache
                .entry(key.clone())
                .and_compute_with(|existing| async move {
                    let ours = existing.as_ref().is_some_and(|entry| {
                        entry.value().is_live()
                            && entry
                                .value()
                                .owner
                                .as_ref()
                                .is_some_and(|held| held.name == owner)
                    });
                    // Under the entry's lock no write to this session can
                    // interleave, so the index changes with the session.
                    self.owners.remove(owner, &key);
                    if ours {
                        Op::Remove
                    } else {
                        Op::Nop
                    }
                })
                .await;
            if matches!(result, CompResult::Removed(_)) {
                pass.ended += 1;
            }
        }
        pass
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

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
                owner: stored.owner.clone(),
                lifetime: stored.lifetime,
            }))
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let result = self
            .cache
            .entry(self.key(&record.id))
            .and_compute_with(|existing| async move {
                let old = match existing {
                    Some(entry) if entry.value().is_live() => return Op::Nop,
                    Some(entry) => entry.into_value().owner.clone(),
                    None => None,
                };
                if old.is_some() || record.owner.is_some() {
                    // Only owned sessions pay for a second copy of the key.
                    // The expired record's entry may already be gone (a
                    // pass of `delete_by_owner` drops entries of expired
                    // sessions), so the new owner is added whatever the
                    // old one was.
                    let key = self.key(&record.id);
                    if let Some(old) = &old {
                        self.owners.remove(&old.name, &key);
                    }
                    if let Some(owner) = &record.owner {
                        self.owners.add(owner, &key);
                    }
                }
                Op::Put(Arc::new(Stored {
                    data: Arc::new(record.data.clone()),
                    created_at: record.created_at,
                    expires_at: record.expires_at,
                    version: record.version,
                    owner: record.owner.clone(),
                    lifetime: record.lifetime,
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
                let owner = match changes.owner() {
                    Some(owner) => {
                        self.owners
                            .update(entry.key(), current.owner.as_ref(), owner);
                        owner.cloned()
                    }
                    None => current.owner.clone(),
                };
                Op::Put(Arc::new(Stored {
                    data: Arc::new(data),
                    created_at: current.created_at,
                    expires_at,
                    version: current.version + 1,
                    owner,
                    lifetime: changes.lifetime().unwrap_or(current.lifetime),
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
                    owner: current.owner.clone(),
                    lifetime: current.lifetime,
                }))
            })
            .await;
        Ok(matches!(result, CompResult::ReplacedWith(_)))
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.cache.invalidate(&self.key(id)).await;
        Ok(())
    }

    /// One atomic compute on the entry, as `commit` is, so the two are
    /// ordered; the eviction listener takes the session out of its owner's
    /// index, as for `delete`.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let result = self
            .cache
            .entry(self.key(id))
            .and_compute_with(|existing| async move {
                match existing {
                    Some(entry) if entry.value().is_live() && entry.value().version == version => {
                        Op::Remove
                    }
                    _ => Op::Nop,
                }
            })
            .await;
        Ok(match result {
            CompResult::Removed(_) => ConditionalDelete::Deleted,
            CompResult::Unchanged(entry) if entry.value().is_live() => ConditionalDelete::Changed,
            _ => ConditionalDelete::Missing,
        })
    }

    /// Reads the owner's entries from the index, then removes each session
    /// that still has this owner in one atomic compute on its entry, so a
    /// commit racing it either lands first (and is deleted with it) or finds
    /// it gone. The same compute drops the entry of a session that is gone
    /// or has another owner; an entry whose session is live with this owner
    /// leaves only with the session. O(the owner's sessions).
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        let keys = self.owners.keys(owner, &self.prefix);
        Ok(self.end_owned(owner, keys).await)
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
mod tests {
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;

    use super::*;
    use crate::{Finish, Key, SessionManager};

    fn record(lifetime: Duration) -> Record {
        let now = SystemTime::now();
        Record::new(SessionId::generate(), Data::new(), now, now + lifetime)
    }

    #[tokio::test]
    async fn capacity_bounds_the_number_of_sessions() {
        let store = MemoryStore::builder().with_max_capacity(10).build();
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

    fn indexed(store: &MemoryStore, owner: &str) -> usize {
        store
            .owners
            .with(|owners| owners.get(owner).map_or(0, HashMap::len))
    }

    fn owned(name: &str, lifetime: Duration) -> Record {
        let mut record = record(lifetime);
        record.owner = Some(Owner::new(name, record.expires_at).unwrap());
        record
    }

    #[tokio::test]
    async fn the_owner_index_follows_deletes_expiry_and_owner_changes() {
        let store = MemoryStore::new();
        let deleted = owned("ada", Duration::from_secs(60));
        let moved = owned("ada", Duration::from_secs(60));
        let expiring = owned("ada", Duration::from_millis(100));
        for record in [&deleted, &moved, &expiring] {
            let _ = store.create(record).await.unwrap();
        }
        assert_eq!(indexed(&store, "ada"), 3);

        store.delete(&deleted.id).await.unwrap();
        let mut changes = Changes::default();
        changes.set_owner(Some(Owner::new("bob", moved.expires_at).unwrap()));
        let _ = store
            .commit(&moved.id, &changes, moved.expires_at)
            .await
            .unwrap();
        store.cache.run_pending_tasks().await;
        assert_eq!(indexed(&store, "bob"), 1);

        let deadline = Instant::now() + Duration::from_secs(10);
        while indexed(&store, "ada") > 0 {
            assert!(
                Instant::now() < deadline,
                "ada's index still holds {} entries",
                indexed(&store, "ada")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            store.cache.run_pending_tasks().await;
        }
        assert!(store.owners.with(|owners| !owners.contains_key("ada")));
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

    /// A [`MemoryStore`] whose first `delete_by_owner` pass is held between
    /// reading the owner's index and ending the sessions it found, until
    /// the test lets it go: the window in which a request can move a
    /// session to a new id behind the pass's back.
    #[derive(Debug)]
    struct HeldPass {
        store: MemoryStore,
        hold: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
    }

    #[async_trait]
    impl SessionStore for HeldPass {
        async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
            self.store.load(id).await
        }

        async fn create(&self, record: &Record) -> Result<Created, StoreError> {
            self.store.create(record).await
        }

        async fn commit(
            &self,
            id: &SessionId,
            changes: &Changes,
            expires_at: SystemTime,
        ) -> Result<Committed, StoreError> {
            self.store.commit(id, changes, expires_at).await
        }

        async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
            self.store.touch(id, expires_at).await
        }

        async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
            self.store.delete(id).await
        }

        async fn delete_if_version(
            &self,
            id: &SessionId,
            version: u64,
        ) -> Result<ConditionalDelete, StoreError> {
            self.store.delete_if_version(id, version).await
        }

        async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
            let keys = self.store.owners.keys(owner, &self.store.prefix);
            let held = self
                .hold
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some((reached, release)) = held {
                let _ = reached.send(());
                let _ = release.await;
            }
            Ok(self.store.end_owned(owner, keys).await)
        }

        fn indexes_owners(&self) -> bool {
            true
        }
    }

    /// Race 6 of issue 21: "log out everywhere" reads ada's index (the old
    /// id) while a request is moving her session to a new id; the request
    /// creates and indexes the new id and deletes the old one before the
    /// pass reaches it, so the pass ends nothing. The new id must not live
    /// on as a way back in.
    #[tokio::test]
    async fn an_id_cycled_while_a_pass_reads_the_index_is_ended_under_its_new_id() {
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        let store = Arc::new(HeldPass {
            store: MemoryStore::new(),
            hold: Mutex::new(Some((reached_tx, release_rx))),
        });
        let manager = SessionManager::builder(Arc::clone(&store), Key::generate())
            .build()
            .unwrap();
        let login = manager.start(std::iter::empty());
        login.set_owner("ada").await.unwrap();
        let old_id = login.id().await.unwrap().unwrap();
        let Finish::Respond {
            set_cookie: Some(set_cookie),
        } = login.finish().await
        else {
            panic!("the login got no cookie");
        };
        let cookie = set_cookie.split(';').next().unwrap().to_owned();

        let cycling = manager.start([cookie.as_bytes()]);
        cycling.cycle_id().await.unwrap();
        let new_id = cycling.id().await.unwrap().unwrap();
        let ending = tokio::spawn({
            let manager = manager.clone();
            async move { manager.end_all_for("ada").await }
        });
        reached.await.unwrap();
        assert!(matches!(
            cycling.finish().await,
            Finish::Respond {
                set_cookie: Some(_)
            }
        ));
        assert!(store.store.load(&new_id).await.unwrap().is_some());
        assert_eq!(store.store.load(&old_id).await.unwrap(), None);
        release.send(()).unwrap();

        ending.await.unwrap().unwrap();
        assert_eq!(
            store.store.load(&new_id).await.unwrap(),
            None,
            "the session outlived log out everywhere under its new id"
        );
    }
}
