//! The peers' Redis records, decoded into session-kit data (JSON text per
//! key).

use std::collections::HashMap;

use serde::{de::IgnoredAny, Deserialize};
use session_core::{store::Data, ErrorKind, StoreError};

use super::PeerLibrary;

/// `tower_sessions::session::Record` as tower-sessions-redis-store writes
/// it: `rmp_serde::to_vec`, a MessagePack array of the three fields.
#[derive(Deserialize)]
struct TowerRecord {
    #[allow(dead_code)]
    id: IgnoredAny,
    data: HashMap<String, serde_json::Value>,
    // Redis expires the key itself (EXAT), so a record we can read is live.
    #[allow(dead_code)]
    expiry_date: IgnoredAny,
}

/// The old record's data as session-kit values.
///
/// # Errors
/// [`ErrorKind::Corrupt`] when the bytes are not the peer's format.
pub(super) fn decode(library: PeerLibrary, bytes: &[u8]) -> Result<Data, StoreError> {
    match library {
        PeerLibrary::TowerSessions => {
            let record: TowerRecord = rmp_serde::from_slice(bytes).map_err(corrupt)?;
            record
                .data
                .into_iter()
                .map(|(key, value)| Ok((key, serde_json::to_string(&value).map_err(corrupt)?)))
                .collect()
        }
        // actix-session's `SessionState`: a JSON object of JSON texts,
        // which is what session-kit stores too, once each is checked.
        PeerLibrary::ActixSession => {
            let state: HashMap<String, String> = serde_json::from_slice(bytes).map_err(corrupt)?;
            for text in state.values() {
                serde_json::from_str::<IgnoredAny>(text).map_err(corrupt)?;
            }
            Ok(state)
        }
    }
}

fn corrupt(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::new(ErrorKind::Corrupt, "claim_legacy").with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actix_values_must_be_json() {
        let data = decode(PeerLibrary::ActixSession, br#"{"user":"\"ada\"","n":"3"}"#).unwrap();
        assert_eq!(data["user"], "\"ada\"");
        let err = decode(PeerLibrary::ActixSession, br#"{"user":"ada"}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn garbage_is_corrupt_for_both() {
        for library in [PeerLibrary::TowerSessions, PeerLibrary::ActixSession] {
            let err = decode(library, b"\xc1\xff not a record").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt);
        }
    }
}
