//! Moving tower-sessions' and actix-session's users into session-kit
//! without logging them out: their cookies and their Redis records, read
//! once per user on first contact (feature `migrate`).
//!
//! [`LegacyRedisSessions`] is a
//! [`LegacySessions`] source for
//! [`SessionManagerBuilder::with_legacy_sessions`](session_core::manager::SessionManagerBuilder::with_legacy_sessions).
//! It verifies the peer's cookie with the peer's key, reads the peer's
//! record from the same Redis as the [`RedisStore`], and claims it with one
//! Lua script:
//!
//! | peer | cookie (default name `id`) | record in Redis |
//! |---|---|---|
//! | tower-sessions 0.14 + tower-sessions-redis-store 0.16 | the id (22 characters of base64url), plain, signed or private (`with_signed`/`with_private`) | a string under the id itself, MessagePack (`rmp_serde`) of `Record { id, data, expiry_date }`, expired by `EXAT` |
//! | actix-session 0.11 + `RedisSessionStore` | a 64-character key, signed or private (the default) | a string under the key (`cache_keygen` is the identity unless set), JSON of `HashMap<String, String>` whose values are JSON texts, expired by `EX` |
//!
//! A `cache_keygen` that adds a prefix is covered by
//! [`LegacyConfig::key_prefix`]; any other one is not.
//!
//! The claim (`EVALSHA`, one round trip) reads the old record and, the
//! first time, leaves a forwarding marker `<store prefix>migrated:{<old
//! key>}` naming the new session-kit id, for
//! [`forward_ttl`](LegacyConfig::forward_ttl) (5 minutes by default). A
//! browser's parallel requests with the same old cookie all get that id,
//! so they end in one session. The marker shares the old key's hash slot
//! (the braces), so the script runs on Cluster too.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use session_core::{Key, SessionManager};
//! use session_redis::{
//!     migrate::{LegacyConfig, LegacyRedisSessions, PeerLibrary},
//!     RedisConfig, RedisStore,
//! };
//!
//! let store = RedisStore::connect(RedisConfig::standalone("redis://127.0.0.1:6379")).await?;
//! let mut from = LegacyConfig::new(PeerLibrary::TowerSessions);
//! from.key = Some(std::env::var("TOWER_SESSIONS_KEY_BASE64")?.into());
//! let legacy = LegacyRedisSessions::new(&store, from)?;
//! let manager = SessionManager::builder(store, Key::generate())
//!     .with_legacy_sessions(legacy)
//!     .build()?;
//! # let _ = manager; Ok(()) }
//! ```

mod peer_cookie;
mod record;

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::Deserialize;
use session_core::{
    config::Secret,
    migrate::{Claim, LegacyCookie, LegacyCookieScope, LegacySessions},
    ConfigError, ErrorKind, SessionId, StoreError,
};

use self::peer_cookie::PeerCookie;
use crate::{affinity::Connection, error::store_error, script::Script, RedisStore};

/// The library whose sessions are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PeerLibrary {
    /// tower-sessions 0.14 with tower-sessions-redis-store 0.16.
    TowerSessions,
    /// actix-session 0.11 with its `RedisSessionStore`.
    ActixSession,
}

impl PeerLibrary {
    /// How the library protects its cookie unless told otherwise:
    /// tower-sessions sends the bare id, actix-session encrypts it.
    #[must_use]
    pub fn default_security(self) -> CookieSecurity {
        match self {
            Self::TowerSessions => CookieSecurity::Plain,
            Self::ActixSession => CookieSecurity::Private,
        }
    }
}

/// How the peer protected its cookie's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CookieSecurity {
    /// The bare id (tower-sessions' default).
    Plain,
    /// HMAC-signed (tower-sessions' `with_signed`, actix-session's
    /// `CookieContentSecurity::Signed`).
    Signed,
    /// Encrypted and authenticated (tower-sessions' `with_private`,
    /// actix-session's `CookieContentSecurity::Private`, its default).
    Private,
}

