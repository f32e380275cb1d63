//! Hand-over and anti-entropy: after a membership change, and every
//! `anti_entropy_interval`, each node offers its entries to the nodes that
//! should hold them and pushes the ones they lack.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Weak},
    time::Duration,
};

use futures_util::future::join_all;
use tokio::{
    sync::{watch, Notify},
    time::Instant,
};

use crate::{
    entry::Entry,
    node::Inner,
    placement::View,
    protocol::{Encoded, HandedOver, Offer, Offered, Push, Pushed},
    settle::Intake,
    wire::WireEntry,
};

/// Entries per re-replication message.
pub(crate) const BATCH: usize = 512;

/// What one pass hands one member.
struct Handing {
    name: Arc<str>,
    /// The member's intake when the pass began, reported at its end.
    intake: Intake,
    entries: Vec<(String, Entry)>,
}

/// An entry this node no longer holds, and the addresses of its holders.
type Leaving = (String, Entry, Vec<SocketAddr>);

impl Inner {
    /// Hands every entry this node holds to the holders `view` gives it,
    /// tells each other member the pass to it is over ([`HandedOver`]),
    /// then drops the entries this node no longer holds once they are safe
    /// elsewhere. Offers first, so an up-to-date peer costs only a digest.
    /// `false` when a peer could not be handed its entries (it did not
    /// answer, or refused, say while it waits for its first lease); it is
    /// owed a pass again.
    pub(crate) async fn rebalance(&self, view: &View) -> bool {
        // Every member is covered by this pass.
        drop(self.handovers.take_owed());
        let (failed, leaving) = self.pass(view, None).await;
        for (key, entry, targets) in leaving {
            if !targets.is_empty() && targets.iter().all(|t| !failed.contains(t)) {
                self.local.forget_if_unchanged(&key, &entry);
            }
        }
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        failed.is_empty()
    }

    /// A pass to the members owed one: those that announced a change this
    /// node has not handed over for. `false` when one of them could not be
    /// handed its entries; it is owed a pass again.
    pub(crate) async fn hand_over_owed(&self, view: &View) -> bool {
        let owed = self.handovers.take_owed();
        if owed.is_empty() {
            return true;
        }
        let (failed, _) = self.pass(view, Some(&owed)).await;
        failed.is_empty()
    }

    /// Hands each other member of `view` (or of `only`) the entries it
    /// should hold, then tells it the pass is over. Returns the addresses
    /// of the members that could not be handed everything, and the entries
    /// this node no longer holds, with their holders.
    async fn pass(
        &self,
        view: &View,
        only: Option<&BTreeSet<Arc<str>>>,
    ) -> (Vec<SocketAddr>, Vec<Leaving>) {
        // Per peer in address order, so a simulated run sends the same
        // messages in the same order on every replay. Every peer gets a
        // pass, with nothing to offer or not: its end is what it waits for.
        let mut per_peer: BTreeMap<SocketAddr, Handing> = self
            .others(&view.members)
            .into_iter()
            .filter(|member| only.is_none_or(|only| only.contains(&member.name)))
            .map(|member| {
                (
                    member.addr,
                    Handing {
                        // Before the pass begins: what the member announced
                        // after this, the pass may have missed.
                        intake: self.handovers.intake_of(&member.name),
                        name: Arc::clone(&member.name),
                        entries: Vec::new(),
                    },
                )
            })
            .collect();
        let mut leaving = Vec::new();
        // Ended copies are invisible already; this frees their memory.
        self.local.sweep();
        let snapshot = self.local.snapshot();
        // The cache iterates in an order of its own; a simulation needs one the
        // seed fixes. Production skips the sort's cost.
        #[cfg(feature = "simulation")]
        let snapshot = {
            let mut snapshot = snapshot;
            snapshot.sort_by(|a, b| a.0.cmp(&b.0));
            snapshot
        };
        for (key, entry) in snapshot {
            let holders = view.replicas(&key, self.copies);
            let stays = holders.iter().any(|m| *m.name == *self.me);
            let targets: Vec<SocketAddr> = self.others(holders).iter().map(|m| m.addr).collect();
            for addr in &targets {
                if let Some(handing) = per_peer.get_mut(addr) {
                    handing.entries.push((key.clone(), entry.clone()));
                }
            }
            if !stays && only.is_none() {
                leaving.push((key, entry, targets));
            }
        }
        let results = join_all(per_peer.into_iter().map(|(addr, handing)| async move {
            let Handing {
                name,
                intake,
                entries,
            } = handing;
            let ok = self.hand_over(addr, entries).await
                && self.tell_handed_over(addr, intake, view).await;
            (addr, name, ok)
        }))
        .await;
        let mut failed = Vec::new();
        let mut owed = Vec::new();
        for (addr, name, ok) in results {
            if !ok {
                failed.push(addr);
                owed.push(name);
            }
        }
        self.handovers.owe_again(owed);
        (failed, leaving)
    }

