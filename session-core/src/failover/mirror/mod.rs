//! Mirror mode: every call goes to both stores, and their answers are
//! reconciled.
//!
//! The rules, which every function below applies:
//! - A store that is down ([`Reply::Down`]) is left out: the other store's
//!   answer stands, and the down store is owed what it missed (the replay
//!   set). Both down is the primary's error.
//! - Any other error from either store is returned: it is not an outage.
//! - When both answer and agree, that is the answer.
//! - When both answer and disagree:
//!   - two copies: the copy known to hold every acknowledged commit is
//!     served, and the other is replaced in the background. Known means this
//!     process saw the other store miss writes (its replay set), or an ahead
//!     mark (the newer one, when both stores hold one) says which store took
//!     commits the other missed. A version counts commits, not which ones,
//!     so it decides nothing. With nothing known, the difference is a commit
//!     still on its way to one store: the primary's copy is served (every
//!     acknowledged commit reached it) and nothing is rewritten.
//!   - a copy on one side only: it stands, and is copied to the other side,
//!     unless either side holds a tombstone (a delete leaves one in both
//!     stores before it deletes either copy) or an owner fence ends it; then
//!     that copy goes too.

mod marks;
mod repair;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use self::repair::{count_repair, log_failed_repair};
use super::{count_fallback, Inner, Missed, Reply, Role, Side, AHEAD_DOMAIN, TOMBSTONE_DOMAIN};
use crate::{Changes, Committed, ConditionalDelete, Created, Data, Record, SessionId, StoreError};

/// The widest two stores may disagree on when one session expires:
/// Memcached counts whole seconds on a clock that ticks once a second.
const EXPIRY_SKEW: Duration = Duration::from_secs(2);

/// Two stores' replies to one call, once outages and errors are settled.
enum Both<T> {
    /// Both answered: (primary, secondary).
    Answered(T, T),
    /// Only `by` answered; the other store is down. `first_miss` is true
    /// when this process had not yet recorded a miss of this session by the
    /// down store.
    OneSide {
        answer: T,
        by: Role,
        first_miss: bool,
    },
}

impl Inner {
    /// Settles the two replies to a call; see the module docs. A write the
    /// down store missed is recorded for replay to it.
    fn settle<T>(
        &self,
        id: &SessionId,
        write: Option<Missed>,
        operation: &'static str,
        primary: Result<Reply<T>, StoreError>,
        secondary: Result<Reply<T>, StoreError>,
    ) -> Result<Both<T>, StoreError> {
        let (answer, by) = match (primary?, secondary?) {
            (Reply::Answer(p), Reply::Answer(s)) => return Ok(Both::Answered(p, s)),
            (Reply::Down(err), Reply::Down(_)) => return Err(err),
            (Reply::Answer(p), Reply::Down(_)) => (p, Role::Primary),
            (Reply::Down(_), Reply::Answer(s)) => {
                count_fallback(operation);
                (s, Role::Secondary)
            }
        };
        let down = self.other(self.side(by));
        let first_miss = write.is_some_and(|what| self.missed(down, id, what));
        Ok(Both::OneSide {
            answer,
            by,
            first_miss,
        })
    }

    pub(super) async fn mirror_load(
        self: &Arc<Self>,
        id: &SessionId,
    ) -> Result<Option<Record>, StoreError> {
        let (primary, secondary) = tokio::join!(
            self.call(&self.primary, "load", self.primary.store.load(id)),
            self.call(&self.secondary, "load", self.secondary.store.load(id)),
        );
        match self.settle(id, None, "load", primary, secondary)? {
            // "No session" from a store this server knows is missing writes
            // is no answer: the session may live only on the store that is
            // down. Refused, so the error policy decides, rather than the
            // user silently starting over with a fresh session.
            Both::OneSide {
                answer: None, by, ..
            } if self.may_lack(self.side(by), id) => {
                Err(StoreError::new(crate::ErrorKind::Unavailable, "load")
                    .with_source(Incomplete(by.name())))
            }
            // The down store's copy cannot be compared now; the replay or a
            // later read repairs it.
            Both::OneSide { answer, .. } => Ok(answer),
            Both::Answered(p, s) => {
                // What this process knows of a store that missed writes
                // settles a disagreement as the replay's knowledge does.
                let behind = match (
                    self.may_lack(&self.primary, id),
                    self.may_lack(&self.secondary, id),
                ) {
                    (true, false) => Some(Role::Primary),
                    (false, true) => Some(Role::Secondary),
                    _ => None,
                };
                Ok(self.reconcile(p, s, behind).await)
            }
        }
    }

