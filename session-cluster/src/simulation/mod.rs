//! A deterministic simulation of the network between cluster nodes, for
//! tests: whole clusters in one process, where a seed fixes every
//! message's delay, loss and duplication, and the test decides partitions
//! (two-way or one-way), crashes, restarts and clock offsets.
//!
//! **Test support, not for production:** built only with the `simulation`
//! feature. [`ClusterStore::start`] is unchanged by it; a simulated node is
//! started with [`ClusterStore::start_simulated`] on a [`SimNetwork`].
//!
//! # How it runs
//! Every node of a simulated cluster runs in one current-thread tokio
//! runtime with a paused clock, next to the test's clients. Nodes run the
//! real code (membership, routing, replication, hand-over) and differ from
//! a production node only in what they stand on:
//! - **Peer requests** go through the network's implementation of the
//!   crate's peer transport trait instead of the TCP link. Each request
//!   and each reply is signed and checked with the cluster's link key, as
//!   the link does, and is delayed, lost, or (at a configured rate)
//!   delivered twice, as the seed says. A lost request or reply leaves the
//!   caller waiting until its deadline, as a black-holed TCP connection
//!   does; a request to a node that is down is refused at once, as a
//!   closed port is.
//! - **Membership datagrams** go through a socket of the network instead
//!   of UDP: delayed, lost and duplicated by the seed, so they also arrive
//!   out of order.
//! - **Chance**: SWIM's random choices come from a per-node seed.
//! - **Time**: the node's wall clock (expiry, tombstones, owner-index
//!   deadlines) is a [`SimulatedClock`]: the runtime's virtual time since a
//!   fixed epoch, plus the node's offset.
//!
//! Each message's fate is drawn from the seed, its kind (datagram, request,
//! reply), its link (sender and receiver) and its number on that link, not
//! from one shared stream: messages on different links keep their fates
//! whichever is sent first, and a message's bytes (which carry hash maps in
//! a per-process order) do not enter into it.
//!
//! # Why not turmoil
//! turmoil (tokio-rs) runs each simulated host on its own runtime and
//! attributes every socket call to the host whose task makes it. The
//! history checker's clients (`session_conformance::race::Client`) run
//! requests through an app server's `SessionManager` in the test's own
//! task; under turmoil they would need a request protocol between client
//! hosts and server hosts, and the recorded history would be one step
//! further from what the manager did. turmoil also delivers TCP reliably
//! and in order (its `fail_rate` cuts whole links), and never duplicates a
//! message, so request/reply traffic would see only latency and partitions.
//! A network of our own behind the crate's two seams (the `Transport` trait
//! and the membership socket) is a few hundred lines, applies loss,
//! duplication and reordering to every message, and needs no dependency.
//!
//! # What is and isn't simulated
//! - Clock offsets apply to the node's wall clock (the store's expiry
//!   checks, tombstone lifetimes, owner-index deadlines, the generation a
//!   node takes when it starts) and, in the tests, to each app server's
//!   `SessionManager` clock. They do not apply to tokio's monotonic clock,
//!   which every node shares (timeouts, SWIM's timers). Nothing a node
//!   holds ends by real time: its copies end by the node's clock alone.
//! - The TCP link itself (framing, connection reuse, its in-flight limits
//!   and its signed-head freshness check) is not in the path; its own tests
//!   cover it.
//! - What replays exactly: on one thread, with time moving only when every
//!   task waits, the order in which tasks run follows from the timers, and
//!   so from the seed. What a process would otherwise randomise is pinned
//!   down: SWIM's choices come from the node's seed, its event loop and the
//!   re-replication loop poll their branches in a fixed order (`biased`),
//!   and with this feature re-replication sorts its snapshot and
//!   `delete_by_owner` sorts the index it reads (both are hash-ordered).
//!   Hash maps still order the bytes of some messages (a record's data),
//!   which no fate depends on. Session ids come from the app's
//!   `SessionManager`, not from the node: a test that wants placement to
//!   replay maps them to seeded ids (`tests/sim_support/store.rs` does).
//!   `tests/simulation.rs` checks that a seed replays the same history.

mod clock;
mod faults;
mod network;
mod peer;

use std::sync::Arc;

pub use clock::SimulatedClock;
pub use faults::{LinkFaults, NetworkStats};
pub use network::SimNetwork;
use rand::{rngs::StdRng, SeedableRng};

use crate::{
    clock::Clock,
    link::Counters,
    node::{ClusterError, Network},
    store::ClusterStore,
    transport::Transport,
    ClusterConfig,
};

/// How one simulated node differs from the others: its seed and its clock.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimNode {
    /// Seeds SWIM's random choices on this node.
    pub seed: u64,
    /// The node's wall clock, with its offset.
    pub clock: SimulatedClock,
}

impl SimNode {
    /// A node whose random choices come from `seed` and whose wall clock is
    /// `clock`.
    #[must_use]
    pub fn new(seed: u64, clock: SimulatedClock) -> Self {
        Self { seed, clock }
    }
}

impl ClusterStore {
    /// Starts a node on the simulated `network`, at `config`'s advertised
    /// address (or `listen`), with `node`'s seed and clock. It binds no
    /// socket: peers reach it only through `network`. Otherwise it is a
    /// node like any other, and returns at once as
    /// [`start`](Self::start) does.
    ///
    /// Restarting a crashed node is starting it again on the same address:
    /// it comes back empty, with a new SWIM identity.
    ///
    /// # Errors
    /// A setting out of range, a secret file that cannot be read, or no
    /// tokio runtime.
    pub fn start_simulated(
        mut config: ClusterConfig,
        network: &SimNetwork,
        node: SimNode,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClusterError::NoRuntime);
        }
        config.read_secret_file()?;
        let addr = config.advertised_addr();
        let clock = Clock::simulated(node.clock);
        let (link, socket) = network.attach(addr, &config);
        Ok(Self::launch(
            &config,
            Network {
                addr,
                link: Arc::new(link) as Arc<dyn Transport>,
                socket,
                counters: Arc::new(Counters::default()),
                rng: StdRng::seed_from_u64(node.seed),
                clock,
            },
        ))
    }
}
