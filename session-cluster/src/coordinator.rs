//! Routing, and the owner's side of each operation: a client operation goes
//! to the key's owner node, which serialises it per key and applies it on
//! every holder before it answers.

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;
use futures_util::future::join_all;
use session_core::{store::Changes, ErrorKind, StoreError};
use tokio::time::Instant;

use crate::{
    entry::{Entry, Live},
    link::Handler,
    local::{Installed, Touched},
    placement::{Member, View},
    wire::{EndOutcome, Msg, Reply, WireConditionalDelete, WireId, WireLive},
};
use crate::{node::Inner, owner_index::IndexChange};

/// Commits retried after a conflict with a copy written by another
/// coordinator; more would mean the nodes disagree about the owner for
/// longer than a membership change takes.
pub(crate) const MAX_ATTEMPTS: usize = 5;

pub(crate) fn failed(err: &StoreError) -> Reply {
    Reply::Failed {
        kind: err.kind().into(),
        reason: err.to_line(),
    }
}

pub(crate) fn unexpected(operation: &'static str, reply: Reply) -> StoreError {
    match reply {
        Reply::Failed { kind, reason } => {
            StoreError::new(kind.into(), operation).with_source(reason)
        }
        other => StoreError::new(ErrorKind::Corrupt, operation).with_source(format!(
            "a peer answered {operation} with {}",
            reply_name(&other)
        )),
    }
}

pub(crate) fn reply_name(reply: &Reply) -> &'static str {
    match reply {
        Reply::Loaded(_) => "Loaded",
        Reply::Created(_) => "Created",
        Reply::Committed(_) => "Committed",
        Reply::Touched(_) => "Touched",
        Reply::Deleted => "Deleted",
        Reply::Entry(_) => "Entry",
        Reply::Accepted => "Accepted",
        Reply::Conflict(_) => "Conflict",
        Reply::NeedRecord => "NeedRecord",
        Reply::Want(_) => "Want",
        Reply::Indexed => "Indexed",
        Reply::Index(_) => "Index",
        Reply::Ended(_) => "Ended",
        Reply::Failed { .. } => "Failed",
        Reply::DeletedIf(_) => "DeletedIf",
    }
}

impl Inner {
    /// Sends `msg` for `key` to its owner, or serves it here when this node
    /// is the owner, all before `deadline`.
    pub(crate) async fn route(
        &self,
        key: &str,
        msg: Msg,
        operation: &'static str,
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let view = self.view();
        self.check_quorum(&view, operation)?;
        let replicas = view.replicas(key, self.copies);
        let owner = replicas[0];
        if *owner.name == *self.me {
            return Ok(self.coordinate(msg, deadline).await);
        }
        if !matches!(msg, Msg::Load { .. } | Msg::IndexRead { .. }) {
            return self.link.call(owner.addr, &msg, deadline).await;
        }
        // A read may fall back to another holder when the owner does not
        // answer: every holder has every acknowledged commit. The owner gets
        // two thirds of the time so the fallback has some left.
        let now = Instant::now();
        let first = now + (deadline - now) * 2 / 3;
        let err = match self.link.call(owner.addr, &msg, first).await {
            Ok(reply) => return Ok(reply),
            Err(err) => err,
        };
        if !err.kind().is_transient() {
            return Err(err);
        }
        for backup in &replicas[1..] {
            if *backup.name == *self.me {
                return Ok(self.coordinate(msg, deadline).await);
            }
            if let Ok(reply) = self.link.call(backup.addr, &msg, deadline).await {
                return Ok(reply);
            }
        }
        Err(err)
    }

