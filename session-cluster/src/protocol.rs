//! What nodes ask each other, typed: one request enum per role, one struct
//! per request, and for each request the one type its answer has.
//!
//! - [`OwnerRequest`]: a client operation, served by the key's owner node
//!   (a node that is not the owner hands the whole operation over).
//! - [`HolderRequest`]: the owner (or a node re-replicating) to a holder:
//!   operations on that holder's copy only.
//! - [`RebalanceRequest`]: hand-over and anti-entropy between any two nodes.
//! - [`Confirm`]: a lease renewal (see [`crate::lease`]).
//!
//! A request body is a postcard-encoded [`Request`]; a reply body is a
//! postcard-encoded `Result<R::Reply, Failure>` for the request's type `R`
//! (see [`Call`]). The caller knows which request it sent, so it decodes the
//! reply as exactly that request's answer: an answer of another shape is a
//! decode error (`Corrupt`), never a panic and never an arm to get wrong.
//!
//! Compatibility: both ends are this crate. The format's version is in the
//! magic that opens each link connection (`SCL5`), so a node of another
//! format closes the connection instead of misreading a body. Within one version, new variants go
//! last, so the ones before keep their numbers on the wire.

use std::time::SystemTime;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use session_core::{store::ConditionalDelete, ErrorKind, StoreError};

use crate::wire::{WireChanges, WireEntry, WireId, WireIndexDelta, WireLive};
pub(crate) use crate::{lease::Confirm, settle::HandedOver};

/// Every request on the wire: the role that serves it, then the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Served by the key's owner node.
    Owner(OwnerRequest),
    /// Served by a holder of the key, on its own copy.
    Holder(HolderRequest),
    /// Hand-over between nodes after a membership change.
    Rebalance(RebalanceRequest),
    /// Confirm that the sender is a live member, for its lease.
    Lease(Confirm),
}

impl Request {
    /// A short name for tools and tests; never a key.
    #[cfg(any(test, feature = "codec"))]
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Owner(request) => request.name(),
            Self::Holder(request) => request.name(),
            Self::Rebalance(request) => request.name(),
            Self::Lease(_) => Confirm::NAME,
        }
    }
}

impl From<OwnerRequest> for Request {
    fn from(request: OwnerRequest) -> Self {
        Self::Owner(request)
    }
}

impl From<HolderRequest> for Request {
    fn from(request: HolderRequest) -> Self {
        Self::Holder(request)
    }
}

impl From<RebalanceRequest> for Request {
    fn from(request: RebalanceRequest) -> Self {
        Self::Rebalance(request)
    }
}

/// A request and the type of its answer. Implemented by every request
/// struct; [`Encoded`] and the link use it to decode a reply as exactly the
/// answer to the request sent.
pub(crate) trait Call: Clone + Send + Sync + 'static {
    /// What the peer answers when it could serve the request.
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// A short name for logs, metrics and error messages.
    const NAME: &'static str;
    /// Whether a request of this type counts in
    /// `ClusterStats::requests_sent`, the traffic sessions and indexes
    /// cost (lease renewals are counted apart).
    const COUNTED: bool = true;
    /// The request as it goes on the wire.
    fn into_request(self) -> Request;
}

/// Declares each request struct's role, name and answer in one line, so the
/// three stay together.
macro_rules! calls {
    ($($role:ident :: $request:ident => $reply:ty, $name:literal;)*) => {
        $(
            impl Call for $request {
                type Reply = $reply;
                const NAME: &'static str = $name;
                fn into_request(self) -> Request {
                    Request::from($role::$request(self))
                }
            }
        )*
    };
}

/// What the key's owner node serves: each client operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum OwnerRequest {
    Load(Load),
    Create(Create),
    Commit(Commit),
    Touch(Touch),
    Delete(Delete),
    IndexAdd(IndexAdd),
    IndexRead(IndexRead),
    IndexRemove(IndexRemove),
    EndOwned(EndOwned),
    DeleteIfVersion(DeleteIfVersion),
}

impl OwnerRequest {
    /// A short name for tools and tests; never a key.
    #[cfg(any(test, feature = "codec"))]
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Load(_) => Load::NAME,
            Self::Create(_) => Create::NAME,
            Self::Commit(_) => Commit::NAME,
            Self::Touch(_) => Touch::NAME,
            Self::Delete(_) => Delete::NAME,
            Self::IndexAdd(_) => IndexAdd::NAME,
            Self::IndexRead(_) => IndexRead::NAME,
            Self::IndexRemove(_) => IndexRemove::NAME,
            Self::EndOwned(_) => EndOwned::NAME,
            Self::DeleteIfVersion(_) => DeleteIfVersion::NAME,
        }
    }
}

/// What a holder serves: operations on its own copy of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HolderRequest {
    Fetch(Fetch),
    Install(Install),
    CreateCopy(CreateCopy),
    TouchCopy(TouchCopy),
    IndexCopy(IndexCopy),
}

