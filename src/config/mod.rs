//! [`SessionConfig`]: the whole session stack as data, read from a TOML file
//! and the environment, so the backend is chosen at deploy time.
//!
//! ```toml
//! idle_timeout = "30m"
//! absolute_timeout = "24h"
//! error_policy = "reject"
//!
//! [cookie]
//! name = "sid"
//! secret_file = "/run/secrets/session-secret"
//!
//! [store]
//! kind = "redis"
//! url = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/sessions"
//!
//! [failover]
//! mode = "mirror"
//!
//! [failover.secondary]
//! kind = "memcached"
//! servers = ["10.0.0.7:11211", "10.0.0.8:11211"]
//! ```
//!
//! Every key can be overridden by an environment variable named
//! `SESSION__` followed by its path in capitals, with `__` between the
//! parts: `SESSION__STORE__URL`, `SESSION__COOKIE__SECRET`,
//! `SESSION__FAILOVER__SECONDARY__SERVERS='[a:11211,b:11211]'`.
//!
//! Errors name the key as written in the file, and where the value came
//! from: `invalid session config `store.pool_size`: is an option of store
//! kind memcached, not of `redis``.

mod block;
#[cfg(feature = "cluster")]
mod cluster;
mod migrate;
mod store;
mod transport;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use serde::Deserialize;

/// The config library [`SessionConfig::from_figment`] takes, re-exported so
/// an app layering its own sources uses the same version.
pub use figment;
pub use migrate::MigrateSection;
pub use session_core::config::{Endpoint, Secret};
pub use store::{MemoryConfig, OnUnreachable, StoreConfig, StoreKind};
pub use transport::{HeaderSection, TransportKind};

use figment::value::Value;
use session_core::{failover::FailoverConfig, manager::ManagerConfig};

use crate::{ConfigError, CookieConfig, ErrorPolicy, Key, KeyError, KeyRing, SameSite};

/// The prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "SESSION__";

