//! Read leases: a node serves anything (reads included) only while a
//! majority of the cluster has recently confirmed that it still counts the
//! node as a live member.
//!
//! Why a lease: SWIM's detection is not symmetric. The majority side of a
//! partition declares a cut-off node dead (and takes over its sessions) a
//! probe period or two before the cut-off node has declared *both* of the
//! others dead and noticed that it lost its quorum. In between, its view
//! still shows a quorum, and it would answer reads of the sessions it owns
//! from its own copy, which the majority may have changed by then. A lease
//! closes that window with a bound on time instead of on views:
//!
//! - Every [`interval`](Lease::interval) a node asks every other member to
//!   confirm it, remembering when (on its own monotonic clock) it *sent*
//!   each request. A member confirms only while it sees a quorum itself,
//!   counts the asker among its members, does not suspect it, and the
//!   asker sees every member the confirming member sees and does not
//!   suspect (see *Views* below).
//! - The lease lasts until the send time of the newest request that
//!   `quorum - 1` distinct members confirmed, plus the lease
//!   [`length`](Lease::length): half of the shortest suspect timeout of
//!   any node the lease has heard of.
//! - The majority declares a node dead no sooner than one suspect timeout
//!   after it began to suspect it, and it cannot have begun before the cut
//!   (a member that confirmed did not suspect the node when it answered).
//!   So the cut-off node's lease, measured from a send time before the cut,
//!   ends at least half a suspect timeout before any node can take its
//!   sessions over. The other half is the margin for a suspicion that began
//!   just before the last confirmation and had not reached the confirming
//!   members yet (gossip takes a fraction of a probe period), for clock
//!   *rate* differences between nodes, and for scheduling delays. Clock
//!   *offsets* do not matter: each node compares only its own instants.
//!
//! **Views.** A lease must also mean that the node places keys as the
//! others do. A node coming back from a partition (or starting) learns the
//! members one by one; with three of five it holds a quorum, and in that
//! partial view it may own keys whose every copy the majority has moved
//! to the two it does not see yet. Asking "every other member" for a newer
//! copy, as an unsettled owner does, then asks only members that hold
//! none, and once settled it asks no one: it would serve a copy the
//! majority superseded (`tests/read_lease.rs`, and the lab's fault order in
//! `tests/simulation.rs`). So each request carries the asker's members,
//! and a member confirms only an asker that sees every member it sees,
//! save those it suspects: a node missing a live member
//! gets no lease, and so serves nothing, until it sees that member. A
//! member the confirming member suspects is left out because it may be
//! dead, and an asker that already dropped a dead member is right to; the
//! lease argument above keeps a suspected node itself from serving.
//!
//! Leases are also how nodes learn each other's lifetimes horizon: every
//! request and confirmation carries the longest lifetime its sender has
//! seen a session given, so a tombstone for a session whose copies are out
//! of reach can outlive any copy (see `Inner::tombstone`).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError, Weak,
    },
    time::Duration,
};

use futures_util::{stream::FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use session_core::{ErrorKind, StoreError};
use tokio::{
    sync::{watch, Notify},
    time::Instant,
};

use crate::{
    node::Inner,
    placement::View,
    protocol::{Call, Encoded, Request},
    settle::Intake,
};

/// Asks the receiver to confirm that it counts the sender as a live member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Confirm {
    /// The sender's suspect timeout, in milliseconds: the receiver's leases
    /// must end before the sender could declare the receiver dead.
    pub(crate) suspect_timeout_ms: u64,
    /// The longest lifetime, in seconds, the sender has seen a session given.
    pub(crate) horizon_secs: u64,
    /// The members the sender sees, itself included: the receiver confirms
    /// only a sender that sees every member it sees and does not suspect.
    pub(crate) members: Vec<String>,
    /// The sender's current intake: a receiver that has not handed over
    /// to it for this one does (see [`crate::settle`]).
    pub(crate) intake: Intake,
}

/// The answer to a [`Confirm`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Confirmation {
    /// Whether the receiver confirms the sender as a live member.
    pub(crate) granted: bool,
    /// As in [`Confirm`], the receiver's.
    pub(crate) suspect_timeout_ms: u64,
    /// As in [`Confirm`], the receiver's.
    pub(crate) horizon_secs: u64,
}

impl Call for Confirm {
    type Reply = Confirmation;
    const NAME: &'static str = "confirm";
    // Counted in `ClusterStats::lease_requests` instead.
    const COUNTED: bool = false;
    fn into_request(self) -> Request {
        Request::Lease(self)
    }
}

