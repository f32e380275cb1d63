//! When an owner may answer from its own copy without asking the other
//! members: once it is *settled*.
//!
//! Right after a membership change, or after its lease came back from a
//! lapse, a node may own keys whose newest copies are still on other
//! members: the hand-over that brings them runs in the background. Until
//! then an owner asks every other member for its copy before it answers
//! (`Inner::read_base`). A node is settled again when all of these hold:
//! - its view has not changed for the settle time;
//! - its lease has held, without a gap, for the settle time;
//! - every other member of its view has *handed over* to it since: run a
//!   hand-over pass to this node under the same members, and started it
//!   after this node's last change.
//!
//! Time alone is not proof. A node whose peer links to two members are cut
//! while SWIM still sees them (its probes go through the others) gets its
//! lease back and lets the settle time pass without being handed a thing,
//! and would then serve copies those two superseded
//! (`tests/read_lease.rs`).
//!
//! **How a member knows which change to hand over for.** Each node numbers
//! its changes with an [`Intake`]: the epoch of its view and the count of
//! its lease's returns. Its lease requests carry its current intake to
//! every member every third of a lease. A member that hears a new intake
//! runs a hand-over pass to that node alone, and when a pass to a node
//! ends (every entry offered, every wanted one pushed) it tells that node
//! which intake the pass was for and which members it placed by
//! ([`HandedOver`]). Neither clock is compared with the other's: the
//! intake a pass reports is the one its sender had heard *before* the pass
//! began, so it began after the change.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, PoisonError},
};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::placement::View;

/// Which of a node's unsettled periods a hand-over is for: bumped by each
/// membership change the node sees and each return of its lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intake {
    /// The node's process: its start time, in nanoseconds. A node that
    /// restarts counts its epochs from zero again, and must not match an
    /// intake its members handed over for before.
    pub(crate) process: u64,
    /// The epoch of the node's view.
    pub(crate) view: u64,
    /// How many times the node's lease has begun after a time without one.
    pub(crate) lease: u64,
}

/// The end of a hand-over pass to its receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedOver {
    /// The receiver's intake, as its sender knew it when the pass began.
    pub(crate) intake: Intake,
    /// The members the sender placed keys by ([`View::digest`]).
    pub(crate) view: u64,
}

/// What a node knows of hand-overs: those it was given, and those it owes.
#[derive(Debug, Default)]
pub(crate) struct Handovers {
    /// Per member, the last hand-over it finished to this node.
    received: Mutex<HashMap<Arc<str>, HandedOver>>,
    /// Per member, the intake it last announced in a lease request.
    heard: Mutex<HashMap<Arc<str>, Intake>>,
    /// Members that announced an intake this node has not handed over for.
    owed: Mutex<BTreeSet<Arc<str>>>,
    /// Wakes the hand-over loop when a member joins `owed`.
    pub(crate) wake: Arc<Notify>,
    /// The intake this node last found handed over by every member, so a
    /// settled node's reads compare one value.
    complete: Mutex<Option<Intake>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Handovers {
    /// Takes the intake `member` announced; a new one is owed a hand-over.
    pub(crate) fn heard(&self, member: &str, intake: Intake) {
        let mut heard = lock(&self.heard);
        if heard.get(member) == Some(&intake) {
            return;
        }
        let member: Arc<str> = member.into();
        heard.insert(Arc::clone(&member), intake);
        drop(heard);
        lock(&self.owed).insert(member);
        self.wake.notify_one();
    }

    /// The intake `member` last announced, to report when a pass to it
    /// ends; taken before the pass begins.
    pub(crate) fn intake_of(&self, member: &str) -> Intake {
        lock(&self.heard).get(member).copied().unwrap_or_default()
    }

    /// The members owed a hand-over, emptied.
    pub(crate) fn take_owed(&self) -> BTreeSet<Arc<str>> {
        std::mem::take(&mut lock(&self.owed))
    }

    /// Owes `members` a hand-over again: a pass to them failed.
    pub(crate) fn owe_again(&self, members: impl IntoIterator<Item = Arc<str>>) {
        lock(&self.owed).extend(members);
    }

    /// Takes a finished hand-over from `member`.
    pub(crate) fn received(&self, member: &str, handed: HandedOver) {
        lock(&self.received).insert(member.into(), handed);
    }

    /// Whether every other member of `view` has handed over to this node
    /// (`me`) for `intake`, placing keys by the same members.
    pub(crate) fn complete(&self, me: &str, view: &View, intake: Intake) -> bool {
        if *lock(&self.complete) == Some(intake) {
            return true;
        }
        let received = lock(&self.received);
        let done = view.members.iter().all(|member| {
            *member.name == *me
                || received
                    .get(&member.name)
                    .is_some_and(|handed| handed.intake == intake && handed.view == view.digest)
        });
        drop(received);
        if done {
            *lock(&self.complete) = Some(intake);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_needs_every_other_member_for_this_intake_and_view() {
        let handovers = Handovers::default();
        let view = View::of(&["a", "b", "c"], 4);
        let intake = Intake {
            process: 1,
            view: 4,
            lease: 1,
        };
        assert!(!handovers.complete("a", &view, intake));
        let handed = HandedOver {
            intake,
            view: view.digest,
        };
        handovers.received("b", handed.clone());
        assert!(
            !handovers.complete("a", &view, intake),
            "c has not handed over"
        );
        // For an older intake, or by other members: not this change's.
        handovers.received(
            "c",
            HandedOver {
                intake: Intake {
                    process: 1,
                    view: 4,
                    lease: 0,
                },
                view: view.digest,
            },
        );
        assert!(!handovers.complete("a", &view, intake));
        handovers.received(
            "c",
            HandedOver {
                intake,
                view: view.digest ^ 1,
            },
        );
        assert!(!handovers.complete("a", &view, intake));
        handovers.received("c", handed);
        assert!(handovers.complete("a", &view, intake));
        // A new intake needs new hand-overs.
        assert!(!handovers.complete(
            "a",
            &view,
            Intake {
                process: 1,
                view: 5,
                lease: 1
            }
        ));
    }

    #[test]
    fn a_new_intake_is_owed_a_hand_over_once() {
        let handovers = Handovers::default();
        let intake = Intake {
            process: 1,
            view: 2,
            lease: 1,
        };
        handovers.heard("b", intake);
        handovers.heard("b", intake);
        assert_eq!(handovers.intake_of("b"), intake);
        let owed: Vec<Arc<str>> = handovers.take_owed().into_iter().collect();
        assert_eq!(owed, [Arc::from("b")]);
        handovers.heard("b", intake);
        assert!(handovers.take_owed().is_empty(), "heard again, owed again");
        handovers.heard(
            "b",
            Intake {
                process: 1,
                view: 3,
                lease: 1,
            },
        );
        assert_eq!(handovers.take_owed().len(), 1);
        // A restart counts its epochs from zero: the same numbers from a
        // new process are a new intake.
        handovers.heard(
            "b",
            Intake {
                process: 2,
                view: 3,
                lease: 1,
            },
        );
        assert_eq!(handovers.take_owed().len(), 1);
    }
}
