//! The manager: one per app, shared by every request.

mod devices;
pub(crate) mod session;

use std::{
    collections::HashSet, future::Future, num::NonZeroUsize, sync::Arc, time::Duration,
    time::SystemTime,
};

use session::Session;

use super::{ErrorResponder, ErrorResponse, Failure};
use crate::{
    error::cause_chain,
    migrate::LegacySessions,
    telemetry::{self, Ended, Operation, StoreCalls},
    Clock, ConfigError, CookieCodec, CookieConfig, ErrorKind, KeyRing, Lifetime, SessionStore,
    StoreError, SystemClock, Transport,
};

/// What a request gets when the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// The default: a failed load or write turns the response into a bare
    /// `503 Service Unavailable`, and nothing is overwritten. The user retries
    /// later and finds their session intact.
    #[default]
    Reject,
    /// A failed load (the store unavailable or timed out) is served as an
    /// empty session *for reading*, so pages that merely show "logged in as"
    /// keep working during an outage. The user's cookie is left alone (no
    /// `Set-Cookie`), so the session is back once the store is.
    ///
    /// A *change* after a failed load is refused: [`insert`](Session::insert),
    /// [`remove`](Session::remove), [`take`](Session::take),
    /// [`clear`](Session::clear), [`cycle_id`](Session::cycle_id),
    /// [`set_owner`](Session::set_owner), [`clear_owner`](Session::clear_owner),
    /// [`set_lifetime`](Session::set_lifetime), [`reset_lifetime`](Session::reset_lifetime)
    /// and [`log_out_everywhere`](Session::log_out_everywhere) return
    /// [`SessionError::Unavailable`](crate::SessionError::Unavailable), and the response is a bare 503 with no
    /// `Set-Cookie`, exactly as under [`Reject`](Self::Reject). This holds
    /// even when the store answers again before the request ends: writing
    /// would start a fresh session over the user's (logging them out) or
    /// overwrite data this request never saw. Nothing is created, and the
    /// stored session is untouched.
    ///
    /// [`destroy`](Session::destroy) still works after a failed load: it needs
    /// no load, and ends the session the cookie names, so logging out works
    /// during an outage (the response is a 503 if the delete fails too).
    ///
    /// A failed *write* is still a 503: a response must never acknowledge
    /// data that was not stored.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use session_conformance::{Fault, InstrumentedStore};
    /// use session_core::{ErrorKind, ErrorPolicy, Key, SessionManager, manager::Finish, memory::MemoryStore};
    ///
    /// let store = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    /// let manager = SessionManager::builder(Arc::clone(&store), Key::generate())
    ///     .with_error_policy(ErrorPolicy::TreatAsEmpty)
    ///     .build()
    ///     .unwrap();
    /// let session = manager.start(std::iter::empty());
    /// session.insert("user", "ada").await.unwrap();
    /// let Finish::Respond { set_cookie: Some(set_cookie) } = session.finish().await else { panic!() };
    /// let cookie = set_cookie.split(';').next().unwrap();
    ///
    /// // The store cannot load; the request reads an empty session...
    /// store.set_fault(Some(Fault::FailReads(ErrorKind::Timeout)));
    /// let session = manager.start([cookie.as_bytes()]);
    /// assert_eq!(session.get::<String>("user").await.unwrap(), None);
    /// // ...but may not change it: a 503, and the cookie stays.
    /// assert!(session.insert("cart", 1).await.unwrap_err().is_unavailable());
    /// assert_eq!(session.finish().await, Finish::Unavailable);
    ///
    /// // Once the store is back, the session is as it was.
    /// store.set_fault(None);
    /// let session = manager.start([cookie.as_bytes()]);
    /// assert_eq!(session.get::<String>("user").await.unwrap().as_deref(), Some("ada"));
    /// # }
    /// ```
    TreatAsEmpty,
}

/// What an adapter does with the handler's response once the session is
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Finish {
    /// Send the handler's response, adding this `Set-Cookie` value (or token
    /// header value) if any.
    Respond {
        /// The value to add under the manager's
        /// [`response_header`](SessionManager::response_header): a
        /// `Set-Cookie` value, or with a [`Transport::Header`] the token
        /// header's value (empty when the client should forget its token).
        set_cookie: Option<String>,
    },
    /// Replace the handler's response with a bare `503 Service Unavailable`:
    /// the store failed and the [`ErrorPolicy`] does not allow going on.
    Unavailable,
}

