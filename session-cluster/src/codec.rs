//! The peer link's message bodies, decoded without a cluster: for fuzzers,
//! property tests and tools. **Not a stable API**; it follows the wire
//! format, which changes with the crate.
//!
//! A peer request body is a postcard-encoded request and a reply body a
//! postcard-encoded answer, whose type depends on the request: the reply
//! functions take the request's operation (one of [`OPERATIONS`]). Both
//! arrive only after the link has checked
//! their HMAC tags, but the decoders must still hold against any bytes: a
//! peer with the secret may be buggy, and a tag check is no excuse for a
//! panic.
//!
//! ```
//! use session_cluster::codec;
//!
//! assert!(codec::decode_request(b"\xff\xff\xff").is_err());
//! assert!(codec::decode_reply("load", &[]).is_err());
//! assert!(codec::decode_reply("no such operation", &[0, 0]).is_err());
//! // `Ok(None)` as the answer to a load.
//! assert!(codec::decode_reply("load", &[0, 0]).is_ok());
//! ```

use serde::{de::DeserializeOwned, Serialize};

use crate::protocol::{
    Call, Commit, Create, CreateCopy, Delete, DeleteIfVersion, EndOwned, Failure, Fetch, IndexAdd,
    IndexCopy, IndexRead, IndexRemove, Install, Load, Offer, Push, Request, Touch, TouchCopy,
};

/// The operations a request can ask for: the names [`decode_request`]
/// returns, and what [`decode_reply`] takes to know a reply's type.
pub const OPERATIONS: &[&str] = &[
    Load::NAME,
    Create::NAME,
    Commit::NAME,
    Touch::NAME,
    Delete::NAME,
    IndexAdd::NAME,
    IndexRead::NAME,
    IndexRemove::NAME,
    EndOwned::NAME,
    DeleteIfVersion::NAME,
    Fetch::NAME,
    Install::NAME,
    CreateCopy::NAME,
    TouchCopy::NAME,
    IndexCopy::NAME,
    Offer::NAME,
    Push::NAME,
];

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
    let msg: Request = postcard::from_bytes(bytes).map_err(CorruptMessage)?;
    let again = postcard::to_allocvec(&msg).map_err(CorruptMessage)?;
    let msg_again: Request = postcard::from_bytes(&again).map_err(CorruptMessage)?;
    debug_assert_eq!(msg, msg_again);
    Ok(msg.name())
}

/// Decodes a peer reply body to a request for `operation` (one of
/// [`OPERATIONS`]): each request has its own reply type. A reply that
/// decodes re-encodes to bytes that decode to an equal reply (checked with
/// debug assertions on).
///
/// # Errors
/// [`CorruptMessage`] for anything that is not such a reply body, or an
/// `operation` that is not one of [`OPERATIONS`].
pub fn decode_reply(operation: &str, bytes: &[u8]) -> Result<(), CorruptMessage> {
    reencode_reply(operation, bytes).map(drop)
}

/// The request in `bytes`, decoded and encoded again: this release's own
/// encoding of it, which may differ from `bytes` (postcard accepts some
/// non-minimal forms), but encodes back to itself.
///
/// ```
/// use session_cluster::codec;
///
/// // An owner request (0), `Load` (0), `key: "k"`.
/// let once = codec::reencode_request(b"\x00\x00\x01k").unwrap();
/// assert_eq!(codec::reencode_request(&once).unwrap(), once);
/// assert_eq!(codec::decode_request(&once).unwrap(), "load");
/// ```
///
/// # Errors
/// [`CorruptMessage`] for anything that is not a request body.
pub fn reencode_request(bytes: &[u8]) -> Result<Vec<u8>, CorruptMessage> {
    let msg: Request = postcard::from_bytes(bytes).map_err(CorruptMessage)?;
    postcard::to_allocvec(&msg).map_err(CorruptMessage)
}

/// The reply in `bytes` to a request for `operation`, decoded and encoded
/// again; as [`reencode_request`].
///
/// # Errors
/// As [`decode_reply`].
pub fn reencode_reply(operation: &str, bytes: &[u8]) -> Result<Vec<u8>, CorruptMessage> {
    fn again<R: Call>(bytes: &[u8]) -> Result<Vec<u8>, CorruptMessage>
    where
        R::Reply: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let reply: Result<R::Reply, Failure> =
            postcard::from_bytes(bytes).map_err(CorruptMessage)?;
        let once = postcard::to_allocvec(&reply).map_err(CorruptMessage)?;
        let reply_again: Result<R::Reply, Failure> =
            postcard::from_bytes(&once).map_err(CorruptMessage)?;
        debug_assert_eq!(reply, reply_again);
        Ok(once)
    }
    match operation {
        Load::NAME => again::<Load>(bytes),
        Create::NAME => again::<Create>(bytes),
        Commit::NAME => again::<Commit>(bytes),
        Touch::NAME => again::<Touch>(bytes),
        Delete::NAME => again::<Delete>(bytes),
        IndexAdd::NAME => again::<IndexAdd>(bytes),
        IndexRead::NAME => again::<IndexRead>(bytes),
        IndexRemove::NAME => again::<IndexRemove>(bytes),
        EndOwned::NAME => again::<EndOwned>(bytes),
        DeleteIfVersion::NAME => again::<DeleteIfVersion>(bytes),
        Fetch::NAME => again::<Fetch>(bytes),
        Install::NAME => again::<Install>(bytes),
        CreateCopy::NAME => again::<CreateCopy>(bytes),
        TouchCopy::NAME => again::<TouchCopy>(bytes),
        IndexCopy::NAME => again::<IndexCopy>(bytes),
        Offer::NAME => again::<Offer>(bytes),
        Push::NAME => again::<Push>(bytes),
        // Not an operation of this release: no reply type to decode as.
        _ => Err(CorruptMessage(postcard::Error::DeserializeBadEncoding)),
    }
}
