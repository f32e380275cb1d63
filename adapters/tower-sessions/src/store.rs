//! [`TowerSessionsStore`]: tower-sessions' store trait over a session-kit store.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
    time::SystemTime,
};

use async_trait::async_trait;
use session_core::{
    store::{Changes, Committed, Created, Owner, Record as KitRecord, SessionStore},
    StoreError,
};
use tower_sessions_core::{
    session::{Id, Record},
    session_store::{self, Error},
    ExpiredDeletion,
};

use crate::convert::{
    decode_data, encode_data, offset_date_time, session_id, store_error, system_time, TowerData,
};

/// Names a session's owner from its data; see [`TowerSessionsStore::with_owner`].
type OwnerOf = Arc<dyn Fn(&TowerData) -> Option<String> + Send + Sync>;

/// How many ids [`create`](tower_sessions_core::SessionStore::create) tries
/// before it gives up. Two random 128-bit ids meet with odds of about 2^-64
/// even among billions of live sessions, so a second try is already
/// unheard of; a store that answers "taken" eight times in a row is broken,
/// and saying so beats looping on it.
const CREATE_ATTEMPTS: usize = 8;

/// A [`tower_sessions_core::SessionStore`] over any session-kit store:
/// hand it to tower-sessions' `SessionManagerLayer` (or axum-login's
/// `AuthManagerLayerBuilder`) in place of a tower-sessions store.
///
/// Cloning is cheap: clones share the store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use session_core::memory::MemoryStore;
/// use session_tower_sessions::TowerSessionsStore;
/// use tower_sessions_core::{session::{Id, Record}, SessionStore as _};
///
/// let store = TowerSessionsStore::new(Arc::new(MemoryStore::new()));
/// let mut record = Record {
///     id: Id::default(),
///     data: [("user".to_owned(), serde_json::json!("ada"))].into(),
///     expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
/// };
/// store.create(&mut record).await.unwrap();
/// let loaded = store.load(&record.id).await.unwrap().unwrap();
/// assert_eq!(loaded.data["user"], "ada");
/// # }
/// ```
#[derive(Clone)]
pub struct TowerSessionsStore {
    store: Arc<dyn SessionStore>,
    owner_of: Option<OwnerOf>,
}

impl fmt::Debug for TowerSessionsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerSessionsStore")
            .field("store", &self.store)
            .field("indexes_owners", &self.owner_of.is_some())
            .finish()
    }
}

impl TowerSessionsStore {
    /// A tower-sessions store that keeps its sessions in `store`: any
    /// session-kit store, composite ones included (failover pairs, the
    /// tiered cache, the cluster, a lazily connected store).
    #[must_use]
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            owner_of: None,
        }
    }

    /// Gives each session the owner that `owner_of` reads from its data, so
    /// that [`end_all_for`](Self::end_all_for) can end every session of one
    /// user ("log out everywhere"). tower-sessions has no notion of a
    /// session's user; the app knows where it keeps it. For axum-login,
    /// that is the `user_id` under its data key (`axum-login.data` unless
    /// the app changed it).
    ///
    /// Every create and save records the owner `owner_of` names at that
    /// moment, or none when it answers `None` (a visitor, a logged-out
    /// session); a save with an owner also refreshes the owner's index
    /// entry, so it costs the store's index work (on Redis, a few more
    /// commands in the same script). A name that cannot be an owner
    /// (empty, or over [`Owner::MAX_LEN`] bytes) fails the write with an
    /// encode error rather than leave the session out of the index.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use session_core::memory::MemoryStore;
    /// use session_tower_sessions::TowerSessionsStore;
    ///
    /// let store = TowerSessionsStore::new(Arc::new(MemoryStore::new())).with_owner(|data| {
    ///     match data.get("axum-login.data")?.get("user_id")? {
    ///         serde_json::Value::Null => None,
    ///         serde_json::Value::String(id) => Some(id.clone()),
    ///         id => Some(id.to_string()),
    ///     }
    /// });
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn with_owner(
        mut self,
        owner_of: impl Fn(&HashMap<String, serde_json::Value>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.owner_of = Some(Arc::new(owner_of));
        self
    }

    /// Ends every live session whose owner is `owner` (see
    /// [`with_owner`](Self::with_owner)), and says how many it ended.
    ///
    /// It asks the store again until a pass ends nothing and finds no
    /// session that an earlier pass had not, as
    /// [`SessionManager::end_all_for`](session_core::SessionManager::end_all_for)
    /// does, at most [`SessionManager::END_ALL_PASSES`](session_core::SessionManager::END_ALL_PASSES)
    /// times. A request that saves one of those sessions afterwards finds
    /// it gone and writes nothing. One race is tower-sessions' own:
    /// its `cycle_id` deletes the old id before it creates the new one, so
    /// a session that changes id while this runs is a new session, which
    /// this call may not see.
    ///
    /// # Errors
    /// What the store answers: [`ErrorKind::Unsupported`](session_core::ErrorKind::Unsupported)
    /// from a store that keeps no owner index (Memcached), an outage or a
    /// timeout; and [`ErrorKind::Other`](session_core::ErrorKind::Other)
    /// when every pass still found sessions that changed id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use session_core::memory::MemoryStore;
    /// use session_tower_sessions::TowerSessionsStore;
    /// use tower_sessions_core::{session::{Id, Record}, SessionStore as _};
    ///
    /// let store = TowerSessionsStore::new(Arc::new(MemoryStore::new()))
    ///     .with_owner(|data| data.get("user")?.as_str().map(str::to_owned));
    /// for _ in 0..2 {
    ///     let mut record = Record {
    ///         id: Id::default(),
    ///         data: [("user".to_owned(), serde_json::json!("ada"))].into(),
    ///         expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    ///     };
    ///     store.create(&mut record).await.unwrap();
    /// }
    /// assert_eq!(store.end_all_for("ada").await.unwrap(), 2);
    /// # }
    /// ```
    pub async fn end_all_for(&self, owner: &str) -> Result<u64, StoreError> {
        if Owner::check_name(owner).is_err() {
            // No session can have been given this name: nothing to end.
            return Ok(0);
        }
        let mut ended = 0;
        // Every session a pass found, so a later pass can tell what is new.
        let mut found = HashSet::new();
        for _ in 0..session_core::SessionManager::END_ALL_PASSES {
            let pass = self.store.delete_by_owner(owner).await?;
            ended += pass.ended;
            let mut new = false;
            for id in pass.indexed {
                new |= found.insert(id);
            }
            if pass.ended == 0 && !new {
                return Ok(ended);
            }
        }
        Err(StoreError::new(
            session_core::ErrorKind::Other,
            "delete_by_owner",
        ))
    }

    /// The session-kit store underneath, for what tower-sessions has no
    /// word for (its health, its kind).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The owner [`with_owner`](Self::with_owner)'s function names for
    /// `data`, whose index entry lasts as long as the session does.
    fn owner(&self, data: &TowerData, expires_at: SystemTime) -> Result<Option<Owner>, Error> {
        let Some(name) = self.owner_of.as_ref().and_then(|owner_of| owner_of(data)) else {
            return Ok(None);
        };
        Owner::new(name, expires_at)
            .map(Some)
            .map_err(|err| Error::Encode(err.to_string()))
    }
}

