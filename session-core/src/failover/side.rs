//! The plumbing under both modes: the state the two stores share
//! ([`Inner`]), each store's [`Side`], and [`Inner::call`], which runs every
//! store call through that store's breaker and the call timeout and
//! answers a [`Reply`].

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use super::{
    breaker::{Admission, Breaker, BreakerConfig, Transition},
    now, recovery, BreakerState, FailoverMode,
};
use crate::{telemetry, ErrorKind, SessionId, SessionStore, StoreError};

/// Which of the two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Primary,
    Secondary,
}

impl Role {
    /// The other store.
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Primary => Self::Secondary,
            Self::Secondary => Self::Primary,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
        }
    }
}

/// What a store missed while it was down, to replay when it is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missed {
    /// A create, commit or touch: copy the newer side over.
    Write,
    /// A delete: delete it there too.
    Delete,
}

pub(super) struct Side {
    pub(super) role: Role,
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) breaker: Breaker,
    pub(super) missed: Mutex<HashMap<SessionId, Missed>>,
    /// `missed.len()`, readable on every call without taking the lock.
    pub(super) pending_len: AtomicUsize,
    pub(super) replaying: AtomicBool,
    /// A background probe is watching this store's open breaker.
    pub(super) watching: AtomicBool,
    /// Whether the store kept its data through its last outage.
    pub(super) epoch: recovery::Epoch,
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
    /// Sets the backlog, readable without the lock, and its gauge.
    pub(super) fn set_pending(&self, sessions: usize) {
        self.pending_len.store(sessions, Ordering::Relaxed);
        // Exact below 2^53, far past any `max_pending`.
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(telemetry::FAILOVER_REPLAY_BACKLOG, "role" => self.role.name())
            .set(sessions as f64);
    }

    pub(super) fn new(role: Role, store: Arc<dyn SessionStore>, breaker: BreakerConfig) -> Self {
        Self {
            role,
            store,
            breaker: Breaker::new(role, breaker),
            missed: Mutex::new(HashMap::new()),
            pending_len: AtomicUsize::new(0),
            replaying: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            epoch: recovery::Epoch::default(),
        }
    }
}

/// A store's answer, or the outage that kept it from answering.
#[derive(Debug)]
pub(super) enum Reply<T> {
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
pub(super) struct Inner {
    pub(super) mode: FailoverMode,
    pub(super) primary: Side,
    pub(super) secondary: Side,
    pub(super) call_timeout: Duration,
    pub(super) tombstone_ttl: Duration,
    pub(super) max_pending: usize,
    pub(super) probe_interval: Duration,
    /// Sessions with a background repair under way (see
    /// `Inner::start_repair`).
    pub(super) repairing: Mutex<std::collections::HashSet<SessionId>>,
    /// This process's epoch mark: an id only this failover store writes,
    /// to each store once, so that after an outage it can tell a store
    /// that kept its data from one that restarted empty.
    pub(super) epoch_mark: SessionId,
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
            let _ = self.breaker.on_outage(now(), true, false);
        }
    }
}

impl Inner {
    pub(super) fn side(&self, role: Role) -> &Side {
        match role {
            Role::Primary => &self.primary,
            Role::Secondary => &self.secondary,
        }
    }

    pub(super) fn other(&self, side: &Side) -> &Side {
        match side.role {
            Role::Primary => &self.secondary,
            Role::Secondary => &self.primary,
        }
    }

    /// Runs `call` on `side` through its breaker and under the call
    /// timeout. Outages come back as [`Reply::Down`]; any other error is
    /// the store answering, and is returned as `Err`.
    pub(super) async fn call<T>(
        self: &Arc<Self>,
        side: &Side,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<Reply<T>, StoreError> {
        let probe = match side.breaker.admit(now()) {
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
                if side.breaker.on_outage(now(), probe, false) == Some(Transition::Opened) {
                    self.start_watch(side.role);
                }
                Ok(Reply::Down(err))
            }
            Err(elapsed) => {
                if side.breaker.on_outage(now(), probe, true) == Some(Transition::Opened) {
                    self.start_watch(side.role);
                }
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
                if recovered {
                    self.on_recovered(side.role);
                } else if backlog {
                    self.start_replay(side.role);
                }
                self.ensure_epoch_mark(side.role);
                answer.map(Reply::Answer)
            }
        }
    }
}
