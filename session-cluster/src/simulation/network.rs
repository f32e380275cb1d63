//! The simulated network: its state (who is up, which links are cut, the
//! fault rates), the peer transport and the membership socket it hands
//! each node, and the fate of every message.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use session_core::{ErrorKind, StoreError};
use tokio::{
    sync::{mpsc, oneshot},
    task::AbortHandle,
    time::Instant,
};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::{
    link::Handler,
    membership::Datagrams,
    protocol::{Failure, Request as PeerRequest, WireErrorKind},
    sign::Signer,
    store::ClusterStore,
    transport::Transport,
    ClusterConfig,
};

/// Datagrams a node's socket queues before it drops more, as a full UDP
/// receive buffer does.
const SOCKET_QUEUE: usize = 1024;

/// How every message on the network may misbehave: its delay is drawn
/// uniformly between `min_delay` and `max_delay` (so messages overtake
/// each other), it is lost with probability `loss`, and a membership
/// datagram is delivered twice with probability `duplication`.
///
/// Peer requests are not duplicated unless `request_duplication` is set:
/// the link runs over TCP, which never delivers a request twice, so a
/// duplicated request stands for a replay (a retrying proxy, or someone
/// who captured a signed request), not for ordinary network behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LinkFaults {
    /// The shortest one-way delay.
    pub min_delay: Duration,
    /// The longest one-way delay.
    pub max_delay: Duration,
    /// The probability that a message (a datagram, a request or a reply)
    /// is lost.
    pub loss: f64,
    /// The probability that a datagram arrives twice.
    pub duplication: f64,
    /// The probability that a peer request is delivered twice (see above).
    pub request_duplication: f64,
}

impl Default for LinkFaults {
    /// A quiet LAN: 1 to 2 ms each way, nothing lost or duplicated.
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            loss: 0.0,
            duplication: 0.0,
            request_duplication: 0.0,
        }
    }
}

impl LinkFaults {
    /// One-way delays between `min` and `max`.
    #[must_use]
    pub fn with_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min.min(max);
        self.max_delay = max.max(min);
        self
    }

    /// The probability that a message is lost.
    #[must_use]
    pub fn with_loss(mut self, probability: f64) -> Self {
        self.loss = probability.clamp(0.0, 1.0);
        self
    }

    /// The probability that a datagram arrives twice.
    #[must_use]
    pub fn with_duplication(mut self, probability: f64) -> Self {
        self.duplication = probability.clamp(0.0, 1.0);
        self
    }

    /// The probability that a peer request is delivered twice.
    #[must_use]
    pub fn with_request_duplication(mut self, probability: f64) -> Self {
        self.request_duplication = probability.clamp(0.0, 1.0);
        self
    }
}

/// What the network did so far, for a run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Membership datagrams sent.
    pub datagrams: u64,
    /// Peer requests sent.
    pub requests: u64,
    /// Datagrams, requests and replies lost to the loss rate.
    pub lost: u64,
    /// Datagrams, requests and replies dropped by a cut link or a node
    /// that was down.
    pub cut: u64,
    /// Datagrams and requests delivered twice.
    pub duplicated: u64,
    /// Requests refused because their receiver was down.
    pub refused: u64,
}

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

struct State {
    seed: u64,
    faults: LinkFaults,
    /// Directed links that drop everything: (from, to).
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
    nodes: BTreeMap<SocketAddr, Endpoint>,
    /// How many messages of each kind each directed link carried: the
    /// next one's number is part of its fate's seed.
    sent: BTreeMap<(Kind, SocketAddr, SocketAddr), u64>,
    stats: NetworkStats,
}

/// One address on the network and the node behind it, if any.
struct Endpoint {
    up: bool,
    /// Bumped at every start: a reply or a request for an earlier run of
    /// the node is dropped, as its TCP connection would be.
    incarnation: u64,
    datagrams: Option<mpsc::Sender<(Vec<u8>, SocketAddr)>>,
    handler: Option<Weak<dyn Handler>>,
    signer: Signer,
    max_budget: Duration,
    /// Requests this node is serving: aborted if it crashes.
    serving: Vec<AbortHandle>,
}