/// The whole session stack: cookie, timeouts, error policy, store, and an
/// optional failover secondary and near-cache.
///
/// Read it with [`load`](Self::load) (a TOML file, then `SESSION__…`
/// environment overrides), [`from_env`](Self::from_env) or
/// [`from_toml`](Self::from_toml); or embed it in your own config struct,
/// since it implements `Deserialize`. Then build the stack with
/// [`build_manager`](crate::build_manager),
/// [`tower_layer`](crate::tower_layer) or
/// [`actix_middleware`](crate::actix_middleware).
///
/// | key | default | meaning |
/// |---|---|---|
/// | `idle_timeout` | `"30m"` | a session ends after this long without requests |
/// | `absolute_timeout` | `"24h"` | and this long after it began, however active |
/// | `operation_timeout` | `"2s"` | the bound on any one store call, failover included |
/// | `error_policy` | `"reject"` | `reject` (503 when the store fails) or `treat_as_empty` |
/// | `max_sessions_per_owner` | none | a login past this many sessions of one user ends the oldest (needs a store that indexes owners) |
/// | `max_idle_timeout` | `idle_timeout` | the longest idle timeout one session may ask for ("remember me", [`Session::set_lifetime`](crate::Session::set_lifetime)) |
/// | `max_absolute_timeout` | `absolute_timeout` | the longest absolute timeout one session may ask for |
/// | `transport` | `"cookie"` | `cookie`, or `header` for API clients: see [`TransportKind`] |
/// | `[header]` | `authorization`, `Bearer` | with `transport = "header"`: see [`HeaderSection`] |
/// | `[cookie]` | | see [`CookieSection`] |
/// | `[store]` | `kind = "memory"` | see [`StoreConfig`] |
/// | `[failover]` | none | see [`FailoverSection`] |
/// | `[near_cache]` | none | see [`NearCacheConfig`] |
/// | `[migrate]` | none | moving tower-sessions' or actix-session's users: see [`MigrateSection`] |
///
/// Durations are written as `"30m"`, `"1h 30m"`, `"250ms"`, or a number of
/// seconds.
///
/// ```
/// use session_kit::config::{SessionConfig, StoreKind};
///
/// let config = SessionConfig::from_toml(r#"
///     idle_timeout = "15m"
///     [cookie]
///     secret = "a secret of at least thirty-two bytes, from a vault"
///     [store]
///     kind = "memory"
/// "#)?;
/// assert_eq!(config.idle_timeout.as_secs(), 15 * 60);
/// assert_eq!(config.store.kind(), StoreKind::Memory);
/// config.validate()?;
///
/// let err = SessionConfig::from_toml("idle_timeout = \"-5m\"").unwrap_err();
/// assert_eq!(err.key(), "idle_timeout");
/// # Ok::<(), session_kit::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The cookie's name, attributes and signing secrets.
    pub cookie: CookieSection,
    /// How long a session lives without requests.
    #[serde(deserialize_with = "session_core::config::duration")]
    pub idle_timeout: Duration,
    /// How long a session lives after it began.
    #[serde(deserialize_with = "session_core::config::duration")]
    pub absolute_timeout: Duration,
    /// The bound on any one store call.
    #[serde(deserialize_with = "session_core::config::duration")]
    pub operation_timeout: Duration,
    /// What a request gets when the store fails.
    pub error_policy: ErrorPolicy,
    /// The most sessions one owner keeps; none by default. See
    /// [`SessionManagerBuilder::with_max_sessions_per_owner`](crate::manager::SessionManagerBuilder::with_max_sessions_per_owner).
    pub max_sessions_per_owner: Option<std::num::NonZeroUsize>,
    /// Where sessions live.
    pub store: StoreConfig,
    /// A second store that takes over when the first fails.
    pub failover: Option<FailoverSection>,
    /// An in-process cache in front of a remote store.
    pub near_cache: Option<NearCacheConfig>,
    /// Moving another library's sessions in on first contact.
    pub migrate: Option<MigrateSection>,
    /// The longest idle timeout one session may ask for.
    #[serde(deserialize_with = "session_core::config::optional_duration")]
    pub max_idle_timeout: Option<Duration>,
    /// The longest absolute timeout one session may ask for.
    #[serde(deserialize_with = "session_core::config::optional_duration")]
    pub max_absolute_timeout: Option<Duration>,
    /// Where the session token travels.
    pub transport: TransportKind,
    /// The token's header, with `transport = "header"`.
    pub header: Option<HeaderSection>,
}

impl Default for SessionConfig {
    /// Memory store, secure cookie defaults, and no secret: set one.
    fn default() -> Self {
        Self {
            cookie: CookieSection::default(),
            idle_timeout: ManagerConfig::DEFAULT_IDLE_TIMEOUT,
            absolute_timeout: ManagerConfig::DEFAULT_ABSOLUTE_TIMEOUT,
            operation_timeout: ManagerConfig::DEFAULT_OPERATION_TIMEOUT,
            error_policy: ErrorPolicy::default(),
            max_sessions_per_owner: None,
            store: StoreConfig::default(),
            failover: None,
            near_cache: None,
            migrate: None,
            max_idle_timeout: None,
            max_absolute_timeout: None,
            transport: TransportKind::default(),
            header: None,
        }
    }
}

