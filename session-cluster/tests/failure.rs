//! Nodes that die and nodes that join: no acknowledged write is lost, every
//! session gets back to `R` copies, a new node is handed its share, and a
//! deleted session stays deleted.
//!
//! A node is killed by dropping every clone of its store: its tasks are
//! aborted and its memory freed, with no goodbye to the others, as in a crash.

mod support;

use std::time::{Duration, Instant};

use session_cluster::ClusterStore;
use session_core::{
    store::{Committed, SessionStore},
    SessionId,
};
use support::{
    all_held_by, bounded, check_counts, config, create_counters, eventually, holders, ids,
    placed_counters, start, start_with, Writers, MEASURING,
};

const COPIES: usize = 2;

async fn held_by(node: &ClusterStore, ids: &[SessionId]) -> usize {
    let mut held = 0;
    for id in ids {
        if node.holds(id).await {
            held += 1;
        }
    }
    held
}

/// How many re-replication passes each node has completed.
fn passes(nodes: &[ClusterStore]) -> Vec<u64> {
    nodes.iter().map(|n| n.stats().rebalances).collect()
}

/// Whether each of the nodes counted in `before` has completed a pass since.
/// With no periodic pass configured, that is the pass a membership change
/// started.
fn passed(nodes: &[ClusterStore], before: &[u64]) -> bool {
    nodes
        .iter()
        .zip(before)
        .all(|(node, before)| node.stats().rebalances > *before)
}

/// Deletes `id` through `node`, retrying failures that a retry may cure.
async fn delete(node: &ClusterStore, id: &SessionId) {
    for attempt in 1..=40 {
        match node.delete(id).await {
            Ok(()) => return,
            Err(err) if err.kind().is_transient() && attempt < 40 => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(err) => panic!("delete via {}: {}", node.node_id(), err.to_line()),
        }
    }
}