    /// Brings `behind`, which missed writes to `id`, up to the other
    /// store's copy: the replay. `Down` when either store is down, so the
    /// replay keeps it for later.
    pub(super) async fn sync(
        self: &Arc<Self>,
        id: &SessionId,
        behind: Role,
    ) -> Result<Reply<()>, StoreError> {
        let (primary, secondary) = tokio::join!(
            self.call(&self.primary, "load", self.primary.store.load(id)),
            self.call(&self.secondary, "load", self.secondary.store.load(id)),
        );
        match (primary?, secondary?) {
            (Reply::Answer(p), Reply::Answer(s)) => {
                let _ = self.reconcile(p, s, Some(behind)).await;
                Ok(Reply::Answer(()))
            }
            (Reply::Down(err), _) | (_, Reply::Down(err)) => Ok(Reply::Down(err)),
        }
    }

    /// The copy to serve when both stores answered a load, repairing the
    /// stale side. `behind` names a store this process knows missed writes.
    async fn reconcile(
        self: &Arc<Self>,
        primary: Option<Record>,
        secondary: Option<Record>,
        behind: Option<Role>,
    ) -> Option<Record> {
        match (primary, secondary) {
            (None, None) => None,
            (Some(p), Some(s)) if p.version == s.version && p.data == s.data => {
                // The same commits on both. A touch one side missed leaves
                // it an earlier expiry; serve the later one, and let the
                // short copy expire into the one-sided case, which copies
                // it back. (Rewriting here would fight Memcached's
                // whole-second expiry on every load.)
                Some(if s.expires_at > p.expires_at { s } else { p })
            }
            (Some(p), Some(s)) => Some(self.settle_copies(p, s, behind).await),
            (Some(record), None) => self.one_sided(&self.primary, record).await.served(),
            (None, Some(record)) => self.one_sided(&self.secondary, record).await.served(),
        }
    }

    /// The copy to serve when the two stores hold different copies, and the
    /// repair of the other one when it is known to be stale.
    ///
    /// A version counts a copy's commits, not which ones: a store that
    /// missed a commit during an outage and took the later ones has as high
    /// a version as the other and still lacks that commit. So the copy
    /// known to hold everything wins: the other store is `behind` (this
    /// process saw it miss writes), or this copy's store holds an ahead
    /// mark (some server saw the other store miss a commit) and the other
    /// holds none, or an older one. It is served, and the other copy is
    /// repaired in the background ([`repair_copy`](Self::repair_copy)). With
    /// no such knowledge the gap is a commit still on its way to one store,
    /// which arrives by itself: the primary's copy is served and nothing is
    /// rewritten.
    async fn settle_copies(self: &Arc<Self>, p: Record, s: Record, behind: Option<Role>) -> Record {
        let winner = match behind {
            Some(stale) => Some(stale.other()),
            None => {
                let mark = p.id.derive(AHEAD_DOMAIN);
                let (on_primary, on_secondary) = tokio::join!(
                    self.mark_of(&self.primary, &mark),
                    self.mark_of(&self.secondary, &mark),
                );
                match (on_primary, on_secondary) {
                    (Some(_), None) => Some(Role::Primary),
                    (None, Some(_)) => Some(Role::Secondary),
                    (Some(p_mark), Some(s_mark)) if p_mark.at != s_mark.at => {
                        Some(if p_mark.at > s_mark.at {
                            Role::Primary
                        } else {
                            Role::Secondary
                        })
                    }
                    _ => None,
                }
            }
        };
        // With nothing known, the primary's copy: every acknowledged commit
        // reached both stores, so it has them all, and a commit that has
        // reached only the secondary so far is not acknowledged yet.
        // Serving the higher version showed such a commit, and when the
        // primary then refused it (its session ended there meanwhile, by a
        // `cycle_id`), a value was seen that no later read showed (the
        // explorer found it).
        let Some(winner) = winner else {
            return p;
        };
        // In the background, for the replay too: a repair waits out call
        // timeouts, and may try again while commits keep coming.
        self.start_repair(p.id, winner);
        match winner {
            Role::Primary => p,
            Role::Secondary => s,
        }
    }