/// The `[cookie]` block. Every default is the secure one of
/// [`CookieConfig`].
///
/// | key | default | meaning |
/// |---|---|---|
/// | `name` | `"session"` | the cookie's name |
/// | `domain` | unset | host-only |
/// | `path` | `"/"` | |
/// | `same_site` | `"lax"` | `strict`, `lax` or `none` |
/// | `secure` | `true` | |
/// | `http_only` | `true` | |
/// | `host_prefix` | `false` | name the cookie `__Host-<name>` |
/// | `persistent` | `false` | send `Max-Age`, so the cookie outlives the browser session |
/// | `secret` | — | the signing secret, at least 32 bytes |
/// | `secret_file` | — | or a file holding it (one trailing newline is ignored) |
/// | `previous_secrets`, `previous_secret_files` | `[]` | older secrets that still verify, for key rotation |
/// | `generate_secret` | `false` | a random key per process: development on one server only |
///
/// Exactly one of `secret`, `secret_file` and `generate_secret` is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CookieSection {
    /// The cookie's name.
    pub name: String,
    /// The `Domain` attribute.
    pub domain: Option<String>,
    /// The `Path` attribute.
    pub path: String,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// The `Secure` attribute.
    pub secure: bool,
    /// The `HttpOnly` attribute.
    pub http_only: bool,
    /// Whether the name gets the `__Host-` prefix.
    pub host_prefix: bool,
    /// Whether the cookie carries `Max-Age`.
    pub persistent: bool,
    /// The signing secret.
    pub secret: Option<Secret>,
    /// A file holding the signing secret.
    pub secret_file: Option<PathBuf>,
    /// Older secrets that still verify.
    pub previous_secrets: Vec<Secret>,
    /// Files holding older secrets that still verify.
    pub previous_secret_files: Vec<PathBuf>,
    /// Sign with a random key made at start-up.
    pub generate_secret: bool,
}

impl Default for CookieSection {
    /// [`CookieConfig`]'s defaults, which are the secure ones, and no secret.
    fn default() -> Self {
        let cookie = CookieConfig::default();
        Self {
            name: cookie.name().to_owned(),
            domain: cookie.domain().map(str::to_owned),
            path: cookie.path().to_owned(),
            same_site: cookie.same_site(),
            secure: cookie.is_secure(),
            http_only: cookie.is_http_only(),
            host_prefix: cookie.is_host_prefixed(),
            persistent: cookie.is_persistent(),
            secret: None,
            secret_file: None,
            previous_secrets: Vec::new(),
            previous_secret_files: Vec::new(),
            generate_secret: false,
        }
    }
}

/// The `[failover]` block: a secondary store behind `[store]`, with a
/// circuit breaker on each (see [`FailoverStore`](crate::failover::FailoverStore)).
///
/// | key | default |
/// |---|---|
/// | `mode` | `"mirror"` (or `"standby"`) |
/// | `call_timeout` | `"300ms"`; at most a third of `operation_timeout` |
/// | `failure_threshold` | `3` |
/// | `open_for` | `"1s"` |
/// | `max_open_for` | `"30s"` |
/// | `probe_interval` | `"1s"`: a store that is back is found and repaired within this |
/// | `tombstone_ttl` | `"24h"`; at least `absolute_timeout` |
/// | `max_pending` | `100000` |
/// | `[failover.secondary]` | required: a store block like `[store]` |
///
/// Every key but `secondary` is read by session-core's
/// [`FailoverConfig`], which holds the defaults.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailoverSection {
    /// Mode, call budget, breakers, tombstones and replay.
    pub config: FailoverConfig,
    /// The secondary store.
    pub secondary: StoreConfig,
}

impl FailoverSection {
    /// Failover to `secondary` with every setting at its default.
    #[must_use]
    pub fn new(secondary: StoreConfig) -> Self {
        Self {
            config: FailoverConfig::default(),
            secondary,
        }
    }

    /// Reads the block: `secondary` as a store block, the rest as
    /// [`FailoverConfig`]. Keys in errors are relative to the block.
    fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let Some(block) = value.as_dict() else {
            return Err(ConfigError::new(
                "",
                format!("expected a table, found {}", value.to_actual()),
            ));
        };
        let mut settings = block.clone();
        let secondary = settings.remove("secondary").ok_or_else(|| {
            ConfigError::new(
                "secondary",
                "missing field `secondary`: add a [failover.secondary] block with the store to \
                 fail over to",
            )
        })?;
        let secondary =
            StoreConfig::from_value(&secondary).map_err(|err| block::nest("secondary", &err))?;
        let config = block::from_block(&Value::from(settings))?;
        Ok(Self { config, secondary })
    }
}

impl<'de> Deserialize<'de> for FailoverSection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <Value as Deserialize>::deserialize(deserializer)?;
        Self::from_value(&value).map_err(ConfigError::into_de_error)
    }
}

