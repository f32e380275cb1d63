//! The copies this node holds: a bounded quick_cache of live records and
//! tombstones, and an unbounded one of owner indexes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use quick_cache::{
    sync::{Cache, EntryAction, EntryResult},
    DefaultHashBuilder, UnitWeighter,
};

use crate::{
    clock::Clock,
    entry::{digest, Entry, IndexDelta, Live},
};

/// What an [`Local::install`] did.
#[derive(Debug)]
pub(crate) enum Installed {
    /// The entry is now the one offered (or was already equal to it).
    Accepted,
    /// This node holds something that supersedes the offer; here it is.
    Conflict(Entry),
}

/// What a replica did with a change that names the version it applies to
/// (a touch, an index change).
#[derive(Debug)]
pub(crate) enum Touched {
    Applied,
    /// The replica has no copy at that version: send it the whole record.
    NeedRecord,
    Conflict(Entry),
}

/// What one atomic [`Local::update`] did.
enum Updated {
    /// The decision's entry is now stored.
    Stored,
    /// Left as it was: what the key held (expired or not), if anything.
    Unchanged(Option<Arc<Entry>>),
}

/// What an owner index's key holds after the store's prefix: this tag, then
/// 64 lowercase hex digits (a SHA-256 of the owner's name).
pub(crate) const OWNER_KEY_TAG: &str = "owner:";
const OWNER_KEY_HEX: usize = 64;