    /// Whether `side` may lack sessions that the other store holds, as far
    /// as this process knows: it missed a write of `id`, it has missed
    /// writes not yet replayed (it was down, and may have come back empty),
    /// or it came back from its last outage without its data.
    pub(super) fn may_lack(&self, side: &Side, id: &SessionId) -> bool {
        side.epoch.lost_data()
            || side.pending_len.load(std::sync::atomic::Ordering::Relaxed) > 0
            || side.replaying.load(std::sync::atomic::Ordering::Acquire)
            || side
                .missed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(id)
    }

    /// `holder` has `record` and the other store has nothing: either the
    /// other store lost it (a restart, an expiry after a missed touch) and
    /// gets a copy, or the session was deleted and a tombstone says so, and
    /// `holder`'s copy goes.
    ///
    /// Tombstones are looked for in both stores: a delete leaves one in each
    /// before it deletes either copy, so a load that read `holder` before a
    /// racing delete and the other store after it finds the tombstone on
    /// the other store; and a copy that such a load made anyway after the
    /// delete sits next to the tombstone on its own store.
    async fn one_sided(self: &Arc<Self>, holder: &Side, record: Record) -> OneSided {
        let empty = self.other(holder);
        let tombstone = record.id.derive(TOMBSTONE_DOMAIN);
        let (in_empty, in_holder, fenced) = tokio::join!(
            self.holds(empty, &tombstone),
            self.holds(holder, &tombstone),
            self.fenced(empty, &record),
        );
        if in_empty || in_holder || fenced {
            self.repair_call(
                holder,
                &record.id,
                Missed::Delete,
                holder.store.delete(&record.id),
            )
            .await;
            return OneSided::Ended;
        }
        // Near its expiry, "the other store has nothing" is as likely the
        // two stores disagreeing on when it expires as a lost copy. A copy
        // would carry the later expiry over, and copies back and forth
        // would keep an idle session alive for as long as it is read. It
        // expires within the skew anyway, unless a write extends it; then
        // the one-sided rule copies it.
        let left = record
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left <= EXPIRY_SKEW {
            return OneSided::Kept {
                record,
                copy: Copy::Failed,
            };
        }
        let copy = self.copy_to(empty, &record).await;
        OneSided::Kept { record, copy }
    }

    /// Puts `record` on `side`, which had no copy when last read.
    ///
    /// `IdTaken` is not success: another app server's repair (or this
    /// one's, for another commit) got there first, from a read that may be
    /// older, and commits may have landed on it since. Taking it for done
    /// acknowledged a commit that only one store held, with nothing left to
    /// say so. So the copy there is read: an older one is replaced, and one
    /// at this version or later is [`Copy::Found`], for the caller to check
    /// (a version says how many commits a copy took, not which).
    async fn copy_to(self: &Arc<Self>, side: &Side, record: &Record) -> Copy {
        let id = &record.id;
        for _ in 0..COPY_ATTEMPTS {
            match self.call(side, "repair", side.store.create(record)).await {
                Ok(Reply::Answer(Created::Created)) => {
                    count_repair(side);
                    return Copy::Made;
                }
                Ok(Reply::Answer(Created::IdTaken)) => {}
                Ok(Reply::Down(_)) => {
                    let _ = self.missed(side, id, Missed::Write);
                    return Copy::Failed;
                }
                Err(err) => {
                    log_failed_repair(side, &err);
                    return Copy::Failed;
                }
            }
            match self.call(side, "load", side.store.load(id)).await {
                Ok(Reply::Answer(Some(theirs))) if theirs.version >= record.version => {
                    return Copy::Found(theirs.data);
                }
                // Older: replace it, and create again.
                Ok(Reply::Answer(Some(theirs))) => {
                    if !self.remove_stale(side, id, theirs.version).await {
                        return Copy::Failed;
                    }
                }
                // Gone again: deleted or expired since. Copying now could
                // undo a delete; the caller keeps its mark instead.
                Ok(Reply::Answer(None) | Reply::Down(_)) | Err(_) => return Copy::Failed,
            }
        }
        Copy::Failed
    }

