//! What each node pays: the share of all sessions it keeps in memory (about
//! `R/N`, not all of them), and the peer-link bytes one commit costs.

mod support;

use std::time::Duration;

use session_cluster::ClusterStore;
use session_core::{manager::Finish, store::SessionStore, Key, SessionManager};
use support::{
    bounded, config, holders, ids, placed_counters, set_count, start, start_with, MEASURING,
};

const COPIES: usize = 2;
const SESSIONS: usize = 1500;

async fn memory_share(nodes: usize) {
    let _measuring = MEASURING.read().await;
    let cluster = bounded(
        "cluster start",
        Duration::from_secs(20),
        start(nodes, COPIES),
    )
    .await;
    let counters =
        placed_counters(&cluster, SESSIONS, 0, 16, COPIES, Duration::from_secs(60)).await;
    let ids = ids(&counters);
    let expected = COPIES as f64 / nodes as f64;
    let mut shares = Vec::new();
    for node in &cluster {
        let mut held = 0;
        for id in &ids {
            if node.holds(id).await {
                held += 1;
            }
        }
        let share = f64::from(held) / SESSIONS as f64;
        println!(
            "placement: N={nodes} R={COPIES} {} holds {share:.2} of {SESSIONS} sessions (expected {expected:.2}; stats say {} held)",
            node.node_id(),
            node.stats().sessions_held
        );
        assert_eq!(
            node.stats().sessions_held,
            held as usize,
            "{}: stats and holds disagree",
            node.node_id()
        );
        shares.push((node.node_id().to_owned(), share));
    }
    for (node, share) in shares {
        // 1500 sessions put one standard deviation near 0.013: 0.05 is
        // nearly four.
        assert!(
            (share - expected).abs() <= 0.05,
            "N={nodes}: {node} holds {share:.2}, expected {expected:.2}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_3_nodes_holds_two_thirds() {
    memory_share(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_5_nodes_holds_two_fifths() {
    memory_share(5).await;
}

/// Peer-link bytes and requests sent by all nodes: each byte on the link
/// is written once, by one of them. One `stats` call per node, as each
/// counts the sessions the node holds.
fn sent(cluster: &[ClusterStore]) -> (u64, u64) {
    cluster.iter().fold((0, 0), |(bytes, requests), node| {
        let stats = node.stats();
        (bytes + stats.bytes_sent, requests + stats.requests_sent)
    })
}

#[derive(Default)]
struct Cost {
    commits: u64,
    bytes: u64,
    requests: u64,
}

impl Cost {
    fn add(&mut self, bytes: u64, requests: u64) {
        self.commits += 1;
        self.bytes += bytes;
        self.requests += requests;
    }

    fn per_commit(&self) -> (f64, f64) {
        let n = self.commits.max(1) as f64;
        (self.bytes as f64 / n, self.requests as f64 / n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_commit_costs_one_copy_to_each_backup() {
    const COMMITS: usize = 1200;
    // Not a multiple of 3, so over 300 commits every session is committed
    // through every node once, a third of the time on its owner.
    const TRAFFIC_SESSIONS: usize = 100;
    // Bytes do not depend on the machine's load: no need to measure alone.
    let _measuring = MEASURING.read().await;
    // No anti-entropy pass and a short settle time: in the measured window
    // the only peer traffic is the commits' own.
    let settle = Duration::from_millis(500);
    let cluster = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, |name| {
            // A slow suspicion too: a false alarm on a busy machine would
            // start a pass and the settle window in the middle of it.
            config(name, 3, COPIES)
                .with_settle_time(settle)
                .with_anti_entropy_interval(Duration::from_secs(3600))
                .with_suspect_timeout(Duration::from_secs(3))
        }),
    )
    .await;
    // About 100 bytes of data: the count and an 85-byte string.
    let counters = placed_counters(
        &cluster,
        TRAFFIC_SESSIONS,
        85,
        8,
        COPIES,
        Duration::from_secs(30),
    )
    .await;
    // Settled: the last membership change is past the settle time and the
    // re-replication passes it caused have ended.
    let mut passes: Vec<u64> = cluster.iter().map(|n| n.stats().rebalances).collect();
    for _ in 0..50 {
        tokio::time::sleep(settle + Duration::from_millis(200)).await;
        let now: Vec<u64> = cluster.iter().map(|n| n.stats().rebalances).collect();
        if now == passes {
            break;
        }
        passes = now;
    }

    let (mut on_owner, mut on_backup, mut on_other) =
        (Cost::default(), Cost::default(), Cost::default());
    let mut odd = Vec::new();
    let before = sent(&cluster);
    let mut last = before;
    // One at a time, so each commit's bytes are its own.
    for i in 0..COMMITS {
        let counter = &counters[i % TRAFFIC_SESSIONS];
        let node = &cluster[i % cluster.len()];
        let holds = node.holds(&counter.id).await;
        let committed = bounded(
            "a commit",
            Duration::from_secs(5),
            node.commit(&counter.id, &set_count(i as u64), support::in_an_hour()),
        )
        .await
        .unwrap_or_else(|e| panic!("commit: {}", e.to_line()));
        assert!(matches!(
            committed,
            session_core::store::Committed::Applied { .. }
        ));
        let now = sent(&cluster);
        let (bytes, requests) = (now.0 - last.0, now.1 - last.1);
        last = now;
        // The owner sends one copy to its backup; any other node first
        // forwards the commit to the owner.
        match (requests, holds) {
            (1, true) => on_owner.add(bytes, requests),
            (2, true) => on_backup.add(bytes, requests),
            (2, false) => on_other.add(bytes, requests),
            _ => odd.push((i, requests, holds)),
        }
    }
    // Let the last reply's trailing frames land before the final count.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let total = sent(&cluster);
    let (total_bytes, total_requests) = (total.0 - before.0, total.1 - before.1);
    let after: Vec<u64> = cluster.iter().map(|n| n.stats().rebalances).collect();

    let (bytes, requests) = (
        total_bytes as f64 / COMMITS as f64,
        total_requests as f64 / COMMITS as f64,
    );
    println!(
        "traffic: N=3 R={COPIES} {COMMITS} commits of ~100-byte sessions through round-robin: {bytes:.0} peer-link bytes/commit (all nodes, both directions, frame headers and tags included), {requests:.2} peer requests/commit"
    );
    for (what, cost) in [
        ("on the owner", &on_owner),
        ("on the backup", &on_backup),
        ("on a non-holder", &on_other),
    ] {
        let (bytes, requests) = cost.per_commit();
        println!(
            "traffic: N=3 R={COPIES} commit issued {what}: {} commits, {bytes:.0} bytes/commit, {requests:.2} requests/commit",
            cost.commits
        );
    }
    assert_eq!(passes, after, "a re-replication pass ran while measuring");
    assert!(
        odd.is_empty(),
        "commits with unexpected peer traffic (index, requests, issued on a holder): {:?}",
        &odd[..odd.len().min(10)]
    );
    // Each node is the owner of a third of the sessions.
    let owner_share = on_owner.commits as f64 / COMMITS as f64;
    assert!(
        (0.3..=0.37).contains(&owner_share),
        "{owner_share:.2} of the commits were issued on their owner"
    );
    // A copy of a ~100-byte session and its signed envelope, not a full
    // state transfer: a few hundred bytes each way.
    assert!(
        on_owner.per_commit().0 < 1500.0 && bytes < 3000.0,
        "a commit costs {bytes:.0} bytes"
    );
    // Every commit is still there.
    for (i, counter) in counters.iter().enumerate().take(10) {
        let record = cluster[i % 3].load(&counter.id).await.unwrap().unwrap();
        assert_eq!(holders(&cluster, &counter.id).await, COPIES);
        assert!(support::count(&record) >= (COMMITS - TRAFFIC_SESSIONS) as u64);
    }
}

/// One request through `manager` with `cookie` (a `name=value` pair, if
/// any) that adds one to the session's count; the new cookie pair, if the
/// response set one.
async fn add_one(manager: &SessionManager, cookie: Option<&str>) -> Option<String> {
    let session = manager.start(cookie.map(str::as_bytes));
    let count = session.get::<u64>("count").await.unwrap().unwrap_or(0);
    session.insert("count", count + 1).await.unwrap();
    match session.finish().await {
        Finish::Respond { set_cookie } => {
            set_cookie.map(|value| value.split(';').next().unwrap().to_owned())
        }
        other => panic!("the request ended as {other:?}"),
    }
}

/// The ids a node's manager gives new sessions (the store's `generate_id`,
/// for a first write and for `cycle_id` alike) are owned by that node, so a
/// user whose requests stay on the node that created their session (a
/// balancer keeping a connection on one node) loads it from that node's own
/// copy and commits it with one copy, to its backup: one peer request a
/// write where a random id costs two two-thirds of the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_a_node_is_owned_there_so_a_write_on_it_costs_one_copy() {
    const SESSIONS: usize = 30;
    let _measuring = MEASURING.read().await;
    // As in the traffic test above: no pass and no false alarm may add
    // requests to the ones counted.
    let cluster = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, |name| {
            config(name, 3, COPIES)
                .with_settle_time(Duration::from_millis(500))
                .with_anti_entropy_interval(Duration::from_secs(3600))
                .with_suspect_timeout(Duration::from_secs(3))
        }),
    )
    .await;
    support::settle_all(&cluster, Duration::from_secs(20)).await;
    for node in &cluster {
        let manager = SessionManager::builder(node.clone(), Key::generate())
            .build()
            .unwrap();
        let mut odd = Vec::new();
        for i in 0..SESSIONS {
            let cookie = add_one(&manager, None)
                .await
                .expect("a new session's cookie");
            let before = sent(&cluster);
            let again = add_one(&manager, Some(&cookie)).await;
            let requests = sent(&cluster).1 - before.1;
            assert_eq!(again, None, "a commit sets no new cookie");
            let id = manager
                .start([cookie.as_bytes()])
                .id()
                .await
                .unwrap()
                .unwrap();
            let placement = node.placement(&id);
            if placement[0] != node.node_id() || requests != 1 {
                odd.push((i, placement, requests));
            }
        }
        // `cycle_id` takes its new id from the store too (five times, as
        // a random id is this node's one time in three).
        for _ in 0..5 {
            let cookie = add_one(&manager, None).await.unwrap();
            let session = manager.start([cookie.as_bytes()]);
            session.cycle_id().await.unwrap();
            let new_id = session.id().await.unwrap().unwrap();
            assert!(matches!(
                session.finish().await,
                Finish::Respond {
                    set_cookie: Some(_)
                }
            ));
            assert_eq!(node.placement(&new_id)[0], node.node_id(), "a cycled id");
        }
        assert!(
            odd.is_empty(),
            "{}: sessions owned elsewhere, or writes that took other than one peer request \
             (index, placement, requests): {odd:?}",
            node.node_id()
        );
    }
}