/// Whether every one of `ids` loads as absent from every node.
async fn all_absent(nodes: &[ClusterStore], ids: &[SessionId]) -> Result<(), String> {
    for node in nodes {
        for id in ids {
            match node.load(id).await {
                Ok(None) => {}
                Ok(Some(record)) => {
                    return Err(format!(
                        "deleted {id:?} is back on {} at version {}",
                        node.node_id(),
                        record.version
                    ))
                }
                Err(err) => return Err(format!("load on {}: {}", node.node_id(), err.to_line())),
            }
            if node.holds(id).await {
                return Err(format!(
                    "{} holds a live copy of deleted {id:?}",
                    node.node_id()
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_acknowledged_write_and_copies_come_back() {
    const SESSIONS: usize = 1000;
    let _measuring = MEASURING.write().await;
    let mut nodes = bounded("cluster start", Duration::from_secs(20), start(3, COPIES)).await;
    let counters = placed_counters(&nodes, SESSIONS, 64, 16, COPIES, Duration::from_secs(30)).await;
    let ids = ids(&counters);

    // The victim takes no client traffic, so the writers hold no clone of it.
    let victim = nodes.pop().expect("three nodes");
    let survivors = nodes;
    let victim_name = victim.node_id().to_owned();
    let on_victim = held_by(&victim, &ids).await;
    let writers = Writers::start(&survivors, counters, 16, 10_000, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;

    drop(victim);
    let killed = Instant::now();
    eventually(
        "the survivors notice the death",
        Duration::from_secs(10),
        async || survivors.iter().all(|n| n.members().len() == 2),
    )
    .await;
    let detected = killed.elapsed();
    eventually(
        "every session back on 2 live nodes",
        Duration::from_secs(20),
        async || all_held_by(&survivors, &ids, COPIES).await,
    )
    .await;
    let replicated = killed.elapsed();
    // Keep writing on the re-replicated cluster a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    writers.stop();
    let (counters, tally) = writers.finish(Duration::from_secs(30)).await;

    let wrong = bounded(
        "reading back every counter",
        Duration::from_secs(30),
        check_counts(&survivors, &counters),
    )
    .await;
    println!(
        "failure: N=3 R={COPIES} killed {victim_name} (held {on_victim} of {SESSIONS} sessions) under a round-robin writer on the 2 survivors"
    );
    println!(
        "failure: death noticed by both survivors {} ms after the kill; every session held by exactly 2 live nodes {} ms after the kill",
        detected.as_millis(),
        replicated.as_millis()
    );
    println!(
        "failure: writer did {} increments; {} requests failed (Unavailable/Timeout) and were retried; {} failed commits were applied after all; stale reads {}, phantom reads {}",
        tally.increments,
        tally.retried,
        tally.applied_despite_error,
        tally.stale_reads,
        tally.phantom_reads
    );
    println!(
        "failure: sessions lost or with a wrong count, over {} reads on the survivors: {}",
        counters.len() * survivors.len(),
        wrong.len()
    );
    assert!(
        on_victim > 0,
        "the victim held nothing: the kill tested nothing"
    );
    assert!(tally.increments > 0, "the writer did nothing");
    assert_eq!(tally.stale_reads, 0, "a load missed an acknowledged commit");
    assert_eq!(tally.phantom_reads, 0, "a load saw a count nobody wrote");
    assert!(wrong.is_empty(), "lost or wrong sessions: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_is_handed_its_share() {
    const SESSIONS: usize = 400;
    const NODES: usize = 4;
    let _measuring = MEASURING.read().await;
    // The cluster is meant to have 4 nodes; 3 of them are a quorum. No
    // periodic pass: the join's own pass must hand everything over.
    let settings = |name: &str| {
        config(name, NODES, COPIES).with_anti_entropy_interval(Duration::from_secs(3600))
    };
    let mut nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, settings),
    )
    .await;
    let counters = bounded(
        "creating the sessions",
        Duration::from_secs(30),
        create_counters(&nodes, SESSIONS, 64, 16),
    )
    .await;
    let all = ids(&counters);
    let (counters, _) = Writers::start(&nodes, counters, 16, 1, 40)
        .finish(Duration::from_secs(30))
        .await;
    // Half the sessions are read while they move, half are written.
    let (quiet, busy) = counters.split_at(SESSIONS / 2);
    let (quiet, busy) = (quiet.to_vec(), busy.to_vec());
    let quiet_ids = ids(&quiet);

    let passes = passes(&nodes);
    let writers = Writers::start(&nodes, busy, 8, 10_000, 80);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let joiner = ClusterStore::start(settings("node-3").with_seeds([nodes[0].local_addr()]))
        .await
        .expect("the new node starts");
    let joined = Instant::now();
    nodes.push(joiner);
    for node in &nodes {
        assert!(
            node.wait_for_members(NODES, Duration::from_secs(15)).await,
            "{} sees only {:?}",
            node.node_id(),
            node.members()
        );
    }
    let seen = joined.elapsed();
    let reader = {
        // The new node first: it is the one that may not have been handed
        // the sessions it owns yet.
        let mut order = vec![nodes[3].clone()];
        order.extend_from_slice(&nodes[..3]);
        let quiet = quiet.clone();
        tokio::spawn(async move { check_counts(&order, &quiet).await })
    };
    // Before the old nodes hand anything over, every session is trivially
    // on exactly 2 nodes, the old ones: so their passes come first. Only
    // the quiet sessions count: a commit that lands on an old holder while
    // its pass runs keeps that copy there until the next pass.
    eventually(
        "the old nodes hand node-3 its share",
        Duration::from_secs(20),
        async || passed(&nodes, &passes) && all_held_by(&nodes, &quiet_ids, COPIES).await,
    )
    .await;
    let settled = joined.elapsed();
    writers.stop();
    let (busy, during) = writers.finish(Duration::from_secs(30)).await;
    let wrong = bounded("the reader", Duration::from_secs(30), reader)
        .await
        .expect("the reader panicked");
    assert!(
        wrong.is_empty(),
        "wrong during the hand-over: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    // More writes, now through all four nodes, the new one included.
    let mut counters = quiet;
    counters.extend(busy);
    let (counters, after) = Writers::start(&nodes, counters, 16, 1, 40)
        .finish(Duration::from_secs(30))
        .await;
    let share = held_by(&nodes[3], &all).await as f64 / SESSIONS as f64;
    println!(
        "join: N=3->4 R={COPIES} node-3 seen by all {} ms after start; hand-over done (a pass on every old node, every quiet session on exactly 2 nodes) {} ms after start",
        seen.as_millis(),
        settled.as_millis()
    );
    for node in &nodes {
        println!(
            "join: N=4 R={COPIES} {} holds {:.2} of {SESSIONS} sessions (expected {:.2})",
            node.node_id(),
            held_by(node, &all).await as f64 / SESSIONS as f64,
            COPIES as f64 / NODES as f64
        );
    }
    // Past the settle time, owners no longer ask around: what each node was
    // handed is all it has.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(joined.elapsed())).await;
    let wrong = bounded(
        "reading every session from every node",
        Duration::from_secs(30),
        check_counts(&nodes, &counters),
    )
    .await;
    let mut tally = during;
    tally.add(&after);
    println!(
        "join: {} quiet sessions read from each of the 4 nodes during the hand-over: 0 wrong; {} increments on the other {} during the join ({} retried requests), {} more through all 4 nodes after; stale reads {}, phantom reads {}; wrong counts after settling: {}",
        SESSIONS / 2,
        during.increments,
        SESSIONS - SESSIONS / 2,
        during.retried,
        after.increments,
        tally.stale_reads,
        tally.phantom_reads,
        wrong.len()
    );
    assert!(during.increments > 0, "nothing was written during the join");
    assert_eq!(tally.stale_reads, 0, "a load missed an acknowledged commit");
    assert_eq!(tally.phantom_reads, 0, "a load saw a count nobody wrote");
    assert!(
        wrong.is_empty(),
        "wrong after settling: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    assert!(
        (share - 0.5).abs() <= 0.1,
        "node-3 holds {share:.2} of the sessions, expected about 0.5"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_session_stays_deleted_across_membership_changes() {
    const SESSIONS: usize = 200;
    let _measuring = MEASURING.read().await;
    // No periodic pass: only the membership changes move sessions.
    let settings =
        |name: &str| config(name, 3, COPIES).with_anti_entropy_interval(Duration::from_secs(3600));
    let mut nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, settings),
    )
    .await;
    let counters = placed_counters(&nodes, SESSIONS, 16, 8, COPIES, Duration::from_secs(30)).await;
    let (gone, kept) = counters.split_at(SESSIONS / 2);
    let gone = ids(gone);
    let kept = kept.to_vec();
    let kept_ids = ids(&kept);
    let victim_held = held_by(&nodes[2], &gone).await;
    for (i, id) in gone.iter().enumerate() {
        delete(&nodes[i % nodes.len()], id).await;
    }
    all_absent(&nodes, &gone).await.unwrap();

    let victim = nodes.pop().expect("three nodes");
    let victim_name = victim.node_id().to_owned();
    let before = passes(&nodes);
    drop(victim);
    eventually(
        "the survivors notice the death",
        Duration::from_secs(10),
        async || nodes.iter().all(|n| n.members().len() == 2),
    )
    .await;
    eventually(
        "every kept session back on 2 live nodes",
        Duration::from_secs(20),
        async || passed(&nodes, &before) && all_held_by(&nodes, &kept_ids, COPIES).await,
    )
    .await;
    all_absent(&nodes, &gone)
        .await
        .unwrap_or_else(|e| panic!("after {victim_name} died: {e}"));

    let before = passes(&nodes);
    let joiner = ClusterStore::start(settings("node-3").with_seeds([nodes[0].local_addr()]))
        .await
        .expect("the new node starts");
    nodes.push(joiner);
    for node in &nodes {
        assert!(
            node.wait_for_members(3, Duration::from_secs(15)).await,
            "{} sees only {:?}",
            node.node_id(),
            node.members()
        );
    }
    all_absent(&nodes, &gone)
        .await
        .unwrap_or_else(|e| panic!("right after node-3 joined: {e}"));
    eventually(
        "the old nodes hand node-3 its share",
        Duration::from_secs(20),
        async || passed(&nodes, &before) && all_held_by(&nodes, &kept_ids, COPIES).await,
    )
    .await;
    all_absent(&nodes, &gone)
        .await
        .unwrap_or_else(|e| panic!("after node-3 joined and sessions moved: {e}"));
    let wrong = check_counts(&nodes, &kept).await;
    println!(
        "deletes: deleted {} of {SESSIONS} sessions ({victim_held} of them held by {victim_name}), killed {victim_name}, added node-3: 0 came back; kept sessions with a wrong count: {}",
        gone.len(),
        wrong.len()
    );
    assert!(
        victim_held > 0,
        "the victim held none of the deleted sessions"
    );
    assert!(wrong.is_empty(), "kept sessions wrong: {wrong:?}");
    // A commit must not resurrect a deleted session either.
    for id in gone.iter().take(20) {
        let committed = nodes[0]
            .commit(id, &support::set_count(7), support::in_an_hour())
            .await;
        match committed {
            Ok(Committed::Missing) => {}
            other => panic!("commit to deleted {id:?}: {other:?}"),
        }
    }
    assert_eq!(
        holders(&nodes, &gone[0]).await,
        0,
        "a commit brought a deleted session back"
    );
}