    pub(super) async fn mirror_create(
        self: &Arc<Self>,
        record: &Record,
    ) -> Result<Created, StoreError> {
        let (primary, secondary) = tokio::join!(
            self.call(&self.primary, "create", self.primary.store.create(record)),
            self.call(
                &self.secondary,
                "create",
                self.secondary.store.create(record)
            ),
        );
        // A store that refused the record (too large, say) fails the
        // create; the copy the other store took would be an orphan.
        for (reply, other, other_reply) in [
            (&primary, &self.secondary, &secondary),
            (&secondary, &self.primary, &primary),
        ] {
            if reply.is_err() && matches!(other_reply, Ok(Reply::Answer(Created::Created))) {
                self.repair_call(
                    other,
                    &record.id,
                    Missed::Delete,
                    other.store.delete(&record.id),
                )
                .await;
            }
        }
        // A create the down store missed needs no mark: the one-sided rule
        // copies the session to it when it is back.
        match self.settle(
            &record.id,
            Some(Missed::Write),
            "create",
            primary,
            secondary,
        )? {
            Both::OneSide { answer, .. } => Ok(answer),
            Both::Answered(Created::Created, Created::Created) => Ok(Created::Created),
            Both::Answered(Created::IdTaken, Created::IdTaken) => Ok(Created::IdTaken),
            Both::Answered(p, _) => {
                // Taken on one store only: the id is not ours to use, and
                // the copy we just made on the other store must go.
                let made_it = if p == Created::Created {
                    &self.primary
                } else {
                    &self.secondary
                };
                self.repair_call(
                    made_it,
                    &record.id,
                    Missed::Delete,
                    made_it.store.delete(&record.id),
                )
                .await;
                Ok(Created::IdTaken)
            }
        }
    }

    pub(super) async fn mirror_commit(
        self: &Arc<Self>,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let (primary, secondary) = tokio::join!(
            self.call(
                &self.primary,
                "commit",
                self.primary.store.commit(id, changes, expires_at)
            ),
            self.call(
                &self.secondary,
                "commit",
                self.secondary.store.commit(id, changes, expires_at)
            ),
        );
        match self.settle(id, Some(Missed::Write), "commit", primary, secondary)? {
            Both::OneSide {
                answer,
                by,
                first_miss,
            } => {
                if first_miss && matches!(answer, Committed::Applied { .. }) {
                    self.mark_ahead(self.side(by), id).await;
                }
                Ok(answer)
            }
            Both::Answered(Committed::Missing, Committed::Missing) => Ok(Committed::Missing),
            // The versions may differ: the stores drifted apart during an
            // outage, or concurrent commits reached them in different
            // orders. The primary's numbering is the one reported, so each
            // commit still gets a version of its own; reads sort out the rest.
            Both::Answered(Committed::Applied { version }, Committed::Applied { .. }) => {
                Ok(Committed::Applied { version })
            }
            Both::Answered(p, s) => {
                let (holder, version) = match (p, s) {
                    (Committed::Applied { version }, _) => (&self.primary, version),
                    (_, Committed::Applied { version }) => (&self.secondary, version),
                    _ => unreachable!("both missing is matched above"),
                };
                Ok(
                    if self
                        .one_sided_write(holder, id, Some((changes, expires_at)))
                        .await
                    {
                        Committed::Applied { version }
                    } else {
                        Committed::Missing
                    },
                )
            }
        }
    }

    pub(super) async fn mirror_touch(
        self: &Arc<Self>,
        id: &SessionId,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let (primary, secondary) = tokio::join!(
            self.call(
                &self.primary,
                "touch",
                self.primary.store.touch(id, expires_at)
            ),
            self.call(
                &self.secondary,
                "touch",
                self.secondary.store.touch(id, expires_at)
            ),
        );
        // A touch the down store missed needs no mark: its copy expires
        // early into the one-sided rule, which copies the session back.
        match self.settle(id, Some(Missed::Write), "touch", primary, secondary)? {
            Both::OneSide { answer, .. } => Ok(answer),
            Both::Answered(p, s) if p == s => Ok(p),
            Both::Answered(p, _) => {
                let holder = if p { &self.primary } else { &self.secondary };
                Ok(self.one_sided_write(holder, id, None).await)
            }
        }
    }