/// Holds the store, the cookie codec and the policy, and runs the session
/// lifecycle for every request. Cheap to clone; clones share everything.
///
/// Adapters call [`start`](Self::start) with the values of the request's
/// [`request_header`](Self::request_header) (`Cookie`, or the token header
/// of a [`Transport::Header`]), hand the returned [`Session`] to the
/// handler, then call [`Session::finish`] and add the [`Finish`]'s value
/// under [`response_header`](Self::response_header).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use session_core::{Key, SessionManager, manager::Finish, memory::MemoryStore};
///
/// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
///
/// // A request with no cookie: the handler writes, so a cookie is issued.
/// let session = manager.start(std::iter::empty());
/// session.insert("count", 1).await.unwrap();
/// let Finish::Respond { set_cookie: Some(set_cookie) } = session.finish().await else { panic!() };
///
/// // The next request sends it back and sees the value.
/// let cookie = set_cookie.split(';').next().unwrap();
/// let session = manager.start([cookie.as_bytes()]);
/// assert_eq!(session.get::<i32>("count").await.unwrap(), Some(1));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SessionManager {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    store: Arc<dyn SessionStore>,
    codec: CookieCodec,
    idle_timeout: Duration,
    absolute_timeout: Duration,
    operation_timeout: Duration,
    error_policy: ErrorPolicy,
    clock: Arc<dyn Clock>,
    max_idle_timeout: Duration,
    max_absolute_timeout: Duration,
    transport: Transport,
    /// The span and metrics of every call to `store`.
    calls: StoreCalls,
    error_responder: Option<ErrorResponder>,
    /// Makes the handles of a user's devices.
    handles: crate::devices::HandleKeys,
    max_sessions_per_owner: Option<NonZeroUsize>,
    /// Another library's sessions to migrate on first contact, if any.
    legacy: Option<Arc<dyn LegacySessions>>,
}

impl SessionManager {
    /// Starts configuring a manager over `store`, signing cookies with `keys`
    /// (a [`Key`](crate::Key) or a [`KeyRing`] for rotation).
    ///
    /// `store` may be a concrete store or an `Arc<dyn SessionStore>` shared
    /// with other managers.
    pub fn builder(store: impl SessionStore, keys: impl Into<KeyRing>) -> SessionManagerBuilder {
        SessionManagerBuilder {
            store: Arc::new(store),
            keys: keys.into(),
            config: ManagerConfig::default(),
            clock: Arc::new(SystemClock),
            error_responder: None,
            zero_cap: false,
            legacy: None,
        }
    }

