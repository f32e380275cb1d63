//! The circuit breaker in front of each store of a
//! [`FailoverStore`](super::FailoverStore).
//!
//! A pure state machine over explicit instants, so its rules are tested
//! without sleeping; the store passes the time of tokio's clock, so a test
//! on a paused runtime drives the back-off deterministically.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use super::Role;

/// Where a store's circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to the store.
    Closed,
    /// The store is treated as down: calls skip it until `retry_at`, when
    /// one probe call is let through.
    Open {
        /// When the breaker opened.
        opened_at: Instant,
        /// When the next probe may go.
        retry_at: Instant,
    },
    /// One probe call is in flight; every other call skips the store until
    /// it answers.
    HalfOpen,
}

/// When the breaker trips and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerConfig {
    /// Consecutive `Unavailable`/`Timeout` errors that open it.
    pub(crate) failure_threshold: u32,
    /// How long it stays open after tripping, before the first probe.
    pub(crate) open_for: Duration,
    /// The longest it stays open: each failed probe doubles the wait up to
    /// this.
    pub(crate) max_open_for: Duration,
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Call the store.
    Call,
    /// Call the store as the one probe of a half-open breaker.
    Probe,
    /// Do not call the store.
    Skip,
}

/// The breaker changed state as a result of an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Closed → open, or a failed probe: half-open → open.
    Opened,
    /// A probe answered: half-open → closed. The store is back.
    Recovered,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    /// How long the next opening lasts.
    backoff: Duration,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    role: Role,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub(crate) fn new(role: Role, config: BreakerConfig) -> Self {
        Self {
            role,
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                backoff: config.open_for,
            }),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether a call may go to the store at `now`. Exactly one caller gets
    /// [`Admission::Probe`] per opening; it must report its outcome (or drop
    /// its permit, which counts as a failed probe).
    pub(crate) fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => Admission::Call,
            BreakerState::HalfOpen => Admission::Skip,
            BreakerState::Open { retry_at, .. } if now < retry_at => Admission::Skip,
            BreakerState::Open { .. } => {
                inner.state = BreakerState::HalfOpen;
                drop(inner);
                self.report(
                    "half_open",
                    "the back-off has passed; one probe goes to the store",
                );
                Admission::Probe
            }
        }
    }

    /// The store answered (with data or with a non-outage error such as
    /// `Corrupt`): it is up.
    pub(crate) fn on_answer(&self, probe: bool) -> Option<Transition> {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        if !(probe && inner.state == BreakerState::HalfOpen) {
            return None;
        }
        inner.state = BreakerState::Closed;
        inner.backoff = self.config.open_for;
        drop(inner);
        self.report("closed", "the probe answered; the store is back");
        Some(Transition::Recovered)
    }

    /// The store answered a recovery probe sent outside the request path
    /// (the failover store's watch): it is back, whatever the back-off said.
    pub(crate) fn recover(&self) -> Option<Transition> {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        if inner.state == BreakerState::Closed {
            return None;
        }
        inner.state = BreakerState::Closed;
        inner.backoff = self.config.open_for;
        drop(inner);
        self.report("closed", "the recovery probe answered; the store is back");
        Some(Transition::Recovered)
    }

    /// The store failed with an outage (`Unavailable`/`Timeout`) at `now`.
    /// `trip_now` opens the breaker whatever the count: a call that ran into
    /// the failover call timeout has already cost a request that long.
    pub(crate) fn on_outage(
        &self,
        now: Instant,
        probe: bool,
        trip_now: bool,
    ) -> Option<Transition> {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let reason = match inner.state {
            BreakerState::HalfOpen if probe => {
                // A failed probe: wait longer before the next one, so a dead
                // store costs one probe per back-off, not one per request.
                inner.backoff = (inner.backoff * 2).min(self.config.max_open_for);
                "the probe failed"
            }
            BreakerState::Closed if trip_now => "a call ran into the failover call timeout",
            BreakerState::Closed if inner.consecutive_failures >= self.config.failure_threshold => {
                "consecutive outage errors reached the threshold"
            }
            // Still closed under the threshold, or already open: calls that
            // were in flight when it opened change nothing.
            _ => return None,
        };
        inner.state = BreakerState::Open {
            opened_at: now,
            retry_at: now + inner.backoff,
        };
        let failures = inner.consecutive_failures;
        let backoff = inner.backoff;
        drop(inner);
        tracing::warn!(
            target: "session_kit::failover",
            store = self.role.name(),
            consecutive_failures = failures,
            open_for_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            "circuit breaker opened: {reason}"
        );
        count_transition(self.role, "open");
        Some(Transition::Opened)
    }

    fn report(&self, to: &'static str, message: &'static str) {
        tracing::info!(
            target: "session_kit::failover",
            store = self.role.name(),
            "circuit breaker {to}: {message}"
        );
        count_transition(self.role, to);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section only assigns fields, so a panic cannot
        // leave the state half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn count_transition(role: Role, to: &'static str) {
    metrics::counter!(
        crate::telemetry::BREAKER_TRANSITIONS,
        "role" => role.name(),
        "to" => to
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_millis(100);

    fn breaker() -> Breaker {
        Breaker::new(
            Role::Primary,
            BreakerConfig {
                failure_threshold: 3,
                open_for: OPEN_FOR,
                max_open_for: Duration::from_millis(350),
            },
        )
    }

    fn assert_open_until(breaker: &Breaker, retry_at: Instant) {
        match breaker.state() {
            BreakerState::Open { retry_at: at, .. } => assert_eq!(at, retry_at),
            other => panic!("expected open, got {other:?}"),
        }
    }

    #[test]
    fn a_recovery_probe_closes_the_breaker_whatever_the_back_off() {
        let breaker = breaker();
        let now = Instant::now();
        assert_eq!(
            breaker.on_outage(now, false, true),
            Some(Transition::Opened)
        );
        assert!(matches!(breaker.state(), BreakerState::Open { .. }));
        assert_eq!(breaker.recover(), Some(Transition::Recovered));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit(now), Admission::Call);
        assert_eq!(
            breaker.recover(),
            None,
            "closing a closed breaker is no transition"
        );
    }

    #[test]
    fn trips_after_the_threshold_of_consecutive_outages() {
        let breaker = breaker();
        let now = Instant::now();
        assert_eq!(breaker.on_outage(now, false, false), None);
        assert_eq!(breaker.on_outage(now, false, false), None);
        assert_eq!(breaker.admit(now), Admission::Call);
        assert_eq!(
            breaker.on_outage(now, false, false),
            Some(Transition::Opened)
        );
        assert_open_until(&breaker, now + OPEN_FOR);
        assert_eq!(breaker.admit(now), Admission::Skip);
    }

    #[test]
    fn an_answer_resets_the_count() {
        let breaker = breaker();
        let now = Instant::now();
        let _ = breaker.on_outage(now, false, false);
        let _ = breaker.on_outage(now, false, false);
        assert_eq!(breaker.on_answer(false), None);
        assert_eq!(breaker.on_outage(now, false, false), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn one_long_timeout_trips_at_once() {
        let breaker = breaker();
        let now = Instant::now();
        assert_eq!(
            breaker.on_outage(now, false, true),
            Some(Transition::Opened)
        );
        assert_open_until(&breaker, now + OPEN_FOR);
    }

    #[test]
    fn after_the_back_off_exactly_one_probe_goes() {
        let breaker = breaker();
        let now = Instant::now();
        let _ = breaker.on_outage(now, false, true);
        let later = now + OPEN_FOR;
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(breaker.admit(later), Admission::Skip);
        assert_eq!(breaker.on_answer(true), Some(Transition::Recovered));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit(later), Admission::Call);
    }

    #[test]
    fn failed_probes_double_the_back_off_up_to_the_cap() {
        let breaker = breaker();
        let mut now = Instant::now();
        let _ = breaker.on_outage(now, false, true);
        for expected in [200, 350, 350] {
            now = match breaker.state() {
                BreakerState::Open { retry_at, .. } => retry_at,
                other => panic!("expected open, got {other:?}"),
            };
            assert_eq!(breaker.admit(now), Admission::Probe);
            assert_eq!(
                breaker.on_outage(now, true, false),
                Some(Transition::Opened)
            );
            assert_open_until(&breaker, now + Duration::from_millis(expected));
        }
        // Recovery starts the next outage from the first back-off again.
        now += Duration::from_millis(350);
        assert_eq!(breaker.admit(now), Admission::Probe);
        let _ = breaker.on_answer(true);
        let _ = breaker.on_outage(now, false, true);
        assert_open_until(&breaker, now + OPEN_FOR);
    }

    #[test]
    fn calls_in_flight_when_it_opened_change_nothing() {
        let breaker = breaker();
        let now = Instant::now();
        let _ = breaker.on_outage(now, false, true);
        let later = now + Duration::from_millis(10);
        assert_eq!(breaker.on_outage(later, false, false), None);
        assert_eq!(breaker.on_answer(false), None);
        assert_open_until(&breaker, now + OPEN_FOR);
    }
}
