//! What nodes say to each other over the peer link, and how it is signed.
//!
//! Messages are postcard (compact serde) bodies of HTTP/2 requests. Every
//! request and every reply carries an HMAC-SHA256 tag under a key derived
//! from the cluster secret; see [`Signer`].

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use session_core::{
    store::{Changes, ConditionalDelete, Data, Owner},
    ErrorKind, SessionId,
};
use sha2::Sha256;

use crate::entry::{Entry, Index, IndexDelta, Live};

/// The path of every peer request; the version is in it so a future format
/// can be served beside this one during a rolling upgrade.
pub(crate) const PATH: &str = "/session-cluster/v1";
/// Headers of a peer request.
pub(crate) const H_NODE: &str = "x-sc-node";
pub(crate) const H_TIME: &str = "x-sc-time";
pub(crate) const H_BUDGET: &str = "x-sc-budget-ms";
pub(crate) const H_MAC: &str = "x-sc-mac";
/// The most a signed request may be older or newer than the receiver's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(60);
/// The largest body either side accepts.
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;

/// A request to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Msg {
    // A node that is not the owner hands the whole operation to the owner.
    Load {
        key: String,
    },
    Create {
        key: String,
        record: WireLive,
    },
    Commit {
        key: String,
        changes: WireChanges,
        expires_at: SystemTime,
    },
    Touch {
        key: String,
        expires_at: SystemTime,
    },
    Delete {
        key: String,
    },
    // The owner (or a node re-replicating) to a holder.
    Fetch {
        key: String,
    },
    Install {
        key: String,
        entry: WireEntry,
    },
    CreateCopy {
        key: String,
        record: WireLive,
    },
    TouchCopy {
        key: String,
        version: u64,
        expires_at: SystemTime,
    },
    /// "I hold these keys at these versions": the holder answers with the
    /// indices it wants the entries of.
    Offer {
        entries: Vec<(String, u64, SystemTime, bool)>,
    },
    Push {
        entries: Vec<(String, WireEntry)>,
    },
    // A node hands an owner-index operation to the index's owner node.
    /// Adds `id` (until `until`) to the index at `key`.
    IndexAdd {
        key: String,
        id: WireId,
        until: SystemTime,
    },
    /// The index's live entries.
    IndexRead {
        key: String,
    },
    /// Takes `ids` out of the index at `key`.
    IndexRemove {
        key: String,
        ids: Vec<WireId>,
    },
    /// Ends the session at `key` only if it still belongs to `owner`;
    /// `until` is the index entry's, how long the session could live.
    EndOwned {
        key: String,
        owner: String,
        until: SystemTime,
    },
    /// The index owner to a holder: one change to its copy.
    IndexCopy {
        key: String,
        delta: WireIndexDelta,
    },
    // Last, so the variants before keep their numbers on the wire.
    /// Deletes the session at `key` only if its version is `version`.
    DeleteIfVersion {
        key: String,
        version: u64,
    },
}

impl Msg {
    /// A short name for logs and metrics; never a key.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Load { .. } => "load",
            Self::Create { .. } => "create",
            Self::Commit { .. } => "commit",
            Self::Touch { .. } => "touch",
            Self::Delete { .. } => "delete",
            Self::Fetch { .. } => "fetch",
            Self::Install { .. } => "install",
            Self::CreateCopy { .. } => "create_copy",
            Self::TouchCopy { .. } => "touch_copy",
            Self::Offer { .. } => "offer",
            Self::Push { .. } => "push",
            Self::IndexAdd { .. } => "index_add",
            Self::IndexRead { .. } => "index_read",
            Self::IndexRemove { .. } => "index_remove",
            Self::EndOwned { .. } => "end_owned",
            Self::IndexCopy { .. } => "index_copy",
            Self::DeleteIfVersion { .. } => "delete_if_version",
        }
    }
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reply {
    Loaded(Option<WireLive>),
    Created(bool),
    Committed(Option<u64>),
    Touched(bool),
    Deleted,
    Entry(Option<WireEntry>),
    Accepted,
    Conflict(WireEntry),
    NeedRecord,
    Want(Vec<u32>),
    /// An index change is on every holder.
    Indexed,
    /// An index's live entries.
    Index(Vec<(WireId, SystemTime)>),
    /// What an [`Msg::EndOwned`] found.
    Ended(EndOutcome),
    /// The peer could not do it; the kind is a [`ErrorKind`] name.
    Failed {
        kind: WireErrorKind,
        reason: String,
    },
    // Last, so the variants before keep their numbers on the wire.
    /// What a [`Msg::DeleteIfVersion`] found.
    DeletedIf(WireConditionalDelete),
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

/// What a conditional delete ([`Msg::EndOwned`]) found at the session's
/// owner node.
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

/// [`ConditionalDelete`](session_core::store::ConditionalDelete) on the wire,
/// mirrored so the wire does not depend on core's enum layout.
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

/// A session id on the wire, in its text form. Decoding refuses anything
/// that is not an id, so a malformed index never reaches the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireId(pub(crate) SessionId);

impl Serialize for WireId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.encode())
    }
}

