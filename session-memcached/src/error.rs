//! Memcached client errors in the core's terms, without the session id.

use std::{fmt, io};

use memcache::exp::Error as ClientError;
use session_core::{ErrorKind, StoreError};

/// Maps a client error to a [`StoreError`] of the kind failover and the
/// error policy act on.
///
/// The client's own errors name the key they failed on, and a key holds the
/// whole session id, which must never reach a log. So the cause attached
/// here is a [`MemcachedError`] that keeps what went wrong and drops the key.
pub(crate) fn store_error(operation: &'static str, err: ClientError) -> StoreError {
    let kind = kind_of(&err);
    StoreError::new(kind, operation).with_source(MemcachedError::from(err))
}

fn kind_of(err: &ClientError) -> ErrorKind {
    match err {
        ClientError::Io(err) if err.kind() == io::ErrorKind::TimedOut => ErrorKind::Timeout,
        ClientError::Io(_) => ErrorKind::Unavailable,
        ClientError::Timeout { .. } => ErrorKind::Timeout,
        // Written, unanswered: the outcome is unknown, and what kept the
        // answer away (a dead or hung server) decides the kind.
        ClientError::Ambiguous { source, .. } => kind_of(source),
        ClientError::Server(message) if is_too_large(message) => ErrorKind::TooLarge,
        ClientError::Usage(_) => ErrorKind::Config,
        _ => ErrorKind::Other,
    }
}

/// `SERVER_ERROR object too large for cache`, or `out of memory storing
/// object` when the server cannot evict: either way the write does not fit.
fn is_too_large(message: &str) -> bool {
    message.contains("too large") || message.contains("out of memory")
}

/// What the Memcached client reported, with any key left out.
#[derive(Debug)]
pub(crate) struct MemcachedError {
    message: String,
    source: Option<io::Error>,
}

impl MemcachedError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }
}

impl From<ClientError> for MemcachedError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Io(err) => Self {
                message: "i/o error".to_owned(),
                source: Some(err),
            },
            ClientError::Timeout { .. } => Self::new("no answer within the operation timeout"),
            ClientError::Ambiguous { source, .. } => {
                let inner = Self::from(*source);
                Self {
                    message: format!(
                        "the request was sent but its outcome is unknown: {}",
                        inner.message
                    ),
                    source: inner.source,
                }
            }
            ClientError::Server(message) => Self::new(format!("server error: {message}")),
            ClientError::Rejected(message) => {
                Self::new(format!("the server rejected the command: {message}"))
            }
            ClientError::Protocol(message) => Self::new(format!("protocol error: {message}")),
            ClientError::Usage(message) => Self::new(format!("invalid request: {message}")),
            // The rest belong to verbs this crate does not use (leases,
            // loaders, typed values); none carries a key in its message.
            other => Self::new(other.to_string()),
        }
    }
}

impl fmt::Display for MemcachedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MemcachedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|err| err as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    const KEY: &[u8] = b"session:AAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn outages_are_transient_and_full_items_are_too_large() {
        let refused = ClientError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(kind_of(&refused), ErrorKind::Unavailable);
        let timeout = ClientError::Timeout { key: KEY.to_vec() };
        assert_eq!(kind_of(&timeout), ErrorKind::Timeout);
        let ambiguous = ClientError::Ambiguous {
            key: KEY.to_vec(),
            source: Box::new(ClientError::Io(io::Error::from(
                io::ErrorKind::ConnectionReset,
            ))),
        };
        assert_eq!(kind_of(&ambiguous), ErrorKind::Unavailable);
        for message in ["object too large for cache", "out of memory storing object"] {
            assert_eq!(
                kind_of(&ClientError::Server(message.to_owned())),
                ErrorKind::TooLarge
            );
        }
        assert_eq!(
            kind_of(&ClientError::Rejected("bad data chunk".to_owned())),
            ErrorKind::Other
        );
    }

    #[test]
    fn no_message_names_the_key() {
        let id = String::from_utf8_lossy(&KEY[8..]).into_owned();
        for err in [
            ClientError::Timeout { key: KEY.to_vec() },
            ClientError::Ambiguous {
                key: KEY.to_vec(),
                source: Box::new(ClientError::Timeout { key: KEY.to_vec() }),
            },
        ] {
            let err = store_error("load", err);
            let text = format!("{err}: {}", err.source().expect("a cause"));
            assert!(!text.contains(&id), "{text}");
            assert!(text.contains("timed out during load"), "{text}");
        }
    }
}