    /// Begins a request: reads and verifies the session token among the
    /// values of the request's [`request_header`](Self::request_header)
    /// (`Cookie` unless the [`Transport`] is a header). Costs no store
    /// call; the session loads on first use.
    pub fn start<'a>(&self, cookie_headers: impl IntoIterator<Item = &'a [u8]>) -> Session {
        if let (Some(legacy), Transport::Cookie) = (&self.shared.legacy, &self.shared.transport) {
            // Another library's sessions come in cookies only.
            return Session::start_migrating(&self.shared, legacy, cookie_headers);
        }
        // Only parsed here: the HMAC waits until the session is used (see
        // `Session::cookie`), so a request that never touches its session
        // costs next to nothing.
        let found = match &self.shared.transport {
            Transport::Header(header) => header.find(cookie_headers),
            Transport::Cookie => self.shared.codec.find(cookie_headers),
        };
        Session::new(Arc::clone(&self.shared), found)
    }

    /// The request header whose values an adapter hands to
    /// [`start`](Self::start): `cookie`, or the header of a
    /// [`Transport::Header`], in lower case.
    #[must_use]
    pub fn request_header(&self) -> &str {
        match &self.shared.transport {
            Transport::Header(header) => header.name(),
            Transport::Cookie => "cookie",
        }
    }

    /// The response header an adapter adds the value of
    /// [`Finish::Respond`] to: `set-cookie`, or the header of a
    /// [`Transport::Header`], in lower case.
    #[must_use]
    pub fn response_header(&self) -> &str {
        match &self.shared.transport {
            Transport::Header(header) => header.name(),
            Transport::Cookie => "set-cookie",
        }
    }

    /// Where the session token travels.
    #[must_use]
    pub fn transport(&self) -> &Transport {
        &self.shared.transport
    }

    /// Ends every session of `owner` on every server ("log this user out
    /// everywhere", after a password change or a ban) and returns how many
    /// the store ended. Sessions get an owner from
    /// [`Session::set_owner`]; a request from an ended session gets a fresh
    /// session, as after a logout.
    ///
    /// When it returns `Ok`, no session the owner had when it was called is
    /// live, under its old id or a new one. The store is asked again
    /// ([`SessionStore::delete_by_owner`]) until a pass ends nothing and
    /// finds no session in the owner's index that an earlier pass had not
    /// found, at most [`END_ALL_PASSES`](Self::END_ALL_PASSES) times. A pass
    /// that ends nothing is not enough: a session changing id
    /// ([`Session::cycle_id`]) while a pass runs is indexed under its new id
    /// after that pass read the index, and its old id is gone before the
    /// pass reaches it. The next pass finds the new id. So an owner with no
    /// sessions costs one pass, an owner with some costs two, and each id
    /// changed during a pass one more. Each pass runs under the operation
    /// timeout; what a pass costs depends on the store (see its docs):
    /// about one round trip plus one per session ended.
    ///
    /// # Errors
    /// The store's error: [`ErrorKind::Unsupported`] when it cannot index
    /// owners (Memcached), or an outage. [`ErrorKind::Other`] when the
    /// owner's sessions still changed ids after the last pass, so one may
    /// remain. Sessions ended by earlier passes stay ended, and calling
    /// again is safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{Key, SessionManager, memory::MemoryStore};
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// let session = manager.start(std::iter::empty());
    /// session.set_owner("user-42").await.unwrap();
    /// let _ = session.finish().await;
    /// assert_eq!(manager.end_all_for("user-42").await.unwrap(), 1);
    /// assert_eq!(manager.end_all_for("user-42").await.unwrap(), 0);
    /// # }
    /// ```
    pub async fn end_all_for(&self, owner: &str) -> Result<u64, StoreError> {
        end_all_for(&self.shared, owner).await
    }

    /// The most passes [`end_all_for`](Self::end_all_for) makes. Two end
    /// every session that no request moves to a new id meanwhile (the
    /// second confirms the first missed nothing); each pass after that
    /// only finds sessions that changed id while the one before ran, which
    /// takes a request finishing within that pass. Eight leaves room for
    /// several such requests at once; past it the call fails rather than
    /// answer with a session possibly left.
    pub const END_ALL_PASSES: usize = 8;

    /// The cookie codec, for adapters and tests that need the cookie's name.
    #[must_use]
    pub fn codec(&self) -> &CookieCodec {
        &self.shared.codec
    }

    /// The app's response for `failure`, or `None` for the adapter's
    /// default: see [`SessionManagerBuilder::with_error_responder`].
    #[must_use]
    pub fn error_response(&self, failure: Failure) -> Option<ErrorResponse> {
        self.shared.error_responder.as_ref()?.render(failure)
    }

    /// The responder given to
    /// [`with_error_responder`](SessionManagerBuilder::with_error_responder), if any.
    #[must_use]
    pub fn error_responder(&self) -> Option<&ErrorResponder> {
        self.shared.error_responder.as_ref()
    }

    /// The store behind this manager.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.shared.store
    }
}

