//! Migration from another library on first contact: see [`crate::migrate`].
//!
//! Only requests that carry no session-kit cookie, to a manager with a
//! [`LegacySessions`] source, come here; everyone else never does.

use std::{
    borrow::Cow,
    sync::{Arc, OnceLock},
};

use tokio::sync::Mutex;

use super::{Inner, Phase, Session, SessionError, State, Token};
use crate::{
    manager::lifecycle::{log_store_error, ErrorPolicy, Shared},
    migrate::{Claim, LegacyCookie, LegacySessions, MAX_LEGACY_CANDIDATES},
    telemetry::Operation,
    Created, ErrorKind, Record, SessionId, StoreError,
};

/// A session's migration: the old cookie still to claim, and what the
/// response must say once it is claimed.
#[derive(Default)]
pub(super) struct Migration {
    pending: Option<(Arc<dyn LegacySessions>, LegacyCookie)>,
    outcome: OnceLock<Outcome>,
}

struct Outcome {
    /// The old session is now a session-kit one: issue our cookie even if
    /// the handler changes nothing.
    issue_cookie: bool,
    /// `Set-Cookie` that drops the old cookie, when ours does not replace it.
    removal: Option<String>,
}

impl Migration {
    pub(super) fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub(super) fn issues_cookie(&self) -> bool {
        self.outcome
            .get()
            .is_some_and(|outcome| outcome.issue_cookie)
    }
}

impl Session {
    /// [`SessionManager::start`](crate::SessionManager::start) with a
    /// legacy source: our cookie first; only without a valid one, the old
    /// library's.
    pub(in crate::manager) fn start_migrating<'a>(
        shared: &Arc<Shared>,
        legacy: &Arc<dyn LegacySessions>,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Self {
        // Read twice (ours, then maybe theirs); a request has a handful.
        let headers: Vec<&[u8]> = cookie_headers.into_iter().collect();
        let cookie = shared.codec.read(headers.iter().copied());
        let pending = if cookie.is_none() {
            read_legacy(legacy.as_ref(), &headers).map(|old| (Arc::clone(legacy), old))
        } else {
            None
        };
        Self {
            inner: Arc::new(Inner {
                shared: Arc::clone(shared),
                token: Token::verified(cookie),
                state: Mutex::new(State::default()),
                migration: Migration {
                    pending,
                    outcome: OnceLock::new(),
                },
            }),
        }
    }

    /// The `Set-Cookie` value that clears another library's session cookie
    /// once this request migrated it (or found it unusable), for the
    /// adapter to add next to [`Finish`](crate::manager::Finish)'s own. `None` when there
    /// is nothing to clear: no migration, or the old cookie has our
    /// cookie's name, path and domain, so ours replaces it. Call it after
    /// [`finish`](Self::finish); see [`migrate`](crate::migrate).
    #[must_use]
    pub fn legacy_cookie_removal(&self) -> Option<String> {
        self.inner.migration.outcome.get()?.removal.clone()
    }

    /// Loads a session that has only the old library's cookie: claims the
    /// old session, stores it under the id the claim settled on (or finds
    /// it stored by a parallel request), and deletes the old record.
    /// Cancel-safe as `load_into`: `state` changes only at the end, and a
    /// claim repeated after a drop gets the same id back.
    pub(super) async fn migrate_into(&self, state: &mut State) -> Result<(), SessionError> {
        let shared = &self.inner.shared;
        let Some((legacy, old)) = &self.inner.migration.pending else {
            state.phase = Phase::Loaded;
            return Ok(());
        };
        let candidate = shared.store.generate_id();
        let claimed = shared
            .call(Operation::Load, legacy.claim(old, &candidate))
            .await;
        let (id, data) = match claimed {
            Ok(Claim::Forwarded { id, data }) => (id, data),
            Ok(Claim::Missing) => {
                tracing::debug!(legacy.cookie = ?old, "old session cookie names no live session; starting a fresh one");
                return self.fresh(state);
            }
            Err(err) if is_unmovable(&err) => {
                log_store_error(
                    &err,
                    "old session cannot be migrated; starting a fresh session",
                );
                return self.fresh(state);
            }
            Err(err) => return self.migration_failed(state, err),
        };
        let now = shared.clock.now();
        if let Some(data) = data {
            let record = Record::new(id, data, now, shared.deadline(now, now, None));
            match shared
                .call(Operation::Create, shared.store.create(&record))
                .await
            {
                Ok(Created::Created) => {
                    if !self.release(legacy.as_ref(), old).await {
                        return self.overtaken(state, &id).await;
                    }
                    tracing::info!(session.id = ?id, "session migrated from the old library");
                    return self.adopt(state, record);
                }
                // A parallel request with the same old cookie stored it
                // first: both end in that one session, and that request
                // deletes the old record.
                Ok(Created::IdTaken) => {}
                Err(err) if is_unmovable(&err) => {
                    log_store_error(
                        &err,
                        "old session cannot be stored; starting a fresh session",
                    );
                    return self.fresh(state);
                }
                Err(err) => return self.migration_failed(state, err),
            }
        }
        match shared.call(Operation::Load, shared.store.load(&id)).await {
            Ok(Some(record))
                if shared.is_live(
                    now,
                    record.created_at,
                    record.expires_at,
                    record.lifetime.as_ref(),
                ) =>
            {
                self.adopt(state, record)
            }
            // Migrated by a parallel request and ended since (a logout).
            Ok(_) => self.fresh(state),
            Err(err) if err.kind() == ErrorKind::Corrupt => {
                log_store_error(
                    &err,
                    "migrated session record is corrupt; starting a fresh session",
                );
                self.fresh(state)
            }
            Err(err) => self.migration_failed(state, err),
        }
    }