/// The `[near_cache]` block: an in-process cache in front of the store,
/// checked against the store's version on every read (see
/// [`TieredStore`](crate::memory::TieredStore)). Needs the `memory` feature, and
/// is refused in front of a memory or cluster store, where it saves
/// nothing.
///
/// | key | default |
/// |---|---|
/// | `max_bytes` | `67108864` (64 MiB) |
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NearCacheConfig {
    /// The most bytes of sessions held.
    pub max_bytes: u64,
}

impl Default for NearCacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl SessionConfig {
    /// Reads the TOML file at `path`, then applies `SESSION__…` environment
    /// overrides.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key and where its value came from, or
    /// key `config_file` when the file cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        if let Err(err) = std::fs::metadata(path) {
            return Err(ConfigError::new(
                "config_file",
                format!("cannot read `{}`: {err}", path.display()),
            ));
        }
        Self::from_figment(
            &Figment::new()
                .merge(Toml::file_exact(path))
                .merge(Self::env()),
        )
    }

    /// The defaults, then `SESSION__…` environment overrides: for apps
    /// configured by environment alone.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_figment(&Figment::new().merge(Self::env()))
    }

    /// Reads `toml` alone, with no environment overrides.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(&Figment::new().merge(Toml::string(toml)))
    }

    /// Reads the config from any figment, for apps that layer their own
    /// sources; the session keys are at its root. [`figment`](mod@figment) is
    /// re-exported, so the versions match.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        figment.extract().map_err(|err| from_figment_error(&err))
    }

    /// The environment provider: `SESSION__A__B` is key `a.b`.
    fn env() -> Env {
        Env::prefixed(ENV_PREFIX).split("__")
    }

    /// Checks everything that can be checked without a network: every
    /// value, every backend's feature, the secrets (reading any secret
    /// files), and the rules that tie blocks together.
    ///
    /// # Errors
    /// The first [`ConfigError`], naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validated().map(drop)
    }

    /// Everything [`validate`](Self::validate) checks, returning the signing
    /// keys so building the stack does not read secret files twice.
    pub(crate) fn validated(&self) -> Result<KeyRing, ConfigError> {
        let keys = self.validated_keys()?;
        self.validate_stores()?;
        #[cfg(feature = "cluster")]
        self.check_cluster_secrets()?;
        Ok(keys)
    }

    /// The signing keys, once the cookie and manager settings are known to
    /// build.
    fn validated_keys(&self) -> Result<KeyRing, ConfigError> {
        let keys = self.keys()?;
        transport::transport(self.transport, self.header.as_ref())?;
        self.manager_config().validate()?;
        Ok(keys)
    }

    /// The part of [`validate`](Self::validate) that
    /// [`build_store`](crate::build_store) needs: the store, failover and
    /// near-cache blocks, not the cookie.
    pub(crate) fn validate_stores(&self) -> Result<(), ConfigError> {
        self.store.validate("store")?;
        if let Some(failover) = &self.failover {
            failover.config.validate()?;
            failover.secondary.validate("failover.secondary")?;
            // A standby primary that fails leaves time for the secondary and
            // for a mirror's repair write, all inside one store call.
            if failover
                .config
                .call_timeout
                .checked_mul(3)
                .is_none_or(|three_calls| three_calls > self.operation_timeout)
            {
                return Err(ConfigError::new(
                    "failover.call_timeout",
                    format!(
                        "must be at most a third of operation_timeout ({}), so a failed store \
                         leaves time to ask the other within one request",
                        humantime::format_duration(self.operation_timeout)
                    ),
                ));
            }
            // A tombstone that expires before the session could would let a
            // store that missed a logout bring the session back; a session
            // with its own lifetime can live up to max_absolute_timeout.
            let (longest, key) = match self.max_absolute_timeout {
                Some(max) if max > self.absolute_timeout => (max, "max_absolute_timeout"),
                _ => (self.absolute_timeout, "absolute_timeout"),
            };
            if failover.config.tombstone_ttl < longest {
                return Err(ConfigError::new(
                    "failover.tombstone_ttl",
                    format!(
                        "must be at least {key} ({}), or a logout missed by one \
                         store can be undone when it returns",
                        humantime::format_duration(longest)
                    ),
                ));
            }
        }
        if let Some(migrate) = &self.migrate {
            if migrate.url.is_none() && self.store.kind() != StoreKind::Redis {
                return Err(ConfigError::new(
                    "migrate.url",
                    "is required when [store] is not Redis: the Redis that holds the old \
                     library's sessions",
                ));
            }
        }
        if let Some(near) = &self.near_cache {
            if !cfg!(feature = "memory") {
                return Err(ConfigError::new(
                    "near_cache",
                    "needs the Cargo feature `memory`; enable it with \
                     session-kit = { features = [\"memory\"] }",
                ));
            }
            if near.max_bytes == 0 {
                return Err(ConfigError::new(
                    "near_cache.max_bytes",
                    "must be more than zero; remove [near_cache] to run without one",
                ));
            }
            if !self.store.is_remote() && self.failover.is_none() {
                return Err(ConfigError::new(
                    "near_cache",
                    "the store is already in-process memory; a near-cache helps only in front \
                     of a remote store",
                ));
            }
            if self.store.kind() == StoreKind::Cluster && self.failover.is_none() {
                return Err(ConfigError::new(
                    "near_cache",
                    "the cluster store has no cheap version check, so a near-cache would still \
                     fetch every session from its owner and save nothing; remove [near_cache]",
                ));
            }
        }
        Ok(())
    }

    /// The cookie settings.
    ///
    /// ```
    /// use session_kit::{CookieConfig, config::SessionConfig};
    ///
    /// assert_eq!(SessionConfig::default().cookie_config(), CookieConfig::default());
    /// ```
    pub fn cookie_config(&self) -> CookieConfig {
        let cookie = &self.cookie;
        let mut config = CookieConfig::default()
            .with_name(cookie.name.clone())
            .with_path(cookie.path.clone())
            .with_same_site(cookie.same_site)
            .with_secure(cookie.secure)
            .with_http_only(cookie.http_only)
            .with_host_prefix(cookie.host_prefix)
            .with_persistent(cookie.persistent);
        if let Some(domain) = &cookie.domain {
            config = config.with_domain(domain.clone());
        }
        config
    }

    /// The signing keys: the current secret first, then the previous ones.
    ///
    /// # Errors
    /// A [`ConfigError`] for `cookie.secret` when no secret (or more than one
    /// source of it) is given or one is too short, and for
    /// `cookie.secret_file` when the file cannot be read.
    pub fn keys(&self) -> Result<KeyRing, ConfigError> {
        let cookie = &self.cookie;
        let signing = match (&cookie.secret, &cookie.secret_file, cookie.generate_secret) {
            (Some(secret), None, false) => key("cookie.secret", secret.expose().as_bytes())?,
            (None, Some(path), false) => key_from_file("cookie.secret_file", path)?,
            (None, None, true) => Key::generate(),
            (None, None, false) => {
                return Err(ConfigError::new(
                    "cookie.secret",
                    "is missing: set cookie.secret, cookie.secret_file or the environment \
                     variable SESSION__COOKIE__SECRET to at least 32 random bytes \
                     (`openssl rand -base64 48` makes one)",
                ))
            }
            _ => {
                return Err(ConfigError::new(
                    "cookie.secret",
                    "give exactly one of cookie.secret, cookie.secret_file and \
                     cookie.generate_secret",
                ))
            }
        };
        let mut ring = KeyRing::new(signing);
        for (index, secret) in cookie.previous_secrets.iter().enumerate() {
            let name = format!("cookie.previous_secrets[{index}]");
            ring = ring.with_fallback(key(name, secret.expose().as_bytes())?);
        }
        for (index, path) in cookie.previous_secret_files.iter().enumerate() {
            let name = format!("cookie.previous_secret_files[{index}]");
            ring = ring.with_fallback(key_from_file(name, path)?);
        }
        Ok(ring)
    }

    /// The manager-level settings: cookie, timeouts, their maximums,
    /// transport, error policy and the per-owner cap.
    #[must_use]
    pub fn manager_config(&self) -> ManagerConfig {
        let mut config = ManagerConfig::default();
        config.cookie = self.cookie_config();
        config.idle_timeout = self.idle_timeout;
        config.absolute_timeout = self.absolute_timeout;
        config.operation_timeout = self.operation_timeout;
        config.error_policy = self.error_policy;
        config.max_sessions_per_owner = self.max_sessions_per_owner;
        config.max_idle_timeout = self.max_idle_timeout;
        config.max_absolute_timeout = self.max_absolute_timeout;
        // A `[header]` block with the cookie transport is refused by
        // `validate`; unvalidated, the cookie is what `transport` says.
        config.transport =
            transport::transport(self.transport, self.header.as_ref()).unwrap_or_default();
        config
    }
}