/// Configures a [`SessionManager`]. Every setting has a default chosen to be
/// safe; [`build`](Self::build) refuses combinations that cannot work, naming
/// the setting.
///
/// ```
/// use std::time::Duration;
/// use session_core::{
///     memory::MemoryStore, CookieConfig, ErrorPolicy, Key, KeyRing, SameSite, SessionManager,
/// };
///
/// let keys = KeyRing::from_secrets(["a-new-secret-of-at-least-32-bytes!!", "the-old-secret-still-verifies-cookies"])?;
/// let manager = SessionManager::builder(MemoryStore::new(), keys)
///     .with_cookie(CookieConfig::default().with_host_prefix(true).with_same_site(SameSite::Strict))
///     .with_idle_timeout(Duration::from_secs(15 * 60))
///     .with_absolute_timeout(Duration::from_secs(8 * 60 * 60))
///     .with_operation_timeout(Duration::from_millis(500))
///     .with_error_policy(ErrorPolicy::TreatAsEmpty)
///     .build()?;
/// assert_eq!(manager.codec().name(), "__Host-session");
///
/// let err = SessionManager::builder(MemoryStore::new(), Key::generate())
///     .with_idle_timeout(Duration::from_secs(3600))
///     .with_absolute_timeout(Duration::from_secs(60))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.key(), "absolute_timeout");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct SessionManagerBuilder {
    store: Arc<dyn SessionStore>,
    keys: KeyRing,
    config: ManagerConfig,
    clock: Arc<dyn Clock>,
    error_responder: Option<ErrorResponder>,
    /// `with_max_sessions_per_owner(0)` was called.
    zero_cap: bool,
    legacy: Option<Arc<dyn LegacySessions>>,
}

/// The settings of a [`SessionManager`] apart from its store, keys and
/// clock: what [`SessionManagerBuilder`] sets one by one, as a value that
/// can be checked before any store exists.
///
/// ```
/// use std::time::Duration;
/// use session_core::manager::ManagerConfig;
///
/// let mut config = ManagerConfig::default();
/// config.absolute_timeout = Duration::from_secs(60);
/// assert_eq!(config.validate().unwrap_err().key(), "absolute_timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// The cookie's name and attributes.
    pub cookie: CookieConfig,
    /// How long a session lives without requests (sliding).
    pub idle_timeout: Duration,
    /// How long a session lives after creation, however active.
    pub absolute_timeout: Duration,
    /// The most any one store call may take before it counts as
    /// [`ErrorKind::Timeout`].
    pub operation_timeout: Duration,
    /// What a request gets when the store fails.
    pub error_policy: ErrorPolicy,
    /// The most sessions one owner keeps: a login past it ends the oldest
    /// logins. `None`, the default, caps nothing. See
    /// [`SessionManagerBuilder::with_max_sessions_per_owner`].
    pub max_sessions_per_owner: Option<NonZeroUsize>,
    /// The longest idle timeout one session may ask for with
    /// [`Session::set_lifetime`]; `None` is `idle_timeout`, so no session
    /// outlives the defaults until the app raises it.
    pub max_idle_timeout: Option<Duration>,
    /// The longest absolute timeout one session may ask for with
    /// [`Session::set_lifetime`]; `None` is `absolute_timeout`.
    pub max_absolute_timeout: Option<Duration>,
    /// Where the session token travels: the cookie (the default) or a
    /// request and response header, for API clients.
    pub transport: Transport,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            absolute_timeout: Self::DEFAULT_ABSOLUTE_TIMEOUT,
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
            error_policy: ErrorPolicy::default(),
            max_sessions_per_owner: None,
            max_idle_timeout: None,
            max_absolute_timeout: None,
            transport: Transport::default(),
        }
    }
}

impl ManagerConfig {
    /// 30 minutes without a request ends a session: the long-standing default
    /// of servlet containers, and within OWASP's advice for ordinary apps.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
    /// 24 hours after creation a session ends however active it is, so a
    /// stolen cookie has a bounded life.
    pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
    /// 2 seconds per store call: far above a healthy store's latency, short
    /// enough that an outage answers within the budget of a page load.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
    /// The longest idle or absolute timeout: 400 days, the most any
    /// browser keeps a cookie (RFC 6265bis caps `Max-Age` there). It also
    /// keeps every deadline computed from a timeout far from the end of
    /// `SystemTime`, so no config value can make the arithmetic overflow.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(400 * 24 * 60 * 60);

