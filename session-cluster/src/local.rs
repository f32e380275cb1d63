//! The copies this node holds: a moka cache of live records and tombstones.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use moka::{
    future::Cache,
    ops::compute::{CompResult, Op},
    Expiry,
};
use session_core::{Data, Record, SessionId};

/// One key's state on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Live(Live),
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
}

impl Live {
    pub(crate) fn from_record(record: &Record) -> Self {
        Self {
            data: Arc::new(record.data.clone()),
            created_at: record.created_at,
            expires_at: record.expires_at,
            version: record.version,
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
        record
    }
}

impl Entry {
    pub(crate) fn version(&self) -> u64 {
        match self {
            Self::Live(live) => live.version,
            Self::Gone { version, .. } => *version,
        }
    }

    pub(crate) fn until(&self) -> SystemTime {
        match self {
            Self::Live(live) => live.expires_at,
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
            std::cmp::Ordering::Equal => match (self, other) {
                (Self::Gone { .. }, Self::Live(_)) => true,
                (Self::Live(_), Self::Gone { .. }) => false,
                _ => self.until() > other.until(),
            },
        }
    }

    /// The newer of two answers (`None` = nothing known).
    pub(crate) fn newest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.supersedes(&a) { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// What an [`Local::install`] did.
#[derive(Debug)]
pub(crate) enum Installed {
    /// The entry is now the one offered (or was already equal to it).
    Accepted,
    /// This node holds something that supersedes the offer; here it is.
    Conflict(Entry),
}

/// What a replica did with a touch that names a version.
#[derive(Debug)]
pub(crate) enum Touched {
    Applied,
    /// The replica has no copy at that version: send it the whole record.
    NeedRecord,
    Conflict(Entry),
}

struct UntilEntryEnds;

impl Expiry<String, Arc<Entry>> for UntilEntryEnds {
    fn expire_after_create(&self, _: &String, value: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(remaining(value.until()))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(remaining(value.until()))
    }
}

fn remaining(until: SystemTime) -> Duration {
    until
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

/// This node's copies. Every write is one atomic moka compute on the entry,
/// so concurrent installs of one key cannot interleave.
#[derive(Clone)]
pub(crate) struct Local {
    cache: Cache<String, Arc<Entry>>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl Local {
    pub(crate) fn new(max_capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(max_capacity)
                .expire_after(UntilEntryEnds)
                .build(),
        }
    }

    /// The current (unexpired) entry for `key`, live or tombstone.
    pub(crate) async fn get(&self, key: &str) -> Option<Entry> {
        let now = SystemTime::now();
        self.cache
            .get(key)
            .await
            .filter(|entry| entry.is_current(now))
            .map(|entry| Entry::clone(&entry))
    }

    /// Runs `decide` on the current (unexpired) entry for `key` as one
    /// atomic moka compute: `Some(entry)` replaces it, `None` leaves it.
    async fn update(
        &self,
        key: &str,
        decide: impl FnOnce(Option<&Entry>) -> Option<Entry>,
    ) -> CompResult<String, Arc<Entry>> {
        let now = SystemTime::now();
        self.cache
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let current = existing
                    .map(moka::Entry::into_value)
                    .filter(|entry| entry.is_current(now));
                let op = match decide(current.as_deref()) {
                    Some(next) => Op::Put(Arc::new(next)),
                    None => Op::Nop,
                };
                std::future::ready(op)
            })
            .await
    }

    /// Stores `offer` unless this node holds something at least as new.
    pub(crate) async fn install(&self, key: &str, offer: Entry) -> Installed {
        if !offer.is_current(SystemTime::now()) {
            // An expired offer carries no information a reader could see.
            return Installed::Accepted;
        }
        let result = self
            .update(key, |current| match current {
                Some(current) if *current == offer || !offer.supersedes(current) => None,
                _ => Some(offer.clone()),
            })
            .await;
        match result {
            CompResult::Unchanged(entry) if *entry.value().as_ref() != offer => {
                Installed::Conflict(Entry::clone(entry.value()))
            }
            _ => Installed::Accepted,
        }
    }

    /// Stores a new session unless the key is live or tombstoned here.
    pub(crate) async fn create(&self, key: &str, live: Live) -> Installed {
        match self
            .update(key, |current| {
                current.is_none().then_some(Entry::Live(live))
            })
            .await
        {
            CompResult::Unchanged(entry) => Installed::Conflict(Entry::clone(entry.value())),
            _ => Installed::Accepted,
        }
    }

    /// Moves the expiry of the copy at `version`.
    pub(crate) async fn touch(&self, key: &str, version: u64, expires_at: SystemTime) -> Touched {
        let result = self
            .update(key, |current| match current {
                Some(Entry::Live(live)) if live.version == version => Some(Entry::Live(Live {
                    expires_at,
                    ..live.clone()
                })),
                _ => None,
            })
            .await;
        match result {
            CompResult::ReplacedWith(_) | CompResult::Inserted(_) => Touched::Applied,
            CompResult::Unchanged(entry) if entry.value().version() > version => {
                Touched::Conflict(Entry::clone(entry.value()))
            }
            _ => Touched::NeedRecord,
        }
    }

    /// Drops this node's copy of `key` if it is still `expected`: after the
    /// copy was handed to the nodes that now hold the key.
    pub(crate) async fn forget_if_unchanged(&self, key: &str, expected: &Entry) {
        let _ = self
            .cache
            .entry_by_ref(key)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(entry) if entry.value().as_ref() == expected => Op::Remove,
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }

    /// Every current entry: a snapshot for re-replication. moka iterates
    /// without blocking writers; entries written meanwhile may or may not
    /// appear, and the next pass catches them.
    pub(crate) fn snapshot(&self) -> Vec<(String, Entry)> {
        let now = SystemTime::now();
        self.cache
            .iter()
            .filter(|(_, entry)| entry.is_current(now))
            .map(|(key, entry)| (String::clone(&key), Entry::clone(&entry)))
            .collect()
    }

    /// How many live sessions this node holds (exact, O(entries)).
    pub(crate) fn live_count(&self) -> usize {
        let now = SystemTime::now();
        self.cache
            .iter()
            .filter(|(_, entry)| entry.live(now).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(version: u64, secs: u64) -> Entry {
        let now = SystemTime::now();
        Entry::Live(Live {
            data: Arc::default(),
            created_at: now,
            expires_at: now + Duration::from_secs(secs),
            version,
        })
    }

    #[tokio::test]
    async fn install_keeps_the_newer_copy() {
        let local = Local::new(100);
        assert!(matches!(
            local.install("k", live(2, 60)).await,
            Installed::Accepted
        ));
        assert!(
            matches!(local.install("k", live(1, 600)).await, Installed::Conflict(e) if e.version() == 2)
        );
        assert!(matches!(
            local.install("k", live(3, 60)).await,
            Installed::Accepted
        ));
        assert_eq!(local.get("k").await.unwrap().version(), 3);
    }

    #[tokio::test]
    async fn a_tombstone_refuses_the_copy_it_deleted() {
        let local = Local::new(100);
        let _ = local.install("k", live(4, 60)).await;
        let until = SystemTime::now() + Duration::from_secs(60);
        assert!(matches!(
            local.install("k", Entry::Gone { version: 4, until }).await,
            Installed::Accepted
        ));
        assert!(matches!(
            local.install("k", live(4, 60)).await,
            Installed::Conflict(Entry::Gone { .. })
        ));
        assert!(matches!(
            local
                .create(
                    "k",
                    Live::from_record(&Record::new(
                        SessionId::generate(),
                        Data::new(),
                        SystemTime::now(),
                        until
                    ))
                )
                .await,
            Installed::Conflict(_)
        ));
    }

    #[tokio::test]
    async fn touch_needs_the_same_version() {
        let local = Local::new(100);
        let later = SystemTime::now() + Duration::from_secs(600);
        assert!(matches!(
            local.touch("k", 1, later).await,
            Touched::NeedRecord
        ));
        let _ = local.install("k", live(2, 60)).await;
        assert!(matches!(
            local.touch("k", 3, later).await,
            Touched::NeedRecord
        ));
        assert!(matches!(
            local.touch("k", 1, later).await,
            Touched::Conflict(_)
        ));
        assert!(matches!(local.touch("k", 2, later).await, Touched::Applied));
        assert_eq!(local.get("k").await.unwrap().until(), later);
    }
}
