//! The per-request `Session` handle: its state, and the calls a handler
//! makes on it.

use std::{fmt, sync::Arc, time::SystemTime};

use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::Mutex;

mod cycle;
mod devices;
mod error;
mod finish;
mod load;
mod migrate;
mod token;

pub use error::SessionError;
use token::Token;

use super::Shared;
use crate::{
    cookie::Unverified, store::SessionStore, Changes, Data, ErrorKind, Lifetime, Owner, SessionId,
};

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
///   [`Finish::Unavailable`](super::Finish::Unavailable), never a response
///   that acknowledges the write.
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
    /// The load failed under
    /// [`ErrorPolicy::TreatAsEmpty`](super::ErrorPolicy::TreatAsEmpty): reads
    /// see an empty session, and a change turns the phase into `LoadFailed`.
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
        state.name_if_new(&*self.inner.shared.store);
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
        state.next_id = Some(self.inner.shared.store.generate_id());
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
        state.name_if_new(&*self.inner.shared.store);
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
        state.name_if_new(&*self.inner.shared.store);
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
}

impl State {
    fn ensure_open(&self) -> Result<(), SessionError> {
        match self.phase {
            Phase::Writing | Phase::Finished => Err(SessionError::Finished),
            _ => Ok(()),
        }
    }

    /// Gives a session that has no record yet, and no id, one from
    /// `store` ([`SessionStore::generate_id`]): its first change is about
    /// to make it one to create.
    fn name_if_new(&mut self, store: &dyn SessionStore) {
        if self.base.is_none() && self.next_id.is_none() {
            self.next_id = Some(store.generate_id());
        }
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
