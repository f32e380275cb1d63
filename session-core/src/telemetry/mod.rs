//! What session-kit tells an operator: a `tracing` span around every store
//! call and every request, and the metrics below.
//!
//! # Spans
//! - `store_call` (target `session_kit::store`, level `debug`), around
//!   every call the [`SessionManager`](crate::SessionManager) makes to its
//!   store and every call a [`FailoverStore`](crate::failover::FailoverStore)
//!   or [`TieredStore`](crate::memory::TieredStore) makes to the stores
//!   inside it (so a failover load is one span with one child per store).
//!   Fields: `store.kind` ([`SessionStore::kind`](crate::store::SessionStore::kind)),
//!   `store.operation` (the method), `outcome` (`ok`, the
//!   [`ErrorKind::name`](crate::ErrorKind::name), or `cancelled` when the
//!   call was dropped before it answered) and `duration_us`.
//! - `session_request` (target `session_kit::request`, level `debug`),
//!   around each request in the tower and actix adapters, with the
//!   `framework` and the `outcome` of the session's write (`ok` or
//!   `unavailable`).
//!
//! No span or event carries a session id in full (an id's `Debug` shows a
//! prefix only), a cookie value, a session value or a key.
//!
//! What it costs: with no subscriber interested in `debug` spans, a span is
//! one cached check of the callsite; every store call reads the clock twice
//! and records one histogram value through a metric key built when the
//! manager or store was built, so no label is allocated per call (only a
//! failed call builds its error counter's labels). The lifecycle and
//! cookie counters use keys built once, in statics. A failover or tiered
//! store's call to a store inside it goes through one more boxed future
//! (the wrapper that observes it).
//!
//! # Metrics
#![doc = include_str!("metrics.md")]

mod observed;

use std::{future::Future, time::Instant};

use metrics::{Key, Label, Level, Metadata};
use tracing::{field::Empty, Instrument};

pub(crate) use self::observed::Observed;
use crate::StoreError;

/// `session_kit_store_call_duration_seconds`: see the table above.
pub const STORE_CALL_DURATION: &str = "session_kit_store_call_duration_seconds";
/// `session_kit_store_errors_total`.
pub const STORE_ERRORS: &str = "session_kit_store_errors_total";
/// `session_kit_sessions_created_total`.
pub const SESSIONS_CREATED: &str = "session_kit_sessions_created_total";
/// `session_kit_sessions_ended_total`.
pub const SESSIONS_ENDED: &str = "session_kit_sessions_ended_total";
/// `session_kit_sessions_cycled_total`.
pub const SESSIONS_CYCLED: &str = "session_kit_sessions_cycled_total";
/// `session_kit_cookies_refused_total`.
pub const COOKIES_REFUSED: &str = "session_kit_cookies_refused_total";
/// `session_kit_breaker_transitions_total`.
pub const BREAKER_TRANSITIONS: &str = "session_kit_breaker_transitions_total";
/// `session_kit_failover_replay_backlog`.
pub const FAILOVER_REPLAY_BACKLOG: &str = "session_kit_failover_replay_backlog";
/// `session_kit_failover_replay_dropped_total`.
pub const FAILOVER_REPLAY_DROPPED: &str = "session_kit_failover_replay_dropped_total";
/// `session_kit_failover_fallbacks_total`.
pub const FAILOVER_FALLBACKS: &str = "session_kit_failover_fallbacks_total";
/// `session_kit_failover_repairs_total`.
pub const FAILOVER_REPAIRS: &str = "session_kit_failover_repairs_total";
/// `session_kit_failover_store_lost_data_total`.
pub const FAILOVER_STORE_LOST_DATA: &str = "session_kit_failover_store_lost_data_total";
/// `session_kit_near_cache_loads_total`.
pub const NEAR_CACHE_LOADS: &str = "session_kit_near_cache_loads_total";

/// The metadata every session-kit metric is registered with.
static METADATA: Metadata<'static> =
    Metadata::new("session_kit::store", Level::INFO, Some(module_path!()));

/// A store method, as the `operation` label and span field name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Load,
    Stamp,
    Create,
    Commit,
    Touch,
    Delete,
    DeleteIfVersion,
    DeleteByOwner,
    SessionsOf,
    Health,
}

impl Operation {
    const ALL: [Self; 10] = [
        Self::Load,
        Self::Stamp,
        Self::Create,
        Self::Commit,
        Self::Touch,
        Self::Delete,
        Self::DeleteIfVersion,
        Self::DeleteByOwner,
        Self::SessionsOf,
        Self::Health,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::Stamp => "stamp",
            Self::Create => "create",
            Self::Commit => "commit",
            Self::Touch => "touch",
            Self::Delete => "delete",
            Self::DeleteIfVersion => "delete_if_version",
            Self::DeleteByOwner => "delete_by_owner",
            Self::SessionsOf => "sessions_of",
            Self::Health => "health",
        }
    }
}

