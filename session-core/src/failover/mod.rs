//! [`FailoverStore`]: a primary store, a secondary store, and a circuit
//! breaker in front of each.

mod breaker;
mod mirror;
mod recovery;
mod side;
mod standby;
mod store;

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, SystemTime},
};

pub use self::breaker::BreakerState;
use self::{
    breaker::{BreakerConfig, Transition},
    side::{Inner, Missed, Reply, Role, Side},
};
use crate::{
    telemetry::{self, Observed},
    ConfigError, SessionId, SessionStore,
};

/// How a [`FailoverStore`] uses its two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailoverMode {
    /// Every write goes to both stores; reads ask both and serve the copy
    /// known to hold every acknowledged commit (the primary's, unless this
    /// process saw it miss writes or an ahead mark says the secondary took
    /// commits it missed).
    ///
    /// **Guarantee.** A write is acknowledged once every store that is up
    /// has it: both normally, the survivor while one is down. So when
    /// either store dies, no acknowledged write is lost. When a store
    /// comes back it may hold copies from before its outage (or nothing,
    /// after a restart without persistence). A background probe finds it
    /// within [`with_probe_interval`](FailoverStoreBuilder::with_probe_interval)
    /// (1 s) of answering, whatever the breaker's back-off, and the writes
    /// and deletes this process made during the outage are replayed to it
    /// at once; a read that finds the two copies apart serves the one known
    /// to hold every acknowledged commit and repairs the other. A version
    /// counts commits, not which ones, so it decides nothing. A commit that reaches one store and finds the
    /// session missing on the other copies it over and, when the copy finds
    /// another server's older repair there, replaces it before the commit
    /// is acknowledged; when it cannot, it leaves an "ahead" mark that makes
    /// every server's next read repair the other store.
    ///
    /// **Deletes.** Every delete first leaves a tombstone in both stores,
    /// then deletes both copies; a copy found on one store only is ended,
    /// not copied back, when either store holds its tombstone. So a load on
    /// another server that reads one store before the delete and the other
    /// after it cannot bring the session back, and neither can a store that
    /// returns with an old copy. A tombstone lives for
    /// [`with_tombstone_ttl`](FailoverStoreBuilder::with_tombstone_ttl), at least the
    /// absolute timeout. A delete is acknowledged only once a store that
    /// took it holds the tombstone.
    ///
    /// **No false "no session".** A load that only one store answers, with
    /// "no session", while this process knows that store missed writes (it
    /// holds writes for it to replay) fails as `Unavailable` instead: the
    /// session may live only on the store that is down, and the error
    /// policy (a 503 by default) beats a silent fresh session.
    ///
    /// A copy found on one store only within 2 s of its expiry is served
    /// but not copied, so two stores that count expiry differently
    /// (Memcached rounds up to whole seconds) cannot keep an idle session
    /// alive. **What can be lost:** a session whose only up-to-date copy is
    /// on one store when that store dies too. That takes two failures in a
    /// row: a restarted-empty store that has not yet been repaired (by the
    /// replay, by a read, or by the commit that found it missing) and then
    /// the loss of the other. And under a split in which some app servers
    /// reach only the primary and others only the secondary, both stores
    /// take commits, and each side marks its store ahead; afterwards the
    /// copy with the newer ahead mark wins and the other side's commits
    /// from the split are lost. Costs: every write and every read goes to both stores, in
    /// parallel; a delete also writes a tombstone to each.
    #[default]
    Mirror,
    /// Writes go to the primary only; the secondary (a
    /// [`MemoryStore`](crate::memory::MemoryStore) costs nothing to run) takes new
    /// sessions while the primary is down.
    ///
    /// **Guarantee.** While the primary is up, nothing differs from using
    /// it alone, except that a load the primary answers with "no such
    /// session" also asks the secondary. While it is down, sessions that
    /// live on it cannot be read: their users get a fresh session, stored
    /// on the secondary, which keeps its id from then on (no new cookie on
    /// every page). When the primary returns, new sessions go back to it
    /// and sessions created on the secondary stay readable there until they
    /// expire. A session lives in exactly one store: a create whose call to
    /// the primary timed out (it may have landed) fails rather than make a
    /// second copy on the secondary.
    ///
    /// **Deletes.** A delete is acknowledged once both stores took it, or,
    /// with one of them down, once the store that is up is found to hold
    /// the session (then it lives nowhere else). Otherwise the session may
    /// live on the store that is down, and every other app server would go
    /// on serving it from there once it is back: the delete fails (a 503
    /// under the default policy; the user can retry), and is replayed to
    /// that store when it returns. So a logout this store acknowledges is
    /// never undone, on any server, even if this one restarts first.
    ///
    /// **What is lost:** for the length of a primary outage, every
    /// session on the primary (they come back with it, unless it restarted
    /// without persistence); every session on the secondary when the
    /// secondary dies (or, for a `MemoryStore`, when the app server
    /// restarts). Costs: one store call per operation, as with the primary
    /// alone; a delete during an outage costs one more (the stamp).
    Standby,
}

