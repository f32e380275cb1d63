//! A network partition (with the `fault-injection` feature): the minority
//! side refuses everything, reads included; the majority keeps serving and
//! writing; after the heal no node serves a stale or diverged copy, and a
//! session deleted during the partition stays deleted.

mod support;

use std::time::{Duration, Instant};

use session_cluster::ClusterStore;
use session_core::{store::SessionStore, ErrorKind, SessionId, StoreError};
use support::{
    all_held_by, bounded, check_counts, config, counter_record, create_counters, eventually, ids,
    set_count, start, start_with, Writers, MEASURING,
};

const COPIES: usize = 2;
const SESSIONS: usize = 200;

fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(err) if err.kind() == ErrorKind::Unavailable => {}
        other => panic!("the minority node answered {what} with {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minority_refuses_and_the_heal_serves_no_stale_copy() {
    let _measuring = MEASURING.read().await;
    let nodes = bounded("cluster start", Duration::from_secs(20), start(3, COPIES)).await;
    let counters = bounded(
        "creating the sessions",
        Duration::from_secs(30),
        create_counters(&nodes, SESSIONS, 32, 8),
    )
    .await;
    let ids = ids(&counters);
    let (counters, _) = Writers::start(&nodes, counters, 8, 1, 40)
        .finish(Duration::from_secs(30))
        .await;
    eventually(
        "every session on 2 of 3 nodes",
        Duration::from_secs(10),
        async || all_held_by(&nodes, &ids, COPIES).await,
    )
    .await;

    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let on_c = {
        let mut held = 0;
        for id in &ids {
            held += usize::from(c.holds(id).await);
        }
        held
    };
    c.partition_from([a.local_addr(), b.local_addr()]);
    a.partition_from([c.local_addr()]);
    b.partition_from([c.local_addr()]);
    let cut = Instant::now();
    eventually(
        "both sides notice the partition",
        Duration::from_secs(10),
        async || c.members().len() == 1 && a.members().len() == 2 && b.members().len() == 2,
    )
    .await;
    let detected = cut.elapsed();

    // The minority serves nothing, not even the copies it holds.
    let mut refusals = 0;
    for id in &ids {
        refused("load", c.load(id).await);
        refusals += 1;
    }
    refused(
        "commit",
        c.commit(&ids[0], &set_count(99), support::in_an_hour())
            .await,
    );
    refused("touch", c.touch(&ids[0], support::in_an_hour()).await);
    refused("delete", c.delete(&ids[0]).await);
    refused("create", c.create(&counter_record(0)).await);
    refused("health", c.health().await);
    refusals += 5;

    // The majority serves every session, and writes.
    let majority = [a.clone(), b.clone()];
    let wrong = check_counts(&majority, &counters).await;
    assert!(
        wrong.is_empty(),
        "the majority lost sessions: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    let (counters, during) = Writers::start(&majority, counters, 8, 2, 80)
        .finish(Duration::from_secs(30))
        .await;
    // Deleted while the minority, which may hold a copy, cannot hear of it.
    let (gone, kept) = counters.split_at(30);
    let gone: Vec<SessionId> = gone.iter().map(|c| c.id).collect();
    let gone_on_c = {
        let mut held = 0;
        for id in &gone {
            held += usize::from(c.holds(id).await);
        }
        held
    };
    for (i, id) in gone.iter().enumerate() {
        majority[i % 2]
            .delete(id)
            .await
            .unwrap_or_else(|e| panic!("delete on the majority: {}", e.to_line()));
    }
    let kept = kept.to_vec();
    for id in ids.iter().take(20) {
        refused("load", c.load(id).await);
    }

    for node in &nodes {
        node.heal();
    }
    let healed = Instant::now();
    for node in &nodes {
        assert!(
            node.wait_for_members(3, Duration::from_secs(15)).await,
            "{} sees only {:?} after the heal",
            node.node_id(),
            node.members()
        );
    }
    let rejoined = healed.elapsed();

    // The returning node first: the one whose copies are stale.
    let order: Vec<ClusterStore> = vec![c.clone(), a.clone(), b.clone()];
    let wrong = bounded(
        "reading every session from every node",
        Duration::from_secs(30),
        check_counts(&order, &kept),
    )
    .await;
    assert!(
        wrong.is_empty(),
        "stale or lost right after the heal: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    assert_deleted(&order, &gone, "right after the heal").await;

    // Writes continue through every node, the returning one included.
    let (kept, after) = Writers::start(&order, kept, 8, 2, 80)
        .finish(Duration::from_secs(30))
        .await;
    let kept_ids: Vec<SessionId> = kept.iter().map(|c| c.id).collect();
    eventually(
        "every session on exactly 2 of 3 nodes after the heal",
        Duration::from_secs(20),
        async || all_held_by(&nodes, &kept_ids, COPIES).await,
    )
    .await;
    let settled = healed.elapsed();
    // Past the settle time an owner answers from its own copy alone.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(healed.elapsed())).await;
    let wrong = check_counts(&order, &kept).await;
    assert_deleted(&order, &gone, "after the heal settled").await;
    // Once re-replication is done, not even a copy that is never served
    // may be live: node-2's copies from before the deletes must be gone.
    for node in &nodes {
        for id in &gone {
            assert!(
                !node.holds(id).await,
                "{} holds a live copy of deleted {id:?} after the heal",
                node.node_id()
            );
        }
    }

    println!(
        "partition: N=3 R={COPIES} node-2 (held {on_c} of {SESSIONS} sessions) cut off from node-0 and node-1; both sides noticed after {} ms",
        detected.as_millis()
    );
    println!(
        "partition: minority node-2 refused all {refusals} operations with Unavailable (every load included); majority served all {SESSIONS} sessions and did {} increments ({} retried requests), deleted {} sessions ({gone_on_c} with a copy on node-2)",
        during.increments,
        during.retried,
        gone.len()
    );
    println!(
        "partition: healed; all 3 members again after {} ms, every session on exactly 2 nodes after {} ms",
        rejoined.as_millis(),
        settled.as_millis()
    );
    println!(
        "partition: after the heal {} increments through all 3 nodes ({} retried requests); stale reads {}, phantom reads {}, deleted sessions back 0, wrong counts {}",
        after.increments,
        after.retried,
        during.stale_reads + after.stale_reads,
        during.phantom_reads + after.phantom_reads,
        wrong.len()
    );
    assert!(
        on_c > 0 && gone_on_c > 0,
        "node-2 held nothing worth testing"
    );
    assert_eq!(during.stale_reads + after.stale_reads, 0, "stale reads");
    assert_eq!(
        during.phantom_reads + after.phantom_reads,
        0,
        "phantom reads"
    );
    assert!(wrong.is_empty(), "wrong after settling: {wrong:?}");
}

async fn assert_deleted(nodes: &[ClusterStore], gone: &[SessionId], when: &str) {
    for node in nodes {
        for id in gone {
            match node.load(id).await {
                Ok(None) => {}
                other => panic!(
                    "{when}: deleted {id:?} loads from {} as {other:?}",
                    node.node_id()
                ),
            }
        }
    }
}

/// The window before detection. The majority declares the cut-off node dead
/// and takes over its sessions after about one probe plus the suspect
/// timeout; the cut-off node loses its quorum only once it has declared
/// *both* others dead, which can take a probe period or two longer. In
/// between it still serves the sessions it owns from its own copy, which
/// the majority may already have changed. Its read lease closes the
/// window: it ends half a suspect timeout after the last confirmation the
/// node asked for before the cut, before the majority can take over.
///
/// What is tested is the lease alone. The cut comes after the settle time,
/// when owners answer from their own copies without asking the others. And
/// the cut-off node detects slowly (a suspect timeout of 4 s against the
/// others' 300 ms), so it keeps its whole view, and a quorum, for seconds
/// after the majority took its sessions over: without a lease it would
/// serve stale copies all that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minority_serves_no_stale_read_while_the_partition_is_detected() {
    let _measuring = MEASURING.read().await;
    let settle = Duration::from_millis(300);
    let nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, |name| {
            let config = config(name, 3, COPIES).with_settle_time(settle);
            if name == "node-2" {
                config.with_suspect_timeout(Duration::from_secs(4))
            } else {
                config
            }
        }),
    )
    .await;
    let counters = bounded(
        "creating the sessions",
        Duration::from_secs(30),
        create_counters(&nodes, SESSIONS, 0, 8),
    )
    .await;
    tokio::time::sleep(settle * 2).await;
    let acked: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<SessionId, u64>>> =
        std::sync::Arc::new(std::sync::Mutex::new(
            counters.iter().map(|c| (c.id, 0)).collect(),
        ));
    let (a, b, c) = (nodes[0].clone(), nodes[1].clone(), nodes[2].clone());
    c.partition_from([a.local_addr(), b.local_addr()]);
    a.partition_from([c.local_addr()]);
    b.partition_from([c.local_addr()]);
    let cut = Instant::now();
    let window = Duration::from_secs(2);
    let writer = {
        let (acked, majority, mut counters) = (acked.clone(), vec![a, b], counters.clone());
        tokio::spawn(async move {
            let mut tally = support::Tally::default();
            let mut turn = 0;
            while cut.elapsed() < window {
                for counter in &mut counters {
                    // One attempt each: a failure just moves on.
                    if support::increment(&majority, &mut turn, counter, &mut tally, 1)
                        .await
                        .is_ok()
                    {
                        acked
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(counter.id, counter.value);
                    }
                }
            }
            tally
        })
    };
    let (mut served, mut stale, mut last_stale) = (0, 0, Duration::ZERO);
    while cut.elapsed() < window {
        for counter in &counters {
            let before = acked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)[&counter.id];
            if let Ok(Some(record)) = c.load(&counter.id).await {
                served += 1;
                if support::count(&record) < before {
                    stale += 1;
                    last_stale = cut.elapsed();
                }
            }
        }
    }
    let tally = bounded("the writer", Duration::from_secs(30), writer)
        .await
        .expect("the writer panicked");
    println!(
        "partition window: node-2 served {served} loads after the cut, {stale} of them older than a commit the majority had acknowledged before the load began (the last {} ms after the cut); the majority did {} increments",
        last_stale.as_millis(),
        tally.increments
    );
    assert_eq!(stale, 0, "the minority served stale reads");
}