/// Whether `key` has the shape of an owner index's key. It depends on the
/// key alone, so every operation on one key reaches the same cache; a
/// session key never has this shape (its part after the prefix is 22
/// base64url characters, not 70), and a prefix made to look like one only
/// moves that key's copies out of the evicting cache.
pub(crate) fn is_owner_key(key: &str) -> bool {
    let tail = OWNER_KEY_TAG.len() + OWNER_KEY_HEX;
    key.len() >= tail
        && key.is_char_boundary(key.len() - tail)
        && key[key.len() - tail..]
            .strip_prefix(OWNER_KEY_TAG)
            .is_some_and(|hex| {
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
}

type Copies = Cache<String, Arc<Entry>, UnitWeighter, DefaultHashBuilder>;

/// How many index entries the index cache is sized for at first; it grows
/// past this, as it never evicts.
const EXPECTED_INDEXES: usize = 1024;

/// This node's copies. Every write is one atomic step on the entry under
/// its shard's lock, so concurrent installs of one key cannot interleave.
///
/// The caches are [quick_cache](https://docs.rs/quick_cache)'s, chosen over
/// moka's (which this crate used before) for the write path's cost: the
/// cluster stores a copy twice on every write (owner and backup) and reads
/// one on every operation, and an install into moka's sync cache with
/// per-entry expiry cost about 10,600 instructions against about 1,200
/// here (moka's write log, timer wheel and frequency sketch), measured
/// with callgrind through `bench/examples/cluster_ops.rs`. Every decision
/// taken under a shard's lock is a comparison of versions, with nothing to
/// wait for, so a thread that finds another inside the same shard (a
/// multi-threaded runtime) waits for that comparison, not for any I/O.
///
/// What each guarantee rests on:
/// - **Capacity.** Sessions and their tombstones share one cache bounded by
///   `max_capacity` entries; past it quick_cache evicts (CLOCK-Pro: entries
///   not read since they were written go first). Owner indexes have a
///   cache of their own that never evicts. An index is read rarely (only by
///   "log out everywhere"), so in a shared cache it would be evicted first,
///   and an evicted index on all `R` holders would let `delete_by_owner`
///   end nothing while the owner's sessions live on. There is at most one
///   index per owner with a live session, so that cache stays bounded by
///   time and owners.
/// - **Expiry.** Every read and every write checks the entry against the
///   node's clock, so an entry is gone for every reader the moment it ends,
///   on a simulated clock too. Its memory is freed by [`sweep`](Self::sweep),
///   which each rebalancing pass runs (at least every anti-entropy
///   interval), or earlier by eviction: an ended entry is never read again,
///   so it is among the first to go.
#[derive(Clone)]
pub(crate) struct Local {
    sessions: Arc<Copies>,
    indexes: Arc<Copies>,
    /// The longest lifetime, in seconds from when it was stored, of any live
    /// copy stored here: how long a copy this node cannot see might still
    /// live, for tombstones (`Inner::tombstone`).
    horizon_secs: Arc<AtomicU64>,
    clock: Clock,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("sessions", &self.sessions.len())
            .field("indexes", &self.indexes.len())
            .finish()
    }
}

impl Local {
    pub(crate) fn new(max_capacity: u64, clock: Clock) -> Self {
        let expected = usize::try_from(max_capacity).unwrap_or(usize::MAX);
        Self {
            sessions: Arc::new(Cache::with(
                expected,
                max_capacity,
                UnitWeighter,
                DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            )),
            // No weight can reach `u64::MAX`: this one never evicts.
            indexes: Arc::new(Cache::with(
                EXPECTED_INDEXES,
                u64::MAX,
                UnitWeighter,
                DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            )),
            horizon_secs: Arc::new(AtomicU64::new(0)),
            clock,
        }
    }

    /// The longest lifetime any live copy stored here was given, counted
    /// from when it was stored.
    pub(crate) fn horizon(&self) -> Duration {
        Duration::from_secs(self.horizon_secs.load(Ordering::Relaxed))
    }

    fn cache(&self, key: &str) -> &Copies {
        if is_owner_key(key) {
            &self.indexes
        } else {
            &self.sessions
        }
    }

    /// Every entry of both caches, ended ones included.
    fn entries(&self) -> impl Iterator<Item = (String, Arc<Entry>)> + '_ {
        self.sessions.iter().chain(self.indexes.iter())
    }

    /// The current (unexpired) entry for `key`, live or tombstone.
    pub(crate) fn get(&self, key: &str) -> Option<Entry> {
        let now = self.clock.now();
        self.cache(key)
            .get(key)
            .filter(|entry| entry.is_current(now))
            .map(|entry| Entry::clone(&entry))
    }

    /// Runs `decide` on the current (unexpired) entry for `key` as one
    /// atomic step: `Some(entry)` replaces it, `None` leaves it.
    fn update(&self, key: &str, decide: impl FnOnce(Option<&Entry>) -> Option<Entry>) -> Updated {
        let now = self.clock.now();
        let stored = |next: Entry| {
            if let Entry::Live(live) = &next {
                let lifetime = live.expires_at.duration_since(now).unwrap_or_default();
                // Rounded up, so the horizon is never short.
                self.horizon_secs
                    .fetch_max(lifetime.as_secs() + 1, Ordering::Relaxed);
            }
            Arc::new(next)
        };
        // Called once: on the held entry, under its shard's lock, or on
        // none, while this call holds the key's placeholder.
        let mut decide = Some(decide);
        let mut decide_once = |current: Option<&Entry>| decide.take().and_then(|f| f(current));
        let result = self.cache(key).entry(key, None, |_, held| {
            let current = Some(held.as_ref()).filter(|entry| entry.is_current(now));
            match decide_once(current) {
                Some(next) => {
                    *held = stored(next);
                    EntryAction::Retain(Updated::Stored)
                }
                None => EntryAction::Retain(Updated::Unchanged(Some(Arc::clone(held)))),
            }
        });
        match result {
            EntryResult::Retained(updated) => updated,
            // The key is absent and this call holds its placeholder: other
            // updates of the key wait until it is filled or dropped.
            EntryResult::Vacant(placeholder) => match decide_once(None) {
                Some(next) => {
                    let _ = placeholder.insert(stored(next));
                    Updated::Stored
                }
                None => Updated::Unchanged(None),
            },
            // The closure above neither removes nor replaces, and with no
            // timeout the wait for a placeholder does not end early.
            EntryResult::Removed(..) | EntryResult::Replaced(..) | EntryResult::Timeout => {
                unreachable!("an update only retains or fills its entry")
            }
        }
    }

    /// Drops the entries that have ended by the node's clock, which no
    /// reader sees any more, to free their memory.
    pub(crate) fn sweep(&self) {
        let now = self.clock.now();
        self.sessions.retain(|_, entry| entry.is_current(now));
        self.indexes.retain(|_, entry| entry.is_current(now));
    }

    /// Stores `offer` unless this node holds something at least as new.
    pub(crate) fn install(&self, key: &str, offer: Entry) -> Installed {
        if !offer.is_current(self.clock.now()) {
            // An expired offer carries no information a reader could see.
            return Installed::Accepted;
        }
        let result = self.update(key, |current| match current {
            Some(current) if *current == offer || !offer.supersedes(current) => None,
            _ => Some(offer.clone()),
        });
        match result {
            Updated::Unchanged(Some(held)) if *held != offer => {
                Installed::Conflict(Entry::clone(&held))
            }
            Updated::Unchanged(_) | Updated::Stored => Installed::Accepted,
        }
    }

    /// Stores a new session unless the key is live or tombstoned here. The
    /// very record offered counts as stored: a backup that took it from the
    /// owner may hand it back (re-replication) before the owner stores its
    /// own copy, and that create has not failed.
    pub(crate) fn create(&self, key: &str, live: Live) -> Installed {
        let offer = Entry::Live(live);
        match self.update(key, |current| current.is_none().then(|| offer.clone())) {
            Updated::Unchanged(Some(held)) if *held != offer => {
                Installed::Conflict(Entry::clone(&held))
            }
            Updated::Unchanged(_) | Updated::Stored => Installed::Accepted,
        }
    }

    /// Moves the expiry of the copy at `version`.
    pub(crate) fn touch(&self, key: &str, version: u64, expires_at: SystemTime) -> Touched {
        let result = self.update(key, |current| match current {
            Some(Entry::Live(live)) if live.version == version => Some(Entry::Live(Live {
                expires_at,
                ..live.clone()
            })),
            _ => None,
        });
        match result {
            Updated::Stored => Touched::Applied,
            Updated::Unchanged(Some(held)) if held.version() > version => {
                Touched::Conflict(Entry::clone(&held))
            }
            Updated::Unchanged(_) => Touched::NeedRecord,
        }
    }

    /// Applies an owner node's change to this node's copy of the index at
    /// `key`, if that copy is the one the change was computed from.
    pub(crate) fn change_index(&self, key: &str, delta: &IndexDelta) -> Touched {
        let empty = HashMap::new();
        let result = self.update(key, |current| {
            let base = match current {
                Some(Entry::Index(index)) if index.version == delta.from_version => &index.sessions,
                Some(Entry::Gone { version, .. }) if *version == delta.from_version => &empty,
                None if delta.from_version == 0 => &empty,
                _ => return None,
            };
            (digest(base) == delta.from_digest).then(|| Entry::Index(delta.apply(base)))
        });
        match result {
            Updated::Stored => Touched::Applied,
            Updated::Unchanged(Some(held)) if held.version() > delta.from_version => {
                Touched::Conflict(Entry::clone(&held))
            }
            Updated::Unchanged(_) => Touched::NeedRecord,
        }
    }

    /// Drops this node's copy of `key` if it is still `expected`: after the
    /// copy was handed to the nodes that now hold the key.
    pub(crate) fn forget_if_unchanged(&self, key: &str, expected: &Entry) {
        let _ = self
            .cache(key)
            .remove_if(key, |held| held.as_ref() == expected);
    }

    /// Every current entry: a snapshot for re-replication. The caches are
    /// read a shard at a time, so writers wait for one shard's copy at
    /// most; entries written meanwhile may or may not appear, and the next
    /// pass catches them.
    pub(crate) fn snapshot(&self) -> Vec<(String, Entry)> {
        let now = self.clock.now();
        self.entries()
            .filter(|(_, entry)| entry.is_current(now))
            .map(|(key, entry)| (key, Entry::clone(&entry)))
            .collect()
    }

    /// How many live sessions and how many owner indexes this node holds
    /// (exact, O(entries)).
    pub(crate) fn live_counts(&self) -> (usize, usize) {
        let now = self.clock.now();
        self.entries()
            .fold((0, 0), |(sessions, indexes), (_, entry)| match &*entry {
                Entry::Live(live) if live.expires_at > now => (sessions + 1, indexes),
                Entry::Index(index) if index.expires_at > now => (sessions, indexes + 1),
                _ => (sessions, indexes),
            })
    }
}