/// A primary and a secondary [`SessionStore`] behind one, with a circuit
/// breaker on each, so that a dead store does not take the sessions down
/// with it. See [`FailoverMode`] for each mode's guarantee: what is lost,
/// and when.
///
/// # The circuit breakers
/// Every call to either store runs under the failover
/// [call timeout](FailoverStoreBuilder::with_call_timeout) (default 300 ms). A
/// store's breaker opens after
/// [`with_failure_threshold`](FailoverStoreBuilder::with_failure_threshold)
/// consecutive `Unavailable`/`Timeout` errors (default 3), or at once when a
/// call runs into the call timeout, because a store that hangs has already
/// cost that request the whole timeout. While it is open, calls skip that
/// store without waiting on it. After
/// [`with_open_for`](FailoverStoreBuilder::with_open_for) (default 1 s) one probe call
/// is let through: if it answers, the breaker closes; if not, it stays open
/// twice as long, up to [`with_max_open_for`](FailoverStoreBuilder::with_max_open_for)
/// (default 30 s). That back-off only spares requests; a background task
/// probes an open breaker's store every
/// [`with_probe_interval`](FailoverStoreBuilder::with_probe_interval) (default 1 s),
/// and the first answer closes the breaker and starts the replay, so a
/// store that is back is repaired within about that long even when the
/// back-off has grown or no request comes. `Corrupt`, `TooLarge` and every other error kind are the
/// store answering, not an outage: they reach the caller and fail nothing
/// over, since a second store would only hide the bug.
///
/// Every transition is a `tracing` event (target `session_kit::failover`;
/// `warn` when a breaker opens, `info` otherwise) and increments the
/// `metrics` counter `session_kit_breaker_transitions_total` with labels
/// `role` (`primary`/`secondary`) and `to` (`open`/`half_open`/`closed`).
/// Requests served without the primary count in
/// `session_kit_failover_fallbacks_total` (label `operation`), stale copies
/// rewritten in `session_kit_failover_repairs_total` (label `role`), the
/// replay backlog is the gauge `session_kit_failover_replay_backlog`, and
/// missed writes the replay set had no room for count in
/// `session_kit_failover_replay_dropped_total`: see
/// [`telemetry`] for the whole table. Every call to either
/// store is a `store_call` span of its own, under that store's
/// [`kind`](SessionStore::kind).
///
/// # Timeouts
/// The [`SessionManager`](crate::SessionManager) bounds each whole call by
/// its operation timeout (default 2 s). A failover call is a few store calls
/// in a row: the call itself (to both stores at once in mirror mode) and,
/// only when the stores disagree, a check and a repair. Each is bounded by
/// the call timeout, and the first to run into it opens that store's
/// breaker, so the rest skip that store: at worst about two call timeouts
/// (one per store) plus the calls that answered. Keep the call timeout
/// under a third of the operation timeout; the defaults (300 ms, 2 s) do.
///
/// # Example
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::{Duration, SystemTime};
/// use session_core::{SessionId, failover::{FailoverMode, FailoverStore}, memory::MemoryStore, store::{Record, SessionStore}};
///
/// // In production the primary is, say, a RedisStore.
/// let store = FailoverStore::builder(MemoryStore::new(), MemoryStore::new())
///     .with_mode(FailoverMode::Standby)
///     .with_call_timeout(Duration::from_millis(200))
///     .build()
///     .unwrap();
/// let now = SystemTime::now();
/// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
/// store.create(&record).await.unwrap();
/// assert_eq!(store.load(&record.id).await.unwrap(), Some(record));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FailoverStore {
    inner: Arc<Inner>,
}