/// The instrumentation of one store: its kind, and the latency histogram's
/// key for each operation, built once so that a call allocates nothing for
/// its labels.
pub(crate) struct StoreCalls {
    kind: &'static str,
    /// Indexed by `Operation as usize`, in the order of [`Operation::ALL`].
    durations: [Key; Operation::ALL.len()],
}

impl std::fmt::Debug for StoreCalls {
    // The keys only repeat the kind once per operation.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCalls")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl StoreCalls {
    pub(crate) fn new(kind: &'static str) -> Self {
        Self {
            kind,
            durations: Operation::ALL.map(|operation| {
                Key::from_parts(
                    STORE_CALL_DURATION,
                    vec![
                        Label::from_static_parts("store", kind),
                        Label::from_static_parts("operation", operation.name()),
                    ],
                )
                // Shared: a recorder that keeps the key clones an `Arc`.
                .to_retained()
            }),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// Runs `call` inside a `store_call` span and records its outcome and
    /// duration, also when it is dropped before it answers.
    pub(crate) async fn run<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let span = tracing::debug_span!(
            target: "session_kit::store",
            "store_call",
            store.kind = self.kind,
            store.operation = operation.name(),
            outcome = Empty,
            duration_us = Empty,
        );
        let mut in_flight = InFlight {
            calls: self,
            operation,
            started: Instant::now(),
            span: span.clone(),
            outcome: None,
        };
        let result = call.instrument(span).await;
        in_flight.outcome = Some(match &result {
            Ok(_) => Ok(()),
            Err(err) => Err(err.kind().name()),
        });
        result
    }
}

/// Records a store call when it ends, however it ends.
struct InFlight<'a> {
    calls: &'a StoreCalls,
    operation: Operation,
    started: Instant,
    span: tracing::Span,
    /// `None` until the call answers: dropped before, it was cancelled.
    outcome: Option<Result<(), &'static str>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        let outcome = match self.outcome {
            Some(Ok(())) => "ok",
            Some(Err(kind)) => kind,
            None => "cancelled",
        };
        self.span.record("outcome", outcome);
        self.span.record(
            "duration_us",
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
        // A cancelled call's time says how long its caller waited, not how
        // long the store took: only calls that answered feed the histogram.
        if self.outcome.is_some() {
            let key = &self.calls.durations[self.operation as usize];
            metrics::with_recorder(|recorder| {
                recorder
                    .register_histogram(key, &METADATA)
                    .record(elapsed.as_secs_f64());
            });
        }
        if outcome != "ok" {
            metrics::counter!(
                STORE_ERRORS,
                "store" => self.calls.kind,
                "operation" => self.operation.name(),
                "error" => outcome
            )
            .increment(1);
        }
    }
}

/// Counts one session created.
pub(crate) fn session_created() {
    metrics::counter!(SESSIONS_CREATED).increment(1);
}

/// Counts one session moved to a new id.
pub(crate) fn session_cycled() {
    metrics::counter!(SESSIONS_CYCLED).increment(1);
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Logout,
    EndAll,
    Cap,
    Idle,
    Absolute,
}

/// Counts `sessions` sessions ended for `reason`. One literal label per
/// arm: the macro then builds each key once, in a static.
pub(crate) fn sessions_ended(reason: Ended, sessions: u64) {
    let counter = match reason {
        Ended::Logout => metrics::counter!(SESSIONS_ENDED, "reason" => "logout"),
        Ended::EndAll => metrics::counter!(SESSIONS_ENDED, "reason" => "end_all"),
        Ended::Cap => metrics::counter!(SESSIONS_ENDED, "reason" => "cap"),
        Ended::Idle => metrics::counter!(SESSIONS_ENDED, "reason" => "idle"),
        Ended::Absolute => metrics::counter!(SESSIONS_ENDED, "reason" => "absolute"),
    };
    counter.increment(sessions);
}

/// Why a request's session cookie was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Malformed,
    BadSignature,
    TooMany,
    NoSession,
}

/// Counts one request whose session cookie was refused for `reason`,
/// without allocating (see [`sessions_ended`]): forged cookies cost an
/// attacker's requests nothing more here.
pub(crate) fn cookie_refused(reason: Refused) {
    let counter = match reason {
        Refused::Malformed => metrics::counter!(COOKIES_REFUSED, "reason" => "malformed"),
        Refused::BadSignature => metrics::counter!(COOKIES_REFUSED, "reason" => "bad_signature"),
        Refused::TooMany => metrics::counter!(COOKIES_REFUSED, "reason" => "too_many"),
        Refused::NoSession => metrics::counter!(COOKIES_REFUSED, "reason" => "no_session"),
    };
    counter.increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_finds_its_own_histogram_key() {
        let calls = StoreCalls::new("memory");
        for operation in Operation::ALL {
            let key = &calls.durations[operation as usize];
            let labels: Vec<_> = key
                .labels()
                .map(|label| (label.key(), label.value()))
                .collect();
            assert_eq!(
                labels,
                [("store", "memory"), ("operation", operation.name())],
                "{operation:?}"
            );
        }
    }
}
