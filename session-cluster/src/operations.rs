//! The owner's side of each session operation (create, commit, touch,
//! delete and the two conditional deletes): run on the session's owner node
//! under the session's lock, applied on every other holder before the
//! answer. Each request's [`OwnerCall`] impl says which one serves it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use session_core::{store::Changes, ErrorKind, StoreError};
use tokio::time::Instant;

use crate::{
    coordinator::{kept_losing, OwnerCall, Serving, MAX_ATTEMPTS},
    entry::{Entry, Live},
    local::{Installed, Touched},
    node::Inner,
    placement::{Member, View},
    protocol::{
        Commit, CommitOutcome, CopyOutcome, Create, CreateCopy, CreateOutcome, Delete,
        DeleteIfVersion, Encoded, EndOutcome, EndOwned, Install, Load, PatchOutcome, Touch,
        TouchCopy, WireConditionalDelete,
    },
    wire::WireLive,
};

impl Inner {
    pub(crate) async fn create_here(
        &self,
        key: &str,
        live: Live,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<CreateOutcome, StoreError> {
        if self.read_base(key, view, deadline).await?.is_some() {
            return Ok(CreateOutcome::IdTaken);
        }
        let msg = Encoded::new(CreateCopy {
            key: key.to_owned(),
            record: (&live).into(),
        })?;
        for answer in self.to_holders(holders, &msg, deadline).await {
            match answer? {
                CopyOutcome::Accepted => {}
                CopyOutcome::Conflict(_) => return Ok(CreateOutcome::IdTaken),
            }
        }
        Ok(match self.local.create(key, live) {
            Installed::Accepted => CreateOutcome::Created,
            Installed::Conflict(_) => CreateOutcome::IdTaken,
        })
    }

    pub(crate) async fn commit_here(
        &self,
        key: &str,
        changes: &Changes,
        expires_at: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<CommitOutcome, StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = base.and_then(|e| e.into_live(self.clock.now())) else {
                return Ok(CommitOutcome::Missing);
            };
            let mut data = session_core::store::Data::clone(&current.data);
            changes.apply_to(&mut data);
            let owner = match changes.owner() {
                Some(owner) => owner.cloned(),
                None => current.owner.clone(),
            };
            let next = Entry::Live(Live {
                data: Arc::new(data),
                created_at: current.created_at,
                expires_at,
                version: current.version + 1,
                owner,
                lifetime: changes.lifetime().unwrap_or(current.lifetime),
            });
            match self.replicate(key, &next, holders, deadline).await? {
                None => {
                    return Ok(CommitOutcome::Applied {
                        version: current.version + 1,
                    })
                }
                // Another coordinator got there first (the nodes briefly
                // disagreed about the owner): apply this commit on top of
                // its result, as two commits on one owner would be.
                Some(newer) => base = Some(newer),
            }
        }
        Err(kept_losing("commit"))
    }

