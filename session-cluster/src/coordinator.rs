//! Routing, and the owner's side of each operation: a client operation goes
//! to the key's owner node, which serialises it per key and applies it on
//! every holder before it answers.

use async_trait::async_trait;
use futures_util::future::join_all;
use session_core::{ErrorKind, StoreError};
use tokio::time::Instant;

use crate::{
    entry::Entry,
    link::{Handler, ServedNow},
    local::Installed,
    node::Inner,
    placement::{Member, View},
    protocol::{
        encode_reply, Call, CopyOutcome, Encoded, Failure, Fetch, Install, Load, OwnerRequest,
        PatchOutcome, Request,
    },
    wire::{WireEntry, WireLive},
};

/// Commits retried after a conflict with a copy written by another
/// coordinator; more would mean the nodes disagree about the owner for
/// longer than a membership change takes.
pub(crate) const MAX_ATTEMPTS: usize = 5;

/// What an owner request needs to be served: the view it was routed by,
/// the other holders of its key, and the caller's deadline.
pub(crate) struct Serving<'a> {
    pub(crate) view: &'a View,
    /// Empty for reads, which change no copy.
    pub(crate) holders: &'a [&'a Member],
    pub(crate) deadline: Instant,
}

/// A request the key's owner node serves: how it serves it, returning
/// exactly the request's answer.
#[async_trait]
pub(crate) trait OwnerCall: Call {
    /// A read: it takes no lock, and may fall back to a backup when the
    /// owner does not answer, since every holder has every acknowledged
    /// commit.
    const READ: bool = false;
    /// The key the request is about, which decides its owner.
    fn key(&self) -> &str;
    /// Serves the request on its owner node; writes run under the key's
    /// lock.
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<Self::Reply, StoreError>;
}

impl Inner {
    /// Sends `request` to its key's owner, or serves it here when this
    /// node is the owner, all before `deadline`. An error the owner reports
    /// is named after `operation`.
    pub(crate) async fn route<R: OwnerCall>(
        &self,
        request: R,
        operation: &'static str,
        deadline: Instant,
    ) -> Result<R::Reply, StoreError> {
        let view = self.view();
        self.check_quorum(&view, operation)?;
        let replicas = view.replicas(request.key(), self.copies);
        let owner = replicas[0];
        let failed = |failure: Failure| failure.into_error(operation);
        // Served here, an error travels as it would from a peer, so the
        // caller sees the same error wherever the owner is.
        let here =
            |result: Result<R::Reply, StoreError>| result.map_err(|err| failed(Failure::of(&err)));
        if *owner.name == *self.me {
            return here(self.coordinate(request, deadline).await);
        }
        if !R::READ {
            let request = Encoded::new(request)?;
            return self
                .link
                .ask(owner.addr, &request, deadline)
                .await?
                .map_err(failed);
        }
        // A read may fall back to another holder when the owner does not
        // answer: every holder has every acknowledged commit. The owner gets
        // two thirds of the time so the fallback has some left.
        let encoded = Encoded::new(request.clone())?;
        let now = Instant::now();
        let first = now + (deadline - now) * 2 / 3;
        let err = match self.link.ask(owner.addr, &encoded, first).await {
            Ok(answer) => return answer.map_err(failed),
            Err(err) => err,
        };
        if !err.kind().is_transient() {
            return Err(err);
        }
        for backup in &replicas[1..] {
            if *backup.name == *self.me {
                return here(self.coordinate(request, deadline).await);
            }
            if let Ok(answer) = self.link.ask(backup.addr, &encoded, deadline).await {
                return answer.map_err(failed);
            }
        }
        Err(err)
    }

    /// Serves an [`OwnerRequest`] from a peer: the reply body of its answer.
    pub(crate) async fn serve_owner(
        &self,
        request: OwnerRequest,
        deadline: Instant,
    ) -> Result<Vec<u8>, postcard::Error> {
        match request {
            OwnerRequest::Load(request) => self.answer(request, deadline).await,
            OwnerRequest::Create(request) => self.answer(request, deadline).await,
            OwnerRequest::Commit(request) => self.answer(request, deadline).await,
            OwnerRequest::Touch(request) => self.answer(request, deadline).await,
            OwnerRequest::Delete(request) => self.answer(request, deadline).await,
            OwnerRequest::IndexAdd(request) => self.answer(request, deadline).await,
            OwnerRequest::IndexRead(request) => self.answer(request, deadline).await,
            OwnerRequest::IndexRemove(request) => self.answer(request, deadline).await,
            OwnerRequest::EndOwned(request) => self.answer(request, deadline).await,
            OwnerRequest::DeleteIfVersion(request) => self.answer(request, deadline).await,
        }
    }

