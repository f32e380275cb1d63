//! A holder's side: what a backup does with the copies the owner (or a node
//! handing entries over) sends it. Every request here touches this node's
//! copy only, and none can fail: each handler returns its answer as is.

use std::sync::Arc;

use crate::{
    entry::{Entry, Live},
    local::{Installed, Touched},
    node::Inner,
    protocol::{
        CopyOutcome, CreateCopy, Fetch, HolderRequest, IndexCopy, Install, Offer, PatchOutcome,
        Push, RebalanceRequest, TouchCopy, Wanted,
    },
    wire::WireEntry,
};

impl From<Installed> for CopyOutcome {
    fn from(installed: Installed) -> Self {
        match installed {
            Installed::Accepted => Self::Accepted,
            Installed::Conflict(entry) => Self::Conflict((&entry).into()),
        }
    }
}

impl From<Touched> for PatchOutcome {
    fn from(touched: Touched) -> Self {
        match touched {
            Touched::Applied => Self::Accepted,
            Touched::NeedRecord => Self::NeedRecord,
            Touched::Conflict(entry) => Self::Conflict((&entry).into()),
        }
    }
}

impl Inner {
    /// Serves a [`HolderRequest`]: the reply body of its answer.
    pub(crate) fn serve_holder(&self, request: HolderRequest) -> Result<Vec<u8>, postcard::Error> {
        match request {
            HolderRequest::Fetch(request) => answer(self.fetch(request)),
            HolderRequest::Install(request) => answer(self.install(request)),
            HolderRequest::CreateCopy(request) => answer(self.create_copy(request)),
            HolderRequest::TouchCopy(request) => answer(self.touch_copy(request)),
            HolderRequest::IndexCopy(request) => answer(self.index_copy(request)),
        }
    }

    /// Serves a [`RebalanceRequest`]: the reply body of its answer.
    pub(crate) fn serve_rebalance(
        &self,
        from: &str,
        request: RebalanceRequest,
    ) -> Result<Vec<u8>, postcard::Error> {
        match request {
            RebalanceRequest::Offer(request) => answer(self.offered(request)),
            RebalanceRequest::Push(request) => {
                self.pushed(request);
                answer(())
            }
            RebalanceRequest::HandedOver(request) => {
                self.handovers.received(from, request);
                answer(())
            }
        }
    }

    pub(crate) fn fetch(&self, request: Fetch) -> Option<WireEntry> {
        self.local.get(&request.key).as_ref().map(WireEntry::from)
    }

    pub(crate) fn install(&self, request: Install) -> CopyOutcome {
        self.local
            .install(&request.key, request.entry.into())
            .into()
    }

    pub(crate) fn create_copy(&self, request: CreateCopy) -> CopyOutcome {
        self.local
            .create(&request.key, request.record.into())
            .into()
    }

    pub(crate) fn touch_copy(&self, request: TouchCopy) -> PatchOutcome {
        self.local
            .touch(&request.key, request.version, request.expires_at)
            .into()
    }

    pub(crate) fn index_copy(&self, request: IndexCopy) -> PatchOutcome {
        self.local
            .change_index(&request.key, &request.delta.into())
            .into()
    }

    /// The positions of the offered entries this node wants: those newer
    /// than its own, or that it lacks and are still current.
    pub(crate) fn offered(&self, request: Offer) -> Wanted {
        let now = self.clock.now();
        let mut positions = Vec::new();
        for (index, offered) in request.entries.iter().enumerate() {
            let entry = if offered.gone {
                Entry::Gone {
                    version: offered.version,
                    until: offered.until,
                }
            } else {
                // Only version and expiry decide whether it is wanted.
                Entry::Live(Live {
                    data: Arc::default(),
                    created_at: now,
                    expires_at: offered.until,
                    version: offered.version,
                    owner: None,
                    lifetime: None,
                })
            };
            let wanted = match self.local.get(&offered.key) {
                None => entry.is_current(now),
                Some(held) => entry.supersedes(&held),
            };
            if wanted {
                positions.push(u32::try_from(index).unwrap_or(u32::MAX));
            }
        }
        Wanted { positions }
    }

    pub(crate) fn pushed(&self, request: Push) {
        for pushed in request.entries {
            let _ = self.local.install(&pushed.key, pushed.entry.into());
        }
    }
}

/// The reply body of an answer that cannot fail.
fn answer<T: serde::Serialize>(reply: T) -> Result<Vec<u8>, postcard::Error> {
    crate::protocol::encode_reply(&Ok(reply))
}
