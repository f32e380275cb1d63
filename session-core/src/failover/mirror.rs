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

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{
    count_fallback, Inner, Missed, Reply, Role, Side, AHEAD_DOMAIN, OWNER_FENCE_DOMAIN,
    TOMBSTONE_DOMAIN,
};
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

    /// Repairs `id` in the background (see [`repair_copy`](Self::repair_copy)),
    /// at most one repair per session at a time, and at most
    /// [`with_max_pending`](super::FailoverStoreBuilder::with_max_pending) at once.
    fn start_repair(self: &Arc<Self>, id: SessionId, winner: Role) {
        {
            let mut repairing = self
                .repairing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if repairing.len() >= self.max_pending || !repairing.insert(id) {
                return;
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.repairing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            return;
        };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            inner.repair_copy(id, winner).await;
            inner
                .repairing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
        });
    }

    /// Replaces the copy of `id` on `winner`'s rival with `winner`'s, which
    /// holds every acknowledged commit, without dropping one that is on
    /// the rival only because it is still on its way to `winner`:
    /// 1. read the rival's copy, and the ahead mark;
    /// 2. wait one call timeout: both halves of a commit start together and
    ///    each is bounded by it, so every commit the rival held in step 1
    ///    has reached `winner` by then (or failed, unacknowledged);
    /// 3. read `winner`'s copy, which now holds all of them;
    /// 4. delete the rival's copy only if it is still the one read in step 1
    ///    (a commit that reached it since keeps it; the next read tries
    ///    again), and create `winner`'s copy there; a commit arriving in
    ///    between finds the session missing and copies it over itself;
    /// 5. then drop the ahead mark, only if no commit placed it again since
    ///    step 1.
    ///
    /// Replacing the rival from the read that found the gap, as before,
    /// dropped a commit that had reached the rival and not yet `winner`
    /// (the explorer found it).
    ///
    /// A repair that finds the rival moved on (a commit reached it after
    /// step 1) tries again from step 1, up to [`REPAIR_ATTEMPTS`] times:
    /// giving up at once left a stale copy for good under steady commits,
    /// and the primary's death then lost a write (the explorer found it).
    async fn repair_copy(self: &Arc<Self>, id: SessionId, winner: Role) {
        for _ in 0..REPAIR_ATTEMPTS {
            if self.repair_once(id, winner).await != Repaired::Moved {
                return;
            }
        }
    }

    async fn repair_once(self: &Arc<Self>, id: SessionId, winner: Role) -> Repaired {
        let (winner, rival) = (self.side(winner), self.other(self.side(winner)));
        let mark_id = id.derive(AHEAD_DOMAIN);
        let (theirs, mark) = tokio::join!(
            self.call(rival, "load", rival.store.load(&id)),
            self.mark_of(winner, &mark_id),
        );
        let Ok(Reply::Answer(Some(theirs))) = theirs else {
            // Gone (the one-sided rule takes it from here) or unreadable.
            return Repaired::GaveUp;
        };
        tokio::time::sleep(self.call_timeout).await;
        let Ok(Reply::Answer(Some(ours))) = self.call(winner, "load", winner.store.load(&id)).await
        else {
            return Repaired::GaveUp;
        };
        if ours.version == theirs.version && ours.data == theirs.data {
            // Already the same: nothing to replace.
        } else if !self.overwrite(rival, theirs.version, &ours).await {
            return Repaired::Moved;
        }
        if let Some(mark) = mark {
            let _ = self
                .call(
                    winner,
                    "repair",
                    winner.store.delete_if_version(&mark_id, mark.version),
                )
                .await;
        }
        Repaired::Done
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

    /// Leaves `owner`'s fence in both stores: every session of the owner
    /// created before now was ended. Returns the outage of a store that is
    /// down: the fence in the other one is what stops the down store's
    /// copies coming back when it returns.
    pub(super) async fn fence_owner(
        self: &Arc<Self>,
        owner: &str,
    ) -> Result<Option<StoreError>, StoreError> {
        let now = SystemTime::now();
        let fence = fence_id(owner);
        let ended_at = crate::failover::millis_text(now);
        let expires_at = now + self.tombstone_ttl;
        let mut record = Record::new(fence, Data::new(), now, expires_at);
        record.data.insert(FENCE_FIELD.to_owned(), ended_at.clone());
        let mut changes = Changes::default();
        changes.set(FENCE_FIELD, ended_at);
        let mut outage = None;
        for side in [&self.primary, &self.secondary] {
            let down = match self
                .call(side, "create", side.store.create(&record))
                .await?
            {
                Reply::Answer(Created::Created) => None,
                // An earlier fence: move it to now.
                Reply::Answer(Created::IdTaken) => {
                    match self
                        .call(
                            side,
                            "commit",
                            side.store.commit(&fence, &changes, expires_at),
                        )
                        .await?
                    {
                        Reply::Answer(_) => None,
                        Reply::Down(err) => Some(err),
                    }
                }
                Reply::Down(err) => Some(err),
            };
            outage = outage.or(down);
        }
        Ok(outage)
    }

    /// Whether `side` holds a fence of `record`'s owner from after the
    /// record was created: the session was ended with its owner's.
    ///
    /// A record does not say when it got its owner, only when it was
    /// created, so a session created before the fence that took the owner
    /// after it (a login without `cycle_id`, which would have made a new
    /// record) and then went missing from one store is taken for an ended
    /// one here: its user logs in again. Nothing ended ever comes back,
    /// which is the rule this check exists for.
    async fn fenced(self: &Arc<Self>, side: &Side, record: &Record) -> bool {
        let Some(owner) = &record.owner else {
            return false;
        };
        let Ok(Reply::Answer(Some(fence))) = self
            .call(side, "load", side.store.load(&fence_id(&owner.name)))
            .await
        else {
            return false;
        };
        fence
            .data
            .get(FENCE_FIELD)
            .and_then(|text| text.parse::<u64>().ok())
            .is_some_and(|ended_at| ended_at >= crate::failover::millis(record.created_at))
    }

    /// Whether `side` holds a live record under `marker` (a tombstone or
    /// an ahead mark). A store that cannot say counts as "no": serving the
    /// session beats failing the request, and repairs wait for a later read.
    async fn holds(self: &Arc<Self>, side: &Side, marker: &SessionId) -> bool {
        matches!(
            self.call(side, "stamp", side.store.stamp(marker)).await,
            Ok(Reply::Answer(Some(_)))
        )
    }

    /// `side`'s ahead mark `mark`: when it was last placed, and its
    /// version (which every placing bumps). `None` when it holds none, or
    /// cannot say.
    async fn mark_of(self: &Arc<Self>, side: &Side, mark: &SessionId) -> Option<Mark> {
        match self.call(side, "load", side.store.load(mark)).await {
            Ok(Reply::Answer(Some(record))) => Some(Mark {
                at: record
                    .data
                    .get(MARKED_AT_FIELD)
                    .and_then(|at| at.parse().ok())
                    .unwrap_or(0),
                version: record.version,
            }),
            _ => None,
        }
    }

    /// Marks on `side` that `id` took commits the other store missed, so
    /// any app server's read knows which copy holds everything and repairs
    /// the other.
    ///
    /// A mark is never deleted (a delete could not tell a mark it has seen
    /// repaired from one a commit just placed for a newer gap); it lives
    /// for [`AHEAD_MARK_TTL`] from the last time a commit placed it, capped
    /// by the tombstone lifetime. While it lives, a read that finds the two
    /// copies apart repairs the stale one, so a repair that raced a commit
    /// and left the stores apart is mended by the next read.
    async fn mark_ahead(self: &Arc<Self>, side: &Side, id: &SessionId) {
        let lifetime = AHEAD_MARK_TTL.min(self.tombstone_ttl);
        if let Err(err) = self
            .leave_marker(side, &id.derive(AHEAD_DOMAIN), lifetime)
            .await
        {
            // This process's replay set still names the store behind, and
            // its replay repairs it; other servers' reads serve the primary.
            tracing::debug!(
                target: "session_kit::failover",
                store = side.role.name(),
                error.kind = ?err.kind(),
                "could not mark a session as ahead"
            );
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

    /// Stores a record under `marker` on `side` that says when it was placed
    /// ([`MARKED_AT_FIELD`]) and lives for `lifetime` from now; one that is
    /// there already is placed again (its time moved to now, kept at least
    /// that long) through a commit, which bumps its version (see
    /// [`retract_tombstones`](Self::retract_tombstones)). `Ok(true)` when
    /// this call created it.
    async fn leave_marker(
        self: &Arc<Self>,
        side: &Side,
        marker: &SessionId,
        lifetime: Duration,
    ) -> Result<bool, StoreError> {
        let now = SystemTime::now();
        let at = crate::failover::millis_text(now);
        let mut record = Record::new(*marker, Data::new(), now, now + lifetime);
        record.data.insert(MARKED_AT_FIELD.to_owned(), at);
        match self
            .call(side, "create", side.store.create(&record))
            .await?
        {
            Reply::Answer(Created::Created) => Ok(true),
            // Already there: make it last from now. A commit that finds it
            // just expired leaves no marker; the caller's retry places it.
            Reply::Answer(Created::IdTaken) => {
                let mut changes = Changes::default();
                changes.set(MARKED_AT_FIELD, crate::failover::millis_text(now));
                match self
                    .call(
                        side,
                        "commit",
                        side.store.commit(marker, &changes, record.expires_at),
                    )
                    .await?
                {
                    Reply::Answer(_) => Ok(false),
                    Reply::Down(err) => Err(err),
                }
            }
            Reply::Down(err) => Err(err),
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

    /// Deletes the tombstone `marker` where this process created it, only
    /// at the version it was created with.
    async fn retract_tombstones(
        self: &Arc<Self>,
        marker: &SessionId,
        primary: bool,
        secondary: bool,
    ) {
        tokio::join!(
            self.retract_tombstone(&self.primary, marker, primary),
            self.retract_tombstone(&self.secondary, marker, secondary),
        );
    }

    async fn retract_tombstone(self: &Arc<Self>, side: &Side, marker: &SessionId, created: bool) {
        if created {
            let _ = self
                .call(
                    side,
                    "repair",
                    side.store.delete_if_version(marker, Record::FIRST_VERSION),
                )
                .await;
        }
    }

    /// Replaces `side`'s copy, read at `stale_version`, with `record`,
    /// which is newer. True once `side` holds this version or a later one.
    /// The trait has no unconditional write, so this is a delete and a
    /// create, which also gives both stores the same version again; see
    /// [`remove_stale`](Self::remove_stale) for why the delete is
    /// conditional.
    async fn overwrite(self: &Arc<Self>, side: &Side, stale_version: u64, record: &Record) -> bool {
        self.remove_stale(side, &record.id, stale_version).await
            && !matches!(self.copy_to(side, record).await, Copy::Failed)
    }

    /// Deletes `side`'s copy of `id` only if it is still at `version`, the
    /// stale version a repair read. A commit that reached the copy since
    /// then was acknowledged against both stores; deleting the copy with it
    /// and recreating it from the other store's older read left the stores
    /// apart for good, with the commit on one of them only (the explorer
    /// found it). So a copy that moved on is left alone (false), and the
    /// next read compares again. A commit that arrives after the delete
    /// finds the session missing there and copies it over itself.
    ///
    /// A store without [`delete_if_version`](crate::store::SessionStore::delete_if_version)
    /// gets a plain delete: the window above stays open for it.
    async fn remove_stale(self: &Arc<Self>, side: &Side, id: &SessionId, version: u64) -> bool {
        match self
            .call(side, "repair", side.store.delete_if_version(id, version))
            .await
        {
            Ok(Reply::Answer(ConditionalDelete::Deleted)) => {
                count_repair(side);
                true
            }
            // Moved on (a commit) or gone (a delete, an expiry): not ours
            // to replace now.
            Ok(Reply::Answer(ConditionalDelete::Changed | ConditionalDelete::Missing)) => false,
            Err(err) if err.kind() == crate::ErrorKind::Unsupported => {
                self.repair_call(side, id, Missed::Write, side.store.delete(id))
                    .await
            }
            Ok(Reply::Down(_)) => {
                let _ = self.missed(side, id, Missed::Write);
                false
            }
            Err(err) => {
                log_failed_repair(side, &err);
                false
            }
        }
    }

    /// Runs a repair call on `side`. A repair that fails leaves the session
    /// to the replay (`missed`, when the store is down) or to the next read;
    /// it never fails the request that noticed it.
    async fn repair_call<T>(
        self: &Arc<Self>,
        side: &Side,
        id: &SessionId,
        missed: Missed,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> bool {
        match self.call(side, "repair", call).await {
            Ok(Reply::Answer(_)) => {
                count_repair(side);
                true
            }
            Ok(Reply::Down(_)) => {
                let _ = self.missed(side, id, missed);
                false
            }
            Err(err) => {
                log_failed_repair(side, &err);
                false
            }
        }
    }
}

/// How long an ahead mark lives after the last commit that placed it:
/// long past the replay and the reads that repair the gap it marks, short
/// enough that marks of sessions committed during an outage do not pile up
/// for the tombstone lifetime.
const AHEAD_MARK_TTL: Duration = Duration::from_secs(10 * 60);

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

/// How often [`Inner::repair_copy`] tries again when commits keep moving
/// the stale copy; each try waits one call timeout first, so this bounds a
/// repair to about 20 call timeouts (6 s with the defaults).
const REPAIR_ATTEMPTS: usize = 20;

/// What one try of [`Inner::repair_copy`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repaired {
    /// The copies are the same now.
    Done,
    /// A commit moved the stale copy since it was read, or the replacement
    /// did not take: try again.
    Moved,
    /// A copy is gone or a store cannot be read: the one-sided rule, the
    /// replay or the next read takes it from here.
    GaveUp,
}

/// An ahead mark as read.
struct Mark {
    /// When it was last placed, in milliseconds since the Unix epoch.
    at: u64,
    /// Its record's version: bumped by every placing.
    version: u64,
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

fn count_repair(side: &Side) {
    metrics::counter!(crate::telemetry::FAILOVER_REPAIRS, "role" => side.role.name()).increment(1);
}

fn log_failed_repair(side: &Side, err: &StoreError) {
    tracing::debug!(
        target: "session_kit::failover",
        store = side.role.name(),
        error.kind = ?err.kind(),
        "a repair failed; the next read tries again"
    );
}

/// The data key of a marker (an ahead mark, a tombstone): when it was last
/// placed, in milliseconds since the Unix epoch. Of two ahead marks, the
/// newer one's store took the commits the other missed last.
const MARKED_AT_FIELD: &str = "marked_at";

/// The data key of an owner fence: when the owner's sessions were ended,
/// in milliseconds since the Unix epoch.
const FENCE_FIELD: &str = "ended_at";

/// Where `owner`'s fence is kept: an id no cookie names, derived from the
/// owner's name.
fn fence_id(owner: &str) -> SessionId {
    SessionId::derive_from(OWNER_FENCE_DOMAIN, owner.as_bytes())
}