fn key(name: impl Into<String>, secret: &[u8]) -> Result<Key, ConfigError> {
    Key::from_secret(secret).map_err(|err| {
        let reason = match err {
            KeyError::TooShort { len } => format!(
                "is {len} bytes long; at least {} random bytes are required \
                 (`openssl rand -base64 48` makes one)",
                crate::cookie::MIN_SECRET_LEN
            ),
            other => other.to_string(),
        };
        ConfigError::new(name.into(), reason)
    })
}

fn key_from_file(name: impl Into<String>, path: &Path) -> Result<Key, ConfigError> {
    let name = name.into();
    let secret = read_secret_file(&name, path)?;
    key(name, &secret)
}

pub(crate) use session_core::config::read_secret_file;

/// A figment error as a [`ConfigError`] naming the dotted key, with where
/// the bad value came from.
fn from_figment_error(err: &figment::Error) -> ConfigError {
    // A missing or unknown field is reported at its parent; name the field
    // itself, as the user would search for it.
    let mut path = err.path.clone();
    let field = match &err.kind {
        figment::error::Kind::MissingField(field) => Some(field.as_ref()),
        figment::error::Kind::UnknownField(field, _) => Some(field.as_str()),
        _ => None,
    };
    if let Some(field) = field {
        if path.last().map(String::as_str) != Some(field) {
            path.push(field.to_owned());
        }
    }
    // A block read by its own type (a store, failover) reports its error as
    // a `ConfigError` whose key is relative to the block.
    let mut reason = err.kind.to_string();
    if let figment::error::Kind::Message(message) = &err.kind {
        if let Some(own) = ConfigError::from_nested_message("", message) {
            path.extend(
                own.key()
                    .split('.')
                    .filter(|part| !part.is_empty())
                    .map(str::to_owned),
            );
            reason = own.reason().to_owned();
            // A key that must be given says where else it can come from.
            if reason.starts_with("is missing") && !reason.contains(ENV_PREFIX) {
                reason = format!(
                    "{reason}; or set the environment variable {ENV_PREFIX}{}",
                    path.join("__").to_uppercase()
                );
            }
        }
    }
    let key = if path.is_empty() {
        "config".to_owned()
    } else {
        dotted_key(&path)
    };
    let origin = match err.metadata.as_ref() {
        Some(metadata) => match &metadata.source {
            Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
            _ if metadata.name.contains("environment") && !path.is_empty() => {
                let var = path.join("__").to_uppercase();
                format!(" (from the environment variable {ENV_PREFIX}{var})")
            }
            _ => String::new(),
        },
        None => String::new(),
    };
    ConfigError::new(key, format!("{reason}{origin}"))
}

/// `path` as the user would write it in TOML: bare segments joined by
/// dots, and any segment that is not a bare key (an empty one, say)
/// quoted, so the error never names an empty key. Found by the `config`
/// fuzz target.
fn dotted_key(path: &[String]) -> String {
    let bare = |segment: &str| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    path.iter()
        .map(|segment| {
            if bare(segment) {
                segment.clone()
            } else {
                format!("{segment:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests;
