//! [`Observed`]: the store-call span and metrics around every call a
//! composite store makes to the stores inside it.

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;

use super::{Operation, StoreCalls};
use crate::{
    Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionId, SessionStore,
    Stamp, StoreError,
};

/// A store whose every call runs through [`StoreCalls::run`]. Composite
/// stores wrap the stores they are given in it, so the calls they make
/// (replays, repairs and probes included) are seen under the inner store's
/// own kind, whoever built the composite.
#[derive(Debug)]
pub(crate) struct Observed {
    store: Arc<dyn SessionStore>,
    calls: StoreCalls,
}

impl Observed {
    pub(crate) fn wrap(store: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        let calls = StoreCalls::new(store.kind());
        Arc::new(Self { store, calls })
    }
}

#[async_trait]
impl SessionStore for Observed {
    fn kind(&self) -> &'static str {
        self.calls.kind()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.calls.run(Operation::Load, self.store.load(id)).await
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        self.calls.run(Operation::Stamp, self.store.stamp(id)).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.calls
            .run(Operation::Create, self.store.create(record))
            .await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.calls
            .run(
                Operation::Commit,
                self.store.commit(id, changes, expires_at),
            )
            .await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.calls
            .run(Operation::Touch, self.store.touch(id, expires_at))
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.calls
            .run(Operation::Delete, self.store.delete(id))
            .await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.calls
            .run(
                Operation::DeleteIfVersion,
                self.store.delete_if_version(id, version),
            )
            .await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.calls
            .run(Operation::DeleteByOwner, self.store.delete_by_owner(owner))
            .await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.calls
            .run(Operation::SessionsOf, self.store.sessions_of(owner))
            .await
    }

    fn indexes_owners(&self) -> bool {
        self.store.indexes_owners()
    }

    fn generate_id(&self) -> SessionId {
        self.store.generate_id()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.calls.run(Operation::Health, self.store.health()).await
    }
}
