//! Redis errors in the core's terms.

use redis::{ErrorKind as RedisKind, RedisError, ServerErrorKind};
use session_core::{ErrorKind, StoreError};

/// The error code our Lua scripts raise when a hash is not a session record
/// (see `script.rs`).
pub(crate) const CORRUPT_CODE: &str = "SESSIONCORRUPT";

/// Maps a Redis error to a [`StoreError`] of the kind failover and the error
/// policy act on.
pub(crate) fn store_error(operation: &'static str, err: RedisError) -> StoreError {
    StoreError::new(kind_of(&err), operation).with_source(err)
}

fn kind_of(err: &RedisError) -> ErrorKind {
    if err.is_timeout() {
        return ErrorKind::Timeout;
    }
    match err.code() {
        // A key of another type, or a hash our scripts refuse, is data we
        // cannot read: retrying elsewhere would only hide it.
        Some("WRONGTYPE" | CORRUPT_CODE) => return ErrorKind::Corrupt,
        // `maxmemory` reached with a no-eviction policy: the write does not
        // fit, which is what `TooLarge` tells the caller.
        Some("OOM") => return ErrorKind::TooLarge,
        _ => {}
    }
    match err.kind() {
        RedisKind::Io
        | RedisKind::ClusterConnectionNotFound
        | RedisKind::MasterNameNotFoundBySentinel
        | RedisKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => ErrorKind::Unavailable,
        RedisKind::Parse | RedisKind::UnexpectedReturnType => ErrorKind::Corrupt,
        RedisKind::AuthenticationFailed
        | RedisKind::InvalidClientConfig
        | RedisKind::EmptySentinelList
        | RedisKind::RESP3NotSupported
        | RedisKind::Server(ServerErrorKind::NoPerm) => ErrorKind::Config,
        _ => ErrorKind::Other,
    }
}

/// Whether `err` means the connection (or the server behind it) is gone, so
/// the next call should find the master again instead of reusing it.
pub(crate) fn needs_new_connection(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || matches!(
            err.kind(),
            RedisKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
            )
        )
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn io_error(kind: io::ErrorKind) -> RedisError {
        RedisError::from(io::Error::from(kind))
    }

    #[test]
    fn outages_are_transient_and_bad_data_is_not() {
        assert_eq!(
            kind_of(&io_error(io::ErrorKind::ConnectionRefused)),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_of(&io_error(io::ErrorKind::ConnectionReset)),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind_of(&io_error(io::ErrorKind::TimedOut)),
            ErrorKind::Timeout
        );
        let wrong_type = RedisError::from((RedisKind::UnexpectedReturnType, "not a hash"));
        assert_eq!(kind_of(&wrong_type), ErrorKind::Corrupt);
    }

    #[test]
    fn a_broken_connection_asks_for_a_new_one() {
        assert!(needs_new_connection(&io_error(
            io::ErrorKind::ConnectionReset
        )));
        let config = RedisError::from((RedisKind::InvalidClientConfig, "bad"));
        assert!(!needs_new_connection(&config));
    }
}