impl<'de> Deserialize<'de> for WireId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SessionId::decode(&text)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom("not a session id"))
    }
}

/// A session's [`Owner`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireOwner {
    name: String,
    until: SystemTime,
}

impl From<&Owner> for WireOwner {
    fn from(owner: &Owner) -> Self {
        Self {
            name: owner.name.clone(),
            until: owner.until,
        }
    }
}

impl From<WireOwner> for Owner {
    fn from(wire: WireOwner) -> Self {
        // Not `Owner::new`: the name was checked where the session was
        // written, and the wire must carry back exactly what was stored.
        Self {
            name: wire.name,
            until: wire.until,
        }
    }
}

/// A live record on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireLive {
    data: Vec<(String, String)>,
    created_at: SystemTime,
    expires_at: SystemTime,
    version: u64,
    owner: Option<WireOwner>,
}

impl From<&Live> for WireLive {
    fn from(live: &Live) -> Self {
        Self {
            data: live
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created_at: live.created_at,
            expires_at: live.expires_at,
            version: live.version,
            owner: live.owner.as_ref().map(WireOwner::from),
        }
    }
}

impl From<WireLive> for Live {
    fn from(wire: WireLive) -> Self {
        Self {
            data: Arc::new(wire.data.into_iter().collect::<Data>()),
            created_at: wire.created_at,
            expires_at: wire.expires_at,
            version: wire.version,
            owner: wire.owner.map(Owner::from),
        }
    }
}

/// An owner index on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireIndex {
    sessions: Vec<(WireId, SystemTime)>,
    expires_at: SystemTime,
    version: u64,
}

impl From<&Index> for WireIndex {
    fn from(index: &Index) -> Self {
        Self {
            sessions: index
                .sessions
                .iter()
                .map(|(id, until)| (WireId(*id), *until))
                .collect(),
            expires_at: index.expires_at,
            version: index.version,
        }
    }
}

impl From<WireIndex> for Index {
    fn from(wire: WireIndex) -> Self {
        Self {
            sessions: Arc::new(
                wire.sessions
                    .into_iter()
                    .map(|(id, until)| (id.0, until))
                    .collect::<HashMap<_, _>>(),
            ),
            expires_at: wire.expires_at,
            version: wire.version,
        }
    }
}

/// An [`IndexDelta`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireIndexDelta {
    from_version: u64,
    from_digest: u64,
    remove: Vec<WireId>,
    add: Option<(WireId, SystemTime)>,
    expires_at: SystemTime,
}

impl From<&IndexDelta> for WireIndexDelta {
    fn from(delta: &IndexDelta) -> Self {
        Self {
            from_version: delta.from_version,
            from_digest: delta.from_digest,
            remove: delta.remove.iter().copied().map(WireId).collect(),
            add: delta.add.map(|(id, until)| (WireId(id), until)),
            expires_at: delta.expires_at,
        }
    }
}

impl From<WireIndexDelta> for IndexDelta {
    fn from(wire: WireIndexDelta) -> Self {
        Self {
            from_version: wire.from_version,
            from_digest: wire.from_digest,
            remove: wire.remove.into_iter().map(|id| id.0).collect(),
            add: wire.add.map(|(id, until)| (id.0, until)),
            expires_at: wire.expires_at,
        }
    }
}

/// An entry (live record, owner index or tombstone) on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireEntry {
    Live(WireLive),
    Gone { version: u64, until: SystemTime },
    Index(WireIndex),
}

impl From<&Entry> for WireEntry {
    fn from(entry: &Entry) -> Self {
        match entry {
            Entry::Live(live) => Self::Live(live.into()),
            Entry::Index(index) => Self::Index(index.into()),
            Entry::Gone { version, until } => Self::Gone {
                version: *version,
                until: *until,
            },
        }
    }
}

