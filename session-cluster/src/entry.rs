//! What one key holds on a node (a live record, an owner index or a
//! tombstone), and the rules that order two versions of it: the part of the
//! store's state every role reasons about, apart from the cache that keeps it.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use session_core::{
    store::{Data, Owner, Record},
    Lifetime, SessionId,
};
use xxhash_rust::xxh3::xxh3_64;

/// One key's state on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Live(Live),
    /// The sessions of one owner under one prefix: kept at a key derived from
    /// the owner's name, so it is placed, replicated, handed over and
    /// tombstoned like a session.
    Index(Index),
    /// A deleted session. It outlives the record it replaced (until that
    /// record's own expiry), so a stale copy pushed by a node that missed the
    /// delete is refused instead of bringing the session back.
    Gone {
        version: u64,
        until: SystemTime,
    },
}

/// A live record without its id (the key carries it). The data sits behind an
/// `Arc` so a touch or an install shares it instead of copying every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) data: Arc<Data>,
    pub(crate) created_at: SystemTime,
    pub(crate) expires_at: SystemTime,
    pub(crate) version: u64,
    pub(crate) owner: Option<Owner>,
    pub(crate) lifetime: Option<Lifetime>,
}

impl Live {
    pub(crate) fn from_record(record: &Record) -> Self {
        Self {
            data: Arc::new(record.data.clone()),
            created_at: record.created_at,
            expires_at: record.expires_at,
            version: record.version,
            owner: record.owner.clone(),
            lifetime: record.lifetime,
        }
    }

    pub(crate) fn to_record(&self, id: SessionId) -> Record {
        let mut record = Record::new(
            id,
            Data::clone(&self.data),
            self.created_at,
            self.expires_at,
        );
        record.version = self.version;
        record.owner.clone_from(&self.owner);
        record.lifetime = self.lifetime;
        record
    }

    /// Whether the session belongs to the owner called `name`.
    pub(crate) fn owned_by(&self, name: &str) -> bool {
        self.owner.as_ref().is_some_and(|owner| owner.name == name)
    }
}

/// One owner's sessions: each id with the owner's `until` for it. The index
/// lives as long as its longest entry (`expires_at`); entries past their
/// `until` are dropped by the next change the owner node makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) sessions: Arc<HashMap<SessionId, SystemTime>>,
    pub(crate) expires_at: SystemTime,
    pub(crate) version: u64,
}

/// A summary of an index's entries that does not depend on their order: a
/// holder applies a change only to the same entries the owner changed, even
/// when two coordinators briefly made different indexes of one version.
pub(crate) fn digest(sessions: &HashMap<SessionId, SystemTime>) -> u64 {
    sessions.iter().fold(0u64, |sum, (id, until)| {
        let nanos = until
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut bytes = id.encode().into_bytes();
        bytes.extend_from_slice(&nanos.to_be_bytes());
        sum.wrapping_add(xxh3_64(&bytes))
    })
}

/// One change to an index, as the owner node computed it: a holder that has
/// the index the change was computed from applies exactly this and ends up
/// with the owner's result, without the whole index travelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexDelta {
    /// The version the change was computed from (0: no index yet).
    pub(crate) from_version: u64,
    /// [`digest`] of that version's entries (0 when there were none).
    pub(crate) from_digest: u64,
    pub(crate) remove: Vec<SessionId>,
    pub(crate) add: Option<(SessionId, SystemTime)>,
    pub(crate) expires_at: SystemTime,
}

impl IndexDelta {
    /// The index this change makes of `base` (the entries at `from_version`).
    pub(crate) fn apply(&self, base: &HashMap<SessionId, SystemTime>) -> Index {
        let mut sessions = base.clone();
        for id in &self.remove {
            sessions.remove(id);
        }
        if let Some((id, until)) = self.add {
            sessions.insert(id, until);
        }
        Index {
            sessions: Arc::new(sessions),
            expires_at: self.expires_at,
            version: self.from_version.saturating_add(1),
        }
    }
}

impl Entry {
    pub(crate) fn version(&self) -> u64 {
        match self {
            Self::Live(live) => live.version,
            Self::Index(index) => index.version,
            Self::Gone { version, .. } => *version,
        }
    }

    pub(crate) fn until(&self) -> SystemTime {
        match self {
            Self::Live(live) => live.expires_at,
            Self::Index(index) => index.expires_at,
            Self::Gone { until, .. } => *until,
        }
    }

    pub(crate) fn is_current(&self, now: SystemTime) -> bool {
        self.until() > now
    }

    /// The live record, if this is one and it has not expired.
    pub(crate) fn into_live(self, now: SystemTime) -> Option<Live> {
        match self {
            Self::Live(live) if live.expires_at > now => Some(live),
            _ => None,
        }
    }

    pub(crate) fn live(&self, now: SystemTime) -> Option<&Live> {
        match self {
            Self::Live(live) if live.expires_at > now => Some(live),
            _ => None,
        }
    }

    /// Whether `self` supersedes `other`: a higher version, or the same
    /// version with a later expiry (a touch), or a delete of that version.
    pub(crate) fn supersedes(&self, other: &Self) -> bool {
        match self.version().cmp(&other.version()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => match (self.is_gone(), other.is_gone()) {
                (true, false) => true,
                (false, true) => false,
                _ => self.until() > other.until(),
            },
        }
    }

    pub(crate) fn is_gone(&self) -> bool {
        matches!(self, Self::Gone { .. })
    }

    /// The newer of two answers (`None` = nothing known).
    pub(crate) fn newest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.supersedes(&a) { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}
