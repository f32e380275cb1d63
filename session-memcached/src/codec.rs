//! The record format: how a session becomes the value of its Memcached item
//! (the envelope) and back, without a server, for benchmarks, fuzzers and
//! tools.
//!
//! The layout is the one the [crate docs](crate#data-model) describe. The
//! envelope holds neither the session id (it is in the item's key) nor its
//! expiry (it is the item's own). This module exists behind the `codec`
//! feature and is **not a stable API**: it may change in any release, with
//! the format itself.

use std::{fmt, time::SystemTime};

use session_core::store::Data;

use crate::envelope::{self, Envelope};

/// The envelope of a session with this version, creation time and data, as
/// the store writes it on `create`.
///
/// `created_at` is written in whole milliseconds, so a time with a finer
/// part decodes a little earlier.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// use session_core::store::Data;
/// use session_memcached::codec;
///
/// let created_at = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
/// let data: Data = [("user".to_owned(), "\"ada\"".to_owned())].into();
///
/// let bytes = codec::encode(7, created_at, None, &data);
/// assert_eq!(&bytes[..3], b"SK\x01");
/// let decoded = codec::decode(&bytes)?;
/// assert_eq!(decoded, codec::Decoded { version: 7, created_at, owner: None, data });
/// # Ok::<(), codec::CorruptItem>(())
/// ```
#[must_use]
pub fn encode(
    version: u64,
    created_at: SystemTime,
    owner: Option<&session_core::store::Owner>,
    data: &Data,
) -> Vec<u8> {
    envelope::encode_with(version, created_at, owner, None, data)
}

/// The session in an item's value, as the store reads it on `load`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
///
/// use session_core::store::Data;
/// use session_memcached::codec;
///
/// let created_at = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
/// let data: Data = [("cart".to_owned(), r#"{"items":[1,2]}"#.to_owned())].into();
/// let bytes = codec::encode(3, created_at, None, &data);
///
/// let decoded = codec::decode(&bytes)?;
/// assert_eq!((decoded.version, decoded.created_at), (3, created_at));
/// assert_eq!(decoded.data, data);
/// // A cut-off envelope, or something else entirely, is refused.
/// assert!(codec::decode(&bytes[..bytes.len() - 1]).is_err());
/// assert!(codec::decode(b"{\"user\":1}").is_err());
/// # Ok::<(), codec::CorruptItem>(())
/// ```
///
/// # Errors
/// [`CorruptItem`] when `bytes` are not an envelope this release reads: a
/// foreign value, an unknown format, a truncated envelope or one with bytes
/// after its end, text that is not UTF-8, or a key given twice.
pub fn decode(bytes: &[u8]) -> Result<Decoded, CorruptItem> {
    let Envelope {
        version,
        created_at,
        owner,
        data,
        ..
    } = Envelope::decode(bytes).map_err(CorruptItem)?;
    Ok(Decoded {
        version,
        created_at,
        owner,
        data,
    })
}

/// A session as an envelope holds it: everything but its id and expiry.
///
/// ```
/// use std::time::UNIX_EPOCH;
///
/// use session_memcached::codec::{self, Decoded};
///
/// let session = Decoded { version: 1, created_at: UNIX_EPOCH, owner: None, data: Default::default() };
/// let bytes = codec::encode(session.version, session.created_at, session.owner.as_ref(), &session.data);
/// assert_eq!(codec::decode(&bytes)?, session);
/// # Ok::<(), codec::CorruptItem>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The session's version: 1 when created, one more per commit.
    pub version: u64,
    /// When the session was created, to the millisecond.
    pub created_at: SystemTime,
    /// Who the session belongs to, if anyone.
    pub owner: Option<session_core::store::Owner>,
    /// Key → JSON text of the value.
    pub data: Data,
}

/// Bytes that are not a session envelope this release reads; see
/// [`decode`]. The store reports the same as
/// [`ErrorKind::Corrupt`](session_core::ErrorKind::Corrupt).
///
/// ```
/// use session_memcached::codec;
///
/// let error = codec::decode(b"SK\x09").unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "the session envelope has format 9; this release reads formats 1 to 3"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptItem(envelope::CorruptItem);

impl fmt::Display for CorruptItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CorruptItem {}