#[cfg(test)]
mod tests {
    use session_core::{
        store::{Data, Record},
        SessionId,
    };

    use super::*;
    use crate::entry::Index;

    fn live(version: u64, secs: u64) -> Entry {
        let now = SystemTime::now();
        Entry::Live(Live {
            data: Arc::default(),
            created_at: now,
            expires_at: now + Duration::from_secs(secs),
            version,
            owner: None,
            lifetime: None,
        })
    }

    #[test]
    fn install_keeps_the_newer_copy() {
        let local = Local::new(100, Clock::default());
        assert!(matches!(
            local.install("k", live(2, 60)),
            Installed::Accepted
        ));
        assert!(
            matches!(local.install("k", live(1, 600)), Installed::Conflict(e) if e.version() == 2)
        );
        assert!(matches!(
            local.install("k", live(3, 60)),
            Installed::Accepted
        ));
        assert_eq!(local.get("k").unwrap().version(), 3);
    }

    #[test]
    fn a_tombstone_refuses_the_copy_it_deleted() {
        let local = Local::new(100, Clock::default());
        let _ = local.install("k", live(4, 60));
        let until = SystemTime::now() + Duration::from_secs(60);
        assert!(matches!(
            local.install("k", Entry::Gone { version: 4, until }),
            Installed::Accepted
        ));
        assert!(matches!(
            local.install("k", live(4, 60)),
            Installed::Conflict(Entry::Gone { .. })
        ));
        assert!(matches!(
            local.create(
                "k",
                Live::from_record(&Record::new(
                    SessionId::generate(),
                    Data::new(),
                    SystemTime::now(),
                    until
                ))
            ),
            Installed::Conflict(_)
        ));
    }

