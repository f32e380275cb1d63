//! The peer link's message bodies, decoded without a cluster: for fuzzers,
//! property tests and tools. **Not a stable API**; it follows the wire
//! format, which changes with the crate.
//!
//! A peer request body is a postcard-encoded message and a reply body a
//! postcard-encoded answer. Both arrive only after the link has checked
//! their HMAC tags, but the decoders must still hold against any bytes: a
//! peer with the secret may be buggy, and a tag check is no excuse for a
//! panic.
//!
//! ```
//! use session_cluster::codec;
//!
//! assert!(codec::decode_request(b"\xff\xff\xff").is_err());
//! assert!(codec::decode_reply(&[]).is_err());
//! ```

use crate::wire::{Msg, Reply};

/// Bytes that are not a message of this release.
#[derive(Debug, thiserror::Error)]
#[error("not a peer message of this release: {0}")]
pub struct CorruptMessage(#[source] postcard::Error);

/// Decodes a peer request body and returns the name of the operation it
/// asks for. A request that decodes re-encodes to bytes that decode to an
/// equal message (checked with debug assertions on).
///
/// # Errors
/// [`CorruptMessage`] for anything that is not a request body.
pub fn decode_request(bytes: &[u8]) -> Result<&'static str, CorruptMessage> {
    let msg: Msg = postcard::from_bytes(bytes).map_err(CorruptMessage)?;
    let again = postcard::to_allocvec(&msg).map_err(CorruptMessage)?;
    let msg_again: Msg = postcard::from_bytes(&again).map_err(CorruptMessage)?;
    debug_assert_eq!(msg, msg_again);
    Ok(msg.name())
}

/// Decodes a peer reply body. A reply that decodes re-encodes to bytes that
/// decode to an equal reply (checked with debug assertions on).
///
/// # Errors
/// [`CorruptMessage`] for anything that is not a reply body.
pub fn decode_reply(bytes: &[u8]) -> Result<(), CorruptMessage> {
    let reply: Reply = postcard::from_bytes(bytes).map_err(CorruptMessage)?;
    let again = postcard::to_allocvec(&reply).map_err(CorruptMessage)?;
    let reply_again: Reply = postcard::from_bytes(&again).map_err(CorruptMessage)?;
    debug_assert_eq!(reply, reply_again);
    Ok(())
}

/// The request in `bytes`, decoded and encoded again: this release's own
/// encoding of it, which may differ from `bytes` (postcard accepts some
/// non-minimal forms), but encodes back to itself.
///
/// ```
/// use session_cluster::codec;
///
/// // `Load { key: "k" }`.
/// let once = codec::reencode_request(b"\x00\x01k").unwrap();
/// assert_eq!(codec::reencode_request(&once).unwrap(), once);
/// ```
///
/// # Errors
/// [`CorruptMessage`] for anything that is not a request body.
pub fn reencode_request(bytes: &[u8]) -> Result<Vec<u8>, CorruptMessage> {
    let msg: Msg = postcard::from_bytes(bytes).map_err(CorruptMessage)?;
    postcard::to_allocvec(&msg).map_err(CorruptMessage)
}

/// The reply in `bytes`, decoded and encoded again; as
/// [`reencode_request`].
///
/// # Errors
/// [`CorruptMessage`] for anything that is not a reply body.
pub fn reencode_reply(bytes: &[u8]) -> Result<Vec<u8>, CorruptMessage> {
    let reply: Reply = postcard::from_bytes(bytes).map_err(CorruptMessage)?;
    postcard::to_allocvec(&reply).map_err(CorruptMessage)
}
