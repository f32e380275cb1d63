//! Hand-over and anti-entropy: after a membership change, and every
//! `anti_entropy_interval`, each node offers its entries to the nodes that
//! should hold them and pushes the ones they lack.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Weak},
    time::Duration,
};

use futures_util::future::join_all;
use tokio::{sync::watch, time::Instant};

use crate::{
    entry::Entry,
    node::Inner,
    placement::View,
    protocol::{Encoded, Offer, Offered, Push, Pushed},
    wire::WireEntry,
};

/// Entries per re-replication message.
pub(crate) const BATCH: usize = 512;

impl Inner {
    /// Hands every entry this node holds to the holders `view` gives it,
    /// then drops the entries this node no longer holds once they are safe
    /// elsewhere. Offers first, so an up-to-date peer costs only a digest.
    /// `false` when a peer could not be handed its entries (it did not
    /// answer, or refused, say while it waits for its first lease).
    pub(crate) async fn rebalance(&self, view: &View) -> bool {
        // Peers in address order, so a simulated run sends the same
        // messages in the same order on every replay.
        let mut per_peer: BTreeMap<SocketAddr, Vec<(String, Entry)>> = BTreeMap::new();
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
                per_peer
                    .entry(*addr)
                    .or_default()
                    .push((key.clone(), entry.clone()));
            }
            if !stays {
                leaving.push((key, entry, targets));
            }
        }
        let results = join_all(per_peer.into_iter().map(|(addr, entries)| async move {
            let ok = self.hand_over(addr, entries).await;
            (addr, ok)
        }))
        .await;
        let failed: Vec<SocketAddr> = results
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(addr, _)| addr)
            .collect();
        for (key, entry, targets) in leaving {
            if !targets.is_empty() && targets.iter().all(|t| !failed.contains(t)) {
                self.local.forget_if_unchanged(&key, &entry);
            }
        }
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        failed.is_empty()
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

pub(crate) async fn rebalance_loop(
    inner: Weak<Inner>,
    mut views: watch::Receiver<Arc<View>>,
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
        tokio::select! {
            biased;
            changed = views.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            () = retry_sleep, if retry.is_some() => {}
        }
        // Nodes often come and go together (a deploy, a partition): let the
        // view settle for a moment so one pass covers them.
        tokio::time::sleep(debounce).await;
        let Some(inner) = inner.upgrade() else { return };
        let view = inner.view();
        inner
            .link
            .retain(&|addr| view.members.iter().any(|m| m.addr == *addr));
        if view.len() > 1 {
            retry = if inner.rebalance(&view).await {
                None
            } else {
                Some(retry.map_or(first_retry, |last| (last * 2).min(every)))
            };
        }
    }
}