impl HolderRequest {
    /// A short name for logs and errors; never a key.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Fetch(_) => Fetch::NAME,
            Self::Install(_) => Install::NAME,
            Self::CreateCopy(_) => CreateCopy::NAME,
            Self::TouchCopy(_) => TouchCopy::NAME,
            Self::IndexCopy(_) => IndexCopy::NAME,
        }
    }
}

/// What any node serves during a hand-over: offers, then the entries
/// wanted, then word that the pass is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RebalanceRequest {
    Offer(Offer),
    Push(Push),
    HandedOver(HandedOver),
}

impl RebalanceRequest {
    /// A short name for logs and errors; never a key.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Offer(_) => Offer::NAME,
            Self::Push(_) => Push::NAME,
            Self::HandedOver(_) => HandedOver::NAME,
        }
    }
}

/// Reads the session at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Load {
    pub(crate) key: String,
}

/// Creates the session at `key`, unless the id is taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Create {
    pub(crate) key: String,
    pub(crate) record: WireLive,
}

/// Applies `changes` to the session at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Commit {
    pub(crate) key: String,
    pub(crate) changes: WireChanges,
    pub(crate) expires_at: SystemTime,
}

/// Extends the session at `key` without rewriting its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Touch {
    pub(crate) key: String,
    pub(crate) expires_at: SystemTime,
}

/// Deletes the session at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Delete {
    pub(crate) key: String,
}

/// Adds `id` (until `until`) to the owner index at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexAdd {
    pub(crate) key: String,
    pub(crate) id: WireId,
    pub(crate) until: SystemTime,
}

/// Reads the live entries of the owner index at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexRead {
    pub(crate) key: String,
}

/// Takes `ids` out of the owner index at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexRemove {
    pub(crate) key: String,
    pub(crate) ids: Vec<WireId>,
}

/// Ends the session at `key` only if it still belongs to `owner`; `until` is
/// the index entry's, how long the session could live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndOwned {
    pub(crate) key: String,
    pub(crate) owner: String,
    pub(crate) until: SystemTime,
}

/// Deletes the session at `key` only if its version is `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeleteIfVersion {
    pub(crate) key: String,
    pub(crate) version: u64,
}

/// A holder's entry for `key`, whatever it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fetch {
    pub(crate) key: String,
}

/// Installs `entry` at `key` unless the holder has something newer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Install {
    pub(crate) key: String,
    pub(crate) entry: WireEntry,
}

/// A new session's copy: refused when the holder has anything at `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CreateCopy {
    pub(crate) key: String,
    pub(crate) record: WireLive,
}

/// Extends the holder's copy at `key`, if it is at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TouchCopy {
    pub(crate) key: String,
    pub(crate) version: u64,
    pub(crate) expires_at: SystemTime,
}

/// The index owner to a holder: one change to its copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexCopy {
    pub(crate) key: String,
    pub(crate) delta: WireIndexDelta,
}

/// "I hold these keys at these versions": the receiver answers with the
/// positions of the ones it wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Offer {
    pub(crate) entries: Vec<Offered>,
}

/// One entry of an [`Offer`]: enough to tell whether it is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Offered {
    pub(crate) key: String,
    pub(crate) version: u64,
    /// How long the entry lives.
    pub(crate) until: SystemTime,
    /// A tombstone, rather than a session or an index.
    pub(crate) gone: bool,
}

/// The entries an [`Offer`]'s receiver wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Push {
    pub(crate) entries: Vec<Pushed>,
}

/// One entry of a [`Push`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pushed {
    pub(crate) key: String,
    pub(crate) entry: WireEntry,
}

/// The positions, in the [`Offer`], of the entries its receiver wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Wanted {
    pub(crate) positions: Vec<u32>,
}

/// Whether a [`Create`] made the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CreateOutcome {
    Created,
    /// Something (a session or a tombstone) is already at the key.
    IdTaken,
}

/// What a [`Commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CommitOutcome {
    /// Applied; the session is now at this version.
    Applied { version: u64 },
    /// There is no live session at the key.
    Missing,
}

/// One live entry of an owner index, as an [`IndexRead`] answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexedSession {
    pub(crate) id: WireId,
    /// How long the session could live, as the owner's `until` said.
    pub(crate) until: SystemTime,
}

/// What a holder did with a whole copy ([`Install`], [`CreateCopy`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CopyOutcome {
    Accepted,
    /// The holder has something newer, which it sends back.
    Conflict(WireEntry),
}

/// What a holder did with a change to its copy ([`TouchCopy`],
/// [`IndexCopy`]), which only applies to the version it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PatchOutcome {
    Accepted,
    /// The holder lacks the version the change was made from: send the
    /// whole entry.
    NeedRecord,
    /// The holder has something newer, which it sends back.
    Conflict(WireEntry),
}

/// What a conditional delete ([`EndOwned`]) found at the session's owner
/// node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EndOutcome {
    /// The session belonged to the owner and is now deleted.
    Ended,
    /// There is no live session with this id (it ended, expired, or was
    /// never written); a tombstone now keeps it that way.
    Absent,
    /// The session is live and belongs to someone else, or to no one.
    Kept,
}

