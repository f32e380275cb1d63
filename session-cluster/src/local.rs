//! The copies this node holds: a moka cache of live records, owner indexes
//! and tombstones.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use moka::{
    ops::compute::{CompResult, Op},
    sync::Cache,
    Expiry,
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

/// moka's expiry policy: an entry leaves when its record, tombstone or
/// index ends by the node's clock. moka counts the time left on its own
/// (real) clock; reads also check the entry against the node's clock, so
/// the node's clock decides what is current.
struct UntilEntryEnds(Clock);

impl UntilEntryEnds {
    /// How long moka keeps `value`: until it ends by the node's clock.
    /// Forever on a simulated clock, whose time is virtual while moka's is
    /// real: an entry moka dropped early in real time would make a
    /// simulated run depend on the machine's speed (reads check expiry
    /// against the node's clock anyway).
    fn keep(&self, value: &Entry) -> Option<Duration> {
        (!self.0.is_simulated()).then(|| remaining(value.until(), self.0.now()))
    }
}

impl Expiry<String, Arc<Entry>> for UntilEntryEnds {
    fn expire_after_create(&self, _: &String, value: &Arc<Entry>, _: Instant) -> Option<Duration> {
        self.keep(value)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.keep(value)
    }
}

fn remaining(until: SystemTime, now: SystemTime) -> Duration {
    until.duration_since(now).unwrap_or(Duration::ZERO)
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

/// This node's copies. Every write is one atomic moka compute on the entry,
/// so concurrent installs of one key cannot interleave.
///
/// The caches are moka's synchronous ones: every decision taken inside a
/// compute is a comparison of versions, with nothing to wait for, and the
/// asynchronous cache's per-key waiters cost more than the decision (about
/// 2.3 against 1.7 µs per compute on this project's machine, and the
/// cluster makes two on every write). A compute that finds another thread
/// inside the same key's compute (a multi-threaded runtime) blocks for the
/// length of that comparison, not of any I/O.
///
/// Sessions and their tombstones share one cache bounded by `max_capacity`;
/// owner indexes have a cache of their own that never evicts. An index is
/// read rarely (only by "log out everywhere"), so in a shared cache TinyLFU
/// would evict it first, and an evicted index on all `R` holders would let
/// `delete_by_owner` end nothing while the owner's sessions live on. Indexes
/// still end with their longest entry, and there is at most one per owner
/// with a live session, so the cache stays bounded by time and owners.
#[derive(Clone)]
pub(crate) struct Local {
    sessions: Cache<String, Arc<Entry>>,
    indexes: Cache<String, Arc<Entry>>,
    /// The longest lifetime, in seconds from when it was stored, of any live
    /// copy stored here: how long a copy this node cannot see might still
    /// live, for tombstones (`Inner::tombstone`).
    horizon_secs: Arc<AtomicU64>,
    clock: Clock,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("sessions", &self.sessions.entry_count())
            .field("indexes", &self.indexes.entry_count())
            .finish()
    }
}

impl Local {
    pub(crate) fn new(max_capacity: u64, clock: Clock) -> Self {
        Self {
            sessions: Cache::builder()
                .max_capacity(max_capacity)
                .expire_after(UntilEntryEnds(clock.clone()))
                .build(),
            indexes: Cache::builder()
                .expire_after(UntilEntryEnds(clock.clone()))
                .build(),
            horizon_secs: Arc::new(AtomicU64::new(0)),
            clock,
        }
    }

    /// The longest lifetime any live copy stored here was given, counted
    /// from when it was stored.
    pub(crate) fn horizon(&self) -> Duration {
        Duration::from_secs(self.horizon_secs.load(Ordering::Relaxed))
    }

    fn cache(&self, key: &str) -> &Cache<String, Arc<Entry>> {
        if is_owner_key(key) {
            &self.indexes
        } else {
            &self.sessions
        }
    }

    /// Every entry of both caches, expired ones included.
    fn entries(&self) -> impl Iterator<Item = (Arc<String>, Arc<Entry>)> + '_ {
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
    /// atomic moka compute: `Some(entry)` replaces it, `None` leaves it.
    fn update(
        &self,
        key: &str,
        decide: impl FnOnce(Option<&Entry>) -> Option<Entry>,
    ) -> CompResult<String, Arc<Entry>> {
        let now = self.clock.now();
        self.cache(key)
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let current = existing
                    .map(moka::Entry::into_value)
                    .filter(|entry| entry.is_current(now));
                let op = match decide(current.as_deref()) {
                    Some(next) => {
                        if let Entry::Live(live) = &next {
                            let lifetime = live.expires_at.duration_since(now).unwrap_or_default();
                            // Rounded up, so the horizon is never short.
                            self.horizon_secs
                                .fetch_max(lifetime.as_secs() + 1, Ordering::Relaxed);
                        }
                        Op::Put(Arc::new(next))
                    }
                    None => Op::Nop,
                };
                op
            })
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
            CompResult::Unchanged(entry) if *entry.value().as_ref() != offer => {
                Installed::Conflict(Entry::clone(entry.value()))
            }
            _ => Installed::Accepted,
        }
    }

    /// Stores a new session unless the key is live or tombstoned here. The
    /// very record offered counts as stored: a backup that took it from the
    /// owner may hand it back (re-replication) before the owner stores its
    /// own copy, and that create has not failed.
    pub(crate) fn create(&self, key: &str, live: Live) -> Installed {
        let offer = Entry::Live(live);
        match self.update(key, |current| current.is_none().then(|| offer.clone())) {
            CompResult::Unchanged(entry) if *entry.value().as_ref() != offer => {
                Installed::Conflict(Entry::clone(entry.value()))
            }
            _ => Installed::Accepted,
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
            CompResult::ReplacedWith(_) | CompResult::Inserted(_) => Touched::Applied,
            CompResult::Unchanged(entry) if entry.value().version() > version => {
                Touched::Conflict(Entry::clone(entry.value()))
            }
            _ => Touched::NeedRecord,
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
            CompResult::ReplacedWith(_) | CompResult::Inserted(_) => Touched::Applied,
            CompResult::Unchanged(entry) if entry.value().version() > delta.from_version => {
                Touched::Conflict(Entry::clone(entry.value()))
            }
            _ => Touched::NeedRecord,
        }
    }

    /// Drops this node's copy of `key` if it is still `expected`: after the
    /// copy was handed to the nodes that now hold the key.
    pub(crate) fn forget_if_unchanged(&self, key: &str, expected: &Entry) {
        let _ = self
            .cache(key)
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(entry) if entry.value().as_ref() == expected => Op::Remove,
                    _ => Op::Nop,
                };
                op
            });
    }

    /// Every current entry: a snapshot for re-replication. moka iterates
    /// without blocking writers; entries written meanwhile may or may not
    /// appear, and the next pass catches them.
    pub(crate) fn snapshot(&self) -> Vec<(String, Entry)> {
        let now = self.clock.now();
        self.entries()
            .filter(|(_, entry)| entry.is_current(now))
            .map(|(key, entry)| (String::clone(&key), Entry::clone(&entry)))
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
        local.sessions.run_pending_tasks();
        local.indexes.run_pending_tasks();
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