/// Where each breaker of a [`FailoverStore`] stands, and how many missed
/// writes wait to be replayed to each store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverState {
    /// The primary's breaker.
    pub primary: BreakerState,
    /// The secondary's breaker.
    pub secondary: BreakerState,
    /// Sessions whose writes or deletes the primary missed and that this
    /// process will replay to it.
    pub pending_primary: usize,
    /// The same for the secondary.
    pub pending_secondary: usize,
    /// The primary lost its data (a restart without persistence), as
    /// found when its breaker closed after an outage or, for a restart
    /// between two calls that opened no breaker, at the next refresh of
    /// this process's mark (within half the tombstone lifetime): while the
    /// secondary is down, its "no session" answers are refused rather than
    /// trusted.
    pub lost_data_primary: bool,
    /// The same for the secondary.
    pub lost_data_secondary: bool,
}

/// The settings of a [`FailoverStore`] apart from its two stores: what
/// [`FailoverStoreBuilder`] sets one by one, as a value that can be read
/// from config and checked before any store exists. See the
/// [`FailoverStore`] docs for what each knob does.
///
/// It deserializes from a config block (`mode = "standby"`,
/// `call_timeout = "200ms"`, …); a key it does not know is refused.
///
/// ```
/// use std::time::Duration;
/// use session_core::failover::FailoverConfig;
///
/// let mut config = FailoverConfig::default();
/// config.call_timeout = Duration::ZERO;
/// assert_eq!(config.validate().unwrap_err().key(), "failover.call_timeout");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FailoverConfig {
    /// Mirror (the default) or standby.
    pub mode: FailoverMode,
    /// How long one call to either store may take. A call that runs this
    /// long counts as an outage and opens that store's breaker at once.
    #[serde(deserialize_with = "crate::config::duration")]
    pub call_timeout: Duration,
    /// How many consecutive `Unavailable`/`Timeout` errors open a breaker.
    pub failure_threshold: u32,
    /// How long a breaker stays open before its first probe.
    #[serde(deserialize_with = "crate::config::duration")]
    pub open_for: Duration,
    /// The longest a breaker stays open between probes.
    #[serde(deserialize_with = "crate::config::duration")]
    pub max_open_for: Duration,
    /// How often a store whose breaker is open is probed in the background,
    /// whatever the breaker's back-off. A store that answers is closed at
    /// once and the writes it missed start replaying, so it is repaired
    /// within about this long of coming back even when no request reaches
    /// the probe. The back-off only decides how often *requests* try the
    /// store; a background probe costs no request any time.
    #[serde(deserialize_with = "crate::config::duration")]
    pub probe_interval: Duration,
    /// (Mirror.) How long the tombstone of a delete that reached only one
    /// store is kept, and the fence [`delete_by_owner`](SessionStore::delete_by_owner)
    /// leaves. Set it to at least the manager's absolute timeout: past that,
    /// no copy of the session it guards can be live anywhere.
    #[serde(deserialize_with = "crate::config::duration")]
    pub tombstone_ttl: Duration,
    /// The most sessions per store whose missed writes are remembered for
    /// replay. Past it, further misses are only repaired when read (and
    /// counted in `session_kit_failover_replay_dropped_total`).
    pub max_pending: usize,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            mode: FailoverMode::default(),
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
            failure_threshold: Self::DEFAULT_FAILURE_THRESHOLD,
            open_for: Self::DEFAULT_OPEN_FOR,
            max_open_for: Self::DEFAULT_MAX_OPEN_FOR,
            probe_interval: Self::DEFAULT_PROBE_INTERVAL,
            tombstone_ttl: Self::DEFAULT_TOMBSTONE_TTL,
            max_pending: Self::DEFAULT_MAX_PENDING,
        }
    }
}

/// The longest breaker back-off accepted.
const MAX_OPEN_FOR: Duration = Duration::from_secs(24 * 60 * 60);

