//! The simulated network: its state (who is up, which links are cut, the
//! fault rates), what it hands each starting node, the fate of every
//! message, and the membership socket.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio::{sync::mpsc, task::AbortHandle};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{
    faults::{LinkFaults, NetworkStats},
    peer::SimTransport,
};
use crate::{
    link::Handler, membership::Datagrams, sign::Signer, store::ClusterStore, ClusterConfig,
};

/// Datagrams a node's socket queues before it drops more, as a full UDP
/// receive buffer does.
const SOCKET_QUEUE: usize = 1024;

/// A simulated network that nodes started with
/// [`ClusterStore::start_simulated`] talk over. Clones share one network.
///
/// Every fate is drawn from the seed; the test cuts and heals links and
/// crashes nodes. See the [module docs](crate::simulation).
#[derive(Clone)]
pub struct SimNetwork {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("SimNetwork")
            .field("seed", &state.seed)
            .field("faults", &state.faults)
            .field("cut", &state.cut)
            .field("stats", &state.stats)
            .finish_non_exhaustive()
    }
}

pub(super) struct State {
    pub(super) seed: u64,
    pub(super) faults: LinkFaults,
    /// Directed links that drop everything: (from, to).
    pub(super) cut: BTreeSet<(SocketAddr, SocketAddr)>,
    /// Links cut for peer requests and replies only: membership datagrams
    /// still pass, as when a firewall closes the peer link's TCP port.
    pub(super) requests_cut: BTreeSet<(SocketAddr, SocketAddr)>,
    pub(super) nodes: BTreeMap<SocketAddr, Endpoint>,
    /// How many messages of each kind each directed link carried: the
    /// next one's number is part of its fate's seed.
    pub(super) sent: BTreeMap<(Kind, SocketAddr, SocketAddr), u64>,
    pub(super) stats: NetworkStats,
}

/// One address on the network and the node behind it, if any.
pub(super) struct Endpoint {
    pub(super) up: bool,
    /// Bumped at every start: a reply or a request for an earlier run of
    /// the node is dropped, as its TCP connection would be.
    pub(super) incarnation: u64,
    pub(super) datagrams: Option<mpsc::Sender<(Vec<u8>, SocketAddr)>>,
    pub(super) handler: Option<Weak<dyn Handler>>,
    pub(super) signer: Signer,
    pub(super) max_budget: Duration,
    /// Requests this node is serving: aborted if it crashes.
    pub(super) serving: Vec<AbortHandle>,
}

/// What a message is; each kind is counted apart on each link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Datagram,
    Request,
    Reply,
}

/// The fate of one message: its copies' delays (none: lost).
pub(super) struct Fate {
    pub(super) delays: Vec<Duration>,
}