impl From<WireEntry> for Entry {
    fn from(wire: WireEntry) -> Self {
        match wire {
            WireEntry::Live(live) => Self::Live(live.into()),
            WireEntry::Index(index) => Self::Index(index.into()),
            WireEntry::Gone { version, until } => Self::Gone { version, until },
        }
    }
}

/// [`Changes`] on the wire: its fields are private to core, so it travels as
/// its parts and is rebuilt through its public API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireChanges {
    clear: bool,
    removed: Vec<String>,
    set: Vec<(String, String)>,
    /// As [`Changes::owner`]: `None` leaves the owner as it is.
    owner: Option<Option<WireOwner>>,
}

impl From<&Changes> for WireChanges {
    fn from(changes: &Changes) -> Self {
        Self {
            clear: changes.clears(),
            removed: changes.removals().iter().cloned().collect(),
            set: changes
                .sets()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            owner: changes.owner().map(|owner| owner.map(WireOwner::from)),
        }
    }
}

impl From<WireChanges> for Changes {
    fn from(wire: WireChanges) -> Self {
        let mut changes = Self::default();
        if wire.clear {
            changes.clear();
        }
        for key in wire.removed {
            changes.remove(key);
        }
        for (key, value) in wire.set {
            changes.set(key, value);
        }
        if let Some(owner) = wire.owner {
            changes.set_owner(owner.map(Owner::from));
        }
        changes
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks peer traffic with keys derived from the cluster secret:
/// one for the link, one for membership datagrams, so a tag from one can
/// never be replayed as the other.
#[derive(Clone)]
pub(crate) struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

/// The length of an HMAC-SHA256 tag.
pub(crate) const TAG_LEN: usize = 32;

impl Signer {
    pub(crate) fn derive(secret: &[u8], purpose: &str) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"session-cluster key derivation\0");
        mac.update(purpose.as_bytes());
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        for part in parts {
            // Length-prefixed, so moving bytes between parts changes the tag.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        self.mac(parts).finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` over `parts`.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(parts).verify_slice(tag).is_ok()
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

pub(crate) fn from_hex(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// Milliseconds since the Unix epoch, as signed in [`H_TIME`].
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_the_wire() {
        let mut changes = Changes::default();
        changes.clear();
        changes.set("a", "1");
        changes.remove("b");
        let wire = postcard::to_allocvec(&WireChanges::from(&changes)).unwrap();
        let back: WireChanges = postcard::from_bytes(&wire).unwrap();
        assert_eq!(Changes::from(back), changes);
    }

    fn through_the_wire<T: Serialize + for<'de> Deserialize<'de>>(value: &T) -> T {
        postcard::from_bytes(&postcard::to_allocvec(value).unwrap()).unwrap()
    }

    fn ada() -> Owner {
        // Not whole milliseconds: the wire keeps every nanosecond.
        Owner::new(
            "ada",
            SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789),
        )
        .unwrap()
    }

    #[test]
    fn owner_changes_survive_the_wire() {
        for owner in [None, Some(None), Some(Some(ada()))] {
            let mut changes = Changes::default();
            changes.set("a", "1");
            if let Some(owner) = owner {
                changes.set_owner(owner);
            }
            let back = Changes::from(through_the_wire(&WireChanges::from(&changes)));
            assert_eq!(back, changes);
        }
    }

    #[test]
    fn records_keep_their_owner_on_the_wire() {
        let now = SystemTime::now();
        let mut record =
            session_core::store::Record::new(SessionId::generate(), Data::new(), now, now);
        record.owner = Some(ada());
        let live = Live::from_record(&record);
        let back = Live::from(through_the_wire(&WireLive::from(&live)));
        assert_eq!(back, live);
        assert_eq!(back.to_record(record.id), record);
    }

    #[test]
    fn indexes_and_their_changes_survive_the_wire() {
        let until = ada().until;
        let (a, b) = (SessionId::generate(), SessionId::generate());
        let index = Entry::Index(Index {
            sessions: Arc::new([(a, until), (b, until)].into_iter().collect()),
            expires_at: until,
            version: 7,
        });
        assert_eq!(
            Entry::from(through_the_wire(&WireEntry::from(&index))),
            index
        );
        let delta = IndexDelta {
            from_version: 7,
            from_digest: 42,
            remove: vec![a],
            add: Some((b, until)),
            expires_at: until,
        };
        assert_eq!(
            IndexDelta::from(through_the_wire(&WireIndexDelta::from(&delta))),
            delta
        );
    }

    #[test]
    fn a_message_with_something_other_than_an_id_does_not_decode() {
        let id = SessionId::generate();
        let msg = Msg::IndexRemove {
            key: "k".to_owned(),
            ids: vec![WireId(id)],
        };
        let mut bytes = postcard::to_allocvec(&msg).unwrap();
        assert!(postcard::from_bytes::<Msg>(&bytes).is_ok());
        let at = bytes
            .windows(22)
            .position(|w| w == id.encode().as_bytes())
            .unwrap();
        bytes[at] = b'!';
        assert!(postcard::from_bytes::<Msg>(&bytes).is_err());
    }

    #[test]
    fn tags_depend_on_the_key_the_purpose_and_the_split() {
        let link = Signer::derive(&[1; 32], "link");
        let tag = link.tag(&[b"ab", b"c"]);
        assert!(link.verify(&[b"ab", b"c"], &tag));
        assert!(!link.verify(&[b"a", b"bc"], &tag));
        assert!(!Signer::derive(&[1; 32], "gossip").verify(&[b"ab", b"c"], &tag));
        assert!(!Signer::derive(&[2; 32], "link").verify(&[b"ab", b"c"], &tag));
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(to_hex(&bytes).as_bytes()).unwrap(), bytes);
        assert!(from_hex(b"abc").is_none());
        assert!(from_hex(b"zz").is_none());
    }
}

#[cfg(test)]
mod properties {
    //! Every message and reply survives the wire: each variant, with owners,
    //! indexes, tombstones and times to the nanosecond.
    use proptest::{collection::vec, option, prelude::*};