impl FailoverConfig {
    /// The default [`call_timeout`](Self::call_timeout).
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(300);
    /// The default [`failure_threshold`](Self::failure_threshold).
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
    /// The default [`open_for`](Self::open_for).
    pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(1);
    /// The default [`max_open_for`](Self::max_open_for).
    pub const DEFAULT_MAX_OPEN_FOR: Duration = Duration::from_secs(30);
    /// The default [`tombstone_ttl`](Self::tombstone_ttl): the manager's
    /// default absolute timeout, past which no copy of a session lives.
    pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 60 * 60);
    /// The default [`max_pending`](Self::max_pending).
    pub const DEFAULT_MAX_PENDING: usize = 100_000;
    /// The default [`probe_interval`](Self::probe_interval).
    pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

    /// Checks the settings on their own; no store is needed.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key (`failover.call_timeout`,
    /// `failover.failure_threshold`, `failover.open_for`,
    /// `failover.max_open_for`, `failover.probe_interval` or
    /// `failover.tombstone_ttl`) when it is zero,
    /// `max_open_for` is shorter than `open_for`, a back-off is longer than
    /// a day or the tombstone TTL longer than 400 days.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("failover.call_timeout", self.call_timeout),
            ("failover.open_for", self.open_for),
            ("failover.probe_interval", self.probe_interval),
            ("failover.tombstone_ttl", self.tombstone_ttl),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be longer than zero"));
            }
        }
        // Bounded so that no deadline computed from them can overflow
        // `Instant` or `SystemTime`; far past any useful value.
        for (key, value, max, what) in [
            ("failover.open_for", self.open_for, MAX_OPEN_FOR, "a day"),
            (
                "failover.max_open_for",
                self.max_open_for,
                MAX_OPEN_FOR,
                "a day",
            ),
            (
                "failover.probe_interval",
                self.probe_interval,
                MAX_OPEN_FOR,
                "a day",
            ),
            (
                "failover.tombstone_ttl",
                self.tombstone_ttl,
                crate::manager::ManagerConfig::MAX_TIMEOUT,
                "400 days, the longest a session can live",
            ),
        ] {
            if value > max {
                return Err(ConfigError::new(key, format!("must be at most {what}")));
            }
        }
        if self.failure_threshold == 0 {
            return Err(ConfigError::new(
                "failover.failure_threshold",
                "must be at least 1",
            ));
        }
        if self.max_open_for < self.open_for {
            return Err(ConfigError::new(
                "failover.max_open_for",
                "must be at least failover.open_for",
            ));
        }
        Ok(())
    }
}

/// Configures a [`FailoverStore`]; see its docs for what each knob does,
/// and [`FailoverConfig`] for the defaults.
#[derive(Debug)]
#[must_use]
pub struct FailoverStoreBuilder {
    primary: Arc<dyn SessionStore>,
    secondary: Arc<dyn SessionStore>,
    config: FailoverConfig,
}

impl FailoverStoreBuilder {
    /// Every setting at once, as read from config.
    pub fn with_config(mut self, config: FailoverConfig) -> Self {
        self.config = config;
        self
    }

    /// Mirror (the default) or standby.
    pub fn with_mode(mut self, mode: FailoverMode) -> Self {
        self.config.mode = mode;
        self
    }

