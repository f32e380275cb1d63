//! [`FailoverStore`]: a primary store, a secondary store, and a circuit
//! breaker in front of each.

mod breaker;
mod mirror;
mod standby;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
// tokio's clock, so a test on a paused runtime drives the breakers'
// back-off deterministically; in a running runtime it is the system's.
use tokio::time::Instant;

pub use self::breaker::BreakerState;
use self::breaker::{Admission, Breaker, BreakerConfig, Transition};
use crate::{
    Changes, Committed, ConditionalDelete, ConfigError, Created, ErrorKind, OwnerPass, Record,
    SessionId, SessionStore, StoreError,
};

/// How a [`FailoverStore`] uses its two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailoverMode {
    /// Every write goes to both stores; reads ask both and serve the newer
    /// copy.
    ///
    /// **Guarantee.** A write is acknowledged once every store that is up
    /// has it: both normally, the survivor while one is down. So when
    /// either store dies, no acknowledged write is lost. When a store
    /// comes back it may hold copies from before its outage (or nothing,
    /// after a restart without persistence); a read compares versions,
    /// serves the newer copy and repairs the stale side, and the writes and
    /// deletes this process made during the outage are replayed to it at
    /// once. A delete that reaches only one store leaves a tombstone there,
    /// so the other store's old copy is never brought back to life. A copy
    /// found on one store only within 2 s of its expiry is served but not
    /// copied, so two stores that count expiry differently (Memcached
    /// rounds up to whole seconds) cannot keep an idle session alive. **What
    /// can be lost:** a session whose only up-to-date copy is on one store
    /// when that store dies too. That takes two failures in a row: a
    /// restarted-empty store that has not yet been repaired (by a read, or
    /// by the replay of this process's writes) and then the loss of the
    /// other. And under a split in which some app servers reach only the
    /// primary and others only the secondary, both stores take commits;
    /// afterwards the copy with the higher version wins (the primary's on
    /// a tie) and the other side's commits from the split are lost. Costs:
    /// every write and every read goes to both stores, in parallel.
    #[default]
    Mirror,
    /// Writes go to the primary only; the secondary (a
    /// [`MemoryStore`](crate::MemoryStore) costs nothing to run) takes new
    /// sessions while the primary is down.
    ///
    /// **Guarantee.** While the primary is up, nothing differs from using
    /// it alone, except that a load the primary answers with "no such
    /// session" also asks the secondary. While it is down, sessions that
    /// live on it cannot be read: their users get a fresh session, stored
    /// on the secondary, which keeps its id from then on (no new cookie on
    /// every page). When the primary returns, new sessions go back to it
    /// and sessions created on the secondary stay readable there until they
    /// expire. **What is lost:** for the length of a primary outage, every
    /// session on the primary (they come back with it, unless it restarted
    /// without persistence); every session on the secondary when the
    /// secondary dies (or, for a `MemoryStore`, when the app server
    /// restarts). Deletes the primary missed are replayed to it when it
    /// returns. Costs: one store call per operation, as with the primary
    /// alone.
    Standby,
}

/// A primary and a secondary [`SessionStore`] behind one, with a circuit
/// breaker on each, so that a dead store does not take the sessions down
/// with it. See [`FailoverMode`] for each mode's guarantee: what is lost,
/// and when.
///
/// # The circuit breakers
/// Every call to either store runs under the failover
/// [call timeout](FailoverStoreBuilder::call_timeout) (default 300 ms). A
/// store's breaker opens after
/// [`failure_threshold`](FailoverStoreBuilder::failure_threshold)
/// consecutive `Unavailable`/`Timeout` errors (default 3), or at once when a
/// call runs into the call timeout, because a store that hangs has already
/// cost that request the whole timeout. While it is open, calls skip that
/// store without waiting on it. After
/// [`open_for`](FailoverStoreBuilder::open_for) (default 1 s) one probe call
/// is let through: if it answers, the breaker closes; if not, it stays open
/// twice as long, up to [`max_open_for`](FailoverStoreBuilder::max_open_for)
/// (default 30 s). `Corrupt`, `TooLarge` and every other error kind are the
/// store answering, not an outage: they reach the caller and fail nothing
/// over, since a second store would only hide the bug.
///
/// Every transition is a `tracing` event (target `session_kit::failover`;
/// `warn` when a breaker opens, `info` otherwise) and increments the
/// `metrics` counter `session_kit_breaker_transitions_total` with labels
/// `store` (`primary`/`secondary`) and `to` (`open`/`half_open`/`closed`).
/// Requests served without the primary count in
/// `session_kit_failover_fallbacks_total` (label `op`), stale copies
/// rewritten in `session_kit_failover_repairs_total` (label `store`), and
/// missed writes the replay set had no room for in
/// `session_kit_failover_replay_dropped_total`.
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
/// use session_core::{FailoverMode, FailoverStore, MemoryStore, Record, SessionId, SessionStore};
///
/// // In production the primary is, say, a RedisStore.
/// let store = FailoverStore::builder(MemoryStore::new(), MemoryStore::new())
///     .mode(FailoverMode::Standby)
///     .call_timeout(Duration::from_millis(200))
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
}

