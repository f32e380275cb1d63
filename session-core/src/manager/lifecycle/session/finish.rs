//! The write-back at the end of a request: [`Session::finish`], and the
//! create, commit or touch it makes.

use std::{mem, time::SystemTime};

use super::{Base, Phase, Session, State};
use crate::{
    manager::lifecycle::{log_store_error, Finish, Shared},
    telemetry::{self, Ended, Operation},
    Committed, Created, ErrorKind, Lifetime, Owner, Record, SessionId, StoreError,
};

/// How many fresh ids `create` tries before giving up. With 128-bit random ids
/// a second collision means a broken RNG, not bad luck.
const CREATE_ATTEMPTS: usize = 3;

impl Session {
    /// Writes what the request changed and says what to do with the response.
    /// Adapters call this once, after the handler; later calls, and any use of
    /// the handle afterwards, change nothing.
    ///
    /// - A new session with data is created and gets a cookie.
    /// - An existing session with changes gets one `commit` of the delta.
    /// - An unchanged session gets nothing, or one `touch` once less than half
    ///   of the idle timeout is left.
    /// - A new empty session writes nothing and sets no cookie.
    ///
    /// See [`SessionManager`](crate::SessionManager) for an example.
    pub async fn finish(&self) -> Finish {
        let mut state = self.inner.state.lock().await;
        if let Some(finish) = self.finish_without_store(&mut state) {
            return finish;
        }
        let now = self.inner.shared.clock.now();
        // Marks the write as under way for the case where this future is
        // dropped mid-write: see the `Writing` arm of `finish_without_store`.
        state.phase = Phase::Writing;
        let login = state.stamp_login(now);
        let mut written = self.write(&mut state, now).await;
        if let (Ok(_), Some(owner), Some(cap)) =
            (&written, login, self.inner.shared.max_sessions_per_owner)
        {
            // Acknowledged only once the owner is within the cap.
            if let Err(err) = self.inner.shared.enforce_cap(&owner, cap).await {
                written = Err(err);
            }
        }
        state.phase = Phase::Finished;
        match written {
            Ok(set_cookie) => Finish::Respond { set_cookie },
            Err(err) => {
                log_store_error(&err, "session write failed; answering 503");
                Finish::Unavailable
            }
        }
    }

    /// [`finish`](Self::finish) without waiting, for a session whose
    /// finish needs no store call: one the handler never loaded (the
    /// common untouched request), or one already finished or failed.
    /// `None` when the session has something to write (or may have), or
    /// another handle holds it at this moment: call `finish` then. Adapters
    /// try this first, which spares them boxing `finish`'s future.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{Key, SessionManager, manager::Finish, memory::MemoryStore};
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// let untouched = manager.start(std::iter::empty());
    /// assert_eq!(untouched.finish_now(), Some(Finish::Respond { set_cookie: None }));
    /// let written = manager.start(std::iter::empty());
    /// written.insert("user", "ada").await.unwrap();
    /// assert_eq!(written.finish_now(), None);
    /// assert!(matches!(written.finish().await, Finish::Respond { set_cookie: Some(_) }));
    /// # }
    /// ```
    #[must_use]
    pub fn finish_now(&self) -> Option<Finish> {
        let mut state = self.inner.state.try_lock().ok()?;
        self.finish_without_store(&mut state)
    }

    /// The end of a session that makes no store call, marking it finished;
    /// `None`, with the state untouched, for a loaded session.
    fn finish_without_store(&self, state: &mut State) -> Option<Finish> {
        let finish = match state.phase {
            Phase::Loaded => return None,
            Phase::Finished => Finish::Respond { set_cookie: None },
            Phase::Writing => {
                tracing::warn!(
                    "a session write was cancelled mid-way and may or may not have happened; answering 503"
                );
                Finish::Unavailable
            }
            Phase::LoadFailed(_) => Finish::Unavailable,
            // Every change was refused, so there is nothing to write, and the
            // cookie is left alone: the session is back once the store is.
            Phase::ServedEmpty(_) => Finish::Respond { set_cookie: None },
            Phase::Unloaded => Finish::Respond {
                set_cookie: self.resign_unloaded(),
            },
        };
        state.phase = Phase::Finished;
        Some(finish)
    }