    fn ids(n: usize) -> Vec<SessionId> {
        (0..n).map(|_| SessionId::generate()).collect()
    }

    fn delta_on(base: &HashMap<SessionId, SystemTime>, version: u64, add: SessionId) -> IndexDelta {
        let until = SystemTime::now() + Duration::from_secs(60);
        IndexDelta {
            from_version: version,
            from_digest: digest(base),
            remove: Vec::new(),
            add: Some((add, until)),
            expires_at: until,
        }
    }

    #[test]
    fn an_index_change_applies_only_to_the_copy_it_was_computed_from() {
        let local = Local::new(100, Clock::default());
        let ids = ids(3);
        let none = HashMap::new();
        // No copy yet: a change from version 0 makes one.
        let first = delta_on(&none, 0, ids[0]);
        assert!(matches!(local.change_index("i", &first), Touched::Applied));
        let held = first.apply(&none);
        assert_eq!(local.get("i"), Some(Entry::Index(held.clone())));
        // A change from a version this copy is not at needs the whole index.
        assert!(matches!(
            local.change_index("i", &delta_on(&held.sessions, 4, ids[1])),
            Touched::NeedRecord
        ));
        // Same version, other entries (another coordinator's): whole index.
        let mut other = HashMap::new();
        other.insert(ids[2], SystemTime::now() + Duration::from_secs(5));
        assert!(matches!(
            local.change_index("i", &delta_on(&other, 1, ids[1])),
            Touched::NeedRecord
        ));
        // Older than the copy: the copy is the answer.
        assert!(matches!(
            local.change_index("i", &first),
            Touched::Conflict(Entry::Index(i)) if i.version == 1
        ));
        let second = delta_on(&held.sessions, 1, ids[1]);
        assert!(matches!(local.change_index("i", &second), Touched::Applied));
        let Some(Entry::Index(now)) = local.get("i") else {
            panic!("the index is gone");
        };
        assert_eq!(now, second.apply(&held.sessions));
        assert_eq!(now.version, 2);
        assert_eq!(now.sessions.len(), 2);
    }

