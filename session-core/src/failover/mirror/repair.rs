//! Mirror mode's background repair: replacing the stale copy of a session
//! with the copy that holds every acknowledged commit.

use std::sync::Arc;

use super::Copy;
use crate::{
    failover::{Inner, Missed, Reply, Role, Side, AHEAD_DOMAIN},
    ConditionalDelete, Record, SessionId, StoreError,
};

impl Inner {
    /// Repairs `id` in the background (see [`repair_copy`](Self::repair_copy)),
    /// at most one repair per session at a time, and at most
    /// [`with_max_pending`](crate::failover::FailoverStoreBuilder::with_max_pending) at once.
    pub(super) fn start_repair(self: &Arc<Self>, id: SessionId, winner: Role) {
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
    pub(super) async fn remove_stale(
        self: &Arc<Self>,
        side: &Side,
        id: &SessionId,
        version: u64,
    ) -> bool {
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
    pub(super) async fn repair_call<T>(
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

pub(super) fn count_repair(side: &Side) {
    metrics::counter!(crate::telemetry::FAILOVER_REPAIRS, "role" => side.role.name()).increment(1);
}

pub(super) fn log_failed_repair(side: &Side, err: &StoreError) {
    tracing::debug!(
        target: "session_kit::failover",
        store = side.role.name(),
        error.kind = ?err.kind(),
        "a repair failed; the next read tries again"
    );
}