/// What a message is; each kind is counted apart on each link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Datagram,
    Request,
    Reply,
}

/// The fate of one message: its copies' delays (none: lost).
struct Fate {
    delays: Vec<Duration>,
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
                nodes: BTreeMap::new(),
                sent: BTreeMap::new(),
                stats: NetworkStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
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
        let mut state = self.lock();
        for a in from {
            for b in to {
                if a != b {
                    state.cut.insert((*a, *b));
                }
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.lock().cut.clear();
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
        let transport = SimTransport {
            network: self.clone(),
            addr,
            me: config.node_id.as_str().into(),
            signer,
        };
        let socket = SimSocket {
            network: self.clone(),
            addr,
            queue: tokio::sync::Mutex::new(rx),
        };
        (transport, socket)
    }

    /// Draws the fate of the next message of `kind` from `from` to `to`.
    fn fate(state: &mut State, kind: Kind, from: SocketAddr, to: SocketAddr, dup: f64) -> Fate {
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
    /// the node it was sent to (`incarnation`, when that matters).
    fn passes(&self, from: SocketAddr, to: SocketAddr, incarnation: Option<u64>) -> bool {
        let mut state = self.lock();
        let reaches = !state.cut.contains(&(from, to))
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
                if !network.passes(from, to, None) {
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

/// A request on its way: what the receiving side needs to serve it.
struct InFlight {
    from: SocketAddr,
    from_name: Arc<str>,
    to: SocketAddr,
    incarnation: u64,
    budget: Duration,
    body: Bytes,
    tag: [u8; crate::sign::TAG_LEN],
}

/// A reply as it travels back: the body and its tag, or a refusal.
type Reply = Result<(Vec<u8>, [u8; crate::sign::TAG_LEN]), &'static str>;

impl SimNetwork {
    /// Delivers `request` after `delay`, serves it on the receiving node
    /// and, if `reply` is given, sends the answer back with its own fate.
    async fn deliver(
        self,
        request: Arc<InFlight>,
        delay: Duration,
        reply: Option<oneshot::Sender<Reply>>,
    ) {
        tokio::time::sleep(delay).await;
        if !self.passes(request.from, request.to, Some(request.incarnation)) {
            return;
        }
        let (handler, signer, max_budget) = {
            let state = self.lock();
            let Some(endpoint) = state.nodes.get(&request.to) else {
                return;
            };
            (
                endpoint.handler.clone(),
                endpoint.signer.clone(),
                endpoint.max_budget,
            )
        };
        let (network, to) = (self.clone(), request.to);
        let serving = tokio::spawn(async move {
            let answer = serve(&request, handler, &signer, max_budget).await;
            let Some(reply) = reply else { return };
            let fate = {
                let mut state = network.lock();
                // A reply never duplicates: the caller takes one answer.
                SimNetwork::fate(&mut state, Kind::Reply, request.to, request.from, 0.0)
            };
            let Some(delay) = fate.delays.first().copied() else {
                return;
            };
            // The reply travels on its own: a crash of the receiver after
            // it answered does not call it back.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if network.passes(request.to, request.from, None) {
                    let _ = reply.send(answer);
                }
            });
        });
        if let Some(endpoint) = self.lock().nodes.get_mut(&to) {
            endpoint.serving.retain(|task| !task.is_finished());
            endpoint.serving.push(serving.abort_handle());
        }
    }
}

/// Serves one delivered request as the link's server does: checks the
/// signature, decodes, runs the handler within the caller's budget, signs
/// the reply.
async fn serve(
    request: &InFlight,
    handler: Option<Weak<dyn Handler>>,
    signer: &Signer,
    max_budget: Duration,
) -> Reply {
    let budget = u64::try_from(request.budget.as_millis()).unwrap_or(u64::MAX);
    if !signer.verify(
        &[
            request.from_name.as_bytes(),
            &budget.to_le_bytes(),
            &request.body,
        ],
        &request.tag,
    ) {
        return Err("refused as unauthenticated");
    }
    let Ok(decoded) = postcard::from_bytes::<PeerRequest>(&request.body) else {
        return Err("could not decode the request");
    };
    let Some(handler) = handler.and_then(|weak| weak.upgrade()) else {
        return Err("not serving");
    };
    // Keep a tenth of the caller's time for the reply's trip back.
    let deadline = Instant::now() + (request.budget * 9 / 10).min(max_budget);
    let handled = tokio::time::timeout_at(
        deadline,
        handler.handle(&request.from_name, deadline, decoded),
    )
    .await;
    let reply = match handled {
        Ok(reply) => reply,
        Err(_) => Failure {
            kind: WireErrorKind::Timeout,
            reason: "the owner ran out of time".to_owned(),
        }
        .encode_as_reply(),
    };
    let Ok(reply) = reply else {
        return Err("could not encode the reply");
    };
    let tag = signer.tag(&[b"reply", &request.tag, &reply]);
    Ok((reply, tag))
}

/// A node's peer transport on the simulated network.
pub(crate) struct SimTransport {
    network: SimNetwork,
    addr: SocketAddr,
    me: Arc<str>,
    signer: Signer,
}

#[async_trait]
impl Transport for SimTransport {
    async fn send(
        &self,
        to: SocketAddr,
        operation: &'static str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, StoreError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let budget_millis = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        let tag = self
            .signer
            .tag(&[self.me.as_bytes(), &budget_millis.to_le_bytes(), &body]);
        let planned = {
            let mut state = self.network.lock();
            state.stats.requests += 1;
            let sender_up = state.nodes.get(&self.addr).is_some_and(|e| e.up);
            match state.nodes.get(&to).filter(|e| e.up && sender_up) {
                None => {
                    state.stats.refused += 1;
                    None
                }
                Some(endpoint) => {
                    let incarnation = endpoint.incarnation;
                    let dup = state.faults.request_duplication;
                    let cut = state.cut.contains(&(self.addr, to));
                    if cut {
                        state.stats.cut += 1;
                    }
                    let fate = SimNetwork::fate(&mut state, Kind::Request, self.addr, to, dup);
                    Some((incarnation, if cut { Vec::new() } else { fate.delays }))
                }
            }
        };
        let Some((incarnation, delays)) = planned else {
            return Err(
                StoreError::new(ErrorKind::Unavailable, operation).with_source(format!(
                    "cannot connect to peer {to}: connection refused (simulated network)"
                )),
            );
        };
        let request = Arc::new(InFlight {
            from: self.addr,
            from_name: Arc::clone(&self.me),
            to,
            incarnation,
            budget: Duration::from_millis(budget_millis),
            body,
            tag,
        });
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut reply_tx = Some(reply_tx);
        for delay in delays {
            // The first copy carries the reply; a duplicate's answer is lost.
            let network = self.network.clone();
            tokio::spawn(network.deliver(Arc::clone(&request), delay, reply_tx.take()));
        }
        drop(reply_tx);
        let timeout = || {
            StoreError::new(ErrorKind::Timeout, operation).with_source(format!(
                "peer {to} did not answer in time (simulated network)"
            ))
        };
        match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(Ok((reply, reply_tag)))) => {
                if self.signer.verify(&[b"reply", &tag, &reply], &reply_tag) {
                    Ok(Bytes::from(reply))
                } else {
                    Err(StoreError::new(ErrorKind::Corrupt, operation)
                        .with_source(format!("peer {to} sent a reply that fails its signature")))
                }
            }
            Ok(Ok(Err(why))) => Err(StoreError::new(ErrorKind::Unavailable, operation)
                .with_source(format!("peer {to}: {why} (simulated network)"))),
            Ok(Err(_)) => {
                // Lost on the way: the caller cannot tell, and waits.
                tokio::time::sleep_until(deadline).await;
                Err(timeout())
            }
            Err(_) => Err(timeout()),
        }
    }

    fn serve(&self, handler: Weak<dyn Handler>) -> AbortHandle {
        if let Some(endpoint) = self.network.lock().nodes.get_mut(&self.addr) {
            endpoint.handler = Some(handler);
        }
        // Nothing listens: requests are served as they are delivered.
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    fn retain(&self, _live: &dyn Fn(&SocketAddr) -> bool) {}
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

    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send {
        async move {
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
}