/// Which peer to migrate from, and how to read its cookies and records.
/// Deserializes from the facade's `[migrate]` section.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `from` | required | `"tower-sessions"` or `"actix-session"` |
/// | `cookie_name` | `"id"` | the peer's cookie name (`with_name` / `cookie_name`) |
/// | `cookie_path`, `cookie_domain` | `"/"`, none | where the peer set it, so it can be cleared |
/// | `cookie_security` | tower-sessions `plain`, actix-session `private` | `plain`, `signed` or `private` |
/// | `key` | none (required unless `plain`) | the peer's `cookie::Key` master key: base64 of the 64 or more bytes given to `Key::from` |
/// | `key_prefix` | `""` | what the peer put before its ids in Redis keys |
/// | `forward_ttl` | `"5m"` | how long parallel requests with one old cookie are sent to the same new session |
/// | `max_record_bytes` | 1 MiB | a larger old record is not moved (the user gets a fresh session) |
///
/// ```
/// use session_redis::migrate::{CookieSecurity, LegacyConfig, PeerLibrary};
///
/// let config = LegacyConfig::new(PeerLibrary::ActixSession);
/// assert_eq!(config.security(), CookieSecurity::Private);
/// assert_eq!(config.validate().unwrap_err().key(), "key");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LegacyConfig {
    /// The library the sessions come from.
    pub from: PeerLibrary,
    /// The peer's cookie name.
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// The peer's cookie `Path`.
    #[serde(default = "default_cookie_path")]
    pub cookie_path: String,
    /// The peer's cookie `Domain`, if it set one.
    #[serde(default)]
    pub cookie_domain: Option<String>,
    /// How the peer protected its cookie; `None` for the library's default.
    #[serde(default)]
    pub cookie_security: Option<CookieSecurity>,
    /// The peer's master key, base64 (standard alphabet).
    #[serde(default)]
    pub key: Option<Secret>,
    /// What the peer put before its ids in Redis keys.
    #[serde(default)]
    pub key_prefix: String,
    /// How long the forwarding marker lives.
    #[serde(
        default = "default_forward_ttl",
        deserialize_with = "session_core::config::duration"
    )]
    pub forward_ttl: Duration,
    /// The largest old record moved.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
}

fn default_cookie_name() -> String {
    "id".to_owned()
}
fn default_cookie_path() -> String {
    "/".to_owned()
}
fn default_forward_ttl() -> Duration {
    LegacyConfig::DEFAULT_FORWARD_TTL
}
fn default_max_record_bytes() -> u64 {
    LegacyConfig::DEFAULT_MAX_RECORD_BYTES
}

impl fmt::Debug for LegacyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("LegacyConfig")
            .field("from", &self.from)
            .field("cookie_name", &self.cookie_name)
            .field("cookie_security", &self.security())
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("forward_ttl", &self.forward_ttl)
            .finish_non_exhaustive()
    }
}

impl LegacyConfig {
    /// 5 minutes: far longer than a page's parallel requests take, short
    /// enough that the marker costs nothing. A request after it with the
    /// old cookie finds the old record gone and starts fresh, but by then
    /// the browser has our cookie and no longer sends the old one.
    pub const DEFAULT_FORWARD_TTL: Duration = Duration::from_secs(5 * 60);
    /// 1 MiB: far above any real session, and below what one request
    /// should copy.
    pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1024 * 1024;