    /// A write applied on `holder` found no session on the other store.
    /// Whether it stands is the load rule's call: the other store lost the
    /// session (it gets `holder`'s copy, and the write stands), or it holds
    /// a tombstone (the session was deleted, so `holder`'s copy goes and the
    /// write is `Missing`).
    ///
    /// A logout or an end-all racing the write needs no check here: both
    /// leave their tombstone or owner fence in both stores before they end
    /// a copy, so a copy made after the tombstone is ended by the next
    /// read. (Asking `holder` again and deleting the copy when `holder`'s
    /// was gone took a conditional delete that found a commit on one store
    /// and deleted the other's copy for a logout, and ended a live session.)
    ///
    /// A commit (`commit` is its changes and expiry) is acknowledged once
    /// the other store holds it too: the copy this call made from `holder`
    /// (read after the commit landed there), or a copy someone else made
    /// that shows the commit's changes, or, failing both, the changes
    /// applied to that copy now (unless they clear the session, which could
    /// wipe a later commit's keys there). Otherwise it is acknowledged with
    /// an ahead mark on `holder` that makes every server's read repair the
    /// other store, and this process replays the write.
    async fn one_sided_write(
        self: &Arc<Self>,
        holder: &Side,
        id: &SessionId,
        commit: Option<(&Changes, SystemTime)>,
    ) -> bool {
        match self.call(holder, "load", holder.store.load(id)).await {
            Ok(Reply::Answer(Some(record))) => {
                let OneSided::Kept { copy, .. } = self.one_sided(holder, record).await else {
                    return false;
                };
                let other = self.other(holder);
                let on_both = match (copy, commit) {
                    (Copy::Made, _) | (Copy::Found(_), None) => true,
                    (Copy::Found(theirs), Some((changes, _))) if shows(&theirs, changes) => true,
                    (Copy::Found(_), Some((changes, expires_at))) if !changes.clears() => matches!(
                        self.call(other, "repair", other.store.commit(id, changes, expires_at))
                            .await,
                        Ok(Reply::Answer(Committed::Applied { .. }))
                    ),
                    (Copy::Found(_) | Copy::Failed, _) => false,
                };
                if !on_both {
                    // Acknowledged while only `holder` is sure to have it:
                    // the mark tells every app server's read to repair the
                    // other store, and the replay owes it the write.
                    let _ = self.missed(other, id, Missed::Write);
                    self.mark_ahead(holder, id).await;
                }
                true
            }
            // Gone since the write: deleted or expired in between.
            Ok(Reply::Answer(None)) => false,
            // Cannot read what was just written: let the write stand and
            // the next read settle it.
            Ok(Reply::Down(_)) | Err(_) => true,
        }
    }

    /// Deletes `id` from both stores, leaving a tombstone in each first.
    ///
    /// The tombstones come first because a delete cannot reach both stores
    /// at the same instant. An app server whose load reads one store before
    /// the delete and the other after it sees a copy on one side only,
    /// exactly what a store that lost its data looks like; without a
    /// tombstone it copied the session back, and a stolen cookie outlived
    /// its owner's logout. With the tombstones in place before either copy
    /// goes, [`one_sided`](Self::one_sided) finds one and ends the copy
    /// instead.
    ///
    /// Acknowledged once every store that is up took the delete and at
    /// least one of them holds the tombstone; a store that is down gets the
    /// delete replayed, and meanwhile the survivor's tombstone keeps its old
    /// copy from coming back.
    pub(super) async fn mirror_delete(self: &Arc<Self>, id: &SessionId) -> Result<(), StoreError> {
        let tombstone = id.derive(TOMBSTONE_DOMAIN);
        let (primary_mark, secondary_mark) = tokio::join!(
            self.leave_marker(&self.primary, &tombstone, self.tombstone_ttl),
            self.leave_marker(&self.secondary, &tombstone, self.tombstone_ttl),
        );
        let (primary, secondary) = tokio::join!(
            self.call(&self.primary, "delete", self.primary.store.delete(id)),
            self.call(&self.secondary, "delete", self.secondary.store.delete(id)),
        );
        let marked = |role| match role {
            Role::Primary => primary_mark.is_ok(),
            Role::Secondary => secondary_mark.is_ok(),
        };
        match self.settle(id, Some(Missed::Delete), "delete", primary, secondary)? {
            Both::Answered((), ()) if marked(Role::Primary) || marked(Role::Secondary) => Ok(()),
            Both::OneSide { by, .. } if marked(by) => Ok(()),
            // No store that took the delete holds a tombstone, so a racing
            // read could copy the session back: not acknowledged, and the
            // caller's retry finishes it.
            _ => Err(primary_mark
                .err()
                .or(secondary_mark.err())
                .unwrap_or_else(|| StoreError::new(crate::ErrorKind::Unavailable, "delete"))),
        }
    }

