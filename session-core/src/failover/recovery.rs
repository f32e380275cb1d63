//! How a store that was down catches up: the background probe that finds
//! it back, the writes it missed (replayed to it), and the check that it
//! came back with its data.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant, SystemTime},
};

use super::{now, BreakerState, Inner, Missed, Reply, Role, Side, Transition};
use crate::{telemetry, Created, Record, SessionId};

impl Inner {
    /// `role`'s breaker just closed: the store answers again. Its missed
    /// writes are replayed, and it is checked for having come back without
    /// its data.
    pub(super) fn on_recovered(self: &Arc<Self>, role: Role) {
        self.start_replay(role);
        self.start_epoch_check(role);
    }

    /// Leaves this process's epoch mark on `role`'s store the first time it
    /// answers, and again whenever it is due: the mark
    /// [`start_epoch_check`](Self::start_epoch_check) looks for after an
    /// outage. In the background, off the request path.
    pub(super) fn ensure_epoch_mark(self: &Arc<Self>, role: Role) {
        if !self.side(role).epoch.fresh() {
            self.run_epoch_work(role);
        }
    }

    /// Checks, in the background, whether `role`'s store still holds this
    /// process's epoch mark. A store that lost it restarted without its
    /// data (or evicted it): for the tombstone lifetime, the longest any
    /// session it lost could still be live, its "no session" is not taken
    /// as an answer while the other store is down
    /// ([`may_lack`](Self::may_lack)). The mark is then written again.
    ///
    /// A check asked for while a write of the mark is under way runs when
    /// that write ends, never not at all: a store can recover from an
    /// outage while this process's first mark is still on its way, and
    /// dropping the check then would trust a store that came back empty.
    fn start_epoch_check(self: &Arc<Self>, role: Role) {
        self.side(role)
            .epoch
            .check_pending
            .store(true, Ordering::Release);
        self.run_epoch_work(role);
    }