    /// Checks the settings on their own, the cookie's included; no store
    /// is needed.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the setting: a zero timeout, a timeout over
    /// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT), an absolute timeout shorter than
    /// the idle one, a maximum below its timeout, a cookie browsers would
    /// refuse, or a header transport HTTP would refuse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                "idle_timeout",
                "must be greater than zero",
            ));
        }
        for (key, timeout) in [
            ("idle_timeout", self.idle_timeout),
            ("absolute_timeout", self.absolute_timeout),
        ] {
            if timeout > Self::MAX_TIMEOUT {
                return Err(ConfigError::new(
                    key,
                    "must be at most 400 days, the longest any browser keeps a cookie",
                ));
            }
        }
        if self.absolute_timeout < self.idle_timeout {
            return Err(ConfigError::new(
                "absolute_timeout",
                "must be at least idle_timeout; a shorter absolute timeout would make the idle one meaningless",
            ));
        }
        if self.operation_timeout.is_zero() {
            return Err(ConfigError::new(
                "operation_timeout",
                "must be greater than zero",
            ));
        }
        for (key, max, timeout, timeout_key) in [
            (
                "max_idle_timeout",
                self.max_idle_timeout,
                self.idle_timeout,
                "idle_timeout",
            ),
            (
                "max_absolute_timeout",
                self.max_absolute_timeout,
                self.absolute_timeout,
                "absolute_timeout",
            ),
        ] {
            let Some(max) = max else { continue };
            if max > Self::MAX_TIMEOUT {
                return Err(ConfigError::new(
                    key,
                    "must be at most 400 days, the longest any browser keeps a cookie",
                ));
            }
            if max < timeout {
                return Err(ConfigError::new(
                    key,
                    format!("must be at least {timeout_key}; it bounds what one session may ask for beyond the default"),
                ));
            }
        }
        self.cookie.validate()?;
        self.transport.validate()
    }

    /// The longest idle timeout a session may ask for.
    #[must_use]
    pub fn effective_max_idle_timeout(&self) -> Duration {
        self.max_idle_timeout.unwrap_or(self.idle_timeout)
    }

    /// The longest absolute timeout a session may ask for.
    #[must_use]
    pub fn effective_max_absolute_timeout(&self) -> Duration {
        self.max_absolute_timeout.unwrap_or(self.absolute_timeout)
    }
}