    async fn answer<R: OwnerCall>(
        &self,
        request: R,
        deadline: Instant,
    ) -> Result<Vec<u8>, postcard::Error> {
        let answer = self.coordinate(request, deadline).await;
        encode_reply(&answer.map_err(|err| Failure::of(&err)))
    }

    /// The owner's side of a client operation: serialised per key, applied
    /// here and on every other holder before the answer.
    pub(crate) async fn coordinate<R: OwnerCall>(
        &self,
        request: R,
        deadline: Instant,
    ) -> Result<R::Reply, StoreError> {
        let view = self.serving(R::NAME, deadline).await?;
        if R::READ {
            let at = Serving {
                view: &view,
                holders: &[],
                deadline,
            };
            return request.serve(self, &at).await;
        }
        let Ok(_guard) = tokio::time::timeout_at(deadline, self.lock(request.key()).lock()).await
        else {
            return Err(StoreError::new(ErrorKind::Timeout, R::NAME)
                .with_source("the session is busy with other commits on its owner"));
        };
        // Again, for the view and lease as they are once the lock is ours:
        // the wait for it may have outlasted either.
        let view = self.serving(R::NAME, deadline).await?;
        let holders = self.others(view.replicas(request.key(), self.copies));
        let at = Serving {
            view: &view,
            holders: &holders,
            deadline,
        };
        request.serve(self, &at).await
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
        let local = self.local.get(key);
        let unsettled = !self.settled(view);
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
        let msg = Encoded::new(Fetch {
            key: key.to_owned(),
        })?;
        let answers = join_all(ask.iter().map(|m| self.link.call(m.addr, &msg, deadline))).await;
        let mut best = local.clone();
        let mut unanswered = None;
        for answer in answers {
            match answer {
                Ok(entry) => best = Entry::newest(best, entry.map(Entry::from)),
                Err(err) => unanswered = Some(err),
            }
        }
        if let Some(err) = unanswered {
            if best.is_none() {
                // Saying "no such session" would end it for its user; a
                // holder that did not answer may have it.
                return Err(err);
            }
            if unsettled {
                // Right after a membership change this node may be an owner
                // that has not been handed the newest copy yet, and the
                // member that did not answer may hold it: serving our own
                // copy could serve one a commit has superseded.
                return Err(
                    StoreError::new(ErrorKind::Unavailable, err.operation()).with_source(format!(
                        "this node is not settled (the membership changed {:?} ago, or its lease \
                         came back after a gap less than the settle time ago, or a member has not \
                         handed it what it holds since) and a member that may hold a newer copy \
                         did not answer: {}",
                        view.changed_at.elapsed(),
                        err.to_line()
                    )),
                );
            }
        }
        if let Some(found) = &best {
            if local.as_ref().is_none_or(|l| found.supersedes(l)) {
                let _ = self.local.install(key, found.clone());
            }
        }
        Ok(best.filter(|entry| entry.is_current(self.clock.now())))
    }

    /// Whether the membership has not changed, and the lease has not
    /// lapsed, for the settle time, and every other member has handed this
    /// node what it holds since (see [`crate::settle`]): an owner with a
    /// copy of a key may then serve it without asking the other holders
    /// (see [`read_base`](Self::read_base)). A lapse counts as a change: an
    /// owner cut off from the majority keeps its view if it detects
    /// failures slower than the majority, and when the cut heals its lease
    /// comes back before the hand-over brings it the majority's commits.
    pub(crate) fn settled(&self, view: &View) -> bool {
        view.changed_at.elapsed() >= self.settle_time
            && self.lease.held_for(self.settle_time)
            && self.handovers.complete(&self.me, view, self.intake(view))
    }