    /// The conditional delete of `cycle_id`, between its tombstones: they
    /// go into both stores first, as for a delete, so that from the moment
    /// the primary ends the old id no read or commit can copy it back from
    /// the other store (a commit that reached the other store after the
    /// primary's end was briefly visible there, and a read copied it back).
    /// When the old id is not ended after all (`Changed`, `Missing`), the
    /// tombstones this call created are withdrawn, each only if nothing
    /// placed it again meanwhile (a real logout's delete bumps it).
    pub(super) async fn mirror_delete_if_version_fenced(
        self: &Arc<Self>,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let tombstone = id.derive(TOMBSTONE_DOMAIN);
        let (on_primary, on_secondary) = tokio::join!(
            self.leave_marker(&self.primary, &tombstone, self.tombstone_ttl),
            self.leave_marker(&self.secondary, &tombstone, self.tombstone_ttl),
        );
        let answer = self.mirror_delete_if_version(id, version).await;
        if !matches!(answer, Ok(ConditionalDelete::Deleted)) {
            self.retract_tombstones(
                &tombstone,
                matches!(on_primary, Ok(true)),
                matches!(on_secondary, Ok(true)),
            )
            .await;
        }
        answer
    }

    /// The conditional delete, decided by the primary: its copy is the
    /// one the version is checked against, and only a primary that cannot
    /// answer for the session (down, or known to lack it: it came back
    /// empty or owes writes) hands the decision to the secondary.
    ///
    /// Asking both stores at once and settling their answers let two
    /// `cycle_id`s of one session both succeed, each deleting the old id
    /// on one store and finding it gone on the other, and fork the session;
    /// and it deleted the primary's complete copy when the secondary's
    /// stale one answered `Changed`, which a read then copied back (both
    /// found by the explorer over real servers). After `Deleted`, the
    /// caller ends the other copy as a delete does, tombstones first.
    async fn mirror_delete_if_version(
        self: &Arc<Self>,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let primary = &self.primary;
        let answer = self
            .call(
                primary,
                "delete_if_version",
                primary.store.delete_if_version(id, version),
            )
            .await?;
        match answer {
            Reply::Answer(ConditionalDelete::Missing) if self.may_lack(primary, id) => {}
            Reply::Answer(answer) => return Ok(answer),
            Reply::Down(_) => {}
        }
        let secondary = &self.secondary;
        match self
            .call(
                secondary,
                "delete_if_version",
                secondary.store.delete_if_version(id, version),
            )
            .await?
        {
            Reply::Answer(answer) => Ok(answer),
            Reply::Down(err) => Err(err),
        }
    }
}

/// How often [`Inner::copy_to`] tries again when racing repairs keep
/// taking the id first; each round replaces an older copy.
const COPY_ATTEMPTS: usize = 3;

/// What [`Inner::one_sided`] made of a copy found on one store only.
// Short-lived, one per load that finds a single copy, and moved straight
// into the answer: boxing the record would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum OneSided {
    /// A tombstone or an owner fence said the session was ended; the copy
    /// was deleted.
    Ended,
    /// The session stands; `copy` says what the other store holds now.
    Kept { record: Record, copy: Copy },
}

impl OneSided {
    fn served(self) -> Option<Record> {
        match self {
            Self::Ended => None,
            Self::Kept { record, .. } => Some(record),
        }
    }
}

/// What [`Inner::copy_to`] left on the other store.
enum Copy {
    /// The copy this call made.
    Made,
    /// A copy someone else made, at the version copied or later (its data):
    /// it took as many commits, not necessarily the same ones.
    Found(Data),
    /// No copy this call can vouch for: the store is down, the session went
    /// away meanwhile, or racing repairs kept replacing each other.
    Failed,
}

/// Whether `data` shows what `changes` did: every key set to its value
/// and every removed key absent. A concurrent commit to the same key can
/// hide a change that is there; re-applying it then may leave the two
/// stores with different last writers of that key, which the contract
/// leaves open for concurrent writes to one key anyway.
fn shows(data: &Data, changes: &Changes) -> bool {
    !changes.clears()
        && changes
            .sets()
            .iter()
            .all(|(key, value)| data.get(key) == Some(value))
        && changes.removals().iter().all(|key| !data.contains_key(key))
}

/// The source of a load refused because the store that answered may lack
/// the session (see [`Inner::may_lack`]).
#[derive(Debug, thiserror::Error)]
#[error("the {0} store answered, but it is missing writes that only the store that is down holds")]
struct Incomplete(&'static str);