    /// Tells the member at `addr` that a pass to it, for its `intake` and
    /// by `view`'s members, is over.
    async fn tell_handed_over(&self, addr: SocketAddr, intake: Intake, view: &View) -> bool {
        let Ok(message) = Encoded::new(HandedOver {
            intake,
            view: view.digest,
        }) else {
            return false;
        };
        let deadline = Instant::now() + self.operation_timeout;
        self.link.call(addr, &message, deadline).await.is_ok()
    }

    pub(crate) async fn hand_over(&self, addr: SocketAddr, entries: Vec<(String, Entry)>) -> bool {
        for batch in entries.chunks(BATCH) {
            let deadline = Instant::now() + self.operation_timeout;
            let offer = Offer {
                entries: batch
                    .iter()
                    .map(|(key, entry)| Offered {
                        key: key.clone(),
                        version: entry.version(),
                        until: entry.until(),
                        gone: matches!(entry, Entry::Gone { .. }),
                    })
                    .collect(),
            };
            let Ok(offer) = Encoded::new(offer) else {
                return false;
            };
            let Ok(wanted) = self.link.call(addr, &offer, deadline).await else {
                return false;
            };
            let entries: Vec<Pushed> = wanted
                .positions
                .iter()
                .filter_map(|i| batch.get(usize::try_from(*i).ok()?))
                .map(|(key, entry)| Pushed {
                    key: key.clone(),
                    entry: WireEntry::from(entry),
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            let deadline = Instant::now() + self.operation_timeout;
            let Ok(push) = Encoded::new(Push { entries }) else {
                return false;
            };
            if self.link.call(addr, &push, deadline).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Runs a full pass after each membership change and every `every`
/// (anti-entropy), a pass to the members owed one when one announces a
/// change (`owed`), and retries a pass that could not reach every member.
pub(crate) async fn rebalance_loop(
    inner: Weak<Inner>,
    mut views: watch::Receiver<Arc<View>>,
    owed: Arc<Notify>,
    every: Duration,
    debounce: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After a pass that could not reach every peer, the next one comes
    // sooner than the periodic pass: a node that just joined may refuse
    // until it holds a lease, and its share must not wait for anti-entropy.
    // Backs off from four debounces, doubling, up to the period.
    let first_retry = (debounce * 4).min(every);
    let mut retry: Option<Duration> = None;
    loop {
        let retry_sleep = tokio::time::sleep(retry.unwrap_or(every));
        // Biased (fixed order) rather than random, so a simulated run
        // replays; every branch leads to the same pass.
        let full = tokio::select! {
            biased;
            changed = views.changed() => if changed.is_err() { return } else { true },
            _ = tick.tick() => true,
            () = retry_sleep, if retry.is_some() => true,
            () = owed.notified() => false,
        };
        // Nodes often come and go together (a deploy, a partition): let the
        // view settle for a moment so one pass covers them.
        tokio::time::sleep(debounce).await;
        let Some(inner) = inner.upgrade() else { return };
        let view = inner.view();
        inner
            .link
            .retain(&|addr| view.members.iter().any(|m| m.addr == *addr));
        if view.len() > 1 {
            let ok = if full {
                inner.rebalance(&view).await
            } else {
                inner.hand_over_owed(&view).await
            };
            if ok {
                // A pass to the owed alone leaves a pending full retry be.
                if full {
                    retry = None;
                }
            } else {
                retry = Some(retry.map_or(first_retry, |last| (last * 2).min(every)));
            }
        }
    }
}