    pub(crate) async fn touch_here(
        &self,
        key: &str,
        expires_at: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = base.and_then(|e| e.into_live(self.clock.now())) else {
                return Ok(false);
            };
            let msg = Encoded::new(TouchCopy {
                key: key.to_owned(),
                version: current.version,
                expires_at,
            })?;
            let touched = Entry::Live(Live {
                expires_at,
                ..current.clone()
            });
            let mut newer = None;
            for (holder, answer) in holders
                .iter()
                .zip(self.to_holders(holders, &msg, deadline).await)
            {
                match answer? {
                    PatchOutcome::Accepted => {}
                    // A holder without this version gets the whole record.
                    PatchOutcome::NeedRecord => {
                        let install = Encoded::new(Install {
                            key: key.to_owned(),
                            entry: (&touched).into(),
                        })?;
                        match self.link.call(holder.addr, &install, deadline).await? {
                            CopyOutcome::Accepted => {}
                            CopyOutcome::Conflict(entry) => {
                                newer = Entry::newest(newer, Some(entry.into()));
                            }
                        }
                    }
                    PatchOutcome::Conflict(entry) => {
                        newer = Entry::newest(newer, Some(entry.into()));
                    }
                }
            }
            if newer.is_none() {
                match self.local.touch(key, current.version, expires_at) {
                    Touched::Applied => return Ok(true),
                    Touched::Conflict(entry) => newer = Some(entry),
                    Touched::NeedRecord => {
                        let _ = self.local.install(key, touched);
                        return Ok(true);
                    }
                }
            }
            if let Some(newer) = &newer {
                let _ = self.local.install(key, newer.clone());
            }
            base = newer;
        }
        Err(kept_losing("touch"))
    }

    pub(crate) async fn delete_here(
        &self,
        key: &str,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        if base.is_none() && view.len() < self.expected && self.horizon().is_zero() {
            // Members are missing, and they may hold a copy this node cannot
            // see; with no lifetime heard of, no tombstone is known to
            // outlive that copy. Claiming the delete could let the copy come
            // back when they return.
            return Err(
                StoreError::new(ErrorKind::Unavailable, "delete").with_source(format!(
                    "no copy found among the {} of {} members in view, and no session lifetime is \
                 known yet to make the delete outlast a copy on the others",
                    view.len(),
                    self.expected
                )),
            );
        }
        self.tombstone(key, base.as_ref(), None, holders, deadline, "delete")
            .await
    }

    /// The longest lifetime any live copy was given that this node knows
    /// of, here or (through leases) on its peers.
    pub(crate) fn horizon(&self) -> Duration {
        self.local.horizon().max(self.lease.peer_horizon())
    }

    /// Replaces the session at `key` (now `base`) with a tombstone on every
    /// holder. Ids are never reused, so the tombstone can outrank every
    /// version; it lasts as long as any copy of the record could, and at
    /// least until `at_least`.
    pub(crate) async fn tombstone(
        &self,
        key: &str,
        base: Option<&Entry>,
        at_least: Option<SystemTime>,
        holders: &[&Member],
        deadline: Instant,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        // With no copy in reach, a copy may still live out of reach (on
        // the far side of a partition, on a node that is restarting): the
        // tombstone must outlive it, or the copy comes back when it
        // returns. No copy anywhere lives longer than the longest lifetime
        // any node has stored, which leases carry between nodes.
        let floor = self.clock.now()
            + if base.is_none() {
                self.settle_time.max(self.horizon())
            } else {
                self.settle_time
            };
        let until = base
            .map(Entry::until)
            .into_iter()
            .chain(at_least)
            .fold(floor, SystemTime::max);
        let gone = Entry::Gone {
            version: u64::MAX,
            until,
        };
        match self.replicate(key, &gone, holders, deadline).await? {
            None | Some(Entry::Gone { .. }) => Ok(()),
            Some(_) => Err(StoreError::new(ErrorKind::Other, operation)
                .with_source("a live copy outranked a tombstone, which versions forbid")),
        }
    }

    /// The owner's side of `delete_if_version`: under the session's lock,
    /// so a commit racing it is applied wholly before (and the answer is
    /// `Changed`) or finds the tombstone.
    pub(crate) async fn delete_if_version_here(
        &self,
        key: &str,
        version: u64,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<WireConditionalDelete, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        let answer = match &base {
            Some(Entry::Live(live)) if live.expires_at > self.clock.now() => {
                if live.version != version {
                    return Ok(WireConditionalDelete::Changed);
                }
                WireConditionalDelete::Deleted
            }
            _ => return Ok(WireConditionalDelete::Missing),
        };
        self.tombstone(
            key,
            base.as_ref(),
            None,
            holders,
            deadline,
            "delete_if_version",
        )
        .await?;
        Ok(answer)
    }

    /// The owner's side of one conditional delete of `delete_by_owner`:
    /// under the session's lock, so a commit racing it is applied wholly
    /// before (and deleted with the session) or finds it missing.
    pub(crate) async fn end_owned_here(
        &self,
        key: &str,
        owner: &str,
        until: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<EndOutcome, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        let ended = match &base {
            Some(Entry::Live(live)) if live.expires_at > self.clock.now() => {
                if !live.owned_by(owner) {
                    return Ok(EndOutcome::Kept);
                }
                EndOutcome::Ended
            }
            Some(Entry::Gone { .. }) => return Ok(EndOutcome::Absent),
            // Not a session; nothing of this owner's to end.
            Some(Entry::Index(_)) => return Ok(EndOutcome::Kept),
            // Expired, or not written yet: a create that indexed this id may
            // still be on its way. The tombstone makes it find the id taken,
            // so once its entry leaves the index no session can appear
            // behind it; the index entry's `until` is as long as it could live.
            _ => EndOutcome::Absent,
        };
        self.tombstone(
            key,
            base.as_ref(),
            Some(until),
            holders,
            deadline,
            "delete_by_owner",
        )
        .await?;
        Ok(ended)
    }
}

#[async_trait]
impl OwnerCall for Load {
    const READ: bool = true;
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<Option<WireLive>, StoreError> {
        let entry = inner.read_base(&self.key, at.view, at.deadline).await?;
        Ok(entry
            .as_ref()
            .and_then(|e| e.live(inner.clock.now()))
            .map(WireLive::from))
    }
}

#[async_trait]
impl OwnerCall for Create {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<CreateOutcome, StoreError> {
        inner
            .create_here(
                &self.key,
                self.record.into(),
                at.view,
                at.holders,
                at.deadline,
            )
            .await
    }
}

#[async_trait]
impl OwnerCall for Commit {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<CommitOutcome, StoreError> {
        let changes = self.changes.into();
        inner
            .commit_here(
                &self.key,
                &changes,
                self.expires_at,
                at.view,
                at.holders,
                at.deadline,
            )
            .await
    }
}

#[async_trait]
impl OwnerCall for Touch {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<bool, StoreError> {
        inner
            .touch_here(&self.key, self.expires_at, at.view, at.holders, at.deadline)
            .await
    }
}

#[async_trait]
impl OwnerCall for Delete {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<(), StoreError> {
        inner
            .delete_here(&self.key, at.view, at.holders, at.deadline)
            .await
    }
}

#[async_trait]
impl OwnerCall for DeleteIfVersion {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(
        self,
        inner: &Inner,
        at: &Serving<'_>,
    ) -> Result<WireConditionalDelete, StoreError> {
        inner
            .delete_if_version_here(&self.key, self.version, at.view, at.holders, at.deadline)
            .await
    }
}

#[async_trait]
impl OwnerCall for EndOwned {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<EndOutcome, StoreError> {
        inner
            .end_owned_here(
                &self.key,
                &self.owner,
                self.until,
                at.view,
                at.holders,
                at.deadline,
            )
            .await
    }
}