    use super::*;

    fn time() -> impl Strategy<Value = SystemTime> {
        (0..4 * u64::from(u32::MAX), 0..1_000_000_000u32)
            .prop_map(|(secs, nanos)| SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
    }

    /// Any text, short: keys, values, owner names.
    fn text() -> impl Strategy<Value = String> {
        ".{0,12}"
    }

    /// A session id: 16 bytes as 22 characters of base64url, the last one
    /// carrying two bits (so its low four are zero).
    fn id() -> impl Strategy<Value = WireId> {
        "[A-Za-z0-9_-]{21}[AQgw]".prop_map(|text| WireId(SessionId::decode(&text).unwrap()))
    }

    fn owner() -> impl Strategy<Value = WireOwner> {
        (text(), time()).prop_map(|(name, until)| WireOwner { name, until })
    }

    fn live() -> impl Strategy<Value = WireLive> {
        (
            vec((text(), text()), 0..4),
            time(),
            time(),
            any::<u64>(),
            option::of(owner()),
        )
            .prop_map(|(data, created_at, expires_at, version, owner)| WireLive {
                data,
                created_at,
                expires_at,
                version,
                owner,
            })
    }

    fn index() -> impl Strategy<Value = WireIndex> {
        (vec((id(), time()), 0..4), time(), any::<u64>()).prop_map(
            |(sessions, expires_at, version)| WireIndex {
                sessions,
                expires_at,
                version,
            },
        )
    }

    fn delta() -> impl Strategy<Value = WireIndexDelta> {
        (
            any::<u64>(),
            any::<u64>(),
            vec(id(), 0..4),
            option::of((id(), time())),
            time(),
        )
            .prop_map(|(from_version, from_digest, remove, add, expires_at)| {
                WireIndexDelta {
                    from_version,
                    from_digest,
                    remove,
                    add,
                    expires_at,
                }
            })
    }

    fn entry() -> impl Strategy<Value = WireEntry> {
        prop_oneof![
            live().prop_map(WireEntry::Live),
            (any::<u64>(), time()).prop_map(|(version, until)| WireEntry::Gone { version, until }),
            index().prop_map(WireEntry::Index),
        ]
    }

    fn changes() -> impl Strategy<Value = WireChanges> {
        (
            any::<bool>(),
            vec(text(), 0..4),
            vec((text(), text()), 0..4),
            option::of(option::of(owner())),
        )
            .prop_map(|(clear, removed, set, owner)| WireChanges {
                clear,
                removed,
                set,
                owner,
            })
    }

    /// Every variant of [`Msg`].
    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            text().prop_map(|key| Msg::Load { key }),
            (text(), live()).prop_map(|(key, record)| Msg::Create { key, record }),
            (text(), changes(), time()).prop_map(|(key, changes, expires_at)| Msg::Commit {
                key,
                changes,
                expires_at
            }),
            (text(), time()).prop_map(|(key, expires_at)| Msg::Touch { key, expires_at }),
            text().prop_map(|key| Msg::Delete { key }),
            text().prop_map(|key| Msg::Fetch { key }),
            (text(), entry()).prop_map(|(key, entry)| Msg::Install { key, entry }),
            (text(), live()).prop_map(|(key, record)| Msg::CreateCopy { key, record }),
            (text(), any::<u64>(), time()).prop_map(|(key, version, expires_at)| {
                Msg::TouchCopy {
                    key,
                    version,
                    expires_at,
                }
            }),
            vec((text(), any::<u64>(), time(), any::<bool>()), 0..4)
                .prop_map(|entries| Msg::Offer { entries }),
            vec((text(), entry()), 0..4).prop_map(|entries| Msg::Push { entries }),
            (text(), id(), time()).prop_map(|(key, id, until)| Msg::IndexAdd { key, id, until }),
            text().prop_map(|key| Msg::IndexRead { key }),
            (text(), vec(id(), 0..4)).prop_map(|(key, ids)| Msg::IndexRemove { key, ids }),
            (text(), text(), time()).prop_map(|(key, owner, until)| Msg::EndOwned {
                key,
                owner,
                until
            }),
            (text(), delta()).prop_map(|(key, delta)| Msg::IndexCopy { key, delta }),
            (text(), any::<u64>()).prop_map(|(key, version)| Msg::DeleteIfVersion { key, version }),
        ]
    }

