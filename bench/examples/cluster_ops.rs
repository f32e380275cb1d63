//! What the cluster's write path costs in instructions: a 3-node,
//! `R = 2` cluster on one current-thread runtime, as `session-bench` runs
//! it, doing the bench's write workload (`load`, then `commit` of one
//! changed key) straight on `ClusterStore`s, without HTTP.
//!
//! ```text
//! cargo build --release -p session-bench --example cluster_ops
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/cluster_ops 200
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/examples/cluster_ops 1200
//! ```
//!
//! The instructions per write are the difference between the two runs'
//! totals divided by the difference in writes, so start-up and the wait
//! for the cluster to settle cancel out. Instruction counts do not depend
//! on what else the machine runs, so this is the figure to compare two
//! builds by on a shared machine; `session-bench` gives the time. The
//! peer link's work in the kernel is not counted (callgrind sees user
//! space only).
//!
//! `WRITES` (default 1000) are spread over 16 callers, each on its own
//! session and one of the three nodes, as the bench's connections are.
//! The sessions' ids are fixed, not random: placement follows the id and
//! the node names, so every run puts each session on the same owner and
//! backup, and two builds are compared on the same peer requests (with
//! random ids the share of remote calls, and so the count, moved by a few
//! percent from run to run). The membership's probes and the lease's
//! renewals are slowed down (every 5 s and 10 s instead of 250 ms and
//! 125 ms): they come by the clock, not by the write, and a run under
//! valgrind lasts as long as the machine's other work makes it, so at the
//! defaults they added as much as the steps being measured (a lease
//! confirmation is a peer request, as a write's are). Their cost is the
//! same per round either way.

use std::time::{Duration, SystemTime};

use session_cluster::{ClusterConfig, ClusterStore};
use session_core::{
    store::{Changes, Committed, Created, Data, Record, SessionStore},
    SessionId,
};

const NODES: usize = 3;
const CALLERS: usize = 16;
const SECRET: &[u8; 32] = b"session-bench-cluster-secret-32b";

fn main() {
    let writes: usize = std::env::args()
        .nth(1)
        .map_or(1000, |n| n.parse().expect("WRITES is a number"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(writes));
}

async fn run(writes: usize) {
    let config = |name: &str| {
        ClusterConfig::new(name, "127.0.0.1:0".parse().expect("literal"), SECRET)
            .with_cluster_size(NODES)
            .with_replication_factor(2)
            // See the top: background rounds are not a write's work.
            .with_probe_period(Duration::from_secs(5))
            .with_suspect_timeout(Duration::from_secs(60))
    };
    let first = ClusterStore::start(config("node-0"))
        .await
        .expect("node-0 starts");
    let seed = first.local_addr();
    let mut nodes = vec![first];
    for i in 1..NODES {
        let node = ClusterStore::start(config(&format!("node-{i}")).with_seeds([seed]))
            .await
            .expect("a node starts");
        nodes.push(node);
    }
    for node in &nodes {
        // Generous: under valgrind everything runs some fifty times slower.
        assert!(
            node.wait_for_members(NODES, Duration::from_secs(120)).await,
            "{} did not see the cluster form",
            node.node_id()
        );
    }
    // As session-bench does: measure a settled cluster, not one that has
    // just changed. Generous, for valgrind.
    let waiting = std::time::Instant::now();
    while !nodes.iter().all(|node| node.stats().settled) {
        assert!(
            waiting.elapsed() < ClusterConfig::DEFAULT_SETTLE_TIME + Duration::from_secs(120),
            "the cluster did not settle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let expires_at = SystemTime::now() + Duration::from_secs(3600);
    let mut ids = Vec::with_capacity(CALLERS);
    for caller in 0..CALLERS {
        // 22 characters of base64url ending in `A`: a canonical encoding.
        let id = SessionId::decode(&format!("clusteropscaller{caller:05}A"))
            .expect("a canonical session id");
        let mut data = Data::new();
        data.insert("count".to_owned(), "0".to_owned());
        let record = Record::new(id, data, SystemTime::now(), expires_at);
        let created = nodes[caller % NODES]
            .create(&record)
            .await
            .expect("a create succeeds");
        assert_eq!(created, Created::Created, "a fresh id is never taken");
        ids.push(id);
    }

    let started = std::time::Instant::now();
    let callers = ids.into_iter().enumerate().map(|(caller, id)| {
        let node = nodes[caller % NODES].clone();
        let rounds = writes / CALLERS + usize::from(caller < writes % CALLERS);
        async move {
            for round in 0..rounds {
                node.load(&id)
                    .await
                    .expect("a load succeeds")
                    .expect("the session lives");
                let mut changes = Changes::default();
                changes.set("count", (round + 1).to_string());
                let committed = node
                    .commit(&id, &changes, expires_at)
                    .await
                    .expect("a commit succeeds");
                assert!(matches!(committed, Committed::Applied { .. }));
            }
        }
    });
    futures_util::future::join_all(callers).await;
    println!(
        "{writes} writes (load + commit) over {CALLERS} callers on {NODES} nodes in {:.2?}",
        started.elapsed()
    );
}