impl SimNetwork {
    /// A network whose every message's fate follows from `seed`, under
    /// `faults`.
    #[must_use]
    pub fn new(seed: u64, faults: LinkFaults) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                seed,
                faults,
                cut: BTreeSet::new(),
                requests_cut: BTreeSet::new(),
                nodes: BTreeMap::new(),
                sent: BTreeMap::new(),
                stats: NetworkStats::default(),
            })),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the fault rates from now on.
    pub fn set_faults(&self, faults: LinkFaults) {
        self.lock().faults = faults;
    }

    /// Cuts every link between `a` and `b`, both ways. Messages on the way
    /// are lost too.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        self.partition_oneway(a, b);
        self.partition_oneway(b, a);
    }

    /// Cuts the links from each of `from` to each of `to`, one way only:
    /// `to` still reaches `from`, but gets no answer.
    pub fn partition_oneway(&self, from: &[SocketAddr], to: &[SocketAddr]) {
        cut_links(&mut self.lock().cut, from, to);
    }

    /// Cuts the peer requests (and replies) between each of `a` and each
    /// of `b`, both ways, and nothing else: membership datagrams still
    /// pass, so each side's SWIM still sees the other alive, as when a
    /// firewall closes the peer link's TCP port but not its UDP one.
    pub fn cut_requests(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let mut state = self.lock();
        cut_links(&mut state.requests_cut, a, b);
        cut_links(&mut state.requests_cut, b, a);
    }

    /// Restores every cut link, and every link cut for requests.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.cut.clear();
        state.requests_cut.clear();
    }

    /// Crashes `node`: its tasks stop, the requests it is serving are
    /// abandoned, and nothing reaches it until a node is started on its
    /// address again. The caller drops its handles to `node`; any request
    /// a client is still running through it fails as its peers refuse it.
    pub fn crash(&self, node: &ClusterStore) {
        for handle in &node._tasks.handles {
            handle.abort();
        }
        let mut state = self.lock();
        if let Some(endpoint) = state.nodes.get_mut(&node.local_addr()) {
            endpoint.up = false;
            endpoint.datagrams = None;
            endpoint.handler = None;
            for request in endpoint.serving.drain(..) {
                request.abort();
            }
        }
    }

    /// Whether a node is up at `addr`.
    #[must_use]
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.lock().nodes.get(&addr).is_some_and(|e| e.up)
    }

    /// What the network did so far.
    #[must_use]
    pub fn stats(&self) -> NetworkStats {
        self.lock().stats
    }

    /// Brings `addr` up for a starting node: its transport and socket.
    pub(super) fn attach(
        &self,
        addr: SocketAddr,
        config: &ClusterConfig,
    ) -> (SimTransport, SimSocket) {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let signer = Signer::derive(&config.secret, "link");
        let mut state = self.lock();
        let incarnation = state.nodes.get(&addr).map_or(1, |e| e.incarnation + 1);
        state.nodes.insert(
            addr,
            Endpoint {
                up: true,
                incarnation,
                datagrams: Some(tx),
                handler: None,
                signer: signer.clone(),
                max_budget: config.operation_timeout,
                serving: Vec::new(),
            },
        );
        let transport =
            SimTransport::new(self.clone(), addr, config.node_id.as_str().into(), signer);
        let socket = SimSocket {
            network: self.clone(),
            addr,
            queue: tokio::sync::Mutex::new(rx),
        };
        (transport, socket)
    }

    /// Draws the fate of the next message of `kind` from `from` to `to`.
    pub(super) fn fate(
        state: &mut State,
        kind: Kind,
        from: SocketAddr,
        to: SocketAddr,
        dup: f64,
    ) -> Fate {
        let count = state.sent.entry((kind, from, to)).or_insert(0);
        *count += 1;
        let mut key = Vec::with_capacity(64);
        key.push(kind as u8);
        key.extend_from_slice(from.to_string().as_bytes());
        key.push(b'>');
        key.extend_from_slice(to.to_string().as_bytes());
        key.extend_from_slice(&count.to_le_bytes());
        let mut rng = StdRng::seed_from_u64(xxh3_64_with_seed(&key, state.seed));
        let faults = state.faults;
        let mut delay = || {
            let (min, max) = (faults.min_delay.as_millis(), faults.max_delay.as_millis());
            let millis = rng.random_range(min..=max.max(min));
            Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
        };
        let first = delay();
        let second = delay();
        let mut delays = Vec::with_capacity(2);
        let lost = faults.loss > 0.0 && rng.random_bool(faults.loss);
        if lost {
            state.stats.lost += 1;
        } else {
            delays.push(first);
        }
        if dup > 0.0 && rng.random_bool(dup) {
            state.stats.duplicated += 1;
            delays.push(first + second);
        }
        Fate { delays }
    }

    /// Whether a message from `from` may arrive at `to` now, to the run of
    /// the node it was sent to (`incarnation`, when that matters). A peer
    /// request or reply (`request`) also needs the link not cut for
    /// requests.
    pub(super) fn passes(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        incarnation: Option<u64>,
        request: bool,
    ) -> bool {
        let mut state = self.lock();
        let cut = state.cut.contains(&(from, to))
            || (request && state.requests_cut.contains(&(from, to)));
        let reaches = !cut
            && state
                .nodes
                .get(&to)
                .is_some_and(|e| e.up && incarnation.is_none_or(|wanted| wanted == e.incarnation));
        if !reaches {
            state.stats.cut += 1;
        }
        reaches
    }

    /// Sends a datagram: whatever runs at `to` when it arrives gets it.
    fn send_datagram(&self, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        let fate = {
            let mut state = self.lock();
            state.stats.datagrams += 1;
            if state.cut.contains(&(from, to)) {
                state.stats.cut += 1;
                return;
            }
            let dup = state.faults.duplication;
            Self::fate(&mut state, Kind::Datagram, from, to, dup)
        };
        for delay in fate.delays {
            let (network, datagram) = (self.clone(), datagram.to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if !network.passes(from, to, None, false) {
                    return;
                }
                let queue = network
                    .lock()
                    .nodes
                    .get(&to)
                    .and_then(|e| e.datagrams.clone());
                if let Some(queue) = queue {
                    // A full queue drops, as a full receive buffer does.
                    let _ = queue.try_send((datagram, from));
                }
            });
        }
    }
}

/// A node's membership socket on the simulated network.
pub(crate) struct SimSocket {
    network: SimNetwork,
    addr: SocketAddr,
    queue: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
}

impl Datagrams for SimSocket {
    fn send_to(
        &self,
        datagram: &[u8],
        to: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send {
        self.network.send_datagram(self.addr, to, datagram);
        std::future::ready(Ok(datagram.len()))
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let received = self.queue.lock().await.recv().await;
        match received {
            Some((datagram, from)) => {
                let len = datagram.len().min(buf.len());
                buf[..len].copy_from_slice(&datagram[..len]);
                Ok((len, from))
            }
            // The node crashed: its socket stays silent.
            None => std::future::pending().await,
        }
    }
}

/// Adds the link from each of `from` to each of `to` (a node's link to
/// itself aside) to `cut`.
fn cut_links(cut: &mut BTreeSet<(SocketAddr, SocketAddr)>, from: &[SocketAddr], to: &[SocketAddr]) {
    for a in from {
        for b in to {
            if a != b {
                cut.insert((*a, *b));
            }
        }
    }
}
