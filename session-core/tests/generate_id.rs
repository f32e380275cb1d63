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

#[tokio::test]
async fn a_manager_takes_new_ids_from_its_store_through_every_wrapper() {
    let picks = Arc::new(Picks::new());
    let id = picks.id;
    assert_eq!(new_session_id(Arc::clone(&picks)).await, id, "bare");
    let picks = Arc::new(Picks::new());
    let id = picks.id;
    let shared: Arc<dyn SessionStore> = picks;
    assert_eq!(new_session_id(shared).await, id, "Arc<dyn SessionStore>");

    let failover = FailoverStore::builder(Arc::new(Picks::new()), MemoryStore::new())
        .build()
        .unwrap();
    let primary = failover.generate_id();
    assert_eq!(
        failover.generate_id(),
        primary,
        "failover: the primary's pick"
    );
    assert_eq!(new_session_id(failover).await, primary, "failover");

    let far = Picks::new();
    let id = far.id;
    let tiered = TieredStore::new(NearCache::new(), far);
    assert_eq!(
        new_session_id(tiered).await,
        id,
        "tiered: the far store's pick"
    );

    let lazy = LazyStore::connect_in_background("picks", || async { Ok(Picks::new()) }).unwrap();
    assert!(lazy.wait_connected(Duration::from_secs(5)).await);
    let connected = lazy.generate_id();
    assert_eq!(
        lazy.generate_id(),
        connected,
        "lazy: the connected store's pick"
    );
    assert_eq!(new_session_id(lazy).await, connected, "lazy");
}