    async fn write(
        &self,
        state: &mut State,
        now: SystemTime,
    ) -> Result<Option<String>, StoreError> {
        let shared = &self.inner.shared;
        let mut set_cookie = None;
        if let Some(ended) = state.destroyed {
            shared
                .call(Operation::Delete, shared.store.delete(&ended))
                .await?;
            telemetry::sessions_ended(Ended::Logout, 1);
            set_cookie = Some(shared.removal());
        }
        if let Some(base) = state.base {
            return self.write_existing(state, base, now).await;
        }
        if !state.data.is_empty() || state.owner.is_some() || state.lifetime.is_some() {
            let id = state.next_id.unwrap_or_else(SessionId::generate);
            let lifetime = state.lifetime;
            let expires_at = shared.deadline(now, now, lifetime.as_ref());
            let mut record = Record::new(id, mem::take(&mut state.data), now, expires_at);
            record.owner = state.owner_at_write(shared, now, lifetime.as_ref());
            record.lifetime = lifetime;
            let id = self.create(record).await?;
            telemetry::session_created();
            return Ok(Some(self.cookie_for(
                &id,
                expires_at,
                now,
                lifetime.as_ref(),
            )));
        }
        if state.stale_cookie && set_cookie.is_none() {
            // Tell the browser to stop sending an id that leads nowhere.
            set_cookie = Some(shared.removal());
        }
        Ok(set_cookie)
    }

    async fn write_existing(
        &self,
        state: &mut State,
        base: Base,
        now: SystemTime,
    ) -> Result<Option<String>, StoreError> {
        let shared = &self.inner.shared;
        if let Some(next_id) = state.next_id {
            return self.cycle(state, base, next_id, now).await;
        }
        let lifetime = state.lifetime;
        let owner = state.owner_at_write(shared, base.created_at, lifetime.as_ref());
        let expires_at = state.expiry_at_write(
            shared,
            now,
            base.created_at,
            owner.as_ref(),
            lifetime.as_ref(),
        );

        // The loaded owner comes back unchanged unless its name or the
        // lifetime (which sets its `until`) changed.
        if owner != state.loaded_owner {
            state.changes.set_owner(owner);
        }
        if lifetime != state.loaded_lifetime {
            state.changes.set_lifetime(lifetime);
        }

        if !state.changes.is_empty() {
            let committed = shared
                .call(
                    Operation::Commit,
                    shared.store.commit(&base.id, &state.changes, expires_at),
                )
                .await?;
            return Ok(match committed {
                Committed::Applied { .. } => {
                    self.refreshed_cookie(&base.id, expires_at, now, lifetime.as_ref())
                }
                Committed::Missing => {
                    tracing::warn!(
                        session.id = ?base.id,
                        "session ended during the request (expired or destroyed elsewhere); its changes are dropped"
                    );
                    Some(shared.removal())
                }
            });
        }

        let (idle, absolute) = shared.timeouts(lifetime.as_ref());
        // A record written under a longer lifetime than this manager allows
        // lives no longer than this manager's absolute cap, and its cookie
        // says so.
        let stored_until = base.expires_at.min(base.created_at + absolute);
        let due = base.expires_at < now + idle / 2 && expires_at > base.expires_at;
        if !due {
            return Ok(self.refreshed_cookie(&base.id, stored_until, now, lifetime.as_ref()));
        }
        match shared
            .call(Operation::Touch, shared.store.touch(&base.id, expires_at))
            .await
        {
            Ok(true) => Ok(self.refreshed_cookie(&base.id, expires_at, now, lifetime.as_ref())),
            Ok(false) => Ok(Some(shared.removal())),
            // A failed touch loses no data: the session keeps its old expiry.
            Err(err) => {
                log_store_error(&err, "session touch failed; keeping the old expiry");
                Ok(self.refreshed_cookie(&base.id, stored_until, now, lifetime.as_ref()))
            }
        }
    }

    /// Creates `record`, drawing a new id if its id is taken.
    pub(super) async fn create(&self, mut record: Record) -> Result<SessionId, StoreError> {
        let shared = &self.inner.shared;
        for _ in 0..CREATE_ATTEMPTS {
            match shared
                .call(Operation::Create, shared.store.create(&record))
                .await?
            {
                Created::Created => return Ok(record.id),
                Created::IdTaken => record.id = shared.store.generate_id(),
            }
        }
        Err(StoreError::new(ErrorKind::Other, "create").with_source(
            "every freshly generated session id was already taken; is the random number generator broken?",
        ))
    }