/// A node without a lease serves nothing, the copies it holds for other
/// owners included: a holder request from a peer that still counts it as a
/// member is refused once its lease has ended, though its view still shows
/// a quorum. Forced one way: node-2 stops hearing from and reaching the
/// others (`partition_from` on its side only), while they still reach its
/// peer port; every node detects slowly (suspect timeout 4 s, so leases
/// last 2 s), which leaves seconds in which node-2 has no lease and
/// everyone still counts everyone. A commit through node-0 to a session
/// held by node-0 and node-2 must then fail, not be acknowledged with a
/// copy node-2 took without a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_without_a_lease_refuses_a_copy() {
    let _measuring = MEASURING.read().await;
    let suspect = Duration::from_secs(4);
    let nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, |name| {
            config(name, 3, COPIES).with_suspect_timeout(suspect)
        }),
    )
    .await;
    let (a, c) = (&nodes[0], &nodes[2]);
    let mut held_by_a_and_c = None;
    for _ in 0..400 {
        let record = counter_record(0);
        // node-0 the owner, node-2 its backup: the commit below is served
        // by node-0, and node-2 only gets a holder request.
        if a.placement(&record.id) == [a.node_id(), c.node_id()] {
            let created = a.create(&record).await.expect("create");
            assert_eq!(created, session_core::store::Created::Created);
            held_by_a_and_c = Some(record.id);
            break;
        }
    }
    let id =
        held_by_a_and_c.expect("a session owned by node-0 and backed up on node-2 in 400 tries");
    c.partition_from([nodes[0].local_addr(), nodes[1].local_addr()]);
    let cut = Instant::now();
    // Past node-2's lease (half the suspect timeout), well before anyone
    // declares anyone dead (the suspect timeout after a failed probe).
    tokio::time::sleep(suspect * 3 / 4).await;
    assert_eq!(
        (a.members().len(), c.members().len()),
        (3, 3),
        "a death was declared {} ms after the cut: nothing forced",
        cut.elapsed().as_millis()
    );
    let answer = a.commit(&id, &set_count(1), support::in_an_hour()).await;
    println!(
        "lease: {} ms after node-2 was cut off one way, node-0's commit to a session node-2 holds answered {:?}",
        cut.elapsed().as_millis(),
        answer.as_ref().map_err(StoreError::to_line)
    );
    let err = answer.expect_err("a holder without a lease took a copy");
    assert!(err.kind().is_transient(), "{}", err.to_line());
}
