//! For backend authors: how session-kit's configs read their values, so
//! every backend's config reads durations, secrets and addresses alike and
//! answers a bad value with the same message. Use these with
//! `#[serde(deserialize_with = "…")]` on a backend config's fields.
//!
//! Apps do not need this module: they deserialize a backend's config (or
//! session-kit's `SessionConfig`) as a whole.

use std::{fmt, net::SocketAddr, path::Path, time::Duration};

use crate::ConfigError;

use serde::{de, Deserialize, Deserializer};

/// A duration as `"30m"`, `"1h 30m"`, `"250ms"` (humantime), or a whole
/// number of seconds. A negative value is refused with its own message, so
/// `-5` does not read as a type error.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// [`duration`], for an optional key.
pub fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

struct DurationVisitor;

const NEGATIVE: &str = "a duration must not be negative";

impl de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30m\", \"2s\" or \"250ms\", or a number of seconds")
    }

    fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(seconds))
    }

    fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
        u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(NEGATIVE))
    }

    fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Duration, E> {
        if seconds < 0.0 {
            return Err(E::custom(NEGATIVE));
        }
        Duration::try_from_secs_f64(seconds).map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        let text = text.trim();
        if text.starts_with('-') {
            return Err(E::custom(NEGATIVE));
        }
        humantime::parse_duration(text).map_err(|err| {
            E::custom(format_args!(
                "`{text}` is not a duration ({err}); write it as \"30m\", \"2s\" or \"250ms\""
            ))
        })
    }
}

/// A name, such as a node id, for an optional key. A number is taken as its
/// digits: `SESSION__STORE__NODE_ID=1` reaches serde as the integer 1.
pub fn optional_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct NameVisitor;

    impl de::Visitor<'_> for NameVisitor {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a name such as \"node-a\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_owned())
        }

        fn visit_u64<E: de::Error>(self, number: u64) -> Result<String, E> {
            Ok(number.to_string())
        }

        fn visit_i64<E: de::Error>(self, number: i64) -> Result<String, E> {
            Ok(number.to_string())
        }
    }

    deserializer.deserialize_any(NameVisitor).map(Some)
}

/// An `ip:port` socket address, for an optional key, refused with an
/// example of the form when it is not one.
pub fn optional_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map(Some).map_err(|_| {
        de::Error::custom(format_args!(
            "`{text}` is not an IP address and port; write it as \"10.0.0.1:7400\" or \
             \"[fd00::1]:7400\""
        ))
    })
}

/// A secret from config: a cookie-signing secret or a store password. Its
/// `Debug` output never shows the value, so a logged config leaks nothing.
///
/// ```
/// use session_core::config::Secret;
///
/// let secret = Secret::new("correct horse battery staple, but longer");
/// assert_eq!(format!("{secret:?}"), "Secret(..)");
/// assert_eq!(secret.expose().len(), 40);
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// A server address or URL from config. Redis URLs may carry a password
/// (`redis://:pw@host`), so `Debug` shows the URL with its credentials
/// replaced by `***`.
///
/// ```
/// use session_core::config::Endpoint;
///
/// let url = Endpoint::from("redis://app:hunter2@10.0.0.5:6379/0");
/// assert_eq!(format!("{url:?}"), "\"redis://***@10.0.0.5:6379/0\"");
/// assert_eq!(url.as_str(), "redis://app:hunter2@10.0.0.5:6379/0");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Endpoint(String);

impl Endpoint {
    /// The address as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The address with any credentials replaced by `***`.
    #[must_use]
    pub fn redacted(&self) -> String {
        let url = &self.0;
        match (url.split_once("://"), url.rfind('@')) {
            (Some((scheme, _)), Some(at)) if at > scheme.len() => {
                format!("{scheme}://***{}", &url[at..])
            }
            _ => url.clone(),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl From<&str> for Endpoint {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Endpoint {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// The most a secret file may hold. A secret needs well under a kilobyte;
/// the cap is there so that a path to a device or a growing file
/// (`/dev/zero`, a log) is refused instead of read until memory runs out.
pub const MAX_SECRET_FILE_BYTES: usize = 64 * 1024;

/// The secret in the file at `path`, for key `name`: at most
/// [`MAX_SECRET_FILE_BYTES`], refused beyond that, without the one trailing
/// newline editors and `echo` add.
///
/// # Errors
/// A [`ConfigError`] for `name` when the file cannot be read or is too
/// large.
pub fn read_secret_file(name: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read as _;

    let cannot_read = |err: std::io::Error| {
        ConfigError::new(
            name.to_owned(),
            format!("cannot read `{}`: {err}", path.display()),
        )
    };
    let mut contents = Vec::new();
    // One byte past the cap tells "exactly the cap" from "more", without
    // ever reading more than that.
    std::fs::File::open(path)
        .map_err(cannot_read)?
        .take(MAX_SECRET_FILE_BYTES as u64 + 1)
        .read_to_end(&mut contents)
        .map_err(cannot_read)?;
    if contents.len() > MAX_SECRET_FILE_BYTES {
        return Err(ConfigError::new(
            name.to_owned(),
            format!(
                "`{}` holds more than {} KiB; a secret file holds one secret",
                path.display(),
                MAX_SECRET_FILE_BYTES / 1024
            ),
        ));
    }
    // Files written by `echo` or an editor end in a newline that is not
    // part of the secret.
    if contents.ends_with(b"\n") {
        contents.pop();
        if contents.ends_with(b"\r") {
            contents.pop();
        }
    }
    Ok(contents)
}

/// `config` with `set` applied to `value` when the block gave one: how a
/// backend's config block applies each optional key to its builder.
///
/// ```
/// use session_core::{config::set_if, CookieConfig};
///
/// let given: Option<String> = Some("sid".to_owned());
/// let config = set_if(CookieConfig::default(), given, CookieConfig::with_name);
/// assert_eq!(config.full_name(), "sid");
/// let config = set_if(config, None::<String>, CookieConfig::with_name);
/// assert_eq!(config.full_name(), "sid");
/// ```
pub fn set_if<C, T>(config: C, value: Option<T>, set: impl FnOnce(C, T) -> C) -> C {
    match value {
        Some(value) => set(config, value),
        None => config,
    }
}