impl SessionManagerBuilder {
    /// Every setting at once, as read from config.
    pub fn with_config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// The cookie's name and attributes.
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        self.config.cookie = cookie;
        self
    }

    /// How long a session lives without requests (sliding); default
    /// [`ManagerConfig::DEFAULT_IDLE_TIMEOUT`].
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// How long a session lives after creation, however active; default
    /// [`ManagerConfig::DEFAULT_ABSOLUTE_TIMEOUT`].
    pub fn with_absolute_timeout(mut self, timeout: Duration) -> Self {
        self.config.absolute_timeout = timeout;
        self
    }

    /// The most any one store call may take before it counts as
    /// [`ErrorKind::Timeout`]; default
    /// [`ManagerConfig::DEFAULT_OPERATION_TIMEOUT`].
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.config.operation_timeout = timeout;
        self
    }

    /// The longest idle timeout one session may ask for with
    /// [`Session::set_lifetime`]; default `idle_timeout` (no session may
    /// ask for more than the default until this is raised).
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_core::{Key, SessionManager, memory::MemoryStore};
    ///
    /// let days = |n: u64| Duration::from_secs(n * 24 * 60 * 60);
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
    ///     .with_max_idle_timeout(days(30))
    ///     .with_max_absolute_timeout(days(30))
    ///     .build()
    ///     .unwrap();
    /// # let _ = manager;
    /// ```
    pub fn with_max_idle_timeout(mut self, max: Duration) -> Self {
        self.config.max_idle_timeout = Some(max);
        self
    }

    /// The longest absolute timeout one session may ask for with
    /// [`Session::set_lifetime`]; default `absolute_timeout`.
    pub fn with_max_absolute_timeout(mut self, max: Duration) -> Self {
        self.config.max_absolute_timeout = Some(max);
        self
    }

    /// Where the session token travels: [`Transport::Cookie`] (the
    /// default) or a header ([`Transport::Header`]), for API clients.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// What a request gets when the store fails.
    pub fn with_error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.config.error_policy = policy;
        self
    }

    /// The app's own response when the store fails (instead of a bare
    /// 503), rendered by both adapters; see [`ErrorResponder`].
    ///
    /// ```
    /// use session_core::{Key, SessionManager, manager::{ErrorResponder, ErrorResponse, Failure}, memory::MemoryStore};
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
    ///     .with_error_responder(ErrorResponder::new(|failure| {
    ///         (failure == Failure::StoreUnavailable).then(|| ErrorResponse::new(503).with_body("try again soon"))
    ///     }))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(manager.error_response(Failure::StoreUnavailable).unwrap().body, b"try again soon");
    /// ```
    pub fn with_error_responder(mut self, responder: ErrorResponder) -> Self {
        self.error_responder = Some(responder);
        self
    }

    /// Caps how many sessions one [owner](crate::Session::set_owner) keeps:
    /// when a session gains an owner (a login) and the owner then has more
    /// than `sessions` live sessions, the oldest logins are ended, as
    /// streaming and banking sites do. Off by default: a cap logs users out
    /// of devices they still use, which only the app can judge worth it.
    ///
    /// The login's response is sent once the cap is enforced. Concurrent
    /// logins are ranked alike on every server (by login time, then by a
    /// fixed tie-break), so once they have finished at most `sessions`
    /// remain, and those are the newest logins. A login is never ended by
    /// its own cap unless `sessions` newer logins of the same owner raced
    /// it. When the store fails while enforcing the cap, the login answers
    /// 503; its session may have been written, and then counts as the
    /// newest until it ends.
    ///
    /// Needs a store that lists owners' sessions
    /// ([`SessionStore::sessions_of`]); [`build`](Self::build) refuses a
    /// store that does not index owners.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{Key, SessionManager, memory::MemoryStore};
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
    ///     .with_max_sessions_per_owner(2)
    ///     .build()
    ///     .unwrap();
    /// for device in ["laptop", "phone", "tablet"] {
    ///     let session = manager.start(std::iter::empty());
    ///     session.set_owner("user-42").await.unwrap();
    ///     session.set_label(device).await.unwrap();
    ///     let _ = session.finish().await;
    /// }
    /// let devices = manager.devices_of("user-42").await.unwrap();
    /// let labels: Vec<_> = devices.iter().map(|d| d.label.as_deref().unwrap()).collect();
    /// assert_eq!(labels, ["tablet", "phone"]);
    /// # }
    /// ```
    pub fn with_max_sessions_per_owner(mut self, sessions: usize) -> Self {
        // Zero is kept as "unset" here and refused by `build`, so a config
        // value of 0 is an error rather than a silent "no cap".
        self.config.max_sessions_per_owner = NonZeroUsize::new(sessions);
        self.zero_cap |= sessions == 0;
        self
    }

    /// Migrates users of another session library on first contact: a
    /// request with no session-kit cookie but with the old library's
    /// cookie gets its old session moved into the store, and our cookie.
    /// Turn it off (leave it out) once the old cookies' lifetime has passed.
    /// See [`migrate`](crate::migrate).
    pub fn with_legacy_sessions(mut self, legacy: impl LegacySessions) -> Self {
        self.legacy = Some(Arc::new(legacy));
        self
    }

    /// [`with_legacy_sessions`](Self::with_legacy_sessions) with a source
    /// already shared.
    pub fn with_shared_legacy_sessions(mut self, legacy: Arc<dyn LegacySessions>) -> Self {
        self.legacy = Some(legacy);
        self
    }

    /// The clock that timeouts are measured against. Tests use a
    /// [`ManualClock`](crate::clock::ManualClock).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings and builds the manager.
    ///
    /// # Errors
    /// As [`ManagerConfig::validate`].
    pub fn build(self) -> Result<SessionManager, ConfigError> {
        self.config.validate()?;
        if self.zero_cap {
            return Err(ConfigError::new(
                "max_sessions_per_owner",
                "must be at least 1; leave it unset for no cap",
            ));
        }
        if self.config.max_sessions_per_owner.is_some() && !self.store.indexes_owners() {
            return Err(ConfigError::new(
                "max_sessions_per_owner",
                format!(
                    "needs a store that indexes session owners, and the {} store does not",
                    self.store.kind()
                ),
            ));
        }
        let config = self.config;
        let handles = crate::devices::HandleKeys::new(&self.keys);
        let max_idle_timeout = config.effective_max_idle_timeout();
        let max_absolute_timeout = config.effective_max_absolute_timeout();
        let codec = CookieCodec::new(config.cookie, self.keys)?;
        Ok(SessionManager {
            shared: Arc::new(Shared {
                calls: StoreCalls::new(self.store.kind()),
                error_responder: self.error_responder,
                legacy: self.legacy,
                store: self.store,
                codec,
                idle_timeout: config.idle_timeout,
                absolute_timeout: config.absolute_timeout,
                operation_timeout: config.operation_timeout,
                error_policy: config.error_policy,
                clock: self.clock,
                handles,
                max_sessions_per_owner: config.max_sessions_per_owner,
                max_idle_timeout,
                max_absolute_timeout,
                transport: config.transport,
            }),
        })
    }
}

