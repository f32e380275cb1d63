//! Moving users from another session library without logging them out.
//!
//! An app switching to session-kit from tower-sessions or actix-session
//! has users whose browsers hold the old library's cookie and whose data
//! sits in the old library's records. With a [`LegacySessions`] source given
//! to [`SessionManagerBuilder::with_legacy_sessions`], a request that
//! carries no valid session-kit cookie but does carry the old one is
//! migrated on first contact, the first time the handler touches its
//! session:
//!
//! 1. the old cookie is verified by the source, with the old library's key;
//! 2. the source *claims* the old record atomically: the first claim leaves
//!    a short-lived forwarding marker from the old id to a new session-kit
//!    id, and every later claim (a browser's parallel requests) is sent
//!    to that same id;
//! 3. the data is written as a session-kit record under that id
//!    ([`SessionStore::create`](crate::store::SessionStore::create), which
//!    never overwrites, so parallel migrations of one cookie end in one
//!    session and whichever lost simply loads it);
//! 4. the request whose write created the record deletes the old record
//!    ([`LegacySessions::release`]); our cookie is issued, and the old
//!    cookie is cleared (unless it has our cookie's name, path and domain,
//!    in which case ours replaces it).
//!
//! A request that stored the session but finds the old record already
//! deleted was overtaken: a parallel request stored it first, deleted the
//! old record, and the session was ended since (a logout in that instant).
//! Its copy would bring the ended session back, so it deletes it and
//! starts fresh: nothing ended comes back.
//!
//! A forged or tampered old cookie, one whose record is gone, corrupt or
//! too large, gets a fresh session, never an error page; only an
//! unreachable store answers as any failed load does (see
//! [`ErrorPolicy`](crate::ErrorPolicy)).
//!
//! With no source configured the manager does none of this and costs
//! nothing more: migration is consulted only when a request has no
//! session-kit cookie *and* a source is set. The Redis readers for
//! tower-sessions and actix-session are in `session-redis` (feature
//! `migrate`); the facade turns them on from its `[migrate]` config.
//!
//! [`SessionManagerBuilder::with_legacy_sessions`]: crate::manager::SessionManagerBuilder::with_legacy_sessions

use std::fmt;

use async_trait::async_trait;

use crate::{Data, SessionId, StoreError};

/// How many cookies with the old name one request may make us verify: as
/// for our own cookie, a browser sends one, or a few when paths overlap.
pub(crate) const MAX_LEGACY_CANDIDATES: usize = 4;

/// An old library's session cookie that verified: the id of the old
/// record, as the old library wrote it. Its `Debug` shows only a prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyCookie {
    id: String,
}

impl LegacyCookie {
    /// A verified old cookie naming the old record `id` (the old library's
    /// session id or key, not yet prefixed for the store).
    #[must_use]
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }

    /// The old record's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for LegacyCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The id is a bearer secret: never the whole of it in logs.
        let prefix: String = self.id.chars().take(4).collect();
        write!(f, "LegacyCookie({prefix}…)")
    }
}

/// What [`LegacySessions::claim`] found for an old cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// The old session moves (or has moved) to session-kit's `id`: the
    /// candidate this claim offered if it was the first, else the id the
    /// first claim offered. `data` is the old record's data as session-kit
    /// values (JSON text per key) while the old record still exists, and
    /// `None` once a sibling migration has deleted it (its session-kit
    /// record is then under `id`).
    Forwarded {
        /// The session-kit id the old session moves to.
        id: SessionId,
        /// The old data, while the old record exists.
        data: Option<Data>,
    },
    /// Neither the old record nor a forwarding marker exists: the old
    /// session expired or was ended. The request gets a fresh session.
    Missing,
}

/// Where the old cookie lives, so that it can be cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegacyCookieScope {
    /// The old cookie's name.
    pub name: String,
    /// Its `Path` attribute (the old libraries default to `/`).
    pub path: String,
    /// Its `Domain` attribute, if it had one.
    pub domain: Option<String>,
}

impl LegacyCookieScope {
    /// A cookie called `name` on path `/` and no domain: the old libraries'
    /// defaults.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: "/".to_owned(),
            domain: None,
        }
    }

    /// The old cookie's `Path`.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The old cookie's `Domain`.
    #[must_use]
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// A `Set-Cookie` value that makes the browser drop the old cookie.
    #[must_use]
    pub fn removal(&self) -> String {
        let mut cookie = cookie::Cookie::build((self.name.clone(), String::new()))
            .path(self.path.clone())
            .build();
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.make_removal();
        cookie.to_string()
    }
}