    /// Serves a read routed here at once when [`read_base`](Self::read_base)
    /// would answer it from this node's own copy, with no peer to ask, and
    /// the node holds its quorum and lease ([`serving`](Inner::serving)
    /// would not wait); otherwise hands it back to be served in a task.
    /// Reads are half the owner requests of a write (the load before the
    /// commit), and a task, a timer and a slot cost more than the read.
    ///
    /// Each check is one the slow path makes: without the lease check, an
    /// owner cut off with a view it has not changed (quorum and settle
    /// checks pass) serves a copy the majority has superseded
    /// (`tests/read_lease.rs`); without the settle check, one that has not
    /// been handed the newest copy yet (`tests/simulation.rs`, seeds 10 and
    /// 11). Neither path checks that this node owns the key (a read falls
    /// back to a backup, and any holder answers one routed to it), and the
    /// slow path's deadline cannot pass on what this one serves, where
    /// nothing is waited for.
    fn read_now(&self, request: Load) -> ServedNow {
        let view = self.view();
        let local = (self.check_quorum(&view, Load::NAME).is_ok()
            && self.lease.holds()
            && self.settled(&view))
        .then(|| self.local.get(&request.key))
        .flatten();
        let Some(entry) = local else {
            return ServedNow::Later(Request::Owner(OwnerRequest::Load(request)));
        };
        // As `Load::serve` answers from what `read_base` returns.
        let live = entry.live(self.clock.now()).map(WireLive::from);
        ServedNow::Replied(encode_reply(&Ok::<_, Failure>(live)))
    }

    /// Sends one message to each holder in parallel.
    pub(crate) async fn to_holders<R: Call>(
        &self,
        holders: &[&Member],
        msg: &Encoded<R>,
        deadline: Instant,
    ) -> Vec<Result<R::Reply, StoreError>> {
        join_all(
            holders
                .iter()
                .map(|m| self.link.call(m.addr, msg, deadline)),
        )
        .await
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
        let msg = Encoded::new(Install {
            key: key.to_owned(),
            entry: next.into(),
        })?;
        let mut gathered = Gathered::default();
        for answer in self.to_holders(holders, &msg, deadline).await {
            gathered.add(answer);
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
            let _ = self.local.install(key, newer.clone());
            return Ok(Some(newer));
        }
        if let Some(err) = gathered.error {
            return Err(err);
        }
        match self.local.install(key, next) {
            Installed::Accepted => Ok(None),
            Installed::Conflict(entry) => Ok(Some(entry)),
        }
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
    /// Takes one holder's answer to a whole copy.
    pub(crate) fn add(&mut self, answer: Result<CopyOutcome, StoreError>) {
        match answer {
            Ok(CopyOutcome::Accepted) => {}
            Ok(CopyOutcome::Conflict(entry)) => self.conflict(entry),
            Err(err) => self.error = Some(err),
        }
    }

    /// Takes one holder's answer to a change; `true` when the holder lacks
    /// the version the change was made from and needs the whole entry.
    pub(crate) fn add_patch(&mut self, answer: Result<PatchOutcome, StoreError>) -> bool {
        match answer {
            Ok(PatchOutcome::Accepted) => {}
            Ok(PatchOutcome::NeedRecord) => return true,
            Ok(PatchOutcome::Conflict(entry)) => self.conflict(entry),
            Err(err) => self.error = Some(err),
        }
        false
    }

    fn conflict(&mut self, entry: WireEntry) {
        self.newer = Entry::newest(self.newer.take(), Some(entry.into()));
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
    async fn handle(
        &self,
        from: &str,
        deadline: Instant,
        request: Request,
    ) -> Result<Vec<u8>, postcard::Error> {
        match request {
            Request::Owner(request) => self.serve_owner(request, deadline).await,
            // A node without a quorum or a lease serves nothing, its copies
            // included: it may be on the minority side of a partition.
            Request::Holder(request) => match self.serving(request.name(), deadline).await {
                Ok(_) => self.serve_holder(request),
                Err(err) => Failure::of(&err).encode_as_reply(),
            },
            Request::Rebalance(request) => match self.serving(request.name(), deadline).await {
                Ok(_) => self.serve_rebalance(from, request),
                Err(err) => Failure::of(&err).encode_as_reply(),
            },
            Request::Lease(request) => {
                encode_reply(&Ok::<_, Failure>(self.confirm(from, &request)))
            }
        }
    }

    fn serve_now(&self, from: &str, request: Request) -> ServedNow {
        match request {
            // The same checks as `handle`'s, without the wait for a lease:
            // without one the request goes the long way, and waits there.
            Request::Holder(request)
                if self.check_quorum(&self.view(), request.name()).is_ok()
                    && self.lease.holds() =>
            {
                ServedNow::Replied(self.serve_holder(request))
            }
            Request::Lease(request) => ServedNow::Replied(encode_reply(&Ok::<_, Failure>(
                self.confirm(from, &request),
            ))),
            Request::Owner(OwnerRequest::Load(request)) => self.read_now(request),
            // Other owner requests wait for peers, and rebalancing offers
            // may be long: neither holds up the connection's other requests.
            other => ServedNow::Later(other),
        }
    }
}