impl Shared {
    /// Runs one store call under the per-operation timeout, so a hung store
    /// costs a request at most that long, inside its span and metrics (the
    /// timeout inside them, so a call cut by it counts as a timeout).
    async fn call<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let bounded = async {
            match tokio::time::timeout(self.operation_timeout, call).await {
                Ok(result) => result,
                Err(elapsed) => {
                    Err(StoreError::new(ErrorKind::Timeout, operation.name()).with_source(elapsed))
                }
            }
        };
        self.calls.run(operation, bounded).await
    }

    /// The idle and absolute timeouts of a session with `lifetime`: its
    /// own, within this manager's maximums (a lifetime stored by a manager
    /// allowing more is clamped), or the manager's.
    pub(crate) fn timeouts(&self, lifetime: Option<&Lifetime>) -> (Duration, Duration) {
        lifetime.map_or((self.idle_timeout, self.absolute_timeout), |lifetime| {
            let lifetime = lifetime.clamped(self.max_idle_timeout, self.max_absolute_timeout);
            (lifetime.idle(), lifetime.absolute())
        })
    }

    /// When a session touched at `now` expires: the idle deadline, capped by
    /// the absolute one.
    fn deadline(
        &self,
        now: SystemTime,
        created_at: SystemTime,
        lifetime: Option<&Lifetime>,
    ) -> SystemTime {
        let (idle, absolute) = self.timeouts(lifetime);
        (now + idle).min(created_at + absolute)
    }

    fn is_live(
        &self,
        now: SystemTime,
        created_at: SystemTime,
        expires_at: SystemTime,
        lifetime: Option<&Lifetime>,
    ) -> bool {
        expires_at > now && created_at + self.timeouts(lifetime).1 > now
    }

    /// The response header value issuing `id`, with `remaining` to live;
    /// `persistent` decides a cookie's `Max-Age`.
    fn issue(&self, id: &crate::SessionId, remaining: Duration, persistent: bool) -> String {
        match &self.transport {
            Transport::Header(header) => header.value(&self.codec.sign(id)),
            Transport::Cookie => self.codec.set_cookie_with(id, remaining, persistent),
        }
    }

    /// Verifies the token `found` in a request, counting and logging a
    /// refusal.
    fn settle(&self, found: &crate::cookie::Unverified) -> Option<crate::Verified> {
        match &self.transport {
            Transport::Header(header) => header.settle(&self.codec, found),
            Transport::Cookie => self.codec.settle(found),
        }
    }

    /// The response header value that makes the client drop its token: a
    /// removal cookie, or an empty token header.
    fn removal(&self) -> String {
        match &self.transport {
            Transport::Header(_) => String::new(),
            Transport::Cookie => self.codec.removal(),
        }
    }

    /// Whether a session with `lifetime` gets a persistent cookie.
    fn is_persistent(&self, lifetime: Option<&Lifetime>) -> bool {
        matches!(self.transport, Transport::Cookie)
            && lifetime
                .and_then(Lifetime::persistent)
                .unwrap_or(self.codec.config().is_persistent())
    }

    /// Checks `lifetime` against this manager's maximums.
    fn check_lifetime(&self, lifetime: &Lifetime) -> Result<(), crate::LifetimeError> {
        if lifetime.idle() > self.max_idle_timeout {
            return Err(crate::LifetimeError::IdleAboveMax {
                requested: lifetime.idle(),
                max: self.max_idle_timeout,
            });
        }
        if lifetime.absolute() > self.max_absolute_timeout {
            return Err(crate::LifetimeError::AbsoluteAboveMax {
                requested: lifetime.absolute(),
                max: self.max_absolute_timeout,
            });
        }
        Ok(())
    }
}

