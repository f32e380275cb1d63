//! The simulation harness: a seeded plan (cluster size, link faults, clock
//! offsets, partitions and crashes), a cluster on a `SimNetwork`, app
//! servers whose managers run on its nodes, clients that record a history,
//! and the run that ties them together.
#![allow(dead_code, unreachable_pub)]

mod plan;
mod store;

use std::{
    fmt,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use futures_util::future::join_all;
pub use plan::{Fault, Mix, Plan, Split};
use rand::{rngs::StdRng, Rng, SeedableRng};
use session_cluster::{
    simulation::{NetworkStats, SimNetwork, SimNode, SimulatedClock},
    ClusterConfig, ClusterStore,
};
use session_conformance::race::{Client, History, Violation};
use session_core::{Key, SessionManager};
pub use store::IdMap;
use store::OnNode;

/// Replays one seed and prints its history: `SESSION_KIT_SIM_SEED=<n>`.
pub const SEED_VAR: &str = "SESSION_KIT_SIM_SEED";
/// Runs seeds `0..<count>` instead of the default:
/// `SESSION_KIT_SIM_SEEDS=<count>`.
pub const SEEDS_VAR: &str = "SESSION_KIT_SIM_SEEDS";

const SECRET: &[u8; 32] = b"simulated-cluster-secret-32bytes";
/// The owner every client logs in as, so `end_all_for` ends them all.
const OWNER: &str = "user-1";
/// The longest wait, in virtual time, for a cluster to see all its nodes.
const FORM_LIMIT: Duration = Duration::from_secs(30);

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// What one run did.
pub struct Run {
    pub plan: Plan,
    /// When each fault began and ended, against the history.
    pub timeline: Vec<String>,
    /// Each partition, as the operations it overlapped and the nodes it
    /// cut off from a majority.
    pub cuts: Vec<Cut>,
    pub history: History,
    pub violations: Vec<Violation>,
    pub network: NetworkStats,
}

/// A partition as the history saw it: the operations that began while it
/// lasted (`began_from..began_to`, by index) and the nodes it left without
/// a majority, which may serve stale copies until they notice (the crate
/// docs' stale-read window).
#[derive(Debug, Clone)]
pub struct Cut {
    pub began_from: usize,
    pub began_to: usize,
    pub cut_off: Vec<usize>,
}

impl Run {
    /// For each violation, the operations that show it, their nodes, and
    /// whether one of them ran on a node that a partition had cut off from
    /// a majority (having begun while the cut lasted, or among the next
    /// few operations after it healed): what tells the known stale-read
    /// window from anything else, as a first sorting, not a proof.
    pub fn triage(&self) -> Vec<String> {
        let ops = self.history.ops();
        self.violations
            .iter()
            .map(|violation| {
                let evidence = evidence(violation);
                let on_cut_node = evidence.iter().find(|op| {
                    let server = ops[**op].server;
                    self.cuts.iter().any(|cut| {
                        cut.cut_off.contains(&server)
                            && cut.began_from <= **op
                            && **op < cut.began_to + self.plan.clients
                    })
                });
                let nodes: Vec<String> = evidence
                    .iter()
                    .map(|op| format!("#{op} on node-{}", ops[*op].server))
                    .collect();
                match on_cut_node {
                    Some(op) => format!(
                        "{}: #{op} ran on a node cut off from a majority: the stale-read window",
                        nodes.join(", ")
                    ),
                    None => format!(
                        "{}: none ran on a cut-off node: NOT the known window",
                        nodes.join(", ")
                    ),
                }
            })
            .collect()
    }

    /// The history, the network's counts and the plan as text: two runs of
    /// one seed print the same.
    pub fn transcript(&self) -> String {
        format!(
            "{:#?}\n{:?}\n{}\n{}",
            self.plan,
            self.network,
            self.timeline.join("\n"),
            self.history
        )
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} violation(s)",
            self.plan.seed,
            self.violations.len()
        )?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        writeln!(f, "triage:")?;
        for line in self.triage() {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "plan: {:#?}", self.plan)?;
        writeln!(f, "network: {:?}", self.network)?;
        writeln!(f, "timeline:")?;
        for line in &self.timeline {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "history:\n{}", self.history)?;
        write!(
            f,
            "replay: {SEED_VAR}={} cargo test -p session-cluster --test simulation -- --nocapture",
            self.plan.seed
        )
    }
}