    #[test]
    fn an_index_change_starts_over_on_its_tombstone() {
        let local = Local::new(100, Clock::default());
        let until = SystemTime::now() + Duration::from_secs(60);
        let _ = local.install("i", Entry::Gone { version: 3, until });
        let none = HashMap::new();
        assert!(matches!(
            local.change_index("i", &delta_on(&none, 0, SessionId::generate())),
            Touched::Conflict(Entry::Gone { .. })
        ));
        assert!(matches!(
            local.change_index("i", &delta_on(&none, 3, SessionId::generate())),
            Touched::Applied
        ));
        assert_eq!(local.get("i").map(|e| e.version()), Some(4));
    }

    #[test]
    fn versions_order_indexes_and_tombstones_like_sessions() {
        let until = SystemTime::now() + Duration::from_secs(60);
        let index = |version| {
            Entry::Index(Index {
                sessions: Arc::default(),
                expires_at: until,
                version,
            })
        };
        let gone = |version| Entry::Gone { version, until };
        assert!(index(2).supersedes(&gone(1)));
        assert!(gone(2).supersedes(&index(2)));
        assert!(!index(2).supersedes(&gone(2)));
        assert!(!index(1).supersedes(&index(2)));
        assert_eq!(index(3).into_live(SystemTime::now()), None);
    }

    #[test]
    fn owner_keys_are_told_from_session_keys_by_shape() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_owner_key(&format!("session:owner:{hex}")));
        assert!(is_owner_key(&format!("owner:{hex}")));
        assert!(!is_owner_key(&format!(
            "session:{}",
            SessionId::generate().encode()
        )));
        assert!(!is_owner_key(&format!(
            "session:owner:{}",
            hex.to_uppercase()
        )));
        assert!(!is_owner_key(&format!("session:owner:{}", &hex[1..])));
        // A multi-byte character where the tail would start must not panic.
        assert!(!is_owner_key(&"é".repeat(40)));
    }

    #[test]
    fn owner_indexes_survive_the_eviction_of_sessions() {
        let local = Local::new(8, Clock::default());
        let key = format!("session:owner:{}", "ab".repeat(32));
        let _ = local.change_index(&key, &delta_on(&HashMap::new(), 0, SessionId::generate()));
        for n in 0..200 {
            let _ = local.install(&format!("s{n}"), live(1, 60));
        }
        let (sessions, indexes) = local.live_counts();
        assert!(sessions <= 8, "the session cache held {sessions} of 8");
        assert_eq!(indexes, 1, "the owner index was evicted");
        assert!(matches!(local.get(&key), Some(Entry::Index(_))));
    }

    #[test]
    fn indexes_are_counted_apart_from_sessions() {
        let local = Local::new(100, Clock::default());
        let _ = local.install("s1", live(1, 60));
        let _ = local.install("s2", live(1, 60));
        let _ = local.change_index("i", &delta_on(&HashMap::new(), 0, SessionId::generate()));
        assert_eq!(local.live_counts(), (2, 1));
    }

    #[test]
    fn a_create_finds_its_own_record_already_handed_back_stored() {
        let local = Local::new(100, Clock::default());
        let now = SystemTime::now();
        let record = Record::new(
            SessionId::generate(),
            Data::new(),
            now,
            now + Duration::from_secs(60),
        );
        let ours = Live::from_record(&record);
        let _ = local.install("k", Entry::Live(ours.clone()));
        assert!(matches!(
            local.create("k", ours.clone()),
            Installed::Accepted
        ));
        let other = Live {
            data: Arc::new([("a".to_owned(), "1".to_owned())].into_iter().collect()),
            ..ours
        };
        assert!(matches!(local.create("k", other), Installed::Conflict(_)));
    }

    #[test]
    fn touch_needs_the_same_version() {
        let local = Local::new(100, Clock::default());
        let later = SystemTime::now() + Duration::from_secs(600);
        assert!(matches!(local.touch("k", 1, later), Touched::NeedRecord));
        let _ = local.install("k", live(2, 60));
        assert!(matches!(local.touch("k", 3, later), Touched::NeedRecord));
        assert!(matches!(local.touch("k", 1, later), Touched::Conflict(_)));
        assert!(matches!(local.touch("k", 2, later), Touched::Applied));
        assert_eq!(local.get("k").unwrap().until(), later);
    }
}