    /// The owner's side of a client operation: serialised per key, applied
    /// here and on every other holder before the answer.
    pub(crate) async fn coordinate(&self, msg: Msg, deadline: Instant) -> Reply {
        let view = self.view();
        let operation = msg.name();
        if let Err(err) = self.check_quorum(&view, operation) {
            return failed(&err);
        }
        let key = match &msg {
            Msg::Load { key }
            | Msg::Create { key, .. }
            | Msg::Commit { key, .. }
            | Msg::Touch { key, .. }
            | Msg::Delete { key }
            | Msg::IndexAdd { key, .. }
            | Msg::IndexRead { key }
            | Msg::IndexRemove { key, .. }
            | Msg::EndOwned { key, .. }
            | Msg::DeleteIfVersion { key, .. } => key.clone(),
            other => return self.serve_copy(other).await,
        };
        let result = if let Msg::Load { .. } = msg {
            self.read_base(&key, &view, deadline).await.map(|entry| {
                Reply::Loaded(
                    entry
                        .as_ref()
                        .and_then(|e| e.live(SystemTime::now()))
                        .map(WireLive::from),
                )
            })
        } else if let Msg::IndexRead { .. } = msg {
            self.read_base(&key, &view, deadline).await.map(|entry| {
                let now = SystemTime::now();
                Reply::Index(match entry {
                    Some(Entry::Index(index)) => index
                        .sessions
                        .iter()
                        .filter(|(_, until)| **until > now)
                        .map(|(id, until)| (WireId(*id), *until))
                        .collect(),
                    _ => Vec::new(),
                })
            })
        } else {
            let Ok(_guard) = tokio::time::timeout_at(deadline, self.lock(&key).lock()).await else {
                return failed(
                    &StoreError::new(ErrorKind::Timeout, operation)
                        .with_source("the session is busy with other commits on its owner"),
                );
            };
            let holders = view.replicas(&key, self.copies);
            let holders = self.others(holders);
            match msg {
                Msg::Create { record, .. } => {
                    self.create_here(&key, record.into(), &view, &holders, deadline)
                        .await
                }
                Msg::Commit {
                    changes,
                    expires_at,
                    ..
                } => {
                    self.commit_here(&key, &changes.into(), expires_at, &view, &holders, deadline)
                        .await
                }
                Msg::Touch { expires_at, .. } => {
                    self.touch_here(&key, expires_at, &view, &holders, deadline)
                        .await
                }
                Msg::Delete { .. } => self.delete_here(&key, &view, &holders, deadline).await,
                Msg::IndexAdd { id, until, .. } => {
                    let change = IndexChange::Add(id.0, until);
                    self.index_here(&key, &change, &view, &holders, deadline)
                        .await
                }
                Msg::IndexRemove { ids, .. } => {
                    let change = IndexChange::Remove(ids.into_iter().map(|id| id.0).collect());
                    self.index_here(&key, &change, &view, &holders, deadline)
                        .await
                }
                Msg::EndOwned { owner, until, .. } => {
                    self.end_owned_here(&key, &owner, until, &view, &holders, deadline)
                        .await
                }
                Msg::DeleteIfVersion { version, .. } => {
                    self.delete_if_version_here(&key, version, &view, &holders, deadline)
                        .await
                }
                _ => unreachable!("matched above"),
            }
        };
        result.unwrap_or_else(|err| failed(&err))
    }

    /// The newest entry for `key` this owner can know of: its own copy, and
    /// the other holders' when it has none or the membership changed
    /// recently (a new owner may not have been handed the session yet). A
    /// newer copy found elsewhere is kept here (read repair).
    pub(crate) async fn read_base(
        &self,
        key: &str,
        view: &View,
        deadline: Instant,
    ) -> Result<Option<Entry>, StoreError> {
        let local = self.local.get(key).await;
        let unsettled = view.changed_at.elapsed() < self.settle_time;
        let ask: Vec<&Member> = if unsettled {
            self.others(&view.members)
        } else if local.is_none() {
            self.others(view.replicas(key, self.copies))
        } else {
            Vec::new()
        };
        if ask.is_empty() {
            return Ok(local);
        }
        let msg = Msg::Fetch {
            key: key.to_owned(),
        };
        let answers = join_all(ask.iter().map(|m| self.link.call(m.addr, &msg, deadline))).await;
        let mut best = local.clone();
        let mut unanswered = None;
        for answer in answers {
            match answer {
                Ok(Reply::Entry(entry)) => best = Entry::newest(best, entry.map(Entry::from)),
                Ok(other) => unanswered = Some(unexpected("load", other)),
                Err(err) => unanswered = Some(err),
            }
        }
        if let (None, Some(err)) = (&best, unanswered) {
            // Saying "no such session" would end it for its user; a holder
            // that did not answer may have it.
            return Err(err);
        }
        if let Some(found) = &best {
            if local.as_ref().is_none_or(|l| found.supersedes(l)) {
                let _ = self.local.install(key, found.clone()).await;
            }
        }
        Ok(best.filter(|entry| entry.is_current(SystemTime::now())))
    }