/// Configures a [`FailoverStore`]; see its docs for what each knob does.
#[derive(Debug)]
#[must_use]
pub struct FailoverStoreBuilder {
    primary: Arc<dyn SessionStore>,
    secondary: Arc<dyn SessionStore>,
    mode: FailoverMode,
    call_timeout: Duration,
    breaker: BreakerConfig,
    tombstone_ttl: Duration,
    max_pending: usize,
}

/// The longest breaker back-off accepted.
const MAX_OPEN_FOR: Duration = Duration::from_secs(24 * 60 * 60);

impl FailoverStoreBuilder {
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

    /// Mirror (the default) or standby.
    pub fn mode(mut self, mode: FailoverMode) -> Self {
        self.mode = mode;
        self
    }

    /// How long one call to either store may take. A call that runs this
    /// long counts as an outage and opens that store's breaker at once.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How many consecutive `Unavailable`/`Timeout` errors open a breaker.
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.breaker.failure_threshold = failures;
        self
    }

    /// How long a breaker stays open before its first probe.
    pub fn open_for(mut self, wait: Duration) -> Self {
        self.breaker.open_for = wait;
        self
    }

    /// The longest a breaker stays open between probes.
    pub fn max_open_for(mut self, wait: Duration) -> Self {
        self.breaker.max_open_for = wait;
        self
    }

    /// (Mirror.) How long the tombstone of a delete that reached only one
    /// store is kept, and the fence [`delete_by_owner`](SessionStore::delete_by_owner)
    /// leaves. Set it to at least the manager's absolute timeout: past that,
    /// no copy of the session it guards can be live anywhere.
    pub fn tombstone_ttl(mut self, ttl: Duration) -> Self {
        self.tombstone_ttl = ttl;
        self
    }

    /// The most sessions per store whose missed writes are remembered for
    /// replay. Past it, further misses are only repaired when read (and
    /// counted in `session_kit_failover_replay_dropped_total`).
    pub fn max_pending(mut self, sessions: usize) -> Self {
        self.max_pending = sessions;
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key (`failover.call_timeout`,
    /// `failover.failure_threshold`, `failover.open_for`,
    /// `failover.max_open_for` or `failover.tombstone_ttl`) when it is zero,
    /// `max_open_for` is shorter than `open_for`, a back-off is longer than
    /// a day or the tombstone TTL longer than 400 days.
    pub fn build(self) -> Result<FailoverStore, ConfigError> {
        for (key, value) in [
            ("failover.call_timeout", self.call_timeout),
            ("failover.open_for", self.breaker.open_for),
            ("failover.tombstone_ttl", self.tombstone_ttl),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be longer than zero"));
            }
        }
        // Bounded so that no deadline computed from them can overflow
        // `Instant` or `SystemTime`; far past any useful value.
        for (key, value, max, what) in [
            (
                "failover.open_for",
                self.breaker.open_for,
                MAX_OPEN_FOR,
                "a day",
            ),
            (
                "failover.max_open_for",
                self.breaker.max_open_for,
                MAX_OPEN_FOR,
                "a day",
            ),
            (
                "failover.tombstone_ttl",
                self.tombstone_ttl,
                crate::SessionManagerBuilder::MAX_TIMEOUT,
                "400 days, the longest a session can live",
            ),
        ] {
            if value > max {
                return Err(ConfigError::new(key, format!("must be at most {what}")));
            }
        }
        if self.breaker.failure_threshold == 0 {
            return Err(ConfigError::new(
                "failover.failure_threshold",
                "must be at least 1",
            ));
        }
        if self.breaker.max_open_for < self.breaker.open_for {
            return Err(ConfigError::new(
                "failover.max_open_for",
                "must be at least failover.open_for",
            ));
        }
        Ok(FailoverStore {
            inner: Arc::new(Inner {
                mode: self.mode,
                primary: Side::new(Role::Primary, self.primary, self.breaker),
                secondary: Side::new(Role::Secondary, self.secondary, self.breaker),
                call_timeout: self.call_timeout,
                tombstone_ttl: self.tombstone_ttl,
                max_pending: self.max_pending,
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
            mode: FailoverMode::default(),
            call_timeout: FailoverStoreBuilder::DEFAULT_CALL_TIMEOUT,
            breaker: BreakerConfig {
                failure_threshold: FailoverStoreBuilder::DEFAULT_FAILURE_THRESHOLD,
                open_for: FailoverStoreBuilder::DEFAULT_OPEN_FOR,
                max_open_for: FailoverStoreBuilder::DEFAULT_MAX_OPEN_FOR,
            },
            tombstone_ttl: FailoverStoreBuilder::DEFAULT_TOMBSTONE_TTL,
            max_pending: FailoverStoreBuilder::DEFAULT_MAX_PENDING,
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
        }
    }
}

#[async_trait]
impl SessionStore for FailoverStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_load(id).await,
            FailoverMode::Standby => self.inner.standby_load(id).await,
        }
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_create(record).await,
            FailoverMode::Standby => self.inner.standby_create(record).await,
        }
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_commit(id, changes, expires_at).await,
            FailoverMode::Standby => self.inner.standby_commit(id, changes, expires_at).await,
        }
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_touch(id, expires_at).await,
            FailoverMode::Standby => self.inner.standby_touch(id, expires_at).await,
        }
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete_both(id).await
    }

    /// Decided as a commit is: in mirror mode by both stores at once (a
    /// commit that landed on either copy makes it
    /// [`Changed`](ConditionalDelete::Changed)), in standby mode by the
    /// primary, or by the secondary for a session the primary lacks or
    /// while it is down. Once a store deleted the record at that version,
    /// the other store's copy goes as by [`delete`](SessionStore::delete),
    /// tombstone and replay included.
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let answer = match self.inner.mode {
            FailoverMode::Mirror => self.inner.mirror_delete_if_version(id, version).await?,
            FailoverMode::Standby => self.inner.standby_delete_if_version(id, version).await?,
        };
        if answer == ConditionalDelete::Deleted {
            self.inner.delete_both(id).await?;
        }
        Ok(answer)
    }

    /// Ends the owner's sessions in both stores at once, in either mode: a
    /// session created on the secondary during an outage is as much the
    /// user's as one on the primary. Succeeds only when both stores did it;
    /// an outage of either (or a store that cannot index owners) is
    /// returned as the error, after the other store has ended its share, so
    /// the caller retries until it succeeds. Unlike a single delete it is
    /// not replayed later: the store that was down cannot be asked which
    /// ids it holds until it is back.
    ///
    /// Both stores must index owners; otherwise it answers
    /// [`ErrorKind::Unsupported`] before touching either.
    ///
    /// The count is the larger of the two stores' counts in mirror mode
    /// (both hold copies of the same sessions) and their sum in standby mode
    /// (a session lives in one of them); the sessions found are both
    /// stores' together. In mirror mode it may fall short
    /// when commits race the call: a repair that refuses to copy an ended
    /// session back deletes the copy itself, and that store then no longer
    /// counts it. Every such session is ended all the same.
    ///
    /// In mirror mode it first leaves an owner fence in both stores (a
    /// marker record under an id derived from the owner's name, kept for
    /// [`tombstone_ttl`](FailoverStoreBuilder::tombstone_ttl)): the repair
    /// that copies a session one store lacks from the other refuses a
    /// session of that owner created before the fence, so a commit racing
    /// the call cannot copy an ended session back. A session created within
    /// the clock skew between app servers after the fence may be taken for
    /// an ended one by such a repair. With one store down, the fence in the
    /// other is what keeps the down store's copies from coming back when it
    /// returns.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        let inner = &self.inner;
        if !self.indexes_owners() {
            return Err(StoreError::unsupported("delete_by_owner"));
        }
        let fence_outage = if inner.mode == FailoverMode::Mirror {
            // Mirror repairs a session one store lacks from the other, and a
            // commit that lands on one store before its end and on the other
            // after looks just like a lost copy. The fence tells the repair
            // otherwise; it is in place before either store ends anything.
            inner.fence_owner(owner).await?
        } else {
            None
        };
        let (primary, secondary) = tokio::join!(
            inner.call(
                &inner.primary,
                "delete_by_owner",
                inner.primary.store.delete_by_owner(owner)
            ),
            inner.call(
                &inner.secondary,
                "delete_by_owner",
                inner.secondary.store.delete_by_owner(owner)
            ),
        );
        match (primary?, secondary?, fence_outage) {
            (_, _, Some(err)) | (Reply::Down(err), _, _) | (_, Reply::Down(err), _) => Err(err),
            (Reply::Answer(primary), Reply::Answer(secondary), None) => {
                let ended = match inner.mode {
                    FailoverMode::Mirror => primary.ended.max(secondary.ended),
                    FailoverMode::Standby => primary.ended + secondary.ended,
                };
                let mut indexed = primary.indexed;
                indexed.extend(secondary.indexed);
                Ok(OwnerPass { ended, indexed })
            }
        }
    }

    fn indexes_owners(&self) -> bool {
        self.inner.primary.store.indexes_owners() && self.inner.secondary.store.indexes_owners()
    }

    /// Healthy while either store is: that is what keeps sessions served.
    async fn health(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let (primary, secondary) = tokio::join!(
            inner.call(&inner.primary, "health", inner.primary.store.health()),
            inner.call(&inner.secondary, "health", inner.secondary.store.health()),
        );
        match (primary, secondary) {
            (Ok(Reply::Answer(())), _) | (_, Ok(Reply::Answer(()))) => Ok(()),
            (Err(err) | Ok(Reply::Down(err)), _) => Err(err),
        }
    }
}

