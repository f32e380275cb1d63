//! Whole clusters (3 to 5 nodes, `R` = 2 or 3) in one process on a
//! simulated network (`session_cluster::simulation`), where a seed fixes
//! everything: each message's delay, loss and duplication (so messages
//! also overtake each other), each node's clock offset (up to ±200 ms),
//! and two or three faults one after another, each a partition (up to
//! `R - 1` nodes cut off from the majority, both ways or one way, or a
//! split where no side has a majority) or a crash of up to `R - 1` nodes
//! that come back empty; before each fault the cluster recovers from the
//! last. Three clients on two sessions send twelve requests each (reads,
//! writes to their own key, so two clients write disjoint keys of one
//! session, `cycle_id`, logouts, end-alls) to nodes picked at random among
//! those running, while the faults run; then every fault heals, every node
//! is back, and each client reads on every node. The history checker of
//! `session_conformance::race` checks every run: no acknowledged write
//! lost, no stale read, no value going backwards, nothing ended coming
//! back, no cookie replaced but by `cycle_id` or a logout.
//!
//! Everything runs on one current-thread runtime with a paused clock, so a
//! run takes virtual seconds and real milliseconds, and a seed replays:
//! - `SESSION_KIT_SIM_SEED=<n>` runs seed `n` alone and prints its plan,
//!   the network's counts, a timeline of its faults, its history, and for
//!   each violation a triage (did it run on a node that was cut off?);
//! - `SESSION_KIT_SIM_SEEDS=<count>` runs seeds `0..count` instead of the
//!   default [`DEFAULT_SEEDS`].
//!
//! ```text
//! SESSION_KIT_SIM_SEED=7 cargo test -p session-cluster --test simulation -- --nocapture
//! SESSION_KIT_SIM_SEEDS=2000 cargo test -p session-cluster --test simulation -- --nocapture
//! ```

mod sim_support;

use std::time::Instant;

use sim_support::{env_number, run_plan, run_seed, Fault, Plan, Run, Split, SEEDS_VAR, SEED_VAR};

/// Seeds `0..DEFAULT_SEEDS` run in `scripts/test`.
const DEFAULT_SEEDS: u64 = 50;

/// A seed's outcome: every promise kept, or the run, to print.
fn judge(run: &Run) -> Result<(), String> {
    if run.violations.is_empty() {
        Ok(())
    } else {
        Err(format!("a run broke a promise\n{run}"))
    }
}

