//! The id a store picks for new sessions (`SessionStore::generate_id`)
//! reaches the manager through every wrapper session-core puts around a
//! store, so a cluster node's pick of ids it owns survives failover, a
//! near-cache, a lazy connection and the manager's own instrumentation.

use std::{sync::Arc, time::Duration};

use session_core::{
    failover::FailoverStore,
    lazy::LazyStore,
    manager::Finish,
    memory::{MemoryStore, NearCache, TieredStore},
    store::{Changes, Committed, Created, Record, SessionStore},
    Key, SessionId, SessionManager, StoreError,
};

/// A memory store that hands out one fixed id, so a test can tell where
/// an id came from.
#[derive(Debug)]
struct Picks {
    id: SessionId,
    inner: MemoryStore,
}

impl Picks {
    fn new() -> Self {
        Self {
            id: SessionId::generate(),
            inner: MemoryStore::new(),
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for Picks {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.inner.load(id).await
    }
    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.inner.create(record).await
    }
    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: std::time::SystemTime,
    ) -> Result<Committed, StoreError> {
        self.inner.commit(id, changes, expires_at).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        expires_at: std::time::SystemTime,
    ) -> Result<bool, StoreError> {
        self.inner.touch(id, expires_at).await
    }
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    fn generate_id(&self) -> SessionId {
        self.id
    }
}

/// The id a manager over `store` gives a new session.
async fn new_session_id(store: impl SessionStore) -> SessionId {
    let manager = SessionManager::builder(store, Key::generate())
        .build()
        .unwrap();
    let session = manager.start(std::iter::empty());
    session.insert("user", "ada").await.unwrap();
    let id = session.id().await.unwrap().unwrap();
    assert!(matches!(
        session.finish().await,
        Finish::Respond {
            set_cookie: Some(_)
        }
    ));
    id
}

/// Checks that `store` picks `expected` for new sessions, asked directly
/// and through a manager.
async fn picks(store: impl SessionStore, expected: SessionId, what: &str) {
    assert_eq!(store.generate_id(), expected, "{what}: asked directly");
    assert_eq!(
        new_session_id(store).await,
        expected,
        "{what}: a new session"
    );
}

#[tokio::test]
async fn a_manager_takes_new_ids_from_its_store_through_every_wrapper() {
    let bare = Picks::new();
    let id = bare.id;
    picks(bare, id, "bare").await;
    let shared = Arc::new(Picks::new());
    let id = shared.id;
    picks(shared as Arc<dyn SessionStore>, id, "Arc<dyn SessionStore>").await;

    let primary = Picks::new();
    let id = primary.id;
    let failover = FailoverStore::builder(primary, MemoryStore::new())
        .build()
        .unwrap();
    picks(failover, id, "failover, the primary's pick").await;

    let far = Picks::new();
    let id = far.id;
    picks(
        TieredStore::new(NearCache::new(), far),
        id,
        "tiered, the far store's pick",
    )
    .await;

    // Connected in the background, so its pick is known only once connected;
    // before, it draws random ids as `SessionId::generate` does.
    let lazy = LazyStore::connect_in_background("picks", || async { Ok(Picks::new()) }).unwrap();
    assert_ne!(
        lazy.generate_id(),
        lazy.generate_id(),
        "lazy, not connected yet"
    );
    assert!(lazy.wait_connected(Duration::from_secs(5)).await);
    let connected = lazy.generate_id();
    picks(lazy, connected, "lazy, the connected store's pick").await;
}
