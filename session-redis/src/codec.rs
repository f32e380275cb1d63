//! The record format: how a [`Record`] becomes the fields of its Redis hash
//! and back, without a server, for benchmarks, fuzzers and tools.
//!
//! The layout is the one the [crate docs](crate#data-model) describe. This
//! module exists behind the `codec` feature and is **not a stable API**: it
//! may change in any release, with the format itself.

use std::{borrow::Cow, fmt, time::SystemTime};

use session_core::{
    store::{Record, Stamp},
    SessionId,
};

use crate::hash;

/// The hash fields of `record`, as the store writes them on `create`:
/// alternately a field name and its value (`version`, `created_at`,
/// `expires_at`, `owner` and `owner_until` when the record has an owner,
/// then one `d:<key>` field per session value). The owner's index entry is
/// not part of the hash, and not written here.
///
/// Times are written in whole milliseconds, so a time with a finer part
/// decodes a little earlier.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// use session_core::{SessionId, store::{Owner, Record}};
/// use session_redis::codec;
///
/// let now = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
/// let data = [("user".to_owned(), "\"ada\"".to_owned())].into();
/// let mut record = Record::new(SessionId::generate(), data, now, now + Duration::from_secs(60));
/// assert_eq!(codec::encode(&record).len(), 2 * 4);
///
/// record.owner = Some(Owner::new("user-42", now + Duration::from_secs(3600)).unwrap());
/// let fields = codec::encode(&record);
/// assert_eq!(fields.len(), 2 * 6);
/// // As HGETALL would return them: (field, value) pairs of bytes.
/// let reply = fields
///     .chunks(2)
///     .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
///     .collect();
/// assert_eq!(codec::decode(record.id, reply, now)?, Some(record));
/// # Ok::<(), codec::CorruptHash>(())
/// ```
#[must_use]
pub fn encode(record: &Record) -> Vec<Cow<'_, str>> {
    hash::record_fields(record)
}

/// The record of session `id` in `fields` (an `HGETALL` reply: field/value
/// pairs, in any order), as the store reads it on `load`.
///
/// `Ok(None)` when there are no fields (the key is absent) or the record's
/// `expires_at` is not after `now`. Fields this version does not know are
/// ignored.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// use session_core::{SessionId, store::{Record, Stamp}};
/// use session_redis::codec;
///
/// let now = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
/// let mut record = Record::new(
///     SessionId::generate(),
///     [("cart".to_owned(), r#"{"items":[1,2]}"#.to_owned())].into(),
///     now,
///     now + Duration::from_secs(60),
/// );
/// record.version = 3;
/// let reply: Vec<(Vec<u8>, Vec<u8>)> = codec::encode(&record)
///     .chunks(2)
///     .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
///     .collect();
///
/// assert_eq!(codec::decode(record.id, reply.clone(), now)?, Some(record.clone()));
/// // Expired at `now`, or absent: no record.
/// assert_eq!(codec::decode(record.id, reply, now + Duration::from_secs(60))?, None);
/// assert_eq!(codec::decode(record.id, Vec::new(), now)?, None);
/// // Not a session hash.
/// let foreign = vec![(b"name".to_vec(), b"ada".to_vec())];
/// assert!(codec::decode(record.id, foreign, now).is_err());
/// # Ok::<(), codec::CorruptHash>(())
/// ```
///
/// # Errors
/// [`CorruptHash`] when the fields are not a session record: a field or data
/// value that is not UTF-8, a metadata field that is not an integer, a
/// missing `version`, `created_at` or `expires_at`, only one of `owner` and
/// `owner_until`, or an owner name no [`Owner`](session_core::store::Owner) can
/// have.
pub fn decode(
    id: SessionId,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    now: SystemTime,
) -> Result<Option<Record>, CorruptHash> {
    hash::decode(id, fields, now).map_err(CorruptHash)
}

/// The version and expiry of a session from an `HMGET key version
/// expires_at` reply (the fields in that order), as the near-cache's version
/// check reads them: `Ok(None)` when both are nil (the key is absent) or
/// the expiry is not after `now`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// use session_redis::codec;
///
/// let now = UNIX_EPOCH + Duration::from_millis(1_000);
/// let stamp = codec::decode_stamp([Some(b"3".to_vec()), Some(b"2000".to_vec())], now)?;
/// assert_eq!(stamp.unwrap().version, 3);
/// assert_eq!(codec::decode_stamp([None, None], now)?, None);
/// assert!(codec::decode_stamp([Some(b"3".to_vec()), None], now).is_err());
/// # Ok::<(), codec::CorruptHash>(())
/// ```
///
/// # Errors
/// [`CorruptHash`] when only one field is there or either is not an
/// integer.
pub fn decode_stamp(
    reply: [Option<Vec<u8>>; 2],
    now: SystemTime,
) -> Result<Option<Stamp>, CorruptHash> {
    hash::decode_stamp(reply, now).map_err(CorruptHash)
}

/// Hash fields that are not a session record; see [`decode`]. The store
/// reports the same as [`ErrorKind::Corrupt`](session_core::ErrorKind::Corrupt).
///
/// ```
/// use std::time::SystemTime;
///
/// use session_core::SessionId;
/// use session_redis::codec;
///
/// let fields = vec![(b"version".to_vec(), b"x".to_vec())];
/// let error = codec::decode(SessionId::generate(), fields, SystemTime::now()).unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "the session hash has a metadata field that is not an integer"
/// );
/// ```
#[derive(Debug)]
pub struct CorruptHash(hash::CorruptHash);

impl fmt::Display for CorruptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CorruptHash {}