    /// Runs `role`'s epoch work on one background task at a time: any
    /// check asked for, then the mark's write if it is due, then any check
    /// asked for meanwhile. A caller that finds a task running leaves its
    /// work to it; the task looks again after it stands down, so work asked
    /// for in between is not lost either.
    fn run_epoch_work(self: &Arc<Self>, role: Role) {
        let epoch = &self.side(role).epoch;
        if epoch.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            epoch.busy.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            let side = inner.side(role);
            loop {
                inner.check_epoch_if_asked(side).await;
                if !side.epoch.fresh() && inner.write_epoch_mark(side).await {
                    side.epoch.written(inner.tombstone_ttl);
                }
                inner.check_epoch_if_asked(side).await;
                side.epoch.busy.store(false, Ordering::Release);
                let asked = side.epoch.check_pending.load(Ordering::Acquire);
                if !asked || side.epoch.busy.swap(true, Ordering::AcqRel) {
                    break;
                }
            }
        });
    }

    /// The check [`start_epoch_check`](Self::start_epoch_check) asked for,
    /// if it did. It looks for the mark once one was sent, even if that
    /// write failed: a write that timed out or lost its reply may have
    /// landed, and a store that then restarts empty must not go unnoticed
    /// for want of an acknowledgement. Before any mark was sent there is
    /// nothing to look for, and the request is dropped.
    async fn check_epoch_if_asked(self: &Arc<Self>, side: &Side) {
        if !side.epoch.check_pending.swap(false, Ordering::AcqRel)
            || !side.epoch.mark_sent.load(Ordering::Acquire)
        {
            return;
        }
        let stamp = side.store.stamp(&self.epoch_mark);
        if let Ok(Ok(None)) = tokio::time::timeout(self.call_timeout, stamp).await {
            self.mark_lost(side);
            if self.write_epoch_mark(side).await {
                side.epoch.written(self.tombstone_ttl);
            }
        }
    }

    /// `side`'s store lost this process's epoch mark, so it lost its data
    /// (restarted without it, or evicted it): for the tombstone lifetime,
    /// the longest any session it lost could still be live, its "no
    /// session" is not taken as an answer while the other store is down.
    fn mark_lost(&self, side: &Side) {
        let until = now() + self.tombstone_ttl;
        let was_lost = side
            .epoch
            .lost_data_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(until)
            .is_some_and(|before| now() < before);
        // One loss can be seen twice (the check, then the mark's rewrite).
        if !was_lost {
            metrics::counter!(telemetry::FAILOVER_STORE_LOST_DATA, "role" => side.role.name())
                .increment(1);
            tracing::warn!(
                target: "session_kit::failover",
                store = side.role.name(),
                "the store lost its data; its \"no session\" answers are not trusted while the other store is down"
            );
        }
    }

    /// Writes the epoch mark to `side`, or moves its expiry on when it is
    /// there already. A mark this process placed that should still be live
    /// but is not there to move on means the store lost it: a store that
    /// restarts empty between two calls opens no breaker and so gets no
    /// check on recovery, and this catches it at the next refresh at the
    /// latest.
    async fn write_epoch_mark(self: &Arc<Self>, side: &Side) -> bool {
        let now = SystemTime::now();
        let expires_at = now + self.tombstone_ttl;
        let mark = Record::new(self.epoch_mark, Default::default(), now, expires_at);
        side.epoch.mark_sent.store(true, Ordering::Release);
        let bounded = |call| tokio::time::timeout(self.call_timeout, call);
        // Live for the whole call, so a mark that simply expired while the
        // call was on its way is not taken for a loss.
        let placed_and_live = side
            .epoch
            .live_at(now + self.call_timeout, self.tombstone_ttl);
        match bounded(side.store.create(&mark)).await {
            Ok(Ok(Created::Created)) => {
                if placed_and_live {
                    self.mark_lost(side);
                }
                true
            }
            Ok(Ok(Created::IdTaken)) => matches!(
                tokio::time::timeout(
                    self.call_timeout,
                    side.store.touch(&self.epoch_mark, expires_at)
                )
                .await,
                Ok(Ok(true))
            ),
            Ok(Err(_)) | Err(_) => false,
        }
    }

    /// Watches `role`'s open breaker from a background task: every
    /// [`with_probe_interval`](super::FailoverStoreBuilder::with_probe_interval) it asks the
    /// store for the stamp of an id no session has, and the first answer
    /// closes the breaker and starts the replay. At most one watch per
    /// store; it ends when the breaker closes (by this probe or a request's)
    /// or the failover store is dropped.
    ///
    /// Without it, recovery waits for a request to draw the breaker's probe,
    /// and the back-off doubles up to `max_open_for`: a store that returned
    /// just after a failed probe stayed out, unrepaired, for that long.
    pub(super) fn start_watch(self: &Arc<Self>, role: Role) {
        let side = self.side(role);
        if side.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            side.watching.store(false, Ordering::Release);
            return;
        };
        // A weak handle: a dropped failover store stops its watches.
        let weak = Arc::downgrade(self);
        let interval = self.probe_interval;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let side = inner.side(role);
                if side.breaker.state() == BreakerState::Closed {
                    side.watching.store(false, Ordering::Release);
                    // A request's probe closed it; its replay is started.
                    return;
                }
                let id = probe_id();
                let probe = side.store.stamp(&id);
                if let Ok(Ok(_)) = tokio::time::timeout(inner.call_timeout, probe).await {
                    side.watching.store(false, Ordering::Release);
                    if side.breaker.recover() == Some(Transition::Recovered) {
                        inner.on_recovered(role);
                    }
                    return;
                }
            }
        });
    }

    /// Remembers that `side` missed a write or delete of `id`, for replay.
    /// True the first time for this id since its last replay: what decides
    /// whether the other store needs to be marked as ahead.
    pub(super) fn missed(&self, side: &Side, id: &SessionId, what: Missed) -> bool {
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
            metrics::counter!(telemetry::FAILOVER_REPLAY_DROPPED, "role" => side.role.name())
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
        side.set_pending(missed.len());
        true
    }

    /// Replays what `role` missed, in a background task: at most one per
    /// store at a time, one session after another, each call bounded by
    /// the call timeout. Stops, keeping the rest, when the store goes down
    /// again.
    pub(super) fn start_replay(self: &Arc<Self>, role: Role) {
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

    pub(super) async fn replay(self: &Arc<Self>, role: Role) {
        let side = self.side(role);
        let backlog: Vec<(SessionId, Missed)> = {
            let mut missed = side.missed.lock().unwrap_or_else(PoisonError::into_inner);
            side.set_pending(0);
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
}

/// What a side knows about whether its store kept its data.
#[derive(Debug, Default)]
pub(super) struct Epoch {
    /// When the epoch mark is due to be written again, in milliseconds since
    /// the Unix epoch; 0 until it was first written. An atomic, because
    /// every answered call reads it.
    refresh_due_ms: AtomicU64,
    /// A background task is doing this epoch's work (see
    /// `Inner::run_epoch_work`).
    busy: AtomicBool,
    /// A check for a lost mark was asked for and has not run yet.
    check_pending: AtomicBool,
    /// A write of the mark was sent, whatever its answer: from then on the
    /// store may hold it.
    mark_sent: AtomicBool,
    /// Until when the store counts as having lost data.
    lost_data_until: Mutex<Option<Instant>>,
}

impl Epoch {
    /// Records that the mark, which lives for `lifetime`, was just written.
    /// It is due again after half its lifetime, so that a process that sees
    /// no outage for longer than the mark lives does not take its expiry for
    /// lost data.
    fn written(&self, lifetime: Duration) {
        let due = super::millis(SystemTime::now() + lifetime / 2);
        self.refresh_due_ms.store(due.max(1), Ordering::Release);
    }

    /// Whether a mark this process placed, which lives for `lifetime`,
    /// should still be on the store at `time`: it was written half its
    /// lifetime before it fell due.
    fn live_at(&self, time: SystemTime, lifetime: Duration) -> bool {
        let due = self.refresh_due_ms.load(Ordering::Acquire);
        let after_due = u64::try_from((lifetime - lifetime / 2).as_millis()).unwrap_or(u64::MAX);
        due > 0 && super::millis(time) < due.saturating_add(after_due)
    }

    fn fresh(&self) -> bool {
        super::millis(SystemTime::now()) < self.refresh_due_ms.load(Ordering::Acquire)
    }

    /// Whether the store came back without its data recently enough that a
    /// session it lost may still be live elsewhere.
    pub(super) fn lost_data(&self) -> bool {
        self.lost_data_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| now() < until)
    }
}

/// The id the background recovery probe asks for: derived under a domain
/// of its own, so no session, tombstone or mark ever has it.
fn probe_id() -> SessionId {
    SessionId::derive_from(PROBE_DOMAIN, b"probe")
}

/// The domain of the recovery probe's id.
const PROBE_DOMAIN: &str = "session-kit/failover-probe/v1";
