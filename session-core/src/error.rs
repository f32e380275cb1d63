//! Typed store errors.

use std::{error::Error as StdError, fmt};

use serde::de;

/// The boxed cause carried by a [`StoreError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong in a store, in the terms that callers act on.
///
/// Failover and the manager's error policy decide by kind, never by message:
/// [`Unavailable`](Self::Unavailable) and [`Timeout`](Self::Timeout) are
/// worth retrying elsewhere ([`is_transient`](Self::is_transient));
/// [`Corrupt`](Self::Corrupt) is not, because a second store would only hide
/// the bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The store could not be reached or refused the connection.
    Unavailable,
    /// The store did not answer within the per-operation timeout.
    Timeout,
    /// The store answered with something that is not a valid record.
    Corrupt,
    /// The record or a value is larger than the store accepts.
    TooLarge,
    /// The store is misconfigured (bad URL, missing script, wrong topology).
    Config,
    /// The store does not implement this optional operation.
    Unsupported,
    /// Anything else the store reported.
    Other,
}

impl ErrorKind {
    /// True for the kinds that a retry on the same or another store may
    /// cure: [`Unavailable`](Self::Unavailable) and [`Timeout`](Self::Timeout).
    #[must_use]
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout)
    }

    /// The kind as a short snake_case word (`unavailable`, `timeout`,
    /// `corrupt`, `too_large`, `config`, `unsupported`, `other`): the
    /// `error` label of the store metrics and the `outcome` field of
    /// store-call spans (see [`telemetry`](crate::telemetry)).
    ///
    /// ```
    /// assert_eq!(session_core::ErrorKind::TooLarge.name(), "too_large");
    /// ```
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Corrupt => "corrupt",
            Self::TooLarge => "too_large",
            Self::Config => "config",
            Self::Unsupported => "unsupported",
            Self::Other => "other",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "store unavailable",
            Self::Timeout => "store timed out",
            Self::Corrupt => "corrupt record",
            Self::TooLarge => "record too large",
            Self::Config => "store misconfigured",
            Self::Unsupported => "operation unsupported by this store",
            Self::Other => "store error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from a [`SessionStore`](crate::store::SessionStore): a [kind](ErrorKind),
/// a short context naming the operation, and the underlying cause.
///
/// ```
/// use std::io;
/// use session_core::{ErrorKind, StoreError};
///
/// let err = StoreError::new(ErrorKind::Unavailable, "load")
///     .with_source(io::Error::from(io::ErrorKind::ConnectionRefused));
/// assert!(err.kind().is_transient());
/// assert_eq!(err.to_string(), "store unavailable during load");
/// ```
#[derive(Debug)]
pub struct StoreError {
    kind: ErrorKind,
    operation: &'static str,
    source: Option<BoxError>,
}

impl StoreError {
    /// An error of `kind` that happened during `operation` (a static name such
    /// as `"load"` or `"commit"`; never session data or ids).
    #[must_use]
    pub fn new(kind: ErrorKind, operation: &'static str) -> Self {
        Self {
            kind,
            operation,
            source: None,
        }
    }

    /// Attaches the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error, the default answer of
    /// optional store methods.
    #[must_use]
    pub fn unsupported(operation: &'static str) -> Self {
        Self::new(ErrorKind::Unsupported, operation)
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed.
    #[must_use]
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// The error and its causes on one line, each cause said once: for
    /// messages that are shown to people rather than logged as fields.
    ///
    /// ```
    /// use std::io;
    /// use session_core::{ErrorKind, StoreError};
    ///
    /// let err = StoreError::new(ErrorKind::Unavailable, "connect")
    ///     .with_source(io::Error::from(io::ErrorKind::ConnectionRefused));
    /// assert_eq!(err.to_line(), "store unavailable during connect: connection refused");
    /// ```
    #[must_use]
    pub fn to_line(&self) -> String {
        let causes = cause_chain(self);
        if causes.is_empty() {
            self.to_string()
        } else {
            format!("{self}: {causes}")
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} during {}", self.kind, self.operation)
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// Renders an error and its chain of causes as one line, for the
/// `error.cause_chain` field of log events.
pub(crate) fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut chain = String::new();
    let mut previous = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        // Some errors repeat their source in their own message (the redis
        // crate's I/O errors do); say it once.
        if !previous.ends_with(&text) {
            if !chain.is_empty() {
                chain.push_str(": ");
            }
            chain.push_str(&text);
        }
        previous = text;
        next = cause.source();
    }
    chain
}

/// A configuration value that cannot work, naming the key that holds it.
///
/// ```
/// use std::time::Duration;
/// use session_core::{Key, SessionManager, memory::MemoryStore};
///
/// let err = SessionManager::builder(MemoryStore::new(), Key::generate())
///     .with_idle_timeout(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.key(), "idle_timeout");
/// assert!(err.to_string().contains("idle_timeout"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session config `{key}`: {reason}")]
pub struct ConfigError {
    key: std::borrow::Cow<'static, str>,
    reason: std::borrow::Cow<'static, str>,
}

impl ConfigError {
    /// An error for config key `key` (dotted, as a user writes it in a config
    /// file: `cookie.name`), saying what is wrong with its value.
    #[must_use]
    pub fn new(
        key: impl Into<std::borrow::Cow<'static, str>>,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The offending key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with it.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

// A backend config that checks itself while it is deserialized hands serde
// its `ConfigError` as text, the only thing serde carries. The text names
// the key relative to that config; a reader that knows where the config
// sits (session-kit's `SessionConfig`) reads the key back and nests it.
impl ConfigError {
    /// The start of every `ConfigError`'s text, up to its key.
    const MESSAGE_PREFIX: &'static str = "invalid session config `";

    /// This error as a serde error: a backend config's `TryFrom` returns it
    /// so the error keeps its key, relative to that config.
    #[must_use]
    pub fn into_de_error<E: de::Error>(self) -> E {
        E::custom(self)
    }

    /// The error [`into_de_error`](Self::into_de_error) made, read back from
    /// a deserializer's message, with its key under `path`; `None` when the
    /// message did not come from a `ConfigError`.
    ///
    /// ```
    /// use session_core::ConfigError;
    ///
    /// let message = ConfigError::new("url", "is not a URL").to_string();
    /// let nested = ConfigError::from_nested_message("store", &message).unwrap();
    /// assert_eq!(nested.key(), "store.url");
    /// assert_eq!(nested.reason(), "is not a URL");
    /// assert!(ConfigError::from_nested_message("store", "invalid type").is_none());
    /// ```
    #[must_use]
    pub fn from_nested_message(path: &str, message: &str) -> Option<Self> {
        let rest = message.strip_prefix(Self::MESSAGE_PREFIX)?;
        let (key, reason) = rest.split_once("`: ")?;
        let key = if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        };
        Some(Self::new(key, reason.to_owned()))
    }
}
