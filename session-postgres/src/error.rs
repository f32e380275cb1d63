//! sqlx errors in the core's terms.

use session_core::{ErrorKind, StoreError};

/// Maps a sqlx error to a [`StoreError`] of the kind failover and the error
/// policy act on.
pub(crate) fn store_error(operation: &'static str, err: sqlx::Error) -> StoreError {
    StoreError::new(kind_of(&err), operation).with_source(err)
}

fn kind_of(err: &sqlx::Error) -> ErrorKind {
    match err {
        // No pooled connection came free, or none could be opened, within
        // the operation timeout.
        sqlx::Error::PoolTimedOut => ErrorKind::Timeout,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => ErrorKind::Unavailable,
        sqlx::Error::Configuration(_) | sqlx::Error::Migrate(_) => ErrorKind::Config,
        sqlx::Error::Database(db) => db
            .code()
            .map_or(ErrorKind::Other, |code| kind_of_state(&code)),
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. } => ErrorKind::Corrupt,
        _ => ErrorKind::Other,
    }
}

/// The kind of a server error, by its SQLSTATE.
fn kind_of_state(code: &str) -> ErrorKind {
    match code {
        // statement_timeout (set to the operation timeout) and lock waits.
        "57014" | "55P03" => ErrorKind::Timeout,
        // The server is shutting down, starting up or in recovery, is a
        // read-only standby, or has no connection slot left; deadlocks and
        // serialization failures are cured by a retry.
        "57P01" | "57P02" | "57P03" | "25006" | "40001" | "40P01" => ErrorKind::Unavailable,
        // A value past the server's limits (a jsonb over 255 MB, a row too
        // big for a page chain).
        "54000" | "54001" => ErrorKind::TooLarge,
        // A stored value the statement cannot read as its type.
        "22P02" | "22032" => ErrorKind::Corrupt,
        _ => match &code[..2.min(code.len())] {
            // Connection exceptions; insufficient resources (disk full, out
            // of memory, too many connections); operator intervention.
            "08" | "53" | "57" | "58" => ErrorKind::Unavailable,
            // Bad credentials, a missing database, schema or table
            // (migrations turned off and never run), no privilege.
            "28" | "3D" | "3F" | "42" => ErrorKind::Config,
            _ => ErrorKind::Other,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn outages_are_transient_and_bad_setups_are_not() {
        let refused = sqlx::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(kind_of(&refused), ErrorKind::Unavailable);
        assert_eq!(kind_of(&sqlx::Error::PoolTimedOut), ErrorKind::Timeout);
        assert_eq!(kind_of_state("57014"), ErrorKind::Timeout);
        assert_eq!(kind_of_state("57P01"), ErrorKind::Unavailable);
        assert_eq!(kind_of_state("08006"), ErrorKind::Unavailable);
        assert_eq!(kind_of_state("53300"), ErrorKind::Unavailable);
        assert_eq!(kind_of_state("28P01"), ErrorKind::Config);
        assert_eq!(kind_of_state("42P01"), ErrorKind::Config);
        assert_eq!(kind_of_state("22P02"), ErrorKind::Corrupt);
        assert_eq!(kind_of_state("XX000"), ErrorKind::Other);
    }
}
