//! The per-request `Session` handle and the write-back at the end of a request.

use std::{fmt, mem, sync::Arc, time::SystemTime};

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Mutex;

mod cycle;
mod devices;
mod error;
mod migrate;
mod token;

pub use error::SessionError;
use token::Token;

use super::{log_store_error, ErrorPolicy, Finish, Shared};
use crate::{
    cookie::Unverified,
    telemetry::{self, Ended, Operation, Refused},
    Changes, Committed, Created, Data, ErrorKind, Lifetime, Owner, Record, SessionId, StoreError,
};

/// How many fresh ids `create` tries before giving up. With 128-bit random ids
/// a second collision means a broken RNG, not bad luck.
const CREATE_ATTEMPTS: usize = 3;

/// One request's view of its session.
///
/// Cheap to clone, `Send` and `Sync`, so it can be held across `.await` and
/// passed to spawned tasks; clones share one state. The session loads from the
/// store on first use, so a handler that never touches it costs no store call.
/// Changes are kept as a delta and written once, after the handler, by
/// [`finish`](Self::finish), which adapters call.
///
/// Values are stored as JSON text, one per key.
///
/// # Cancel safety
/// Every method is cancel-safe: a handler may drop any call's future (a
/// `tokio::time::timeout`, a `select!` branch that lost) and go on using the
/// session. The only wait inside a call is the load, and nothing changes
/// until it has answered, so a call dropped mid-load leaves the session
/// unloaded, and the next call loads it again. It never leaves the session
/// empty, where a later write would start a fresh session over the user's.
/// A change dropped mid-load is not applied.
///
/// Two calls do work that cannot be taken back once it reached the store:
/// - [`finish`](Self::finish) dropped mid-write may or may not have written.
///   The handle is finished either way, and a later `finish` answers
///   [`Finish::Unavailable`], never a response that acknowledges the write.
/// - [`log_out_everywhere`](Self::log_out_everywhere) dropped mid-way may have
///   ended some of the owner's sessions and not yet marked this one; calling
///   it again ends the rest.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    token: Token,
    state: Mutex<State>,
    /// Set only while migrating from another library: see `migrate.rs`.
    migration: migrate::Migration,
}

#[derive(Default)]
struct State {
    phase: Phase,
    /// The live record the request started from.
    base: Option<Base>,
    /// The data as this request sees it: the loaded data with `changes` applied.
    data: Data,
    changes: Changes,
    /// The id the session will have after this request, when it differs from
    /// the base's: a new session's, or the target of `cycle_id`.
    next_id: Option<SessionId>,
    /// An id `destroy` ended; deleted at finish.
    destroyed: Option<SessionId>,
    /// The owner as loaded, with the `until` it was indexed with.
    loaded_owner: Option<Owner>,
    /// The owner's name as this request sees it.
    owner: Option<String>,
    /// The cookie named a session the store does not have (any more).
    stale_cookie: bool,
    /// The lifetime as loaded.
    loaded_lifetime: Option<Lifetime>,
    /// The lifetime as this request sees it.
    lifetime: Option<Lifetime>,
}

#[derive(Clone, Copy)]
struct Base {
    id: SessionId,
    created_at: SystemTime,
    expires_at: SystemTime,
    version: u64,
}

#[derive(Default, Clone, Copy)]
enum Phase {
    #[default]
    Unloaded,
    Loaded,
    /// The load failed under [`ErrorPolicy::TreatAsEmpty`]: reads see an
    /// empty session, and a change turns the phase into `LoadFailed`.
    ServedEmpty(ErrorKind),
    LoadFailed(ErrorKind),
    /// `finish` is writing. Another call sees this only when that `finish`
    /// was dropped mid-write, with the write's outcome unknown.
    Writing,
    Finished,
}

/// What a call does with the session, which decides whether a session served
/// empty after a failed load may serve it.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Change,
}

