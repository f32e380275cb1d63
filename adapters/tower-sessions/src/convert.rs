//! Between tower-sessions' types and session-kit's: ids, expiry times, data
//! and errors. Every conversion that can fail on what a store or a caller
//! hands it returns an error instead of panicking.

use std::time::{Duration, SystemTime};

use session_core::{store::Data, ErrorKind, SessionId, StoreError};
use time::OffsetDateTime;
use tower_sessions_core::session::Id;
use tower_sessions_core::session_store::Error;

/// tower-sessions' data: each key to its JSON value.
pub(crate) type TowerData = std::collections::HashMap<String, serde_json::Value>;

/// The session-kit id with the same 16 bytes as `id`.
///
/// tower-sessions writes an [`Id`] as the unpadded base64url of the
/// little-endian bytes of its `i128`, 22 characters; a [`SessionId`] is 16
/// bytes written the same way. Going through that text maps each of the
/// 2^128 tower ids to exactly one session-kit id and back, so the mapping
/// is collision-free, and the store key (`session:<id>`) is the very value
/// of tower's cookie, which makes a session easy to find by hand.
pub(crate) fn session_id(id: &Id) -> Result<SessionId, Error> {
    // Every 16-byte value has one canonical 22-character text, which
    // `decode` accepts; the error arm only keeps a panic out of the path.
    SessionId::decode(&id.to_string())
        .ok_or_else(|| Error::Encode("a tower-sessions id is not 16 bytes".to_owned()))
}

/// `at` as a [`SystemTime`], for a session-kit record's `expires_at`.
pub(crate) fn system_time(at: OffsetDateTime) -> Result<SystemTime, Error> {
    let seconds = at.unix_timestamp();
    let after_whole_seconds = Duration::from_nanos(u64::from(at.nanosecond()));
    let moment = if seconds >= 0 {
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(seconds.unsigned_abs()))
            .and_then(|whole| whole.checked_add(after_whole_seconds))
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(seconds.unsigned_abs()))
            .and_then(|whole| whole.checked_add(after_whole_seconds))
    };
    moment.ok_or_else(|| Error::Encode("the expiry date is out of the system clock's range".into()))
}

/// `at` as an [`OffsetDateTime`] in UTC, for tower's `expiry_date`. A
/// stored time outside `time`'s range (years ±9999) is a decode error.
pub(crate) fn offset_date_time(at: SystemTime) -> Result<OffsetDateTime, Error> {
    let nanos = match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).ok(),
        Err(before) => i128::try_from(before.duration().as_nanos())
            .ok()
            .map(|nanos| -nanos),
    };
    nanos
        .and_then(|nanos| OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
        .ok_or_else(|| Error::Decode("the stored expiry is out of range".into()))
}

/// tower's values as session-kit's data: each value as its own JSON text,
/// as session-kit's own `Session::insert` writes it.
pub(crate) fn encode_data(data: &TowerData) -> Result<Data, Error> {
    data.iter()
        .map(|(key, value)| {
            serde_json::to_string(value)
                .map(|text| (key.clone(), text))
                .map_err(|err| Error::Encode(format!("the value under {key:?}: {err}")))
        })
        .collect()
}

/// session-kit's data as tower's values. A value that is not JSON (written
/// by something other than a JSON codec) is a decode error naming its key,
/// never the value: values may be secrets.
pub(crate) fn decode_data(data: Data) -> Result<TowerData, Error> {
    data.into_iter()
        .map(|(key, text)| match serde_json::from_str(&text) {
            Ok(value) => Ok((key, value)),
            Err(err) => Err(Error::Decode(format!(
                "the value under {key:?} is not JSON: {err}"
            ))),
        })
        .collect()
}

/// A store failure as tower-sessions' error: a record the store could not
/// read is [`Error::Decode`], everything else (an outage, a timeout, a
/// record too large, a misconfigured store) is [`Error::Backend`]. The
/// message is the kind, the operation and the causes on one line, as
/// session-kit's own logs give them; it names no id and no value.
pub(crate) fn store_error(err: &StoreError) -> Error {
    match err.kind() {
        ErrorKind::Corrupt => Error::Decode(err.to_line()),
        _ => Error::Backend(err.to_line()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_maps_to_the_session_id_with_its_own_text() {
        for raw in [0, 1, -1, i128::MIN, i128::MAX, 0x0123_4567_89ab_cdef] {
            let id = Id(raw);
            let mapped = session_id(&id).unwrap();
            // Same text both ways: distinct tower ids are distinct
            // session-kit ids, and the store key is the cookie's value.
            assert_eq!(mapped.encode(), id.to_string());
            assert_eq!(mapped.encode().parse::<Id>().unwrap(), id);
        }
        assert_ne!(session_id(&Id(1)).unwrap(), session_id(&Id(2)).unwrap());
    }

    #[test]
    fn times_round_trip_to_the_nanosecond_on_both_sides_of_the_epoch() {
        for at in [
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::from_unix_timestamp_nanos(1_765_000_000_123_456_789).unwrap(),
            OffsetDateTime::from_unix_timestamp_nanos(-1_500_000_001).unwrap(),
        ] {
            assert_eq!(offset_date_time(system_time(at).unwrap()).unwrap(), at);
        }
    }

    #[test]
    fn a_stored_time_past_the_year_9999_is_a_decode_error_not_a_panic() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert!(matches!(offset_date_time(far), Err(Error::Decode(_))));
    }

    #[test]
    fn data_round_trips_and_a_value_that_is_not_json_names_its_key_only() {
        let data: TowerData = [
            ("n".to_owned(), serde_json::json!(42)),
            (
                "user".to_owned(),
                serde_json::json!({"id": 7, "name": "ada"}),
            ),
        ]
        .into();
        let encoded = encode_data(&data).unwrap();
        assert_eq!(encoded["n"], "42");
        assert_eq!(decode_data(encoded).unwrap(), data);

        let bad: Data = [("k".to_owned(), "secret-not-json".to_owned())].into();
        let Err(Error::Decode(message)) = decode_data(bad) else {
            panic!("not a decode error");
        };
        assert!(message.contains("\"k\""), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn a_corrupt_record_is_a_decode_error_and_an_outage_a_backend_error() {
        let corrupt = StoreError::new(ErrorKind::Corrupt, "load");
        assert!(matches!(store_error(&corrupt), Error::Decode(_)));
        let down = StoreError::new(ErrorKind::Unavailable, "load");
        assert!(
            matches!(store_error(&down), Error::Backend(message) if message == "store unavailable during load")
        );
    }
}