    /// The defaults for `from`, with no key yet.
    #[must_use]
    pub fn new(from: PeerLibrary) -> Self {
        Self {
            from,
            cookie_name: default_cookie_name(),
            cookie_path: default_cookie_path(),
            cookie_domain: None,
            cookie_security: None,
            key: None,
            key_prefix: String::new(),
            forward_ttl: Self::DEFAULT_FORWARD_TTL,
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// The cookie protection in force: the configured one or the library's
    /// default.
    #[must_use]
    pub fn security(&self) -> CookieSecurity {
        self.cookie_security
            .unwrap_or_else(|| self.from.default_security())
    }

    /// Checks the settings, the key included.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key: `key` missing for a signed or
    /// private cookie, or not the base64 of at least 64 bytes; an empty
    /// `cookie_name`; a zero `forward_ttl` or `max_record_bytes`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cookie_key().map(|_| ())
    }

    fn cookie_key(&self) -> Result<Option<cookie::Key>, ConfigError> {
        if self.cookie_name.is_empty() {
            return Err(ConfigError::new("cookie_name", "must not be empty"));
        }
        if self.forward_ttl.is_zero() {
            return Err(ConfigError::new("forward_ttl", "must be greater than zero"));
        }
        if self.max_record_bytes == 0 {
            return Err(ConfigError::new(
                "max_record_bytes",
                "must be greater than zero",
            ));
        }
        match (&self.key, self.security()) {
            (None, CookieSecurity::Plain) => Ok(None),
            (None, _) => Err(ConfigError::new(
                "key",
                "is required for a signed or private cookie: the base64 of the bytes the old app gave to cookie::Key::from",
            )),
            (Some(key), _) => peer_cookie::key_from_base64(key.expose())
                .map(Some)
                .ok_or_else(|| {
                    ConfigError::new(
                        "key",
                        "must be the base64 of at least 64 bytes, as cookie::Key::from takes",
                    )
                }),
        }
    }
}

/// tower-sessions' or actix-session's sessions in the same Redis as a
/// [`RedisStore`], moved into it on first contact: see the
/// [module docs](self).
pub struct LegacyRedisSessions {
    connection: Connection,
    claim: Arc<Script>,
    cookie: PeerCookie,
    scope: LegacyCookieScope,
    library: PeerLibrary,
    key_prefix: String,
    marker_prefix: String,
    forward_ttl: Duration,
    max_record_bytes: u64,
}

impl fmt::Debug for LegacyRedisSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyRedisSessions")
            .field("library", &self.library)
            .field("cookie", &self.scope.name)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl LegacyRedisSessions {
    /// Reads `config.from`'s sessions through `store`'s connection (the
    /// same Redis, no new connection).
    ///
    /// # Errors
    /// As [`LegacyConfig::validate`].
    pub fn new(store: &RedisStore, config: LegacyConfig) -> Result<Self, ConfigError> {
        let key = config.cookie_key()?;
        let security = config.security();
        let mut scope =
            LegacyCookieScope::new(config.cookie_name.clone()).with_path(config.cookie_path);
        if let Some(domain) = config.cookie_domain {
            scope = scope.with_domain(domain);
        }
        Ok(Self {
            connection: store.connection().clone(),
            claim: Arc::new(Script::claim_legacy()),
            cookie: PeerCookie::new(config.cookie_name, security, config.from, key),
            scope,
            library: config.from,
            key_prefix: config.key_prefix,
            marker_prefix: format!("{}migrated:", store.prefix()),
            forward_ttl: config.forward_ttl,
            max_record_bytes: config.max_record_bytes,
        })
    }

    fn old_key(&self, old: &LegacyCookie) -> String {
        format!("{}{}", self.key_prefix, old.id())
    }
}

#[async_trait]
impl LegacySessions for LegacyRedisSessions {
    fn cookie(&self) -> LegacyCookieScope {
        self.scope.clone()
    }

    fn verify(&self, value: &str) -> Option<LegacyCookie> {
        self.cookie.open(value)
    }

    async fn claim(&self, old: &LegacyCookie, candidate: &SessionId) -> Result<Claim, StoreError> {
        const OPERATION: &str = "claim_legacy";
        let old_key = self.old_key(old);
        // The braces put the marker in the old key's hash slot (Cluster).
        let marker = format!("{}{{{old_key}}}", self.marker_prefix);
        let ttl_ms = u64::try_from(self.forward_ttl.as_millis()).unwrap_or(u64::MAX);
        let (forward, bytes, size): (Option<String>, Option<Vec<u8>>, u64) = self
            .connection
            .run_script(
                &self.claim,
                &[&old_key, &marker],
                &[
                    Cow::Owned(candidate.encode()),
                    Cow::Owned(ttl_ms.to_string()),
                    Cow::Owned(self.max_record_bytes.to_string()),
                ],
            )
            .await
            .map_err(|err| store_error(OPERATION, err))?;
        if size > self.max_record_bytes {
            return Err(
                StoreError::new(ErrorKind::TooLarge, OPERATION).with_source(format!(
                    "the old session record is {size} bytes, over max_record_bytes ({})",
                    self.max_record_bytes
                )),
            );
        }
        let Some(forward) = forward else {
            return Ok(Claim::Missing);
        };
        let id = SessionId::decode(&forward).ok_or_else(|| {
            StoreError::new(ErrorKind::Corrupt, OPERATION)
                .with_source("the forwarding marker does not hold a session id")
        })?;
        let data = bytes
            .map(|bytes| record::decode(self.library, &bytes))
            .transpose()?;
        Ok(Claim::Forwarded { id, data })
    }

    async fn release(&self, old: &LegacyCookie) -> Result<bool, StoreError> {
        let old_key = self.old_key(old);
        let unlinked: u64 = self
            .connection
            .query(redis::cmd("UNLINK").arg(&old_key))
            .await
            .map_err(|err| store_error("release_legacy", err))?;
        Ok(unlinked > 0)
    }
}