    pub(super) fn cookie_for(
        &self,
        id: &SessionId,
        expires_at: SystemTime,
        now: SystemTime,
        lifetime: Option<&Lifetime>,
    ) -> String {
        let shared = &self.inner.shared;
        let remaining = expires_at.duration_since(now).unwrap_or_default();
        shared.issue(id, remaining, shared.is_persistent(lifetime))
    }

    /// The cookie for an unchanged id, sent only when it says something new:
    /// a persistent cookie's `Max-Age`, or a signature by the current key.
    fn refreshed_cookie(
        &self,
        id: &SessionId,
        expires_at: SystemTime,
        now: SystemTime,
        lifetime: Option<&Lifetime>,
    ) -> Option<String> {
        let needs_resign = self.cookie().is_some_and(|cookie| cookie.needs_resign)
            || self.inner.migration.issues_cookie();
        (self.inner.shared.is_persistent(lifetime) || needs_resign)
            .then(|| self.cookie_for(id, expires_at, now, lifetime))
    }
}

impl State {
    /// When this request gives the session an owner (a login), records the
    /// login time with the data ([`LOGIN_KEY`](crate::devices::LOGIN_KEY)),
    /// by which the per-owner cap ranks sessions, and returns the owner.
    fn stamp_login(&mut self, now: SystemTime) -> Option<String> {
        let owner = self.owner.clone()?;
        if self.loaded_owner.as_ref().is_some_and(|o| o.name == owner) {
            return None;
        }
        let stamp = crate::devices::micros(now).to_string();
        self.changes.set(crate::devices::LOGIN_KEY, stamp.clone());
        self.data
            .insert(crate::devices::LOGIN_KEY.to_owned(), stamp);
        Some(owner)
    }

    /// The owner to write for a session created at `created_at` with
    /// `lifetime`: the loaded one when the name and lifetime are unchanged
    /// (its `until` stays), else a new one lasting to the session's
    /// absolute deadline.
    pub(super) fn owner_at_write(
        &self,
        shared: &Shared,
        created_at: SystemTime,
        lifetime: Option<&Lifetime>,
    ) -> Option<Owner> {
        let name = self.owner.as_ref()?;
        if let Some(loaded) = self
            .loaded_owner
            .as_ref()
            .filter(|o| &o.name == name && lifetime == self.loaded_lifetime.as_ref())
        {
            return Some(loaded.clone());
        }
        Some(Owner {
            name: name.clone(),
            until: created_at + shared.timeouts(lifetime).1,
        })
    }

    /// The lifetime to write after another request's commit changed the
    /// record's to `current`: this request's when it set one, else the
    /// record's as it is now.
    pub(super) fn lifetime_after(&self, current: Option<Lifetime>) -> Option<Lifetime> {
        if self.lifetime == self.loaded_lifetime {
            current
        } else {
            self.lifetime
        }
    }

    /// The owner to write after another request's commit changed the
    /// record to `current` (owner included): this request's owner when it
    /// set one, else the record's as it is now.
    pub(super) fn owner_after(
        &self,
        shared: &Shared,
        current: Option<Owner>,
        created_at: SystemTime,
        lifetime: Option<&Lifetime>,
    ) -> Option<Owner> {
        let loaded = self.loaded_owner.as_ref().map(|o| o.name.as_str());
        if self.owner.as_deref() == loaded && lifetime == self.loaded_lifetime.as_ref() {
            current
        } else {
            self.owner_at_write(shared, created_at, lifetime)
        }
    }

    /// When a session touched at `now` expires: the manager's deadline, and
    /// never after its owner's index entry, which it must not outlive.
    pub(super) fn expiry_at_write(
        &self,
        shared: &Shared,
        now: SystemTime,
        created_at: SystemTime,
        owner: Option<&Owner>,
        lifetime: Option<&Lifetime>,
    ) -> SystemTime {
        let deadline = shared.deadline(now, created_at, lifetime);
        owner.map_or(deadline, |owner| deadline.min(owner.until))
    }
}