    /// The migrated record becomes this request's session.
    fn adopt(&self, state: &mut State, record: Record) -> Result<(), SessionError> {
        state.phase = Phase::Loaded;
        state.adopt(record);
        self.settle(true);
        Ok(())
    }

    /// The old cookie leads nowhere usable: a fresh session, and the old
    /// cookie is dropped.
    fn fresh(&self, state: &mut State) -> Result<(), SessionError> {
        state.phase = Phase::Loaded;
        // With our cookie's name the old one is cleared by our removal.
        state.stale_cookie = true;
        self.settle(false);
        Ok(())
    }

    fn settle(&self, issue_cookie: bool) {
        let Some((legacy, _)) = &self.inner.migration.pending else {
            return;
        };
        let scope = legacy.cookie();
        let config = self.inner.shared.codec.config();
        let replaced_by_ours = scope.name == self.inner.shared.codec.name()
            && scope.path == config.path()
            && scope.domain.as_deref() == config.domain();
        let _ = self.inner.migration.outcome.set(Outcome {
            issue_cookie,
            removal: (!replaced_by_ours).then(|| scope.removal()),
        });
    }

    /// Deletes the old record: false only when it was already gone. A
    /// failure counts as deleted (true): the record then lingers until its
    /// own expiry, and the forwarding marker still sends the old cookie to
    /// the new session.
    async fn release(&self, legacy: &dyn LegacySessions, old: &LegacyCookie) -> bool {
        let shared = &self.inner.shared;
        match shared.call(Operation::Delete, legacy.release(old)).await {
            Ok(released) => released,
            Err(err) => {
                log_store_error(
                    &err,
                    "old session record could not be deleted after its migration",
                );
                true
            }
        }
    }

    /// This request stored the old session under `id`, but the old record
    /// was already gone: a parallel request stored it first and deleted
    /// it, and the session was ended since (else this create would have
    /// found the id taken). The copy just made would bring an ended
    /// session back, so it goes, and the request starts fresh.
    async fn overtaken(&self, state: &mut State, id: &SessionId) -> Result<(), SessionError> {
        let shared = &self.inner.shared;
        tracing::info!(
            session.id = ?id,
            "migrated session was ended by a parallel request; not bringing it back"
        );
        match shared
            .call(Operation::Delete, shared.store.delete(id))
            .await
        {
            Ok(()) => self.fresh(state),
            Err(err) => self.migration_failed(state, err),
        }
    }

    /// The store failed mid-migration: as a failed load, by the policy.
    /// Nothing is lost: the old record stays until a store write of its
    /// data succeeded, and the next request claims the same new id.
    fn migration_failed(&self, state: &mut State, err: StoreError) -> Result<(), SessionError> {
        state.phase = Phase::Loaded;
        match self.inner.shared.error_policy {
            ErrorPolicy::TreatAsEmpty => {
                log_store_error(
                    &err,
                    "session migration failed; serving reads empty and refusing changes",
                );
                state.phase = Phase::ServedEmpty(err.kind());
                Ok(())
            }
            ErrorPolicy::Reject => {
                log_store_error(&err, "session migration failed; answering 503");
                state.phase = Phase::LoadFailed(err.kind());
                Err(SessionError::Unavailable(err))
            }
        }
    }
}

/// Errors that no retry fixes: the user is better off with a fresh session
/// than with a 503 until the old record expires.
fn is_unmovable(err: &StoreError) -> bool {
    matches!(err.kind(), ErrorKind::Corrupt | ErrorKind::TooLarge)
}

/// The first cookie with the old name that the source verifies.
fn read_legacy(legacy: &dyn LegacySessions, headers: &[&[u8]]) -> Option<LegacyCookie> {
    let name = legacy.cookie().name;
    let mut candidates = 0;
    'headers: for header in headers {
        let text: Cow<'_, str> = String::from_utf8_lossy(header);
        for cookie in cookie::Cookie::split_parse(text.as_ref()).flatten() {
            if cookie.name() != name {
                continue;
            }
            if let Some(old) = legacy.verify(cookie.value()) {
                return Some(old);
            }
            candidates += 1;
            if candidates >= MAX_LEGACY_CANDIDATES {
                break 'headers;
            }
        }
    }
    if candidates > 0 {
        tracing::debug!(
            cookie.name = %name,
            candidates,
            "old session cookie is malformed, forged or made with another key; not migrating it"
        );
    }
    None
}
