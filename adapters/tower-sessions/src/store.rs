//! [`TowerSessionsStore`]: tower-sessions' store trait over a session-kit store.

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;
use session_core::store::{Changes, Committed, Created, Record as KitRecord, SessionStore};
use tower_sessions_core::{
    session::{Id, Record},
    session_store::{self, Error},
    ExpiredDeletion,
};

use crate::convert::{
    decode_data, encode_data, offset_date_time, session_id, store_error, system_time,
};

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
#[derive(Debug, Clone)]
pub struct TowerSessionsStore {
    store: Arc<dyn SessionStore>,
}

impl TowerSessionsStore {
    /// A tower-sessions store that keeps its sessions in `store`: any
    /// session-kit store, composite ones included (failover pairs, the
    /// tiered cache, the cluster, a lazily connected store).
    #[must_use]
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self { store }
    }

    /// The session-kit store underneath, for what tower-sessions has no
    /// word for (its health, its kind).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
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
        let created_at = SystemTime::now();
        for _ in 0..CREATE_ATTEMPTS {
            let kit = KitRecord::new(
                session_id(&record.id)?,
                data.clone(),
                created_at,
                expires_at,
            );
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
