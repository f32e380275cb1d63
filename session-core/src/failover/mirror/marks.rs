//! Mirror mode's markers: the tombstones a delete leaves, the ahead marks
//! that say which store took commits the other missed, and the owner
//! fences that end an owner's sessions.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::{
    failover::{Inner, Reply, Side, AHEAD_DOMAIN, OWNER_FENCE_DOMAIN},
    Changes, Created, Data, Record, SessionId, StoreError,
};

impl Inner {
    /// Leaves `owner`'s fence in both stores: every session of the owner
    /// created before now was ended. Returns the outage of a store that is
    /// down: the fence in the other one is what stops the down store's
    /// copies coming back when it returns.
    pub(in crate::failover) async fn fence_owner(
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
    pub(super) async fn fenced(self: &Arc<Self>, side: &Side, record: &Record) -> bool {
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
    pub(super) async fn holds(self: &Arc<Self>, side: &Side, marker: &SessionId) -> bool {
        matches!(
            self.call(side, "stamp", side.store.stamp(marker)).await,
            Ok(Reply::Answer(Some(_)))
        )
    }

    /// `side`'s ahead mark `mark`: when it was last placed, and its
    /// version (which every placing bumps). `None` when it holds none, or
    /// cannot say.
    pub(super) async fn mark_of(self: &Arc<Self>, side: &Side, mark: &SessionId) -> Option<Mark> {
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
    /// Only a repair deletes a mark, and only at the version it read
    /// before repairing (a plain delete could not tell a mark it has seen
    /// repaired from one a commit just placed for a newer gap, and a mark
    /// placed again since keeps it); otherwise it lives for
    /// [`AHEAD_MARK_TTL`] from the last time a commit placed it, capped by
    /// the tombstone lifetime. While it lives, a read that finds the two
    /// copies apart repairs the stale one, so a repair that raced a commit
    /// and left the stores apart is mended by the next read.
    pub(super) async fn mark_ahead(self: &Arc<Self>, side: &Side, id: &SessionId) {
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

    /// Stores a record under `marker` on `side` that says when it was placed
    /// ([`MARKED_AT_FIELD`]) and lives for `lifetime` from now; one that is
    /// there already is placed again (its time moved to now, kept at least
    /// that long) through a commit, which bumps its version (see
    /// [`retract_tombstones`](Self::retract_tombstones)). `Ok(true)` when
    /// this call created it.
    pub(super) async fn leave_marker(
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

    /// Deletes the tombstone `marker` where this process created it, only
    /// at the version it was created with.
    pub(super) async fn retract_tombstones(
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
}

/// How long an ahead mark lives after the last commit that placed it:
/// long past the replay and the reads that repair the gap it marks, short
/// enough that marks of sessions committed during an outage do not pile up
/// for the tombstone lifetime.
const AHEAD_MARK_TTL: Duration = Duration::from_secs(10 * 60);

/// An ahead mark as read.
pub(super) struct Mark {
    /// When it was last placed, in milliseconds since the Unix epoch.
    pub(super) at: u64,
    /// Its record's version: bumped by every placing.
    pub(super) version: u64,
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
