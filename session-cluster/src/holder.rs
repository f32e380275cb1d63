//! A holder's side: what a backup does with the copies the owner (or a node
//! handing entries over) sends it.

use std::{sync::Arc, time::SystemTime};

use crate::node::Inner;
use crate::{
    entry::{Entry, Live},
    local::{Installed, Touched},
    wire::{Msg, Reply, WireEntry, WireErrorKind},
};

impl Inner {
    /// A holder's side: operations on this node's copies only.
    pub(crate) async fn serve_copy(&self, msg: &Msg) -> Reply {
        let now = SystemTime::now();
        match msg {
            Msg::Fetch { key } => {
                Reply::Entry(self.local.get(key).await.as_ref().map(WireEntry::from))
            }
            Msg::Install { key, entry } => {
                match self.local.install(key, entry.clone().into()).await {
                    Installed::Accepted => Reply::Accepted,
                    Installed::Conflict(entry) => Reply::Conflict((&entry).into()),
                }
            }
            Msg::CreateCopy { key, record } => {
                match self.local.create(key, record.clone().into()).await {
                    Installed::Accepted => Reply::Accepted,
                    Installed::Conflict(entry) => Reply::Conflict((&entry).into()),
                }
            }
            Msg::TouchCopy {
                key,
                version,
                expires_at,
            } => match self.local.touch(key, *version, *expires_at).await {
                Touched::Applied => Reply::Accepted,
                Touched::NeedRecord => Reply::NeedRecord,
                Touched::Conflict(entry) => Reply::Conflict((&entry).into()),
            },
            Msg::IndexCopy { key, delta } => {
                match self.local.change_index(key, &delta.clone().into()).await {
                    Touched::Applied => Reply::Accepted,
                    Touched::NeedRecord => Reply::NeedRecord,
                    Touched::Conflict(entry) => Reply::Conflict((&entry).into()),
                }
            }
            Msg::Offer { entries } => {
                let mut want = Vec::new();
                for (index, (key, version, until, gone)) in entries.iter().enumerate() {
                    let offered = if *gone {
                        Entry::Gone {
                            version: *version,
                            until: *until,
                        }
                    } else {
                        // Only version and expiry decide whether it is wanted.
                        Entry::Live(Live {
                            data: Arc::default(),
                            created_at: now,
                            expires_at: *until,
                            version: *version,
                            owner: None,
                        })
                    };
                    let wanted = match self.local.get(key).await {
                        None => offered.is_current(now),
                        Some(held) => offered.supersedes(&held),
                    };
                    if wanted {
                        want.push(u32::try_from(index).unwrap_or(u32::MAX));
                    }
                }
                Reply::Want(want)
            }
            Msg::Push { entries } => {
                for (key, entry) in entries {
                    let _ = self.local.install(key, entry.clone().into()).await;
                }
                Reply::Accepted
            }
            _ => Reply::Failed {
                kind: WireErrorKind::Other,
                reason: format!("{} is not an operation on copies", msg.name()),
            },
        }
    }
}
