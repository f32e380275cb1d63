//! Records, indexes and tombstones as they travel between nodes: each store
//! type mirrored by a `Wire*` type with plain serde fields, so the protocol
//! does not depend on the layout of core's or the cache's types.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use session_core::{
    store::{Changes, Data, Lifetime, Owner},
    SessionId,
};

use crate::entry::{Entry, Index, IndexDelta, Live};

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
    /// As [`Lifetime::encode`] writes it. Last, so the layout of every
    /// field before it is as it was.
    lifetime: Option<String>,
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
            lifetime: live.lifetime.as_ref().map(Lifetime::encode),
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
            // Written by `Lifetime::encode` on an authenticated peer; text
            // that does not decode is read as the manager's timeouts.
            lifetime: wire.lifetime.as_deref().and_then(Lifetime::decode),
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
    /// As [`Changes::lifetime`], each lifetime as [`Lifetime::encode`]
    /// writes it.
    lifetime: Option<Option<String>>,
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
            lifetime: changes
                .lifetime()
                .map(|lifetime| lifetime.as_ref().map(Lifetime::encode)),
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
        if let Some(lifetime) = wire.lifetime {
            changes.set_lifetime(lifetime.as_deref().and_then(Lifetime::decode));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    fn lifetimes_survive_the_wire_in_records_and_changes() {
        let lifetime = Lifetime::new(Duration::from_secs(60), Duration::from_secs(600))
            .unwrap()
            .with_persistent(true);
        let now = SystemTime::now();
        let mut record =
            session_core::store::Record::new(SessionId::generate(), Data::new(), now, now);
        record.lifetime = Some(lifetime);
        let live = Live::from_record(&record);
        let back = Live::from(through_the_wire(&WireLive::from(&live)));
        assert_eq!(back.to_record(record.id), record);
        for change in [None, Some(None), Some(Some(lifetime))] {
            let mut changes = Changes::default();
            if let Some(change) = change {
                changes.set_lifetime(change);
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
        let msg = crate::protocol::Call::into_request(crate::protocol::IndexRemove {
            key: "k".to_owned(),
            ids: vec![WireId(id)],
        });
        let mut bytes = postcard::to_allocvec(&msg).unwrap();
        assert!(postcard::from_bytes::<crate::protocol::Request>(&bytes).is_ok());
        let at = bytes
            .windows(22)
            .position(|w| w == id.encode().as_bytes())
            .unwrap();
        bytes[at] = b'!';
        assert!(postcard::from_bytes::<crate::protocol::Request>(&bytes).is_err());
    }
}

#[cfg(test)]
pub(crate) mod strategies {
    //! Any value of each wire type, for the protocol's property tests.
    use std::time::Duration;

    use proptest::{collection::vec, option, prelude::*};

    use super::*;

    pub(crate) fn time() -> impl Strategy<Value = SystemTime> {
        (0..4 * u64::from(u32::MAX), 0..1_000_000_000u32)
            .prop_map(|(secs, nanos)| SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
    }

    /// Any text, short: keys, values, owner names.
    pub(crate) fn text() -> impl Strategy<Value = String> {
        ".{0,12}"
    }

    /// A session id: 16 bytes as 22 characters of base64url, the last one
    /// carrying two bits (so its low four are zero).
    pub(crate) fn id() -> impl Strategy<Value = WireId> {
        "[A-Za-z0-9_-]{21}[AQgw]".prop_map(|text| WireId(SessionId::decode(&text).unwrap()))
    }

    pub(crate) fn owner() -> impl Strategy<Value = WireOwner> {
        (text(), time()).prop_map(|(name, until)| WireOwner { name, until })
    }

    pub(crate) fn live() -> impl Strategy<Value = WireLive> {
        (
            vec((text(), text()), 0..4),
            time(),
            time(),
            any::<u64>(),
            option::of(owner()),
            option::of(text()),
        )
            .prop_map(|(data, created_at, expires_at, version, owner, lifetime)| {
                WireLive {
                    data,
                    created_at,
                    expires_at,
                    version,
                    owner,
                    lifetime,
                }
            })
    }

    pub(crate) fn index() -> impl Strategy<Value = WireIndex> {
        (vec((id(), time()), 0..4), time(), any::<u64>()).prop_map(
            |(sessions, expires_at, version)| WireIndex {
                sessions,
                expires_at,
                version,
            },
        )
    }

    pub(crate) fn delta() -> impl Strategy<Value = WireIndexDelta> {
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

    pub(crate) fn entry() -> impl Strategy<Value = WireEntry> {
        prop_oneof![
            live().prop_map(WireEntry::Live),
            (any::<u64>(), time()).prop_map(|(version, until)| WireEntry::Gone { version, until }),
            index().prop_map(WireEntry::Index),
        ]
    }

    pub(crate) fn changes() -> impl Strategy<Value = WireChanges> {
        (
            any::<bool>(),
            vec(text(), 0..4),
            vec((text(), text()), 0..4),
            option::of(option::of(owner())),
            option::of(option::of(text())),
        )
            .prop_map(|(clear, removed, set, owner, lifetime)| WireChanges {
                clear,
                removed,
                set,
                owner,
                lifetime,
            })
    }
}