#[async_trait]
impl tower_sessions_core::SessionStore for TowerSessionsStore {
    /// Stores a new record. When its id is taken, the record gets a fresh
    /// one (tower-sessions' contract): session-kit's `create` never
    /// overwrites, so this is one atomic check on every store.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = encode_data(&record.data)?;
        let expires_at = system_time(record.expiry_date)?;
        let owner = self.owner(&record.data, expires_at)?;
        let created_at = SystemTime::now();
        for _ in 0..CREATE_ATTEMPTS {
            let mut kit = KitRecord::new(
                session_id(&record.id)?,
                data.clone(),
                created_at,
                expires_at,
            );
            kit.owner.clone_from(&owner);
            match self.store.create(&kit).await {
                Ok(Created::Created) => return Ok(()),
                Ok(Created::IdTaken) => record.id = Id::default(),
                Err(err) => return Err(store_error(&err)),
            }
        }
        Err(Error::Backend(format!(
            "the store answered \"id taken\" to {CREATE_ATTEMPTS} fresh random ids"
        )))
    }

    /// Replaces the record's data and expiry in one commit (a clear, then
    /// every key), so a load sees either the whole of one save or the
    /// whole of another, never a mix.
    ///
    /// A record that is no longer live (deleted by a logout elsewhere,
    /// ended with its owner, expired) is left gone: the save writes
    /// nothing and succeeds, and the next request starts a fresh session.
    /// tower-sessions' own stores re-create it instead; session-kit keeps
    /// its promise that nothing deleted comes back.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let mut changes = Changes::default();
        changes.clear();
        for (key, text) in encode_data(&record.data)? {
            changes.set(key, text);
        }
        let expires_at = system_time(record.expiry_date)?;
        if self.owner_of.is_some() {
            // Every save names the owner anew: the user may have logged in
            // or out, and the index entry must last as long as the session.
            changes.set_owner(self.owner(&record.data, expires_at)?);
        }
        let id = session_id(&record.id)?;
        match self.store.commit(&id, &changes, expires_at).await {
            Ok(Committed::Applied { .. }) => Ok(()),
            Ok(Committed::Missing) => {
                tracing::debug!(
                    target: "session_kit::tower_sessions",
                    "save found no live session; it ended meanwhile and stays ended"
                );
                Ok(())
            }
            Err(err) => Err(store_error(&err)),
        }
    }

    /// The live record, or `None` when it is absent or expired. A record
    /// whose values are not JSON is a decode error, never a panic.
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let kit_id = session_id(id)?;
        let Some(kit) = self
            .store
            .load(&kit_id)
            .await
            .map_err(|err| store_error(&err))?
        else {
            return Ok(None);
        };
        Ok(Some(Record {
            id: *id,
            data: decode_data(kit.data)?,
            expiry_date: offset_date_time(kit.expires_at)?,
        }))
    }

    /// Forgets the session. Deleting an absent id is not an error.
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store
            .delete(&session_id(id)?)
            .await
            .map_err(|err| store_error(&err))
    }
}

/// Nothing to do, and it succeeds: every session-kit store forgets expired
/// sessions by itself (Redis and Memcached expire keys, the memory store
/// and the cluster evict them, PostgreSQL's store sweeps on its own
/// schedule) and never serves one meanwhile. It is here so that an app
/// that runs tower-sessions' `continuously_delete_expired` task compiles
/// and runs unchanged.
#[async_trait]
impl ExpiredDeletion for TowerSessionsStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        Ok(())
    }
}