/// Another library's sessions, read once per user and moved into
/// session-kit: see the [module docs](self).
///
/// An implementation knows the old library's cookie (its name, its id
/// format, its signing or encryption) and its records (where they are and
/// how they are encoded). It must make [`claim`](Self::claim) atomic: two
/// claims of one old cookie at once must agree on one session-kit id.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{collections::HashMap, sync::Mutex};
/// use async_trait::async_trait;
/// use session_core::{
///     manager::Finish, memory::MemoryStore,
///     migrate::{Claim, LegacyCookie, LegacyCookieScope, LegacySessions},
///     Key, SessionId, SessionManager, StoreError,
/// };
///
/// /// Old sessions kept in memory, with unsigned cookies: for the example only.
/// #[derive(Debug, Default)]
/// struct Old {
///     records: Mutex<HashMap<String, HashMap<String, String>>>,
///     forwards: Mutex<HashMap<String, SessionId>>,
/// }
///
/// #[async_trait]
/// impl LegacySessions for Old {
///     fn cookie(&self) -> LegacyCookieScope {
///         LegacyCookieScope::new("old_sid")
///     }
///     fn verify(&self, value: &str) -> Option<LegacyCookie> {
///         Some(LegacyCookie::new(value))
///     }
///     async fn claim(&self, old: &LegacyCookie, candidate: &SessionId) -> Result<Claim, StoreError> {
///         let data = self.records.lock().unwrap().get(old.id()).cloned();
///         let mut forwards = self.forwards.lock().unwrap();
///         let id = match (forwards.get(old.id()), &data) {
///             (Some(id), _) => *id,
///             (None, Some(_)) => *forwards.entry(old.id().to_owned()).or_insert(*candidate),
///             (None, None) => return Ok(Claim::Missing),
///         };
///         Ok(Claim::Forwarded { id, data })
///     }
///     async fn release(&self, old: &LegacyCookie) -> Result<bool, StoreError> {
///         Ok(self.records.lock().unwrap().remove(old.id()).is_some())
///     }
/// }
///
/// let old = Old::default();
/// old.records.lock().unwrap().insert("abc".into(), HashMap::from([("user".into(), "\"ada\"".into())]));
/// let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
///     .with_legacy_sessions(old)
///     .build()
///     .unwrap();
///
/// let session = manager.start([b"old_sid=abc".as_slice()]);
/// assert_eq!(session.get::<String>("user").await.unwrap().as_deref(), Some("ada"));
/// let Finish::Respond { set_cookie: Some(ours) } = session.finish().await else { panic!() };
/// assert!(ours.starts_with("session="));
/// // The old cookie is cleared: the adapter adds this `Set-Cookie` too.
/// assert!(session.legacy_cookie_removal().unwrap().starts_with("old_sid=;"));
/// # }
/// ```
#[async_trait]
pub trait LegacySessions: fmt::Debug + Send + Sync + 'static {
    /// The old cookie's name and scope.
    fn cookie(&self) -> LegacyCookieScope;

    /// Verifies one value of a cookie with the old name, as the browser
    /// sent it (percent-encoded or not). `None` for anything the old
    /// library would not have accepted: malformed, forged, tampered, or
    /// made with another key.
    fn verify(&self, value: &str) -> Option<LegacyCookie>;

    /// Claims the old session for session-kit atomically: the first claim
    /// of `old` records `candidate` as its new id (for a short while,
    /// covering a browser's parallel requests) and every later claim gets
    /// that same id back. See [`Claim`].
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt) when the old record
    /// cannot be decoded and [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge)
    /// when it is too large to move (both give the user a fresh session);
    /// an outage as the store's errors.
    async fn claim(&self, old: &LegacyCookie, candidate: &SessionId) -> Result<Claim, StoreError>;

    /// Deletes the old record once its data is stored under the new id:
    /// true when this call deleted it, false when it was already gone.
    ///
    /// The manager reads "already gone" as "another request stored this
    /// session first and deleted the old record": its own copy is then a
    /// session that was ended meanwhile (a logout) coming back, and it is
    /// deleted again. So an implementation must answer false only when the
    /// record is really absent.
    ///
    /// # Errors
    /// An outage, as the store's errors. It costs nothing but the old
    /// record lingering until its own expiry.
    async fn release(&self, old: &LegacyCookie) -> Result<bool, StoreError>;
}