async fn end_all_for(shared: &Shared, owner: &str) -> Result<u64, StoreError> {
    if crate::Owner::check_name(owner).is_err() {
        // No session can have been given this name, so there is nothing to end.
        return Ok(0);
    }
    let mut ended = 0;
    // Every session an earlier pass found: ended by it, or gone or someone
    // else's when it looked, so a later pass that finds it again has
    // nothing new to end there.
    let mut found = HashSet::new();
    for _ in 0..SessionManager::END_ALL_PASSES {
        let pass = shared
            .call(
                Operation::DeleteByOwner,
                shared.store.delete_by_owner(owner),
            )
            .await?;
        ended += pass.ended;
        let mut new = false;
        for id in pass.indexed {
            new |= found.insert(id);
        }
        // A session of the owner live when this pass read the index was in
        // it, and one that changed id since was indexed under its new id
        // while its old one was still live: a pass that ends nothing and
        // finds nothing new proves that no earlier session remains.
        if pass.ended == 0 && !new {
            telemetry::sessions_ended(Ended::EndAll, ended);
            tracing::info!(sessions.ended = ended, "ended every session of one owner");
            return Ok(ended);
        }
    }
    telemetry::sessions_ended(Ended::EndAll, ended);
    tracing::warn!(
        sessions.ended = ended,
        passes = SessionManager::END_ALL_PASSES,
        "the owner's sessions kept changing ids; one may remain"
    );
    Err(
        StoreError::new(ErrorKind::Other, "delete_by_owner").with_source(format!(
            "the owner's sessions were still changing ids after {} passes; call again",
            SessionManager::END_ALL_PASSES
        )),
    )
}

fn log_store_error(err: &StoreError, what: &'static str) {
    tracing::warn!(
        error.kind = ?err.kind(),
        error.message = %err,
        error.cause_chain = %cause_chain(err),
        "{what}"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::{Changes, Committed, Created, Key, OwnerPass, Record, SessionId};

    /// A store whose every `delete_by_owner` pass finds a session no
    /// earlier pass found, as if the owner's sessions kept changing ids.
    #[derive(Debug, Default)]
    struct EverNewIds {
        passes: AtomicUsize,
    }

    #[async_trait]
    impl SessionStore for EverNewIds {
        async fn load(&self, _: &SessionId) -> Result<Option<Record>, StoreError> {
            Ok(None)
        }
        async fn create(&self, _: &Record) -> Result<Created, StoreError> {
            Err(StoreError::unsupported("create"))
        }
        async fn commit(
            &self,
            _: &SessionId,
            _: &Changes,
            _: SystemTime,
        ) -> Result<Committed, StoreError> {
            Ok(Committed::Missing)
        }
        async fn touch(&self, _: &SessionId, _: SystemTime) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn delete(&self, _: &SessionId) -> Result<(), StoreError> {
            Ok(())
        }
        async fn delete_by_owner(&self, _: &str) -> Result<OwnerPass, StoreError> {
            self.passes.fetch_add(1, Ordering::SeqCst);
            Ok(OwnerPass {
                ended: 0,
                indexed: vec![SessionId::generate()],
            })
        }
        fn indexes_owners(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn end_all_fails_rather_than_answer_while_ids_keep_changing() {
        let store = Arc::new(EverNewIds::default());
        let manager = SessionManager::builder(Arc::clone(&store), Key::generate())
            .build()
            .unwrap();
        let err = manager.end_all_for("ada").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Other, "{err}");
        assert_eq!(
            store.passes.load(Ordering::SeqCst),
            SessionManager::END_ALL_PASSES
        );
    }
}