    /// Every variant of [`Reply`].
    fn reply() -> impl Strategy<Value = Reply> {
        let kind = prop::sample::select(vec![
            WireErrorKind::Unavailable,
            WireErrorKind::Timeout,
            WireErrorKind::Corrupt,
            WireErrorKind::TooLarge,
            WireErrorKind::Other,
        ]);
        let outcome = prop::sample::select(vec![
            EndOutcome::Ended,
            EndOutcome::Absent,
            EndOutcome::Kept,
        ]);
        prop_oneof![
            option::of(live()).prop_map(Reply::Loaded),
            any::<bool>().prop_map(Reply::Created),
            option::of(any::<u64>()).prop_map(Reply::Committed),
            any::<bool>().prop_map(Reply::Touched),
            Just(Reply::Deleted),
            option::of(entry()).prop_map(Reply::Entry),
            Just(Reply::Accepted),
            entry().prop_map(Reply::Conflict),
            Just(Reply::NeedRecord),
            vec(any::<u32>(), 0..8).prop_map(Reply::Want),
            Just(Reply::Indexed),
            vec((id(), time()), 0..4).prop_map(Reply::Index),
            outcome.prop_map(Reply::Ended),
            (kind, text()).prop_map(|(kind, reason)| Reply::Failed { kind, reason }),
            prop::sample::select(vec![
                WireConditionalDelete::Deleted,
                WireConditionalDelete::Changed,
                WireConditionalDelete::Missing,
            ])
            .prop_map(Reply::DeletedIf),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(msg in msg()) {
            let bytes = postcard::to_allocvec(&msg).unwrap();
            let back: Msg = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(back.name(), msg.name());
            prop_assert_eq!(back, msg);
            #[cfg(feature = "codec")]
            {
                prop_assert_eq!(crate::codec::reencode_request(&bytes).unwrap(), bytes.clone());
                prop_assert!(crate::codec::decode_request(&bytes).is_ok());
            }
        }

        #[test]
        fn every_reply_round_trips(reply in reply()) {
            let bytes = postcard::to_allocvec(&reply).unwrap();
            let back: Reply = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(back, reply);
            #[cfg(feature = "codec")]
            {
                prop_assert_eq!(crate::codec::reencode_reply(&bytes).unwrap(), bytes.clone());
                prop_assert!(crate::codec::decode_reply(&bytes).is_ok());
            }
        }

        #[test]
        fn a_cut_message_is_refused(msg in msg()) {
            // Postcard is self-delimiting, so a body cut anywhere is refused,
            // never misread as a shorter message.
            let bytes = postcard::to_allocvec(&msg).unwrap();
            for len in 0..bytes.len() {
                prop_assert!(postcard::from_bytes::<Msg>(&bytes[..len]).is_err(), "{} of {} bytes", len, bytes.len());
            }
        }
    }
}