impl Session {
    pub(super) fn new(shared: Arc<Shared>, found: Unverified) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                token: Token::unverified(found),
                state: Mutex::new(State::default()),
                migration: migrate::Migration::default(),
            }),
        }
    }

    /// The value under `key`, decoded from JSON.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// assert_eq!(session.get::<String>("user").await.unwrap(), None);
    /// session.insert("user", "ada").await.unwrap();
    /// assert_eq!(session.get::<String>("user").await.unwrap().as_deref(), Some("ada"));
    /// assert!(session.get::<u32>("user").await.is_err());
    /// # }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.loaded_state(Access::Read).await?;
        state.ensure_open()?;
        state
            .data
            .get(key)
            .map(|text| decode(key, text))
            .transpose()
    }

    /// Sets `key` to `value` (encoded as JSON). Setting a key to the value it
    /// already has is not a change and costs no write.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.insert("cart", vec![1, 2, 3]).await.unwrap();
    /// assert_eq!(session.get::<Vec<u8>>("cart").await.unwrap(), Some(vec![1, 2, 3]));
    /// # }
    /// ```
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let text = serde_json::to_string(&value).map_err(|source| SessionError::Encode {
            key: key.to_owned(),
            source,
        })?;
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        if state.data.get(key) == Some(&text) {
            return Ok(());
        }
        if state.base.is_none() && state.next_id.is_none() {
            state.next_id = Some(SessionId::generate());
        }
        state.changes.set(key, text.clone());
        state.data.insert(key.to_owned(), text);
        Ok(())
    }

    /// Removes `key`; true when it was there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.insert("flash", "saved").await.unwrap();
    /// assert!(session.remove("flash").await.unwrap());
    /// assert!(!session.remove("flash").await.unwrap());
    /// # }
    /// ```
    pub async fn remove(&self, key: &str) -> Result<bool, SessionError> {
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        Ok(state.remove(key).is_some())
    }

    /// Removes `key` and returns its value, decoded.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.insert("flash", "saved").await.unwrap();
    /// assert_eq!(session.take::<String>("flash").await.unwrap().as_deref(), Some("saved"));
    /// assert_eq!(session.take::<String>("flash").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        // Decode before removing, so a type error leaves the session as it was.
        let value = state
            .data
            .get(key)
            .map(|text| decode(key, text))
            .transpose()?;
        state.remove(key);
        Ok(value)
    }

    /// Removes every key and the [owner](Self::set_owner). The session
    /// itself (its id and lifetime) stays; use [`destroy`](Self::destroy) to
    /// end it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.insert("a", 1).await.unwrap();
    /// session.clear().await.unwrap();
    /// assert_eq!(session.get::<i32>("a").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn clear(&self) -> Result<(), SessionError> {
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        state.data.clear();
        // A cleared session belongs to no one.
        state.owner = None;
        if state.base.is_some() {
            state.changes.clear();
        } else {
            // Nothing is stored yet, so there is nothing to clear remotely.
            state.changes = Changes::default();
        }
        Ok(())
    }

    /// Moves the session to a new id, keeping its data: call it right after a
    /// login or privilege change, against session fixation. At the end of the
    /// request the record under the new id is created *before* the old one is
    /// deleted, so a store failure in between loses nothing; the old cookie
    /// stops working once the response is sent.
    ///
    /// A commit that another request got acknowledged on the old id while
    /// this one ran is carried over to the new id: the old record is
    /// deleted only at the version this request loaded, and otherwise read
    /// again with this request's changes applied on top. A commit that
    /// arrives after the old record is gone finds it missing and is
    /// refused, so nothing acknowledged is lost. If the old session was
    /// ended meanwhile (a logout, "log out everywhere"), the new one is
    /// ended too. If the store cannot delete by version
    /// ([`SessionStore::delete_if_version`](crate::store::SessionStore::delete_if_version)),
    /// or other requests keep committing, the request fails (503) and the
    /// session keeps its old id and every write.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.insert("user", "ada").await.unwrap();
    /// let before = session.id().await.unwrap();
    /// session.cycle_id().await.unwrap();
    /// assert_ne!(session.id().await.unwrap(), before);
    /// # }
    /// ```
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        state.next_id = Some(SessionId::generate());
        Ok(())
    }

    /// Ends the session: the record is deleted at the end of the request and
    /// the browser is told to drop the cookie. Costs no load (except,
    /// with [migration](crate::migrate) on, moving an old library's session
    /// first, so that it ends too). Data inserted
    /// after `destroy` in the same request starts a new session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.insert("user", "ada").await.unwrap();
    /// session.destroy().await.unwrap();
    /// assert_eq!(session.get::<String>("user").await.unwrap(), None);
    /// # }
    /// ```
    pub async fn destroy(&self) -> Result<(), SessionError> {
        let mut state = self.inner.state.lock().await;
        state.ensure_open()?;
        // A logout on first contact ends the old library's session too,
        // which only migrating it can find (a parallel request may have).
        if matches!(state.phase, Phase::Unloaded) && self.inner.migration.is_pending() {
            self.migrate_into(&mut state).await?;
        }
        // With no loaded record (never loaded, load failed, or served empty
        // under `TreatAsEmpty`) end whatever the cookie names: logging out
        // must work even while the record cannot be read.
        let ended = state
            .base
            .map(|base| base.id)
            .or(self.cookie().map(|cookie| cookie.id));
        *state = State {
            phase: Phase::Loaded,
            destroyed: ended,
            ..State::default()
        };
        Ok(())
    }

    /// Records that the session belongs to `owner` (a user id, say), so that
    /// [`SessionManager::end_all_for`](crate::SessionManager::end_all_for)
    /// and [`log_out_everywhere`](Self::log_out_everywhere) can end it along
    /// with every other session of that owner. Call it at login, next to
    /// [`cycle_id`](Self::cycle_id).
    ///
    /// Setting the owner a session already has costs nothing. A new session
    /// with an owner is stored even if it holds no data. The owner keeps the
    /// session's absolute deadline, so the store's index needs no update
    /// when a later request slides the expiry.
    ///
    /// # Errors
    /// [`SessionError::Owner`] for an empty name or one over
    /// [`Owner::MAX_LEN`] bytes.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.cycle_id().await.unwrap();
    /// session.set_owner("user-42").await.unwrap();
    /// assert_eq!(session.owner().await.unwrap().as_deref(), Some("user-42"));
    /// assert!(session.set_owner("").await.is_err());
    /// # }
    /// ```
    pub async fn set_owner(&self, owner: impl Into<String>) -> Result<(), SessionError> {
        let owner = owner.into();
        Owner::check_name(&owner)?;
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        if state.owner.as_deref() == Some(owner.as_str()) {
            return Ok(());
        }
        if state.base.is_none() && state.next_id.is_none() {
            state.next_id = Some(SessionId::generate());
        }
        state.owner = Some(owner);
        Ok(())
    }

    /// Records that the session belongs to no one any more.
    pub async fn clear_owner(&self) -> Result<(), SessionError> {
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        state.owner = None;
        Ok(())
    }

    /// The name of the session's owner, if it has one.
    pub async fn owner(&self) -> Result<Option<String>, SessionError> {
        let state = self.loaded_state(Access::Read).await?;
        Ok(state.owner.clone())
    }

    /// "Log out everywhere": ends every session of this session's owner, on
    /// every server, this one included, and tells the browser to drop the
    /// cookie. Returns how many sessions the store ended. A session with no
    /// owner is only [destroyed](Self::destroy), and 0 is returned.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`] when the store fails or cannot index
    /// owners ([`ErrorKind::Unsupported`]), and the session is left as it
    /// was. A store that cannot index owners ends nothing. A store that
    /// failed part-way may have ended some of the sessions (a failover pair
    /// with one store down ends those in the other): call again once the
    /// store is back, since a call that ends nothing more is harmless.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// for _ in 0..2 {
    ///     let laptop = manager.start(std::iter::empty());
    ///     laptop.set_owner("user-42").await.unwrap();
    ///     let _ = laptop.finish().await;
    /// }
    /// let phone = manager.start(std::iter::empty());
    /// phone.set_owner("user-42").await.unwrap();
    /// let _ = phone.finish().await;
    /// assert_eq!(manager.end_all_for("user-42").await.unwrap(), 3);
    /// # }
    /// ```
    pub async fn log_out_everywhere(&self) -> Result<u64, SessionError> {
        // A change: a session served empty after a failed load has an
        // unknown owner, and ending "no one's" sessions would answer 0 while
        // every other session of the user lives on.
        let owner = {
            let state = self.loaded_state(Access::Change).await?;
            state.ensure_open()?;
            state.owner.clone()
        };
        let ended = match owner {
            Some(owner) => super::end_all_for(&self.inner.shared, &owner)
                .await
                .map_err(SessionError::Unavailable)?,
            None => 0,
        };
        self.destroy().await?;
        Ok(ended)
    }

    /// Gives this session its own lifetime in place of the manager's
    /// timeouts, from the end of this request on: "remember me". It is
    /// stored with the record, so every server applies it: the idle timeout
    /// slides with each request, the absolute one counts from when the
    /// session began (not from this call). With
    /// [`Lifetime::with_persistent`] the cookie carries a `Max-Age` that
    /// follows the session's expiry, or none at all.
    ///
    /// A lifetime over the manager's maximums
    /// ([`with_max_idle_timeout`](crate::manager::SessionManagerBuilder::with_max_idle_timeout),
    /// [`with_max_absolute_timeout`](crate::manager::SessionManagerBuilder::with_max_absolute_timeout);
    /// by default the manager's own timeouts) is refused, not shortened: an
    /// app that promised "30 days" should hear that it cannot keep the
    /// promise. A lifetime stored by a manager with higher maximums is read
    /// within this manager's, so lowering a maximum shortens existing
    /// sessions too.
    ///
    /// Like [`set_owner`](Self::set_owner), a new session with a lifetime
    /// is stored even if it holds no data. [`clear`](Self::clear) keeps the
    /// lifetime; [`reset_lifetime`](Self::reset_lifetime) drops it.
    ///
    /// # Errors
    /// [`SessionError::Lifetime`] when over the manager's maximums.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use session_core::{Key, Lifetime, SessionManager, manager::Finish, memory::MemoryStore};
    ///
    /// let days = |n: u64| Duration::from_secs(n * 24 * 60 * 60);
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
    ///     .with_max_idle_timeout(days(14))
    ///     .with_max_absolute_timeout(days(30))
    ///     .build()
    ///     .unwrap();
    /// let session = manager.start(std::iter::empty());
    /// session.insert("user", "ada").await.unwrap();
    /// session.set_lifetime(Lifetime::new(days(14), days(30)).unwrap().with_persistent(true)).await.unwrap();
    /// assert!(session.set_lifetime(Lifetime::new(days(31), days(31)).unwrap()).await.is_err());
    /// let Finish::Respond { set_cookie: Some(cookie) } = session.finish().await else { panic!() };
    /// assert!(cookie.contains("Max-Age=1209600"), "{cookie}");
    /// # }
    /// ```
    pub async fn set_lifetime(&self, lifetime: Lifetime) -> Result<(), SessionError> {
        self.inner.shared.check_lifetime(&lifetime)?;
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        if state.lifetime == Some(lifetime) {
            return Ok(());
        }
        if state.base.is_none() && state.next_id.is_none() {
            state.next_id = Some(SessionId::generate());
        }
        state.lifetime = Some(lifetime);
        Ok(())
    }

    /// Puts the session back on the manager's timeouts and cookie config
    /// ("forget me" without logging out).
    pub async fn reset_lifetime(&self) -> Result<(), SessionError> {
        let mut state = self.loaded_state(Access::Change).await?;
        state.ensure_open()?;
        state.lifetime = None;
        Ok(())
    }

    /// The session's own lifetime, if [`set_lifetime`](Self::set_lifetime)
    /// gave it one (here or in an earlier request), within this manager's
    /// maximums.
    pub async fn lifetime(&self) -> Result<Option<Lifetime>, SessionError> {
        let state = self.loaded_state(Access::Read).await?;
        let shared = &self.inner.shared;
        Ok(state
            .lifetime
            .map(|lifetime| lifetime.clamped(shared.max_idle_timeout, shared.max_absolute_timeout)))
    }

    /// The id the session will have once this request is written: `None` for
    /// a new session that holds no data (it will not be stored).
    pub async fn id(&self) -> Result<Option<SessionId>, SessionError> {
        let state = self.loaded_state(Access::Read).await?;
        Ok(state.next_id.or(state.base.map(|base| base.id)))
    }

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

    /// The state, loaded first if it is not yet. Under
    /// [`ErrorPolicy::TreatAsEmpty`] a session served empty after a failed
    /// load serves reads, and refuses a change: writing it would start a
    /// fresh session over the user's, or overwrite data this request never
    /// saw. The refusal makes the whole request answer 503.
    async fn loaded_state(
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
                state.base = Some(Base {
                    id: record.id,
                    created_at: record.created_at,
                    expires_at: record.expires_at,
                    version: record.version,
                });
                state.data = record.data;
                state.owner = record.owner.as_ref().map(|owner| owner.name.clone());
                state.loaded_owner = record.owner;
                state.lifetime = record.lifetime;
                state.loaded_lifetime = record.lifetime;
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
    async fn create(&self, mut record: Record) -> Result<SessionId, StoreError> {
        let shared = &self.inner.shared;
        for _ in 0..CREATE_ATTEMPTS {
            match shared
                .call(Operation::Create, shared.store.create(&record))
                .await?
            {
                Created::Created => return Ok(record.id),
                Created::IdTaken => record.id = SessionId::generate(),
            }
        }
        Err(StoreError::new(ErrorKind::Other, "create").with_source(
            "every freshly generated session id was already taken; is the random number generator broken?",
        ))
    }

    fn cookie_for(
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
    fn ensure_open(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::Writing | Phase::Finished => Err(SessionError::Finished),
            _ => Ok(()),
        }
    }

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
    fn owner_at_write(
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
    fn lifetime_after(&self, current: Option<Lifetime>) -> Option<Lifetime> {
        if self.lifetime == self.loaded_lifetime {
            current
        } else {
            self.lifetime
        }
    }

    /// The owner to write after another request's commit changed the
    /// record to `current` (owner included): this request's owner when it
    /// set one, else the record's as it is now.
    fn owner_after(
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
    fn expiry_at_write(
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

    fn remove(&mut self, key: &str) -> Option<String> {
        let old = self.data.remove(key)?;
        self.changes.remove(key);
        Some(old)
    }
}

fn decode<T: DeserializeOwned>(key: &str, text: &str) -> Result<T, SessionError> {
    serde_json::from_str(text).map_err(|source| SessionError::Decode {
        key: key.to_owned(),
        source,
    })
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the data and never the whole id; `SessionId`'s Debug shows a prefix.
        f.debug_struct("Session")
            // Only a token already verified: `Debug` must not verify, and
            // an unverified id is no one's.
            .field(
                "cookie",
                &self
                    .inner
                    .token
                    .verified
                    .get()
                    .copied()
                    .flatten()
                    .map(|cookie| cookie.id),
            )
            .finish_non_exhaustive()
    }
}
