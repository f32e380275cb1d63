//! `cycle_id`'s move to a new id: carrying every acknowledged commit over,
//! and what happens when the old session ends or keeps changing meanwhile.

use std::{mem, time::SystemTime};

use super::{Base, Session, State};
use crate::{
    manager::lifecycle::log_store_error,
    telemetry::{self, Operation},
    Changes, Committed, ConditionalDelete, ErrorKind, Record, SessionId, StoreError,
};

/// How many times `cycle_id` re-reads the old record after a commit landed
/// on it mid-cycle before it gives up and keeps the old id. Each retry
/// needs another request to commit within one store round trip.
const CYCLE_ATTEMPTS: usize = 4;

impl Session {
    /// Moves the session from `base.id` to a new id (`next_id`, or a fresh
    /// one if taken), carrying over every commit acknowledged on the old id
    /// before the old id ends:
    ///
    /// 1. create the new record from the data this request sees;
    /// 2. delete the old record only if it is still at the version this
    ///    request loaded ([`SessionStore::delete_if_version`](crate::store::SessionStore::delete_if_version)), atomically,
    ///    so a commit that another request got acknowledged on the old id
    ///    either is seen here or finds the old id gone (and is refused);
    /// 3. if a commit landed in between, load the old record again, apply
    ///    this request's changes on top, rewrite the new record from it
    ///    and try again, up to [`CYCLE_ATTEMPTS`] times.
    ///
    /// When the old session was ended meanwhile (a logout, "log out
    /// everywhere", expiry), the new record is deleted too and the browser
    /// is told to drop the cookie: ending a session must not miss it
    /// because it was changing id. When the store cannot delete by version,
    /// or commits keep landing, the new record is deleted and the request
    /// fails: the old id and everything committed to it stay.
    pub(super) async fn cycle(
        &self,
        state: &mut State,
        base: Base,
        next_id: SessionId,
        now: SystemTime,
    ) -> Result<Option<String>, StoreError> {
        let shared = &self.inner.shared;
        let mut lifetime = state.lifetime;
        let mut owner = state.owner_at_write(shared, base.created_at, lifetime.as_ref());
        let mut expires_at = state.expiry_at_write(
            shared,
            now,
            base.created_at,
            owner.as_ref(),
            lifetime.as_ref(),
        );
        let mut record = Record::new(
            next_id,
            mem::take(&mut state.data),
            base.created_at,
            expires_at,
        );
        record.version = base.version + 1;
        record.owner.clone_from(&owner);
        record.lifetime = lifetime;
        // Create first: if anything after fails, the user keeps a working
        // old session and the new record simply expires unused.
        let id = self.create(record).await?;
        let mut version = base.version;
        for _ in 0..CYCLE_ATTEMPTS {
            let ended = shared
                .call(
                    Operation::DeleteIfVersion,
                    shared.store.delete_if_version(&base.id, version),
                )
                .await;
            match ended {
                Ok(ConditionalDelete::Deleted) => {
                    telemetry::session_cycled();
                    return Ok(Some(self.cookie_for(
                        &id,
                        expires_at,
                        now,
                        lifetime.as_ref(),
                    )));
                }
                Ok(ConditionalDelete::Missing) => {
                    return self.ended_while_cycling(&base.id, &id).await;
                }
                Ok(ConditionalDelete::Changed) => {}
                // Nothing was deleted: drop the copy and fail, so the old
                // id keeps every write.
                Err(err) if err.kind() == ErrorKind::Unsupported => {
                    self.drop_copy(&id).await;
                    return Err(err);
                }
                // The old record may or may not be gone; the copy is the
                // user's only one if it is, so it stays.
                Err(err) => return Err(err),
            }
            // Another request committed to the old id after this one loaded
            // it: start again from the old record as it is now.
            let loaded = shared
                .call(Operation::Load, shared.store.load(&base.id))
                .await?;
            let Some(current) = loaded
                .filter(|r| shared.is_live(now, r.created_at, r.expires_at, r.lifetime.as_ref()))
            else {
                return self.ended_while_cycling(&base.id, &id).await;
            };
            tracing::debug!(
                session.id = ?base.id,
                "a commit landed while the session id was being cycled; carrying it over"
            );
            lifetime = state.lifetime_after(current.lifetime);
            owner = state.owner_after(shared, current.owner, base.created_at, lifetime.as_ref());
            expires_at = state.expiry_at_write(
                shared,
                now,
                base.created_at,
                owner.as_ref(),
                lifetime.as_ref(),
            );
            let mut data = current.data;
            state.changes.apply_to(&mut data);
            let mut rewrite = Changes::default();
            rewrite.clear();
            for (key, value) in data {
                rewrite.set(key, value);
            }
            rewrite.set_owner(owner.clone());
            rewrite.set_lifetime(lifetime);
            match shared
                .call(
                    Operation::Commit,
                    shared.store.commit(&id, &rewrite, expires_at),
                )
                .await?
            {
                Committed::Applied { .. } => version = current.version,
                // Only this request knows the new id; only the end of its
                // owner's sessions can have ended it.
                Committed::Missing => return self.ended_while_cycling(&base.id, &id).await,
            }
        }
        tracing::warn!(
            session.id = ?base.id,
            attempts = CYCLE_ATTEMPTS,
            "commits kept landing while the session id was being cycled; keeping the old id"
        );
        self.drop_copy(&id).await;
        Err(StoreError::new(ErrorKind::Other, "cycle_id").with_source(format!(
            "other requests committed to the session during each of {CYCLE_ATTEMPTS} attempts to move it to a new id"
        )))
    }

    /// The session being cycled away from (`old`) was ended (or expired)
    /// while its copy `new` was being made: the copy goes too, and the
    /// browser is told to drop the cookie. Ending a user's sessions must
    /// not miss one because it was changing id.
    async fn ended_while_cycling(
        &self,
        old: &SessionId,
        new: &SessionId,
    ) -> Result<Option<String>, StoreError> {
        let shared = &self.inner.shared;
        tracing::info!(
            session.id = ?old,
            "session was ended while its id was being cycled; ending the new id too"
        );
        shared
            .call(Operation::Delete, shared.store.delete(new))
            .await?;
        Ok(Some(shared.removal()))
    }

    /// Deletes the new id of a cycle that failed with the old id intact. A
    /// failure here only leaves a record nobody has the cookie of, which
    /// expires unused.
    async fn drop_copy(&self, new: &SessionId) {
        let shared = &self.inner.shared;
        if let Err(err) = shared
            .call(Operation::Delete, shared.store.delete(new))
            .await
        {
            log_store_error(&err, "the new id of a failed cycle could not be deleted");
        }
    }
}
