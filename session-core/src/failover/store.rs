//! The [`SessionStore`] impl of [`FailoverStore`]: each call handed to the
//! mode's rules, and the calls both modes share (deleting by owner,
//! listing an owner's sessions, health).

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;

use super::{FailoverMode, FailoverStore, Inner, Reply};
use crate::{
    Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionId, SessionStore,
    StoreError,
};

#[async_trait]
impl SessionStore for FailoverStore {
    fn kind(&self) -> &'static str {
        "failover"
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_load(id).await,
            FailoverMode::Standby => self.inner.standby_load(id).await,
        }
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_create(record).await,
            FailoverMode::Standby => self.inner.standby_create(record).await,
        }
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_commit(id, changes, expires_at).await,
            FailoverMode::Standby => self.inner.standby_commit(id, changes, expires_at).await,
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_touch(id, expires_at).await,
            FailoverMode::Standby => self.inner.standby_touch(id, expires_at).await,
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete_both(id).await
    }

    /// Decided by the primary, in both modes: its copy is the one the
    /// version is checked against. The secondary decides only for a
    /// session the primary cannot answer for: while it is down, or (in
    /// mirror mode) when it is known to lack writes, having come back
    /// empty or owing a replay; in standby mode, for a session the primary
    /// lacks. In mirror mode tombstones go into both stores first, and
    /// those this call placed are withdrawn if the session is not ended
    /// after all. Once a store deleted the record at that version,
    /// the other store's copy goes as by [`delete`](SessionStore::delete),
    /// tombstone and replay included.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let answer = match self.inner.mode {
            FailoverMode::Mirror => {
                self.inner
                    .mirror_delete_if_version_fenced(id, version)
                    .await?
            }
            FailoverMode::Standby => self.inner.standby_delete_if_version(id, version).await?,
        };
        if answer == ConditionalDelete::Deleted && self.inner.mode == FailoverMode::Mirror {
            // The version matched, so the session ends: as a delete, which
            // leaves the tombstones that keep a read racing this call (one
            // store answered before the conditional delete, the other
            // after) from copying it back. Standby needs nothing more: a
            // session lives in one store, where it was just deleted, and a
            // second delete would fail while the other store is down.
            self.inner.delete_both(id).await?;
        }
        Ok(answer)
    }

    /// Ends the owner's sessions in both stores at once, in either mode: a
    /// session created on the secondary during an outage is as much the
    /// user's as one on the primary. Succeeds only when both stores did it;
    /// an outage of either (or a store that cannot index owners) is
    /// returned as the error, after the other store has ended its share, so
    /// the caller retries until it succeeds. Unlike a single delete it is
    /// not replayed later: the store that was down cannot be asked which
    /// ids it holds until it is back.
    ///
    /// Both stores must index owners; otherwise it answers
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) before touching either.
    ///
    /// The count is the larger of the two stores' counts in mirror mode
    /// (both hold copies of the same sessions) and their sum in standby mode
    /// (a session lives in one of them); the sessions found are both
    /// stores' together. In mirror mode it may fall short
    /// when commits race the call: a repair that refuses to copy an ended
    /// session back deletes the copy itself, and that store then no longer
    /// counts it. Every such session is ended all the same.
    ///
    /// In mirror mode it first leaves an owner fence in both stores (a
    /// marker record under an id derived from the owner's name, kept for
    /// [`with_tombstone_ttl`](super::FailoverStoreBuilder::with_tombstone_ttl)): the repair
    /// that copies a session one store lacks from the other refuses a
    /// session of that owner created before the fence, so a commit racing
    /// the call cannot copy an ended session back. A session created within
    /// the clock skew between app servers after the fence may be taken for
    /// an ended one by such a repair. With one store down, the fence in the
    /// other is what keeps the down store's copies from coming back when it
    /// returns.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        let inner = &self.inner;
        if !self.indexes_owners() {
            return Err(StoreError::unsupported("delete_by_owner"));
        }
        let fence_outage = if inner.mode == FailoverMode::Mirror {
            // Mirror repairs a session one store lacks from the other, and a
            // commit that lands on one store before its end and on the other
            // after looks just like a lost copy. The fence tells the repair
            // otherwise; it is in place before either store ends anything.
            inner.fence_owner(owner).await?
        } else {
            None
        };
        let (primary, secondary) = tokio::join!(
            inner.call(
                &inner.primary,
                "delete_by_owner",
                inner.primary.store.delete_by_owner(owner)
            ),
            inner.call(
                &inner.secondary,
                "delete_by_owner",
                inner.secondary.store.delete_by_owner(owner)
            ),
        );
        match (primary?, secondary?, fence_outage) {
            (_, _, Some(err)) | (Reply::Down(err), _, _) | (_, Reply::Down(err), _) => Err(err),
            (Reply::Answer(primary), Reply::Answer(secondary), None) => {
                let ended = match inner.mode {
                    FailoverMode::Mirror => primary.ended.max(secondary.ended),
                    FailoverMode::Standby => primary.ended + secondary.ended,
                };
                let mut indexed = primary.indexed;
                indexed.extend(secondary.indexed);
                Ok(OwnerPass { ended, indexed })
            }
        }
    }

    /// Lists the owner in both stores, then loads each session found
    /// through this pair, so the answer honours tombstones and versions as
    /// [`load`](SessionStore::load) does. With one store down the other's
    /// list is the answer: in mirror mode it holds every session, in standby
    /// mode a session only the down primary holds cannot be served anyway.
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        let inner = &self.inner;
        let (primary, secondary) = tokio::join!(
            inner.call(
                &inner.primary,
                "sessions_of",
                inner.primary.store.sessions_of(owner)
            ),
            inner.call(
                &inner.secondary,
                "sessions_of",
                inner.secondary.store.sessions_of(owner)
            ),
        );
        let ids: std::collections::HashSet<SessionId> = match (primary?, secondary?) {
            (Reply::Down(err), Reply::Down(_)) => return Err(err),
            (Reply::Answer(one), Reply::Down(_)) | (Reply::Down(_), Reply::Answer(one)) => {
                one.iter().map(|record| record.id).collect()
            }
            (Reply::Answer(primary), Reply::Answer(secondary)) => primary
                .iter()
                .chain(&secondary)
                .map(|record| record.id)
                .collect(),
        };
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.load(&id).await? {
                if record.owner.as_ref().is_some_and(|held| held.name == owner) {
                    records.push(record);
                }
            }
        }
        Ok(records)
    }

    fn indexes_owners(&self) -> bool {
        self.inner.primary.store.indexes_owners() && self.inner.secondary.store.indexes_owners()
    }

    /// The primary's: it is where sessions are served while it is up.
    fn generate_id(&self) -> SessionId {
        self.inner.primary.store.generate_id()
    }

    /// Healthy while either store is: that is what keeps sessions served.
    async fn health(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let (primary, secondary) = tokio::join!(
            inner.call(&inner.primary, "health", inner.primary.store.health()),
            inner.call(&inner.secondary, "health", inner.secondary.store.health()),
        );
        match (primary, secondary) {
            (Ok(Reply::Answer(())), _) | (_, Ok(Reply::Answer(()))) => Ok(()),
            (Err(err) | Ok(Reply::Down(err)), _) => Err(err),
        }
    }
}

impl Inner {
    /// Ends `id` in both stores, in either mode (a session created on the
    /// standby secondary during an outage is deleted too); see
    /// [`mirror_delete`](Self::mirror_delete) and
    /// [`standby_delete`](Self::standby_delete) for when it is acknowledged.
    async fn delete_both(self: &Arc<Self>, id: &SessionId) -> Result<(), StoreError> {
        match self.mode {
            FailoverMode::Mirror => self.mirror_delete(id).await,
            FailoverMode::Standby => self.standby_delete(id).await,
        }
    }
}