/// One node's lease, and what it knows of the others' settings.
pub(crate) struct Lease {
    /// Confirmations needed: `quorum - 1` (the node counts for itself).
    needed: usize,
    /// When the lease ends; `None` before the first one and after it ends.
    until: watch::Sender<Option<Instant>>,
    /// Per member name, the send time of the newest confirmed request.
    confirmed: Mutex<HashMap<Arc<str>, Instant>>,
    /// When the lease last began after a time without one (its first
    /// grant included). A node whose lease lapsed may have been cut off
    /// while the majority moved its keys on, even if its own view never
    /// changed, so it counts as unsettled for the settle time after this,
    /// as after a membership change (see [`held_for`](Self::held_for)).
    held_since: Mutex<Option<Instant>>,
    /// How many times the lease began after a time without one: part of
    /// the node's [`Intake`].
    regains: AtomicU64,
    /// The shortest suspect timeout heard of (this node's own included), in
    /// milliseconds. Only ever shrinks, so a lease never grows past what
    /// the fastest detector allows.
    shortest_suspect_ms: AtomicU64,
    /// The longest session lifetime heard of from peers, in seconds.
    peer_horizon_secs: AtomicU64,
    /// Wakes the renewal loop for a round now: a request found no lease.
    renew_now: Notify,
    /// Confirmation requests sent, for `ClusterStats::lease_requests`.
    pub(crate) requests: AtomicU64,
    /// Why the last confirmation request failed, for the error a request
    /// gets when there is no lease.
    last_failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("until", &*self.until.borrow())
            .field("length", &self.length())
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// The lease of a node that needs `quorum - 1` confirmations and
    /// declares others dead after `suspect_timeout`.
    pub(crate) fn new(quorum: usize, suspect_timeout: Duration) -> Self {
        let needed = quorum.saturating_sub(1);
        Self {
            needed,
            // A node that needs no one else (a cluster of one) always holds it.
            until: watch::Sender::new((needed == 0).then(far_future)),
            confirmed: Mutex::new(HashMap::new()),
            held_since: Mutex::new((needed == 0).then(Instant::now)),
            regains: AtomicU64::new(0),
            shortest_suspect_ms: AtomicU64::new(millis(suspect_timeout)),
            peer_horizon_secs: AtomicU64::new(0),
            renew_now: Notify::new(),
            requests: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    /// How long a confirmation keeps the lease: half the shortest suspect
    /// timeout heard of.
    pub(crate) fn length(&self) -> Duration {
        Duration::from_millis(self.shortest_suspect_ms.load(Ordering::Relaxed) / 2)
    }

    /// How often the lease is renewed: a third of its length (at least
    /// 5 ms), so one lost round leaves it valid.
    pub(crate) fn interval(&self) -> Duration {
        (self.length() / 3).max(Duration::from_millis(5))
    }

    /// Whether the lease holds now.
    pub(crate) fn holds(&self) -> bool {
        self.until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }

    /// How many times the lease began after a time without one.
    pub(crate) fn regains(&self) -> u64 {
        self.regains.load(Ordering::Relaxed)
    }

    /// Whether the lease has held without a gap for at least `time`.
    pub(crate) fn held_for(&self, time: Duration) -> bool {
        self.held_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|since| since.elapsed() >= time)
    }

    /// Waits for the lease to hold, asking for a renewal round at once: until
    /// `deadline`, and no longer than one lease length, so a node cut off
    /// from the majority refuses promptly. `Unavailable` when it does not
    /// come: this node has not heard from a majority recently, so it may be
    /// on the minority side of a partition that the majority is about to
    /// act on.
    pub(crate) async fn wait(
        &self,
        deadline: Instant,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        if self.holds() {
            return Ok(());
        }
        self.renew_now.notify_one();
        let mut until = self.until.subscribe();
        let waited = tokio::time::timeout_at(
            deadline.min(Instant::now() + self.length()),
            until.wait_for(|until| until.is_some_and(|until| Instant::now() < until)),
        )
        .await;
        if matches!(waited, Ok(Ok(_))) {
            return Ok(());
        }
        let last = self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map_or_else(String::new, |failure| format!(" (last refusal: {failure})"));
        Err(
            StoreError::new(ErrorKind::Unavailable, operation).with_source(format!(
            "this node has no lease: fewer than {} other members confirmed it in the last {:?}, \
             so it may be cut off from the majority, and it serves nothing rather than a copy \
             the majority may have changed{last}",
            self.needed,
            self.length()
        )),
        )
    }

    /// Takes what a peer said of its settings.
    fn hear(&self, suspect_timeout_ms: u64, horizon_secs: u64) {
        if suspect_timeout_ms > 0 {
            self.shortest_suspect_ms
                .fetch_min(suspect_timeout_ms, Ordering::Relaxed);
        }
        self.peer_horizon_secs
            .fetch_max(horizon_secs, Ordering::Relaxed);
    }

    /// The longest session lifetime any peer has reported.
    pub(crate) fn peer_horizon(&self) -> Duration {
        Duration::from_secs(self.peer_horizon_secs.load(Ordering::Relaxed))
    }

    /// Records that `member` confirmed the request sent at `sent`, and
    /// recomputes the lease over the members still in the view.
    fn confirmed(&self, member: &Arc<str>, sent: Instant, members: &[Arc<str>]) {
        let mut confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let newest = confirmed.entry(Arc::clone(member)).or_insert(sent);
        *newest = (*newest).max(sent);
        confirmed.retain(|name, _| members.contains(name));
        let mut times: Vec<Instant> = confirmed.values().copied().collect();
        drop(confirmed);
        if self.needed == 0 || times.len() < self.needed {
            return;
        }
        // The `needed`-th newest confirmation bounds the lease: that many
        // distinct members confirmed at or after it.
        times.sort_unstable_by(|a, b| b.cmp(a));
        let until = times[self.needed - 1] + self.length();
        let now = Instant::now();
        let mut regained = false;
        self.until.send_if_modified(|current| {
            if current.is_none_or(|current| until > current) {
                // A lease that had run out (or never begun) starts again.
                regained = until > now && current.is_none_or(|current| current <= now);
                *current = Some(until);
                true
            } else {
                false
            }
        });
        if regained {
            *self
                .held_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(now);
            self.regains.fetch_add(1, Ordering::Relaxed);
            // The regain is a new intake (`crate::settle`): tell the members
            // at once rather than a lease interval later (ten seconds, with
            // a one-minute suspect timeout), so their hand-overs come now.
            self.renew_now.notify_one();
        }
    }
}

fn far_future() -> Instant {
    // About thirty years: never reached, and far from overflowing.
    Instant::now() + Duration::from_secs(1 << 30)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Inner {
    /// Answers a peer's [`Confirm`]: granted while this node sees a quorum,
    /// counts `from` as a member, does not suspect it, and `from` sees every
    /// member this node sees and does not suspect (see *Views* above).
    pub(crate) fn confirm(&self, from: &str, request: &Confirm) -> Confirmation {
        self.lease
            .hear(request.suspect_timeout_ms, request.horizon_secs);
        self.handovers.heard(from, request.intake);
        let view = self.view();
        let sees_as_we_do = || {
            view.members.iter().all(|member| {
                request.members.iter().any(|seen| **seen == *member.name)
                    || self.is_suspected(&member.name)
            })
        };
        let granted = view.len() >= self.quorum
            && view.has(from)
            && !self.is_suspected(from)
            && sees_as_we_do();
        Confirmation {
            granted,
            suspect_timeout_ms: millis(self.suspect_timeout),
            horizon_secs: self.local.horizon().as_secs(),
        }
    }

    /// One renewal round: asks every other member, and takes each
    /// confirmation as it arrives (a slow or dead member does not hold up
    /// the others').
    async fn renew(self: Arc<Self>) {
        let view = self.view();
        let members: Vec<Arc<str>> = view.members.iter().map(|m| Arc::clone(&m.name)).collect();
        let sent = Instant::now();
        let Ok(request) = Encoded::new(Confirm {
            suspect_timeout_ms: millis(self.suspect_timeout),
            horizon_secs: self.local.horizon().as_secs(),
            members: members.iter().map(ToString::to_string).collect(),
            intake: self.intake(&view),
        }) else {
            return;
        };
        // A confirmation that arrives after a whole lease length is of no use.
        let deadline = sent + self.lease.length();
        let mut answers: FuturesUnordered<_> = self
            .others(&view.members)
            .into_iter()
            .map(|member| {
                let (inner, request) = (&self, &request);
                async move {
                    inner.lease.requests.fetch_add(1, Ordering::Relaxed);
                    let answer = inner.link.call(member.addr, request, deadline).await;
                    (member, answer)
                }
            })
            .collect();
        while let Some((member, answer)) = answers.next().await {
            match answer {
                Ok(confirmation) => {
                    self.lease
                        .hear(confirmation.suspect_timeout_ms, confirmation.horizon_secs);
                    if confirmation.granted {
                        self.lease.confirmed(&member.name, sent, &members);
                    } else {
                        *self
                            .lease
                            .last_failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(format!(
                            "{} did not confirm: it does not count this node as a live member, or it \
                             sees a member this node does not",
                            member.name
                        ));
                    }
                }
                Err(err) => {
                    let line = err.to_line();
                    tracing::trace!(peer = %member.addr, error = %line, "lease not confirmed");
                    *self
                        .lease
                        .last_failure
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(line);
                }
            }
        }
    }
}

/// Renews the node's lease every interval, at once when a request found
/// none, and at once when the membership changes, until the node is
/// dropped. Each round runs on its own task, so a round waiting on an
/// unreachable member does not delay the next.
///
/// The round on a change matters most at start-up: the first rounds run
/// before the other members are known, and the lease's first grant starts
/// a settle time of its own ([`Lease::held_for`]), so it should come with
/// the view that made it possible rather than an interval later.
pub(crate) async fn lease_loop(
    inner: Weak<Inner>,
    lease: Arc<Lease>,
    mut views: watch::Receiver<Arc<View>>,
) {
    if lease.needed == 0 {
        return;
    }
    loop {
        let Some(node) = inner.upgrade() else { return };
        tokio::spawn(node.renew());
        tokio::select! {
            () = tokio::time::sleep(lease.interval()) => {}
            () = lease.renew_now.notified() => {}
            changed = views.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
