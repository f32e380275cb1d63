//! What nodes say to each other over the peer link, and how it is signed.
//!
//! Messages are postcard (compact serde) bodies of HTTP/2 requests. Every
//! request and every reply carries an HMAC-SHA256 tag under a key derived
//! from the cluster secret; see [`Signer`].

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use session_core::{Changes, Data, ErrorKind};
use sha2::Sha256;

use crate::local::{Entry, Live};

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
#[derive(Debug, Serialize, Deserialize)]
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
        }
    }
}

/// A peer's answer.
#[derive(Debug, Serialize, Deserialize)]
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
    /// The peer could not do it; the kind is a [`ErrorKind`] name.
    Failed {
        kind: WireErrorKind,
        reason: String,
    },
}

/// The error kinds a peer reports, mirrored so the wire does not depend on
/// core's enum layout.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
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

/// A live record on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireLive {
    data: Vec<(String, String)>,
    created_at: SystemTime,
    expires_at: SystemTime,
    version: u64,
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
        }
    }
}

/// An entry (live or tombstone) on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum WireEntry {
    Live(WireLive),
    Gone { version: u64, until: SystemTime },
}

impl From<&Entry> for WireEntry {
    fn from(entry: &Entry) -> Self {
        match entry {
            Entry::Live(live) => Self::Live(live.into()),
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
            WireEntry::Gone { version, until } => Self::Gone { version, until },
        }
    }
}

/// [`Changes`] on the wire: its fields are private to core, so it travels as
/// its parts and is rebuilt through its public API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireChanges {
    clear: bool,
    removed: Vec<String>,
    set: Vec<(String, String)>,
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