/// Which of the two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Primary,
    Secondary,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
        }
    }
}

/// What a store missed while it was down, to replay when it is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missed {
    /// A create, commit or touch: copy the newer side over.
    Write,
    /// A delete: delete it there too.
    Delete,
}

struct Side {
    role: Role,
    store: Arc<dyn SessionStore>,
    breaker: Breaker,
    missed: Mutex<HashMap<SessionId, Missed>>,
    /// `missed.len()`, readable on every call without taking the lock.
    pending_len: AtomicUsize,
    replaying: AtomicBool,
}

impl std::fmt::Debug for Side {
    // The replay set can hold thousands of ids: its size is what a reader
    // of a `Debug` dump needs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("role", &self.role)
            .field("store", &self.store)
            .field("breaker", &self.breaker.state())
            .field("pending", &self.pending_len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Side {
    fn new(role: Role, store: Arc<dyn SessionStore>, breaker: BreakerConfig) -> Self {
        Self {
            role,
            store,
            breaker: Breaker::new(role, breaker),
            missed: Mutex::new(HashMap::new()),
            pending_len: AtomicUsize::new(0),
            replaying: AtomicBool::new(false),
        }
    }
}

/// A store's answer, or the outage that kept it from answering.
#[derive(Debug)]
enum Reply<T> {
    Answer(T),
    /// Unavailable, timed out, or skipped by an open breaker. The error is
    /// what the caller gets if no other store answers.
    Down(StoreError),
}

/// The error for a call skipped by an open breaker.
#[derive(Debug, thiserror::Error)]
#[error("the {0} store's circuit breaker is open")]
struct BreakerOpen(&'static str);

#[derive(Debug)]
struct Inner {
    mode: FailoverMode,
    primary: Side,
    secondary: Side,
    call_timeout: Duration,
    tombstone_ttl: Duration,
    max_pending: usize,
}

/// Reopens a half-open breaker whose probe was dropped before it answered
/// (its request was cancelled), so the next probe comes after a back-off
/// instead of never.
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.breaker.on_outage(Instant::now(), true, false);
        }
    }
}