/// [`ConditionalDelete`] on the wire, mirrored so the wire does not depend on
/// core's enum layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireConditionalDelete {
    Deleted,
    Changed,
    Missing,
}

impl From<WireConditionalDelete> for ConditionalDelete {
    fn from(answer: WireConditionalDelete) -> Self {
        match answer {
            WireConditionalDelete::Deleted => Self::Deleted,
            WireConditionalDelete::Changed => Self::Changed,
            WireConditionalDelete::Missing => Self::Missing,
        }
    }
}

calls! {
    OwnerRequest::Load => Option<WireLive>, "load";
    OwnerRequest::Create => CreateOutcome, "create";
    OwnerRequest::Commit => CommitOutcome, "commit";
    OwnerRequest::Touch => bool, "touch";
    OwnerRequest::Delete => (), "delete";
    OwnerRequest::IndexAdd => (), "index_add";
    OwnerRequest::IndexRead => Vec<IndexedSession>, "index_read";
    OwnerRequest::IndexRemove => (), "index_remove";
    OwnerRequest::EndOwned => EndOutcome, "end_owned";
    OwnerRequest::DeleteIfVersion => WireConditionalDelete, "delete_if_version";
    HolderRequest::Fetch => Option<WireEntry>, "fetch";
    HolderRequest::Install => CopyOutcome, "install";
    HolderRequest::CreateCopy => CopyOutcome, "create_copy";
    HolderRequest::TouchCopy => PatchOutcome, "touch_copy";
    HolderRequest::IndexCopy => PatchOutcome, "index_copy";
    RebalanceRequest::Offer => Wanted, "offer";
    RebalanceRequest::Push => (), "push";
    RebalanceRequest::HandedOver => (), "handed_over";
}

/// Why a peer could not serve a request: the answer in place of its reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Failure {
    pub(crate) kind: WireErrorKind,
    pub(crate) reason: String,
}

impl Failure {
    /// The failure of `err`, as the peer sends it back.
    pub(crate) fn of(err: &StoreError) -> Self {
        // The receiver names the operation again (`into_error`), so only
        // the causes travel: "store unavailable during load: <causes>", not
        // the head line twice.
        let line = err.to_line();
        let reason = match line.strip_prefix(&format!("{err}: ")) {
            Some(causes) => causes.to_owned(),
            None => line,
        };
        Self {
            kind: err.kind().into(),
            reason,
        }
    }

    /// The error a caller of `operation` sees.
    pub(crate) fn into_error(self, operation: &'static str) -> StoreError {
        StoreError::new(self.kind.into(), operation).with_source(self.reason)
    }

    /// This failure as a reply body to any request: postcard writes
    /// `Result::Err` as its variant number and then the failure, whatever
    /// the `Ok` type, so the link can answer a request it did not decode
    /// the reply type of (a timeout) with the same bytes for all.
    pub(crate) fn encode_as_reply(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(&Err::<(), _>(self))
    }
}

/// The error kinds a peer reports, mirrored so the wire does not depend on
/// core's enum layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireErrorKind {
    Unavailable,
    Timeout,
    Corrupt,
    TooLarge,
    Other,
}

impl From<ErrorKind> for WireErrorKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Unavailable => Self::Unavailable,
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::Corrupt => Self::Corrupt,
            ErrorKind::TooLarge => Self::TooLarge,
            _ => Self::Other,
        }
    }
}

impl From<WireErrorKind> for ErrorKind {
    fn from(kind: WireErrorKind) -> Self {
        match kind {
            WireErrorKind::Unavailable => Self::Unavailable,
            WireErrorKind::Timeout => Self::Timeout,
            WireErrorKind::Corrupt => Self::Corrupt,
            WireErrorKind::TooLarge => Self::TooLarge,
            WireErrorKind::Other => Self::Other,
        }
    }
}

/// A request encoded once, to send to one peer or several, remembering the
/// type its answer decodes to.
pub(crate) struct Encoded<R> {
    pub(crate) body: Bytes,
    _reply: std::marker::PhantomData<fn() -> R>,
}

impl<R: Call> Encoded<R> {
    /// Encodes `request`.
    ///
    /// # Errors
    /// `Other` if postcard cannot encode it, which its types rule out.
    pub(crate) fn new(request: R) -> Result<Self, StoreError> {
        let body = postcard::to_allocvec(&request.into_request())
            .map_err(|e| StoreError::new(ErrorKind::Other, R::NAME).with_source(e))?;
        Ok(Self {
            body: Bytes::from(body),
            _reply: std::marker::PhantomData,
        })
    }

    /// Decodes a reply body as the answer to this request: `None` when the
    /// bytes are not one, which the caller reports as `Corrupt`.
    pub(crate) fn decode_reply(bytes: &[u8]) -> Option<Result<R::Reply, Failure>> {
        postcard::from_bytes(bytes).ok()
    }
}

/// Encodes a served request's answer as its reply body.
///
/// # Errors
/// When postcard cannot encode it, which its types rule out.
pub(crate) fn encode_reply<T: Serialize>(
    answer: &Result<T, Failure>,
) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(answer)
}

#[cfg(test)]
mod properties;