    /// Sends one message to each holder in parallel.
    pub(crate) async fn to_holders(
        &self,
        holders: &[&Member],
        msg: &Msg,
        deadline: Instant,
    ) -> Vec<Result<Reply, StoreError>> {
        join_all(
            holders
                .iter()
                .map(|m| self.link.call(m.addr, msg, deadline)),
        )
        .await
    }

    pub(crate) async fn create_here(
        &self,
        key: &str,
        live: Live,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        if self.read_base(key, view, deadline).await?.is_some() {
            return Ok(Reply::Created(false));
        }
        let msg = Msg::CreateCopy {
            key: key.to_owned(),
            record: (&live).into(),
        };
        for answer in self.to_holders(holders, &msg, deadline).await {
            match answer? {
                Reply::Accepted => {}
                Reply::Conflict(_) => return Ok(Reply::Created(false)),
                other => return Err(unexpected("create", other)),
            }
        }
        Ok(Reply::Created(matches!(
            self.local.create(key, live).await,
            Installed::Accepted
        )))
    }

    pub(crate) async fn commit_here(
        &self,
        key: &str,
        changes: &Changes,
        expires_at: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = base.and_then(|e| e.into_live(SystemTime::now())) else {
                return Ok(Reply::Committed(None));
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
            });
            match self.replicate(key, &next, holders, deadline).await? {
                None => return Ok(Reply::Committed(Some(current.version + 1))),
                // Another coordinator got there first (the nodes briefly
                // disagreed about the owner): apply this commit on top of
                // its result, as two commits on one owner would be.
                Some(newer) => base = Some(newer),
            }
        }
        Err(kept_losing("commit"))
    }

    /// Installs `next` on every other holder, then here. `Some(entry)` when
    /// a holder (or this node) has something newer: the caller retries on it.
    pub(crate) async fn replicate(
        &self,
        key: &str,
        next: &Entry,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Option<Entry>, StoreError> {
        let msg = Msg::Install {
            key: key.to_owned(),
            entry: next.into(),
        };
        let mut gathered = Gathered::default();
        for answer in self.to_holders(holders, &msg, deadline).await {
            if let Some(other) = gathered.add(answer) {
                gathered.error = Some(unexpected(msg.name(), other));
            }
        }
        self.settle(key, next.clone(), gathered).await
    }

    /// After every holder answered: a newer copy wins (and is installed
    /// here), an error means not acknowledged (a holder may or may not have
    /// the copy; the next commit or re-replication settles it by version),
    /// and otherwise `next` is installed here last.
    pub(crate) async fn settle(
        &self,
        key: &str,
        next: Entry,
        gathered: Gathered,
    ) -> Result<Option<Entry>, StoreError> {
        if let Some(newer) = gathered.newer {
            let _ = self.local.install(key, newer.clone()).await;
            return Ok(Some(newer));
        }
        if let Some(err) = gathered.error {
            return Err(err);
        }
        match self.local.install(key, next).await {
            Installed::Accepted => Ok(None),
            Installed::Conflict(entry) => Ok(Some(entry)),
        }
    }

    pub(crate) async fn touch_here(
        &self,
        key: &str,
        expires_at: SystemTime,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Reply, StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(current) = base.and_then(|e| e.into_live(SystemTime::now())) else {
                return Ok(Reply::Touched(false));
            };
            let msg = Msg::TouchCopy {
                key: key.to_owned(),
                version: current.version,
                expires_at,
            };
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
                    Reply::Accepted => {}
                    // A holder without this version gets the whole record.
                    Reply::NeedRecord => {
                        let install = Msg::Install {
                            key: key.to_owned(),
                            entry: (&touched).into(),
                        };
                        match self.link.call(holder.addr, &install, deadline).await? {
                            Reply::Accepted => {}
                            Reply::Conflict(entry) => {
                                newer = Entry::newest(newer, Some(entry.into()));
                            }
                            other => return Err(unexpected("touch", other)),
                        }
                    }
                    Reply::Conflict(entry) => newer = Entry::newest(newer, Some(entry.into())),
                    other => return Err(unexpected("touch", other)),
                }
            }
            if newer.is_none() {
                match self.local.touch(key, current.version, expires_at).await {
                    Touched::Applied => return Ok(Reply::Touched(true)),
                    Touched::Conflict(entry) => newer = Some(entry),
                    Touched::NeedRecord => {
                        let _ = self.local.install(key, touched).await;
                        return Ok(Reply::Touched(true));
                    }
                }
            }
            if let Some(newer) = &newer {
                let _ = self.local.install(key, newer.clone()).await;
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
    ) -> Result<Reply, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        self.tombstone(key, base.as_ref(), None, holders, deadline, "delete")
            .await?;
        Ok(Reply::Deleted)
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
        let floor = SystemTime::now() + self.settle_time;
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
    ) -> Result<Reply, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        let answer = match &base {
            Some(Entry::Live(live)) if live.expires_at > SystemTime::now() => {
                if live.version != version {
                    return Ok(Reply::DeletedIf(WireConditionalDelete::Changed));
                }
                WireConditionalDelete::Deleted
            }
            _ => return Ok(Reply::DeletedIf(WireConditionalDelete::Missing)),
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
        Ok(Reply::DeletedIf(answer))
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
    ) -> Result<Reply, StoreError> {
        let base = self.read_base(key, view, deadline).await?;
        let ended = match &base {
            Some(Entry::Live(live)) if live.expires_at > SystemTime::now() => {
                if !live.owned_by(owner) {
                    return Ok(Reply::Ended(EndOutcome::Kept));
                }
                EndOutcome::Ended
            }
            Some(Entry::Gone { .. }) => return Ok(Reply::Ended(EndOutcome::Absent)),
            // Not a session; nothing of this owner's to end.
            Some(Entry::Index(_)) => return Ok(Reply::Ended(EndOutcome::Kept)),
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
        Ok(Reply::Ended(ended))
    }
}

