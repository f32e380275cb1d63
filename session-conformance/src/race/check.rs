//! The history checker: what session-kit promises about concurrent
//! requests, checked against a recorded [`History`].
//!
//! A *session* here is a lineage of ids: the one a login or first write
//! created, and every id `cycle_id` moved it to. Its values are checkable
//! because each client writes only its own key, with sequence numbers
//! that only grow: a read must show, for every key, the last value
//! acknowledged before the read began, or a later one.
//!
//! An operation that failed (a 503, an error) or has not ended may or may
//! not have taken effect, and the checker never guesses: its value may
//! appear or not, the session it ended may live on or not, but a value
//! once seen must not disappear.

use std::{collections::HashMap, fmt};

use session_core::SessionId;

use super::history::{Action, CookieChange, History, Observed, OpIndex, Operation, Outcome};

/// A broken promise, naming the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// `write` was acknowledged before `read` began, `read` does not show
    /// it, and no read after `read` shows it again: an acknowledged write
    /// is gone.
    LostWrite {
        /// The acknowledged write.
        write: OpIndex,
        /// The first read that misses it.
        read: OpIndex,
        /// The key written.
        key: String,
        /// The value written.
        written: u64,
        /// What the read showed for the key.
        seen: Option<u64>,
    },
    /// `write` was acknowledged before `read` began and `read` shows an
    /// older value; a later read shows it again, so the write survived but
    /// this read was served a stale copy.
    StaleRead {
        /// The acknowledged write.
        write: OpIndex,
        /// The stale read.
        read: OpIndex,
        /// The key written.
        key: String,
        /// The value written.
        written: u64,
        /// What the read showed for the key.
        seen: Option<u64>,
    },
    /// `earlier` ended before `later` began and showed a newer value of
    /// `key` than `later` does: a value that was seen disappeared, or, when
    /// both are one client's, that client saw the session go backwards.
    WentBackwards {
        /// The read that saw the newer value.
        earlier: OpIndex,
        /// The read that saw the older one.
        later: OpIndex,
        /// The key.
        key: String,
        /// What `earlier` saw.
        earlier_value: u64,
        /// What `later` saw.
        later_value: Option<u64>,
        /// Whether one client ran both.
        same_client: bool,
    },
    /// `read` was served the session after `end` (a logout, an
    /// `end_all_for` of its owner, or a `cycle_id` away from that id) was
    /// acknowledged.
    Resurrected {
        /// The acknowledged end.
        end: OpIndex,
        /// The read that found the session alive.
        read: OpIndex,
    },
    /// `op` replaced or removed the cookie of a session that no one had
    /// ended or begun to end, and neither `cycle_id` nor `destroy` asked
    /// for it: the user was logged out.
    CookieReplaced {
        /// The operation whose response did it.
        op: OpIndex,
        /// The session the request's cookie named.
        old: SessionId,
        /// The session the response's cookie names; `None` for a removal.
        new: Option<SessionId>,
    },
}

/// The promise a [`Violation`] breaks: what an explorer can
/// [waive](super::Explorer::waive) where a store documents an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Promise {
    /// No acknowledged write is lost ([`Violation::LostWrite`]).
    NoLostWrite,
    /// No read is older than a write acknowledged before it began
    /// ([`Violation::StaleRead`]).
    NoStaleRead,
    /// No value once seen disappears ([`Violation::WentBackwards`]).
    NoGoingBackwards,
    /// Nothing ended comes back ([`Violation::Resurrected`]).
    NothingEndedReturns,
    /// A live session's cookie changes only by `cycle_id` or `destroy`
    /// ([`Violation::CookieReplaced`]).
    CookieKept,
}