impl Inner {
    fn side(&self, role: Role) -> &Side {
        match role {
            Role::Primary => &self.primary,
            Role::Secondary => &self.secondary,
        }
    }

    fn other(&self, side: &Side) -> &Side {
        match side.role {
            Role::Primary => &self.secondary,
            Role::Secondary => &self.primary,
        }
    }

    /// Runs `call` on `side` through its breaker and under the call
    /// timeout. Outages come back as [`Reply::Down`]; any other error is
    /// the store answering, and is returned as `Err`.
    async fn call<T>(
        self: &Arc<Self>,
        side: &Side,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<Reply<T>, StoreError> {
        let probe = match side.breaker.admit(Instant::now()) {
            Admission::Skip => {
                return Ok(Reply::Down(
                    StoreError::new(ErrorKind::Unavailable, operation)
                        .with_source(BreakerOpen(side.role.name())),
                ))
            }
            Admission::Call => false,
            Admission::Probe => true,
        };
        let mut guard = ProbeGuard {
            breaker: &side.breaker,
            armed: probe,
        };
        let outcome = tokio::time::timeout(self.call_timeout, call).await;
        guard.armed = false;
        match outcome {
            Ok(Err(err)) if err.kind().is_transient() => {
                let _ = side.breaker.on_outage(Instant::now(), probe, false);
                Ok(Reply::Down(err))
            }
            Err(elapsed) => {
                let _ = side.breaker.on_outage(Instant::now(), probe, true);
                Ok(Reply::Down(
                    StoreError::new(ErrorKind::Timeout, operation).with_source(elapsed),
                ))
            }
            Ok(answer) => {
                let recovered = side.breaker.on_answer(probe) == Some(Transition::Recovered);
                // Misses left over from a replay that the other store's
                // outage cut short wait until both are up: syncing a
                // session needs both, and trying on every call meanwhile
                // would only churn the backlog.
                let backlog = side.pending_len.load(Ordering::Relaxed) > 0
                    && self.other(side).breaker.state() == BreakerState::Closed;
                if recovered || backlog {
                    self.start_replay(side.role);
                }
                answer.map(Reply::Answer)
            }
        }
    }

    /// Remembers that `side` missed a write or delete of `id`, for replay.
    /// True the first time for this id since its last replay: what decides
    /// whether the other store needs to be marked as ahead.
    fn missed(&self, side: &Side, id: &SessionId, what: Missed) -> bool {
        let mut missed = side.missed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = missed.get_mut(id) {
            // A delete outranks a write: replaying a write would copy the
            // session back.
            if what == Missed::Delete {
                *entry = Missed::Delete;
            }
            return false;
        }
        if missed.len() >= self.max_pending {
            drop(missed);
            metrics::counter!("session_kit_failover_replay_dropped_total", "store" => side.role.name())
                .increment(1);
            tracing::debug!(
                target: "session_kit::failover",
                store = side.role.name(),
                max_pending = self.max_pending,
                "the replay set is full; this missed write is repaired only when read"
            );
            return true;
        }
        missed.insert(*id, what);
        side.pending_len.store(missed.len(), Ordering::Relaxed);
        true
    }

    /// Replays what `role` missed, in a background task: at most one per
    /// store at a time, one session after another, each call bounded by
    /// the call timeout. Stops, keeping the rest, when the store goes down
    /// again.
    fn start_replay(self: &Arc<Self>, role: Role) {
        let side = self.side(role);
        if side.replaying.swap(true, Ordering::AcqRel) {
            return;
        }
        // Without a tokio runtime there is nowhere to run it; the missed
        // writes wait for reads to repair them.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            side.replaying.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            inner.replay(role).await;
            inner.side(role).replaying.store(false, Ordering::Release);
        });
    }

    async fn replay(self: &Arc<Self>, role: Role) {
        let side = self.side(role);
        let backlog: Vec<(SessionId, Missed)> = {
            let mut missed = side.missed.lock().unwrap_or_else(PoisonError::into_inner);
            side.pending_len.store(0, Ordering::Relaxed);
            missed.drain().collect()
        };
        if backlog.is_empty() {
            return;
        }
        tracing::info!(
            target: "session_kit::failover",
            store = role.name(),
            sessions = backlog.len(),
            "replaying writes the store missed while it was down"
        );
        let mut backlog = backlog.into_iter();
        while let Some((id, what)) = backlog.next() {
            let reached = match what {
                Missed::Delete => self.call(side, "delete", side.store.delete(&id)).await,
                Missed::Write => self.sync(&id, role).await,
            };
            match reached {
                Ok(Reply::Answer(())) => {}
                Ok(Reply::Down(_)) => {
                    // Down again: keep this one and the rest for next time.
                    for (id, what) in std::iter::once((id, what)).chain(backlog) {
                        let _ = self.missed(side, &id, what);
                    }
                    return;
                }
                Err(err) => tracing::warn!(
                    target: "session_kit::failover",
                    store = role.name(),
                    error.kind = ?err.kind(),
                    error.message = %err,
                    "a missed write could not be replayed; it is left to read repair"
                ),
            }
        }
    }

    /// Deletes on both stores (in either mode, so a session that lives on
    /// the standby secondary is deleted too). A store that is down gets the
    /// delete replayed; in mirror mode the store that took it also keeps a
    /// tombstone, so another app server's read cannot bring back the down
    /// store's old copy before the replay does.
    async fn delete_both(self: &Arc<Self>, id: &SessionId) -> Result<(), StoreError> {
        let (primary, secondary) = tokio::join!(
            self.call(&self.primary, "delete", self.primary.store.delete(id)),
            self.call(&self.secondary, "delete", self.secondary.store.delete(id)),
        );
        match (primary?, secondary?) {
            (Reply::Answer(()), Reply::Answer(())) => Ok(()),
            (Reply::Down(err), Reply::Down(_)) => Err(err),
            (Reply::Answer(()), Reply::Down(_)) => {
                let _ = self.missed(&self.secondary, id, Missed::Delete);
                self.after_one_sided_delete(&self.primary, id).await
            }
            (Reply::Down(_), Reply::Answer(())) => {
                let _ = self.missed(&self.primary, id, Missed::Delete);
                self.after_one_sided_delete(&self.secondary, id).await
            }
        }
    }

    async fn mirror_delete_if_version(
        self: &Arc<Self>,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        use ConditionalDelete::{Changed, Deleted, Missing};
        let (primary, secondary) = tokio::join!(
            self.call(
                &self.primary,
                "delete_if_version",
                self.primary.store.delete_if_version(id, version)
            ),
            self.call(
                &self.secondary,
                "delete_if_version",
                self.secondary.store.delete_if_version(id, version)
            ),
        );
        Ok(match (primary?, secondary?) {
            (Reply::Down(err), Reply::Down(_)) => return Err(err),
            // A commit landed on a copy after the caller read it: the
            // caller re-reads, and a load repairs a copy deleted here.
            (Reply::Answer(Changed), _) | (_, Reply::Answer(Changed)) => Changed,
            (Reply::Answer(Missing), Reply::Answer(Missing)) => Missing,
            (Reply::Answer(_), Reply::Answer(_)) => Deleted,
            // As a load with one store down: the other store's answer.
            (Reply::Answer(answer), Reply::Down(_)) | (Reply::Down(_), Reply::Answer(answer)) => {
                answer
            }
        })
    }

    async fn standby_delete_if_version(
        self: &Arc<Self>,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let on_secondary = || self.secondary.store.delete_if_version(id, version);
        match self
            .call(
                &self.primary,
                "delete_if_version",
                self.primary.store.delete_if_version(id, version),
            )
            .await?
        {
            // A session created on the secondary during an outage.
            Reply::Answer(ConditionalDelete::Missing) => {
                match self
                    .call(&self.secondary, "delete_if_version", on_secondary())
                    .await?
                {
                    Reply::Answer(answer) => Ok(answer),
                    Reply::Down(err) => Err(err),
                }
            }
            Reply::Answer(answer) => Ok(answer),
            Reply::Down(primary_err) => {
                match self
                    .call(&self.secondary, "delete_if_version", on_secondary())
                    .await?
                {
                    Reply::Answer(
                        answer @ (ConditionalDelete::Deleted | ConditionalDelete::Changed),
                    ) => Ok(answer),
                    // The session lives on the primary, which is down: fail
                    // rather than report it gone, as a commit does.
                    Reply::Answer(ConditionalDelete::Missing) | Reply::Down(_) => Err(primary_err),
                }
            }
        }
    }

    async fn after_one_sided_delete(
        self: &Arc<Self>,
        took_it: &Side,
        id: &SessionId,
    ) -> Result<(), StoreError> {
        count_fallback("delete");
        match self.mode {
            FailoverMode::Mirror => self.leave_tombstone(took_it, id).await,
            // Standby reads the primary first and the secondary only on a
            // miss, so a tombstone would never be read; the replay is what
            // deletes the down store's copy.
            FailoverMode::Standby => Ok(()),
        }
    }
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
    metrics::counter!("session_kit_failover_fallbacks_total", "op" => operation).increment(1);
}

/// The domain of the ids that tombstones are stored under.
const TOMBSTONE_DOMAIN: &str = "session-kit/failover-tombstone/v1";
/// The domain of the ids of "ahead" marks: the store holding one took
/// commits to the session that the other store missed.
const AHEAD_DOMAIN: &str = "session-kit/failover-ahead/v1";
/// The domain of the ids of owner fences: "every session of this owner
/// created before `ended_at` was ended", so that no repair copies one back.
const OWNER_FENCE_DOMAIN: &str = "session-kit/failover-owner-fence/v1";