/// The holders' answers to one copy: the newest conflicting entry and the
/// last error.
#[derive(Default)]
pub(crate) struct Gathered {
    pub(crate) newer: Option<Entry>,
    pub(crate) error: Option<StoreError>,
}

impl Gathered {
    /// Takes one holder's answer; any reply other than accepted or a
    /// conflict is handed back for the caller to judge.
    pub(crate) fn add(&mut self, answer: Result<Reply, StoreError>) -> Option<Reply> {
        match answer {
            Ok(Reply::Accepted) => None,
            Ok(Reply::Conflict(entry)) => {
                self.newer = Entry::newest(self.newer.take(), Some(entry.into()));
                None
            }
            Ok(other) => Some(other),
            Err(err) => {
                self.error = Some(err);
                None
            }
        }
    }
}

/// A write that lost to a newer copy on every try: the membership is
/// changing under it, and the caller may retry once it has settled.
pub(crate) fn kept_losing(operation: &'static str) -> StoreError {
    StoreError::new(ErrorKind::Unavailable, operation)
        .with_source("the holders kept answering with newer copies; the membership is changing")
}

#[async_trait]
impl Handler for Inner {
    async fn handle(&self, _from: &str, deadline: Instant, msg: Msg) -> Reply {
        self.coordinate(msg, deadline).await
    }
}