impl Violation {
    /// The promise this breaks.
    #[must_use]
    pub fn promise(&self) -> Promise {
        match self {
            Self::LostWrite { .. } => Promise::NoLostWrite,
            Self::StaleRead { .. } => Promise::NoStaleRead,
            Self::WentBackwards { .. } => Promise::NoGoingBackwards,
            Self::Resurrected { .. } => Promise::NothingEndedReturns,
            Self::CookieReplaced { .. } => Promise::CookieKept,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value =
            |seen: &Option<u64>| seen.map_or_else(|| "nothing".to_owned(), |v| v.to_string());
        match self {
            Self::LostWrite { write, read, key, written, seen } => write!(
                f,
                "lost write: {write} set {key}={written} and was acknowledged, but {read} (begun after) shows {} and no later read shows it",
                value(seen)
            ),
            Self::StaleRead { write, read, key, written, seen } => write!(
                f,
                "stale read: {write} set {key}={written} and was acknowledged before {read} began, but {read} shows {}",
                value(seen)
            ),
            Self::WentBackwards { earlier, later, key, earlier_value, later_value, same_client } => write!(
                f,
                "went backwards: {earlier} saw {key}={earlier_value}, then {later}{} shows {}",
                if *same_client { " (same client)" } else { ", begun after it ended," },
                value(later_value)
            ),
            Self::Resurrected { end, read } => write!(
                f,
                "resurrection: {end} ended the session and was acknowledged, but {read} (begun after) was served it"
            ),
            Self::CookieReplaced { op, old, new } => match new {
                Some(new) => write!(
                    f,
                    "cookie replaced: {op} swapped live session {old:?} for {new:?} without cycle_id or destroy"
                ),
                None => write!(
                    f,
                    "cookie removed: {op} removed the cookie of live session {old:?} without destroy"
                ),
            },
        }
    }
}

/// A session: the ids one login (or first write) created and `cycle_id`
/// moved it to.
#[derive(Debug)]
struct Lineage {
    owner: Option<String>,
    created_by: OpIndex,
}

struct Checker<'a> {
    ops: &'a [Operation],
    lineage_of: HashMap<SessionId, usize>,
    lineages: Vec<Lineage>,
}

impl History {
    /// Checks every promise against this history and returns what broke,
    /// in a stable order (empty when all holds):
    /// - no acknowledged write is missing from a read that began after it
    ///   ([`LostWrite`](Violation::LostWrite), [`StaleRead`](Violation::StaleRead));
    /// - no value once seen disappears, and no client sees its session go
    ///   backwards ([`WentBackwards`](Violation::WentBackwards));
    /// - nothing ended comes back ([`Resurrected`](Violation::Resurrected));
    /// - a live session's cookie changes only by `cycle_id` or `destroy`
    ///   ([`CookieReplaced`](Violation::CookieReplaced)).
    ///
    /// A session is a lineage of ids: the one a login or first write
    /// created, and each id `cycle_id` moved it to. Each client writes only
    /// its own key, with growing sequence numbers, so a read must show,
    /// for every key, the last value acknowledged before it began or a
    /// later one. An operation that failed (a 503) or had not ended may or
    /// may not have taken effect, and nothing is guessed: its value may
    /// appear or not, the session it ended may live on or not, but a value
    /// once seen must not disappear.
    #[must_use]
    pub fn check(&self) -> Vec<Violation> {
        let ops = self.ops();
        let checker = Checker::new(&ops);
        let mut violations = Vec::new();
        for read in 0..ops.len() {
            checker.check_read(OpIndex(read), &mut violations);
        }
        for op in 0..ops.len() {
            checker.check_cookie(OpIndex(op), &mut violations);
        }
        violations
    }
}

