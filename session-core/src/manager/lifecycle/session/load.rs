//! The session's load on first use, and what a failed load leaves under
//! the [`ErrorPolicy`].

use super::{Access, Base, Phase, Session, SessionError, State};
use crate::{
    manager::lifecycle::{log_store_error, ErrorPolicy},
    store::Record,
    telemetry::{self, Ended, Operation, Refused},
    ErrorKind, StoreError,
};

impl Session {
    /// The state, loaded first if it is not yet. Under
    /// [`ErrorPolicy::TreatAsEmpty`] a session served empty after a failed
    /// load serves reads, and refuses a change: writing it would start a
    /// fresh session over the user's, or overwrite data this request never
    /// saw. The refusal makes the whole request answer 503.
    pub(super) async fn loaded_state(
        &self,
        access: Access,
    ) -> Result<tokio::sync::MutexGuard<'_, State>, SessionError> {
        let mut state = self.inner.state.lock().await;
        if let Phase::Unloaded = state.phase {
            self.load_into(&mut state).await?;
        }
        match (state.phase, access) {
            (Phase::LoadFailed(kind), _) => {
                Err(SessionError::Unavailable(StoreError::new(kind, "load")))
            }
            (Phase::ServedEmpty(kind), Access::Change) => {
                tracing::warn!(
                    error.kind = ?kind,
                    "session changed after its load failed; refusing the change and answering 503"
                );
                state.phase = Phase::LoadFailed(kind);
                Err(SessionError::Unavailable(StoreError::new(kind, "load")))
            }
            _ => Ok(state),
        }
    }

    /// Loads the session into `state`. Cancel-safe: `state` is changed only
    /// once the store has answered, so a caller dropped while the load waits
    /// leaves the session unloaded, and the next call loads it again.
    async fn load_into(&self, state: &mut State) -> Result<(), SessionError> {
        let shared = &self.inner.shared;
        let Some(cookie) = self.cookie() else {
            if self.inner.migration.is_pending() {
                return self.migrate_into(state).await;
            }
            state.phase = Phase::Loaded;
            return Ok(());
        };
        let loaded = shared
            .call(Operation::Load, shared.store.load(&cookie.id))
            .await;
        state.phase = Phase::Loaded;
        let now = shared.clock.now();
        match loaded {
            Ok(Some(record))
                if shared.is_live(
                    now,
                    record.created_at,
                    record.expires_at,
                    record.lifetime.as_ref(),
                ) =>
            {
                state.adopt(record);
            }
            Ok(found) => {
                match found {
                    Some(record)
                        if record.created_at + shared.timeouts(record.lifetime.as_ref()).1
                            <= now =>
                    {
                        telemetry::sessions_ended(Ended::Absolute, 1);
                    }
                    Some(_) => telemetry::sessions_ended(Ended::Idle, 1),
                    None => telemetry::cookie_refused(Refused::NoSession),
                }
                tracing::debug!(
                    session.id = ?cookie.id,
                    "session cookie names no live session; starting a fresh one"
                );
                state.stale_cookie = true;
            }
            // A record no one can read is lost either way; a fresh session is
            // better than answering 503 to this user until it expires.
            Err(err) if err.kind() == ErrorKind::Corrupt => {
                log_store_error(&err, "session record is corrupt; starting a fresh session");
                state.stale_cookie = true;
            }
            Err(err) => match shared.error_policy {
                ErrorPolicy::TreatAsEmpty => {
                    log_store_error(
                        &err,
                        "session load failed; serving reads empty and refusing changes",
                    );
                    state.phase = Phase::ServedEmpty(err.kind());
                }
                ErrorPolicy::Reject => {
                    log_store_error(&err, "session load failed; answering 503");
                    state.phase = Phase::LoadFailed(err.kind());
                    return Err(SessionError::Unavailable(err));
                }
            },
        }
        Ok(())
    }
}

impl State {
    /// A live record becomes the session this request started from: its
    /// id, times, version, data, owner and lifetime, each as loaded. The
    /// one place a record is taken in, so a field added to [`Record`] is
    /// taken in by every path that loads one (the migration's too).
    pub(super) fn adopt(&mut self, record: Record) {
        self.base = Some(Base {
            id: record.id,
            created_at: record.created_at,
            expires_at: record.expires_at,
            version: record.version,
        });
        self.data = record.data;
        self.owner = record.owner.as_ref().map(|owner| owner.name.clone());
        self.loaded_owner = record.owner;
        self.lifetime = record.lifetime;
        self.loaded_lifetime = record.lifetime;
    }
}