/// With `one`, replays that seed alone and prints its run. Otherwise runs
/// seeds `0..seeds` of `plan_of`, hands each run to `each`, prints every
/// failing seed's violations and triage and a summary under `label`, and
/// fails with the first failing run.
fn run_seeds(
    label: &str,
    one: Option<u64>,
    seeds: u64,
    plan_of: impl Fn(u64) -> Plan,
    mut each: impl FnMut(u64, &Run),
) {
    if let Some(seed) = one {
        let started = Instant::now();
        let run = run_plan(plan_of(seed));
        eprintln!("{run}\n(in {:.2?})", started.elapsed());
        if let Err(failure) = judge(&run) {
            panic!("{failure}");
        }
        return;
    }
    let started = Instant::now();
    let (mut operations, mut failures) = (0, Vec::new());
    for seed in 0..seeds {
        let run = run_plan(plan_of(seed));
        operations += run.history.len();
        each(seed, &run);
        if let Err(failure) = judge(&run) {
            eprintln!(
                "{label}, seed {seed} FAILED: {}",
                run.violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            for line in run.triage() {
                eprintln!("  triage: {line}");
            }
            failures.push(failure);
        }
    }
    eprintln!(
        "{label}: {seeds} seeds, {operations} operations checked, {} failing, in {:.2?}",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed; the first:\n{}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn every_seeded_run_keeps_every_promise() {
    let one = env_number(SEED_VAR);
    let seeds = env_number(SEEDS_VAR).unwrap_or(DEFAULT_SEEDS);
    let mut coverage = Coverage::default();
    run_seeds("simulation", one, seeds, Plan::of, |_, run| {
        coverage.add(run);
    });
    if one.is_none() {
        eprintln!("simulation: {coverage:?}");
        if seeds >= DEFAULT_SEEDS {
            coverage.assert_everything_happened();
        }
    }
}

/// What the runs put the cluster through, summed: so that a change to the
/// plan or the network that quietly stops a fault from happening fails
/// the test instead of making it pass more easily.
#[derive(Debug, Default)]
struct Coverage {
    datagrams: u64,
    requests: u64,
    lost: u64,
    duplicated: u64,
    cut: u64,
    refused: u64,
    minority_cuts: u64,
    no_majority_splits: u64,
    one_way_cuts: u64,
    crashes: u64,
    skewed_clocks: u64,
}

impl Coverage {
    fn add(&mut self, run: &Run) {
        self.datagrams += run.network.datagrams;
        self.requests += run.network.requests;
        self.lost += run.network.lost;
        self.duplicated += run.network.duplicated;
        self.cut += run.network.cut;
        self.refused += run.network.refused;
        for (_, fault) in &run.plan.faults {
            match fault {
                Fault::Partition {
                    split: Split::Minority(_),
                    ..
                } => self.minority_cuts += 1,
                Fault::Partition {
                    split: Split::NoMajority(_),
                    ..
                } => self.no_majority_splits += 1,
                Fault::Partition {
                    split: Split::OneWay { .. },
                    ..
                } => self.one_way_cuts += 1,
                Fault::Crash { .. } => self.crashes += 1,
            }
        }
        self.skewed_clocks += run.plan.offsets.iter().filter(|o| **o != 0).count() as u64;
    }

    fn assert_everything_happened(&self) {
        let counts = [
            ("datagrams", self.datagrams),
            ("peer requests", self.requests),
            ("lost messages", self.lost),
            ("duplicated datagrams", self.duplicated),
            ("messages dropped by a cut or a dead node", self.cut),
            ("requests refused by a dead node", self.refused),
            ("minority partitions", self.minority_cuts),
            ("splits without a majority", self.no_majority_splits),
            ("one-way partitions", self.one_way_cuts),
            ("crashes", self.crashes),
            ("skewed clocks", self.skewed_clocks),
        ];
        for (what, count) in counts {
            assert!(count > 0, "the default seeds had no {what}: {self:?}");
        }
    }
}

#[test]
fn a_seed_replays_the_same_run() {
    // Two runs of one seed, in one process: the same plan, the same
    // network counts, the same history, line for line.
    for seed in [3, 11] {
        let first = run_seed(seed).transcript();
        let second = run_seed(seed).transcript();
        assert_eq!(first, second, "seed {seed} ran differently the second time");
    }
}

#[test]
fn a_one_way_cut_is_noticed_on_both_sides_and_heals() {
    use std::{net::SocketAddr, time::Duration};

    use session_cluster::{
        simulation::{LinkFaults, SimNetwork, SimNode, SimulatedClock},
        ClusterConfig, ClusterStore,
    };
    use session_core::store::SessionStore;

    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime starts")
        .block_on(async {
            let clock = SimulatedClock::starting_at(std::time::SystemTime::UNIX_EPOCH);
            let network = SimNetwork::new(1, LinkFaults::default());
            let addrs: Vec<SocketAddr> = (1..=3)
                .map(|i| SocketAddr::from(([127, 0, 1, i], 7400)))
                .collect();
            let nodes: Vec<ClusterStore> = (0..3)
                .map(|i| {
                    let config = ClusterConfig::new(format!("node-{i}"), addrs[i], [7u8; 32])
                        .with_seeds(addrs.iter().copied().filter(|a| *a != addrs[i]))
                        .with_cluster_size(3)
                        .with_probe_period(Duration::from_millis(100))
                        .with_suspect_timeout(Duration::from_millis(300));
                    ClusterStore::start_simulated(config, &network, SimNode::new(i as u64, clock))
                        .expect("a simulated node starts")
                })
                .collect();
            for node in &nodes {
                assert!(node.wait_for_members(3, Duration::from_secs(10)).await);
            }

            // node-0 hears the others, but nothing it sends arrives: the
            // others must drop it, and it must lose its quorum, each within
            // 5 s (virtual).
            network.partition_oneway(&addrs[..1], &addrs[1..]);
            let (mut dropped, mut noticed) = (None, None);
            for step in 1..=50u32 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if dropped.is_none() && nodes[1].members() == ["node-1", "node-2"] {
                    dropped = Some(step);
                }
                if noticed.is_none() && nodes[0].health().await.is_err() {
                    noticed = Some(step);
                }
            }
            assert!(dropped.is_some(), "node-1 still counts node-0 after 5 s");
            assert!(noticed.is_some(), "node-0 kept its quorum for 5 s");
            eprintln!(
                "one-way cut: the others dropped node-0 after {:?} ms, node-0 lost its quorum after {:?} ms",
                dropped.map(|s| s * 100),
                noticed.map(|s| s * 100)
            );

            network.heal();
            for node in &nodes {
                assert!(
                    node.wait_for_members(3, Duration::from_secs(10)).await,
                    "{} did not see all three again: {:?}",
                    node.node_id(),
                    node.members()
                );
            }
        });
}

/// Seeds of the lab's fault order run in `scripts/test`.
const DEFAULT_LAB_SEEDS: u64 = 4;
/// Runs seeds `0..<count>` of the lab's fault order instead.
const LAB_SEEDS_VAR: &str = "SESSION_KIT_SIM_LAB_SEEDS";
/// Runs seed `<n>` of the lab's fault order alone and prints it.
const LAB_SEED_VAR: &str = "SESSION_KIT_SIM_LAB_SEED";

#[test]
fn the_labs_fault_order_keeps_every_promise() {
    run_seeds(
        "lab order",
        env_number(LAB_SEED_VAR),
        env_number(LAB_SEEDS_VAR).unwrap_or(DEFAULT_LAB_SEEDS),
        Plan::lab_order,
        |seed, run| {
            // For the record: the faults came in the lab's order.
            if seed == 0 {
                eprintln!("lab order, seed 0:\n  {}", run.timeline.join("\n  "));
            }
        },
    );
}