/// The operations a violation's evidence hangs on: the read that missed a
/// write and the write, the two reads that disagree, the end and the read
/// that found the session alive, the response that changed a cookie.
fn evidence(violation: &Violation) -> Vec<usize> {
    match violation {
        Violation::LostWrite { write, read, .. } | Violation::StaleRead { write, read, .. } => {
            vec![read.0, write.0]
        }
        Violation::Resurrected { end, read } => vec![read.0, end.0],
        Violation::WentBackwards { earlier, later, .. } => vec![later.0, earlier.0],
        Violation::CookieReplaced { op, .. } => vec![op.0],
        _ => Vec::new(),
    }
}

/// One node slot: the running node, if any, and how to start it again.
struct Slot {
    name: String,
    addr: SocketAddr,
    clock: SimulatedClock,
    running: RwLock<Option<ClusterStore>>,
}

impl Slot {
    fn current(&self) -> Option<ClusterStore> {
        self.running
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Cluster {
    plan: Plan,
    network: SimNetwork,
    slots: Vec<Arc<Slot>>,
    history: History,
    started: tokio::time::Instant,
    timeline: Mutex<Vec<String>>,
    cuts: Mutex<Vec<Cut>>,
}

impl Cluster {
    fn config(&self, index: usize) -> ClusterConfig {
        let slot = &self.slots[index];
        let seeds = self
            .slots
            .iter()
            .filter(|other| other.addr != slot.addr)
            .map(|other| other.addr);
        ClusterConfig::new(slot.name.clone(), slot.addr, SECRET.to_vec())
            .with_seeds(seeds)
            .with_cluster_size(self.plan.nodes)
            .with_replication_factor(self.plan.copies)
            .with_probe_period(self.plan.timings.probe_period)
            .with_suspect_timeout(self.plan.timings.suspect_timeout)
            .with_settle_time(self.plan.timings.settle_time)
            .with_anti_entropy_interval(Duration::from_secs(5))
            .with_operation_timeout(ms(500))
    }

    /// Starts (or restarts, empty) node `index`; `incarnation` counts its
    /// starts, so each gets SWIM choices of its own.
    fn start(&self, index: usize, incarnation: u64) {
        let slot = &self.slots[index];
        let node_seed =
            self.plan.seed.wrapping_mul(1_000_003) ^ ((index as u64) << 32) ^ incarnation;
        let store = ClusterStore::start_simulated(
            self.config(index),
            &self.network,
            SimNode::new(node_seed, slot.clock),
        )
        .expect("a simulated node starts");
        *slot.running.write().unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    fn crash(&self, index: usize) {
        let slot = &self.slots[index];
        let dead = slot
            .running
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(dead) = dead {
            self.network.crash(&dead);
        }
    }

    fn addrs(&self, indexes: &[usize]) -> Vec<SocketAddr> {
        indexes.iter().map(|i| self.slots[*i].addr).collect()
    }

    fn others(&self, indexes: &[usize]) -> Vec<SocketAddr> {
        (0..self.slots.len())
            .filter(|i| !indexes.contains(i))
            .map(|i| self.slots[i].addr)
            .collect()
    }

    /// Waits (bounded, virtual time) until every node runs and sees all.
    async fn wait_whole(&self) -> bool {
        let deadline = tokio::time::Instant::now() + FORM_LIMIT;
        for slot in &self.slots {
            let Some(store) = slot.current() else {
                return false;
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !store.wait_for_members(self.slots.len(), left).await {
                return false;
            }
        }
        true
    }

    /// Notes `what` in the timeline, with the virtual time and how many
    /// operations had begun.
    fn note(&self, what: String) {
        let line = format!(
            "{:>8.3?} after {} op(s) began: {what}",
            self.started.elapsed(),
            self.history.len()
        );
        self.timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    fn names(&self, indexes: &[usize]) -> String {
        let names: Vec<&str> = indexes
            .iter()
            .map(|i| self.slots[*i].name.as_str())
            .collect();
        names.join(",")
    }

    /// Runs the plan's faults, one after another. Before each, the cluster
    /// recovers from the one before (every node back and seeing all, and a
    /// moment for re-replication), so two faults never add up to more than
    /// one.
    async fn chaos(&self) {
        let mut restarts = vec![1u64; self.slots.len()];
        for (pause, fault) in &self.plan.faults {
            if self.wait_whole().await {
                tokio::time::sleep(self.plan.recovery).await;
            }
            tokio::time::sleep(*pause).await;
            match fault {
                Fault::Partition { split, lasts } => {
                    match split {
                        Split::Minority(side) => {
                            self.network
                                .partition(&self.addrs(side), &self.others(side));
                        }
                        Split::NoMajority(groups) => {
                            for (i, a) in groups.iter().enumerate() {
                                for b in &groups[i + 1..] {
                                    self.network.partition(&self.addrs(a), &self.addrs(b));
                                }
                            }
                        }
                        Split::OneWay { from } => {
                            self.network
                                .partition_oneway(&self.addrs(from), &self.others(from));
                        }
                    }
                    self.note(format!("partition begins: {split:?}"));
                    let began_from = self.history.len();
                    tokio::time::sleep(*lasts).await;
                    self.network.heal();
                    self.note("partition healed".to_owned());
                    let cut_off = match split {
                        Split::Minority(side) | Split::OneWay { from: side } => side.clone(),
                        Split::NoMajority(_) => (0..self.slots.len()).collect(),
                    };
                    self.cuts
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Cut {
                            began_from,
                            began_to: self.history.len(),
                            cut_off,
                        });
                }
                Fault::Crash { nodes, down_for } => {
                    for node in nodes {
                        self.crash(*node);
                    }
                    self.note(format!("crashed {}", self.names(nodes)));
                    tokio::time::sleep(*down_for).await;
                    for node in nodes {
                        restarts[*node] += 1;
                        self.start(*node, restarts[*node]);
                    }
                    self.note(format!("restarted {}", self.names(nodes)));
                }
            }
        }
    }
}

/// Runs `seed` on a fresh current-thread runtime with a paused clock.
pub fn run_seed(seed: u64) -> Run {
    run_plan(Plan::of(seed))
}

/// Runs `plan` on a fresh current-thread runtime with a paused clock.
pub fn run_plan(plan: Plan) -> Run {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime starts")
        .block_on(run(plan))
}

async fn run(plan: Plan) -> Run {
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = SimulatedClock::starting_at(epoch);
    let network = SimNetwork::new(plan.seed, plan.link);
    let slots = (0..plan.nodes)
        .map(|i| {
            Arc::new(Slot {
                name: format!("node-{i}"),
                addr: SocketAddr::from(([127, 0, 1, u8::try_from(i + 1).unwrap_or(1)], 7400)),
                clock: clock.offset_by_millis(plan.offsets[i]),
                running: RwLock::new(None),
            })
        })
        .collect();
    let history = History::new();
    let cluster = Cluster {
        plan: plan.clone(),
        network: network.clone(),
        slots,
        history: history.clone(),
        started: tokio::time::Instant::now(),
        timeline: Mutex::new(Vec::new()),
        cuts: Mutex::new(Vec::new()),
    };
    for index in 0..plan.nodes {
        cluster.start(index, 1);
    }
    assert!(
        cluster.wait_whole().await,
        "seed {}: the simulated cluster did not form within {FORM_LIMIT:?}",
        plan.seed
    );

    let ids = IdMap::new(plan.seed);
    let key = Key::from_secret([42u8; 64]).expect("a long enough secret");
    let managers: Vec<SessionManager> = cluster
        .slots
        .iter()
        .map(|slot| {
            SessionManager::builder(OnNode::new(Arc::clone(slot), ids.clone()), key.clone())
                .with_clock(slot.clock)
                .build()
                .expect("the manager's settings are valid")
        })
        .collect();
    cluster.note("cluster formed; clients start".to_owned());
    let mut clients: Vec<Client> = (0..plan.clients)
        .map(|index| Client::new(index, plan.clients, history.clone()))
        .collect();
    let mut rngs: Vec<StdRng> = (0..plan.clients)
        .map(|index| StdRng::seed_from_u64(plan.seed.wrapping_mul(31) ^ (index as u64 + 1) << 40))
        .collect();

    // Logins first, one session per client up to `sessions`; the other
    // clients share them (a second tab).
    for (client, rng) in clients.iter_mut().zip(&mut rngs).take(plan.sessions) {
        let server = pick(&cluster, rng);
        client.login(server, &managers[server], OWNER).await;
    }
    for index in plan.sessions..clients.len() {
        let (first, rest) = clients.split_at_mut(index);
        rest[0].adopt_cookie(&first[index % plan.sessions]);
    }

    let work = clients.iter_mut().zip(&mut rngs).map(|(client, rng)| {
        let (cluster, managers) = (&cluster, &managers);
        async move {
            for _ in 0..plan.requests {
                let (least, most) = plan.think_ms;
                tokio::time::sleep(ms(rng.random_range(least..=most))).await;
                let server = pick(cluster, rng);
                request(client, server, &managers[server], plan.mix, rng).await;
            }
        }
    });
    futures_util::future::join(cluster.chaos(), join_all(work)).await;

    // Every fault is over: let the cluster find itself again and hand
    // sessions over, then each client reads once on every node.
    network.heal();
    cluster.note("clients done; every link healed".to_owned());
    let whole = cluster.wait_whole().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.note("final reads begin".to_owned());
    for client in &mut clients {
        for (server, manager) in managers.iter().enumerate() {
            if client.session().is_some() {
                client.read(server, manager).await;
            }
        }
    }
    assert!(
        whole,
        "seed {}: the cluster did not form again after the faults\n{history}",
        plan.seed
    );
    let violations = history.check();
    let network_stats = network.stats();
    let timeline = cluster
        .timeline
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let cuts = cluster
        .cuts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Run {
        plan,
        timeline,
        cuts,
        history,
        violations,
        network: network_stats,
    }
}

/// A node for the next request, as a load balancer with health checks
/// picks one: at random among those running.
fn pick(cluster: &Cluster, rng: &mut StdRng) -> usize {
    let first = rng.random_range(0..cluster.slots.len());
    (0..cluster.slots.len())
        .map(|step| (first + step) % cluster.slots.len())
        .find(|i| cluster.slots[*i].current().is_some())
        .unwrap_or(first)
}

/// One request: mostly reads and writes, now and then a `cycle_id`, a
/// logout or an end-all. A client without a session logs in.
async fn request(
    client: &mut Client,
    server: usize,
    manager: &SessionManager,
    mix: Mix,
    rng: &mut StdRng,
) {
    if client.session().is_none() {
        client.login(server, manager, OWNER).await;
        return;
    }
    let kinds = match mix {
        Mix::Everything => 11,
        Mix::ReadsAndWrites => 8,
    };
    match rng.random_range(0..kinds) {
        0..=3 => client.read(server, manager).await,
        4..=7 => client.write(server, manager).await,
        8 => client.cycle_id(server, manager).await,
        9 => client.destroy(server, manager).await,
        _ => client.end_all_for(server, manager, OWNER).await,
    }
}

/// A whole number from the environment variable `name`, if set.
pub fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
    )
}
