//! A user's requests split over the nodes by a round-robin balancer: every
//! read-modify-write loads on one node and commits on the next. Routing to
//! the owner must make that as safe as one server: no stale read, no lost
//! increment.

mod support;

use std::time::{Duration, Instant};

use support::{bounded, create_counters, start, Writers};

const NODES: usize = 3;
const COPIES: usize = 2;
const SESSIONS: usize = 50;
/// 5 000 read-modify-writes, 10 000 store requests: enough for thousands of
/// owner hand-offs, and about 8 s on a 2-core machine in a debug build.
const INCREMENTS_PER_SESSION: usize = 100;
/// Two sessions per task: 25 tasks in flight, each session's own requests
/// in order, as one user's are.
const TASKS: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_modify_write_over_round_robin_nodes_loses_nothing() {
    let nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start(NODES, COPIES),
    )
    .await;
    let counters = bounded(
        "creating the sessions",
        Duration::from_secs(20),
        create_counters(&nodes, SESSIONS, 0, TASKS),
    )
    .await;

    let started = Instant::now();
    let (counters, tally) = Writers::start(&nodes, counters, TASKS, INCREMENTS_PER_SESSION, 80)
        .finish(Duration::from_secs(60))
        .await;
    let elapsed = started.elapsed();

    let wrong = bounded(
        "reading back every counter",
        Duration::from_secs(20),
        support::check_counts(&nodes, &counters),
    )
    .await;
    // Counted on one node: every node must read the same final count.
    let lost: u64 = wrong
        .iter()
        .filter(|(node, ..)| node == nodes[0].node_id())
        .map(|(_, _, found, expected)| expected.saturating_sub(found.unwrap_or(0)))
        .sum();
    let requests = tally.loads + tally.commits;
    println!(
        "round_robin: N={NODES} R={COPIES} {} read-modify-writes ({} loads + {} commits) on {SESSIONS} sessions by {TASKS} tasks in {:.2}s: {:.0} requests/s, {:.0} increments/s",
        tally.increments,
        tally.loads,
        tally.commits,
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        tally.increments as f64 / elapsed.as_secs_f64(),
    );
    println!(
        "round_robin: stale reads {}, phantom reads {}, lost increments {lost}, wrong final counts {} (of {} reads), retried requests {}",
        tally.stale_reads,
        tally.phantom_reads,
        wrong.len(),
        counters.len() * nodes.len(),
        tally.retried,
    );
    assert_eq!(tally.increments, (SESSIONS * INCREMENTS_PER_SESSION) as u64);
    assert_eq!(tally.stale_reads, 0, "a load missed an acknowledged commit");
    assert_eq!(tally.phantom_reads, 0, "a load saw a count nobody wrote");
    assert!(wrong.is_empty(), "lost increments: {wrong:?}");
}