    /// How long one call to either store may take: see
    /// [`FailoverConfig::call_timeout`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.config.call_timeout = timeout;
        self
    }

    /// How many consecutive `Unavailable`/`Timeout` errors open a breaker.
    pub fn with_failure_threshold(mut self, failures: u32) -> Self {
        self.config.failure_threshold = failures;
        self
    }

    /// How long a breaker stays open before its first probe.
    pub fn with_open_for(mut self, wait: Duration) -> Self {
        self.config.open_for = wait;
        self
    }

    /// The longest a breaker stays open between probes.
    pub fn with_max_open_for(mut self, wait: Duration) -> Self {
        self.config.max_open_for = wait;
        self
    }

    /// (Mirror.) How long a delete's tombstone is kept: see
    /// [`FailoverConfig::tombstone_ttl`].
    pub fn with_tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.config.tombstone_ttl = ttl;
        self
    }

    /// The most sessions per store whose missed writes are remembered for
    /// replay: see [`FailoverConfig::max_pending`].
    pub fn with_max_pending(mut self, sessions: usize) -> Self {
        self.config.max_pending = sessions;
        self
    }

    /// How often a store whose breaker is open is probed in the background:
    /// see [`FailoverConfig::probe_interval`].
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.config.probe_interval = interval;
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    /// As [`FailoverConfig::validate`].
    pub fn build(self) -> Result<FailoverStore, ConfigError> {
        self.config.validate()?;
        let config = self.config;
        let breaker = BreakerConfig {
            failure_threshold: config.failure_threshold,
            open_for: config.open_for,
            max_open_for: config.max_open_for,
        };
        Ok(FailoverStore {
            inner: Arc::new(Inner {
                mode: config.mode,
                // Every call to either store, replays and probes included,
                // gets its own span and metrics under that store's kind.
                primary: Side::new(Role::Primary, Observed::wrap(self.primary), breaker),
                secondary: Side::new(Role::Secondary, Observed::wrap(self.secondary), breaker),
                call_timeout: config.call_timeout,
                tombstone_ttl: config.tombstone_ttl,
                max_pending: config.max_pending,
                probe_interval: config.probe_interval,
                repairing: Mutex::new(std::collections::HashSet::new()),
                epoch_mark: SessionId::generate().derive(EPOCH_DOMAIN),
            }),
        })
    }
}

impl FailoverStore {
    /// Mirrors every session on `primary` and `secondary`, with the default
    /// breaker settings. Use [`builder`](Self::builder) for standby mode or
    /// other settings.
    #[must_use]
    pub fn new(primary: impl SessionStore, secondary: impl SessionStore) -> Self {
        Self::builder(primary, secondary)
            .build()
            .expect("the default failover settings are valid")
    }

    /// Starts configuring a failover store over `primary` and `secondary`.
    pub fn builder(
        primary: impl SessionStore,
        secondary: impl SessionStore,
    ) -> FailoverStoreBuilder {
        FailoverStoreBuilder {
            primary: Arc::new(primary),
            secondary: Arc::new(secondary),
            config: FailoverConfig::default(),
        }
    }

    /// The mode this store runs in.
    #[must_use]
    pub fn mode(&self) -> FailoverMode {
        self.inner.mode
    }

    /// The breakers and the replay backlog now: for health endpoints, and
    /// for tests that time a failover.
    #[must_use]
    pub fn state(&self) -> FailoverState {
        FailoverState {
            primary: self.inner.primary.breaker.state(),
            secondary: self.inner.secondary.breaker.state(),
            pending_primary: self.inner.primary.pending_len.load(Ordering::Relaxed),
            pending_secondary: self.inner.secondary.pending_len.load(Ordering::Relaxed),
            lost_data_primary: self.inner.primary.epoch.lost_data(),
            lost_data_secondary: self.inner.secondary.epoch.lost_data(),
        }
    }
}

/// Now, on tokio's clock: a test on a paused runtime drives the breakers'
/// back-off deterministically; on a running runtime it is the system's.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Milliseconds since the Unix epoch; times before it count as the epoch.
fn millis(time: SystemTime) -> u64 {
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// [`millis`] as the JSON text of a session value.
fn millis_text(time: SystemTime) -> String {
    millis(time).to_string()
}

fn count_fallback(operation: &'static str) {
    metrics::counter!(telemetry::FAILOVER_FALLBACKS, "operation" => operation).increment(1);
}

/// The domain of the ids of epoch marks (see `Inner::epoch_mark`).
const EPOCH_DOMAIN: &str = "session-kit/failover-epoch/v1";

/// The domain of the ids that tombstones are stored under.
const TOMBSTONE_DOMAIN: &str = "session-kit/failover-tombstone/v1";

/// The domain of the ids of "ahead" marks: the store holding one took
/// commits to the session that the other store missed.
const AHEAD_DOMAIN: &str = "session-kit/failover-ahead/v1";

/// The domain of the ids of owner fences: "every session of this owner
/// created before `ended_at` was ended", so that no repair copies one back.
const OWNER_FENCE_DOMAIN: &str = "session-kit/failover-owner-fence/v1";