impl<'a> Checker<'a> {
    fn new(ops: &'a [Operation]) -> Self {
        let mut checker = Self {
            ops,
            lineage_of: HashMap::new(),
            lineages: Vec::new(),
        };
        // In the order responses went out, so a cycle's source is known
        // before its target.
        let mut by_end: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].ended.is_some()).collect();
        by_end.sort_by_key(|&i| ops[i].ended);
        for index in by_end {
            let op = &ops[index];
            let Some(new) = op.set_cookie() else { continue };
            if op.cookie == Some(new) || checker.lineage_of.contains_key(&new) {
                continue;
            }
            let moved_from = match (&op.action, &op.observed, op.cookie) {
                (Action::CycleId, Observed::Values(_), Some(old)) => {
                    checker.lineage_of.get(&old).copied()
                }
                _ => None,
            };
            let lineage = moved_from.unwrap_or_else(|| {
                checker.lineages.push(Lineage {
                    owner: match &op.action {
                        Action::Login { owner, .. } | Action::CappedLogin { owner, .. } => {
                            Some(owner.clone())
                        }
                        _ => None,
                    },
                    created_by: OpIndex(index),
                });
                checker.lineages.len() - 1
            });
            checker.lineage_of.insert(new, lineage);
        }
        checker
    }

    fn op(&self, index: OpIndex) -> &'a Operation {
        &self.ops[index.0]
    }

    fn lineage(&self, id: Option<SessionId>) -> Option<usize> {
        id.and_then(|id| self.lineage_of.get(&id).copied())
    }

    /// The session an operation's write lands in: the one it loaded, or
    /// the one it created.
    fn target(&self, op: &Operation) -> Option<usize> {
        match op.observed {
            Observed::Values(_) => self.lineage(op.cookie),
            _ => self.lineage(op.set_cookie()),
        }
    }

    /// Whether `end` may have ended `id` (it need not have succeeded).
    fn may_end(&self, end: &Operation, id: SessionId) -> bool {
        match &end.action {
            Action::Destroy => end.cookie == Some(id),
            Action::CycleId => {
                end.cookie == Some(id)
                    && !matches!(end.observed, Observed::Absent | Observed::Failed)
            }
            Action::EndAll { owner } | Action::CappedLogin { owner, .. } => {
                self.owned_by(id, owner)
            }
            Action::LogOutOthers => {
                let keep = self.lineage(end.cookie);
                keep.and_then(|keep| self.lineages[keep].owner.as_ref())
                    .is_some_and(|owner| self.owned_by(id, owner))
                    && self.lineage(Some(id)) != keep
            }
            Action::EndDevice { session, .. } => {
                self.lineage(Some(id)).is_some()
                    && self.lineage(Some(id)) == self.lineage(Some(*session))
            }
            _ => false,
        }
    }

    /// Whether `id`'s session was made by a login of `owner`.
    fn owned_by(&self, id: SessionId, owner: &str) -> bool {
        self.lineage(Some(id))
            .is_some_and(|lineage| self.lineages[lineage].owner.as_deref() == Some(owner))
    }

    /// Whether `end` is acknowledged to have ended `id`.
    fn ended(&self, end: &Operation, id: SessionId) -> bool {
        if !end.acknowledged() || !self.may_end(end, id) {
            return false;
        }
        match &end.action {
            Action::Destroy => true,
            Action::CycleId => end.set_cookie().is_some_and(|new| new != id),
            // Only sessions created before the call began are promised.
            Action::EndAll { .. } | Action::LogOutOthers => self
                .lineage(Some(id))
                .is_some_and(|lineage| self.op(self.lineages[lineage].created_by).precedes(end)),
            // The handle named this very id, and the call says it ended it.
            Action::EndDevice { session, .. } => {
                *session == id && end.outcome == Some(Outcome::Ended(1))
            }
            // The cap ends whichever logins rank oldest: nothing is promised
            // ended, and any session of the owner may be.
            _ => false,
        }
    }

    /// Whether some operation that may end `id` began before `op` ended.
    fn may_have_ended_by(&self, id: SessionId, op: &Operation) -> bool {
        let Some(ended) = op.ended else { return true };
        self.ops
            .iter()
            .any(|end| end.began < ended && self.may_end(end, id))
    }

    fn check_read(&self, read: OpIndex, violations: &mut Vec<Violation>) {
        let op = self.op(read);
        let Some(id) = op.cookie else { return };
        let values = match &op.observed {
            Observed::Values(values) => values,
            // "No session" is only wrong if nothing may have ended it.
            Observed::Absent if !self.may_have_ended_by(id, op) => &Default::default(),
            _ => return,
        };
        if let Some(end) = self
            .ops
            .iter()
            .position(|end| end.precedes(op) && self.ended(end, id))
        {
            violations.push(Violation::Resurrected {
                end: OpIndex(end),
                read,
            });
            return;
        }
        let Some(lineage) = self.lineage(Some(id)) else {
            return;
        };
        let mut missed_keys = Vec::new();
        // The newest acknowledged write of each key that ended before this
        // read began.
        let mut newest: HashMap<&str, (OpIndex, u64)> = HashMap::new();
        for (index, write) in self.ops.iter().enumerate() {
            let Some((key, value)) = write.action.written() else {
                continue;
            };
            if write.acknowledged() && write.precedes(op) && self.target(write) == Some(lineage) {
                let entry = newest.entry(key).or_insert((OpIndex(index), value));
                if value > entry.1 {
                    *entry = (OpIndex(index), value);
                }
            }
        }
        let mut newest: Vec<_> = newest.into_iter().collect();
        newest.sort_unstable();
        for (key, (write, written)) in newest {
            let seen = values.get(key).copied();
            if seen.unwrap_or(0) >= written {
                continue;
            }
            missed_keys.push(key);
            // Stale rather than lost if a later read shows this value, or
            // one written no later than this read: not merely a value
            // written afterwards over it.
            let fresh = self
                .ops
                .iter()
                .filter(|write| op.ended.is_some_and(|ended| write.began > ended))
                .filter(|write| self.target(write) == Some(lineage))
                .filter_map(|write| write.action.written())
                .filter(|(written_key, _)| *written_key == key)
                .map(|(_, value)| value)
                .min()
                .unwrap_or(u64::MAX);
            let seen_again = self.ops.iter().any(|later| {
                op.precedes(later)
                    && self.lineage(later.cookie) == Some(lineage)
                    && matches!(&later.observed, Observed::Values(v)
                        if v.get(key).is_some_and(|&value| value >= written && value < fresh))
            });
            let key = key.to_owned();
            violations.push(if seen_again {
                Violation::StaleRead {
                    write,
                    read,
                    key,
                    written,
                    seen,
                }
            } else {
                Violation::LostWrite {
                    write,
                    read,
                    key,
                    written,
                    seen,
                }
            });
        }
        // Values seen by reads that ended before this one began.
        for (index, earlier) in self.ops.iter().enumerate() {
            let Observed::Values(before) = &earlier.observed else {
                continue;
            };
            if !earlier.precedes(op) || self.lineage(earlier.cookie) != Some(lineage) {
                continue;
            }
            for (key, &earlier_value) in before {
                let later_value = values.get(key).copied();
                if later_value.unwrap_or(0) < earlier_value && !missed_keys.contains(&key.as_str())
                {
                    missed_keys.push(key.as_str());
                    violations.push(Violation::WentBackwards {
                        earlier: OpIndex(index),
                        later: read,
                        key: key.clone(),
                        earlier_value,
                        later_value,
                        same_client: earlier.client == op.client,
                    });
                }
            }
        }
    }

    fn check_cookie(&self, index: OpIndex, violations: &mut Vec<Violation>) {
        let op = self.op(index);
        let Some(old) = op.cookie else { return };
        let Some(Outcome::Responded(change)) = &op.outcome else {
            return;
        };
        let new = match *change {
            CookieChange::Kept => return,
            CookieChange::Set(new) if new == old => return,
            CookieChange::Set(new) => Some(new),
            CookieChange::Removed => None,
        };
        let asked = match op.action {
            Action::Destroy
            | Action::Login { .. }
            | Action::CappedLogin { .. }
            | Action::EndAll { .. }
            | Action::EndDevice { .. } => true,
            Action::CycleId => new.is_some() && matches!(op.observed, Observed::Values(_)),
            Action::Read | Action::Write { .. } | Action::LogOutOthers => false,
        };
        if !asked && !self.may_have_ended_by(old, op) {
            violations.push(Violation::CookieReplaced {
                op: index,
                old,
                new,
            });
        }
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
