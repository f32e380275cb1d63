//! Copies that must not come back: three suspicions about the cluster
//! from reading its code (issue 23, 1 to 3), each checked by a test that
//! failed while its suspicion held. The bad interleaving is forced with
//! partitions and partial partitions (the `fault-injection` feature) and
//! detection settings chosen per node. Every test takes `MEASURING` for
//! writing: they cut networks and time failure detection, so they run one
//! at a time.

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use session_cluster::ClusterStore;
use session_core::{
    store::{Committed, Created, Record, SessionStore},
    SessionId, StoreError,
};
use support::{
    bounded, config, count, counter_record, eventually, set_count, start_with, MEASURING,
};

/// The node whose name is `name`.
fn named<'n>(nodes: &'n [ClusterStore], name: &str) -> &'n ClusterStore {
    nodes
        .iter()
        .find(|n| n.node_id() == name)
        .unwrap_or_else(|| panic!("no node named {name}"))
}

fn addrs<'n>(nodes: impl IntoIterator<Item = &'n ClusterStore>) -> Vec<SocketAddr> {
    nodes.into_iter().map(ClusterStore::local_addr).collect()
}

/// Cuts `minority` off from `majority`, both ways.
fn cut(minority: &[&ClusterStore], majority: &[&ClusterStore]) {
    for node in minority {
        node.partition_from(addrs(majority.iter().copied()));
    }
    for node in majority {
        node.partition_from(addrs(minority.iter().copied()));
    }
}

/// Creates `record` through `via`; it must be stored.
async fn create(via: &ClusterStore, record: &Record) {
    match via.create(record).await {
        Ok(Created::Created) => {}
        other => panic!("create through {}: {other:?}", via.node_id()),
    }
}

/// Creates sessions through `via` (bounded) until one is placed on exactly
/// the nodes named in `on`, and returns it.
async fn session_placed_on(via: &ClusterStore, on: &[&str]) -> SessionId {
    for _ in 0..400 {
        let record = counter_record(0);
        let mut placement = via.placement(&record.id);
        placement.sort();
        let mut want: Vec<String> = on.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        if placement == want {
            create(via, &record).await;
            return record.id;
        }
    }
    panic!("no session placed on {on:?} in 400 tries")
}

/// Commits `value` through `via`, retrying (bounded) while the cluster
/// answers `Unavailable` or `Timeout` because it is taking over.
async fn commit_retrying(via: &ClusterStore, id: &SessionId, value: u64) -> u64 {
    let mut last = None;
    for _ in 0..60 {
        match via
            .commit(id, &set_count(value), support::in_an_hour())
            .await
        {
            Ok(Committed::Applied { version }) => return version,
            Ok(other) => panic!("commit through {} found {other:?}", via.node_id()),
            Err(err) if err.kind().is_transient() => last = Some(err),
            Err(err) => panic!("commit through {}: {}", via.node_id(), err.to_line()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "commit through {} kept failing: {:?}",
        via.node_id(),
        last.map(|e| e.to_line())
    )
}

/// Suspicion 1. For `settle_time` after a membership change an owner asks
/// every other node for the newest copy; `read_base` ignores a fetch that
/// fails as long as it has a copy of its own, and serves that copy.
///
/// Forced with five nodes: the owner O of a session is cut off alone, the
/// majority takes over and commits (count 0 → 1, on the new holders X and
/// Y); then O is healed with the other two nodes Z1 and Z2 only, which
/// gives it a quorum and a lease again. Their gossip and SWIM's indirect
/// probes through them bring X and Y back into O's view (within a second,
/// or else once O forgets that it declared them dead: foca's
/// `remove_down_after`, 30 s), so O is the owner again and unsettled, but
/// its fetches to X and Y fail. It must refuse, or serve count 1, never its
/// own count 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_owner_whose_fetch_fails_does_not_serve_its_older_copy() {
    let _alone = MEASURING.write().await;
    // A long settle time: the whole test runs in the window.
    let nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(5, |name| {
            config(name, 5, 2).with_settle_time(Duration::from_secs(120))
        }),
    )
    .await;
    let record = counter_record(0);
    create(&nodes[0], &record).await;
    let id = record.id;
    let placement = nodes[0].placement(&id);
    let o = named(&nodes, &placement[0]);
    let others: Vec<&ClusterStore> = nodes
        .iter()
        .filter(|n| n.node_id() != o.node_id())
        .collect();

    cut(&[o], &others);
    eventually(
        "the majority declares the owner dead, and the owner loses its quorum",
        Duration::from_secs(10),
        async || o.members().len() == 1 && others.iter().all(|n| n.members().len() == 4),
    )
    .await;
    let version = commit_retrying(others[0], &id, 1).await;
    // Wait (bounded) until the new holders have it, and find who they are.
    let new_holders = others[0].placement(&id);
    eventually(
        "the majority's holders have the commit",
        Duration::from_secs(10),
        async || {
            let mut all = true;
            for name in &new_holders {
                all &= named(&nodes, name).holds(&id).await;
            }
            all
        },
    )
    .await;
    let holders: Vec<&ClusterStore> = others
        .iter()
        .copied()
        .filter(|n| new_holders.iter().any(|h| h == n.node_id()))
        .collect();
    let z: Vec<&ClusterStore> = others
        .iter()
        .copied()
        .filter(|n| !new_holders.iter().any(|h| h == n.node_id()))
        .collect();
    assert_eq!((holders.len(), z.len()), (2, 2), "holders {new_holders:?}");
    for z in &z {
        assert!(
            !z.holds(&id).await,
            "{} holds the session too: nothing to force",
            z.node_id()
        );
    }

    // Heal O with Z1 and Z2 only; O stays cut off from the holders of the
    // commit.
    o.heal();
    o.partition_from(addrs(holders.iter().copied()));
    for node in &holders {
        node.heal();
        node.partition_from([o.local_addr()]);
    }
    for z in &z {
        z.heal();
    }
    let healed = Instant::now();
    eventually(
        "the owner sees all five nodes again through Z1 and Z2",
        Duration::from_secs(60),
        async || o.members().len() == 5,
    )
    .await;
    assert_eq!(
        o.placement(&id)[0],
        o.node_id(),
        "the returning node is not the owner in its own view"
    );
    let answer = o.load(&id).await;
    println!(
        "suspicion 1: owner {} back in view {} ms after the partial heal; its load answered {:?}",
        o.node_id(),
        healed.elapsed().as_millis(),
        answer
            .as_ref()
            .map(|r| r.as_ref().map(|r| (r.version, count(r))))
    );
    match answer {
        Ok(Some(record)) if count(&record) == 0 => panic!(
            "suspicion 1 confirmed: the unsettled owner {} could not fetch from the holders {:?} \
             and served its own copy (count 0, version {}) although version {version} (count 1) \
             was acknowledged",
            o.node_id(),
            new_holders,
            record.version
        ),
        Ok(Some(record)) => assert_eq!(count(&record), 1),
        Ok(None) => panic!("the owner answered that the session does not exist"),
        Err(err) => assert!(err.kind().is_transient(), "{}", err.to_line()),
    }
}

/// Five nodes, copies on 2: the detection settings of `slow` nodes are
/// `suspect` instead of the fast test settings.
async fn five(settle: Duration, slow: &[&str], suspect: Duration) -> Vec<ClusterStore> {
    let slow: Vec<String> = slow.iter().map(|s| (*s).to_owned()).collect();
    bounded(
        "cluster start",
        Duration::from_secs(30),
        start_with(5, move |name| {
            let config = config(name, 5, 2).with_settle_time(settle);
            if slow.iter().any(|s| s == name) {
                config.with_suspect_timeout(suspect)
            } else {
                config
            }
        }),
    )
    .await
}

/// Suspicion 2. A delete on the majority that finds no copy (both copies
/// are on the minority) leaves a tombstone that lives only `settle_time`;
/// after a partition longer than that, the minority's live copy comes back
/// with the heal. Here the majority has heard how long sessions live (an
/// earlier session, known to every node through leases), so its delete
/// must succeed and leave a tombstone that outlives the minority's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_the_majority_stays_after_a_partition_longer_than_the_settle_time() {
    let _alone = MEASURING.write().await;
    delete_during_a_partition(true).await;
}

/// Suspicion 2, when the majority has heard of no session lifetime at all
/// (the session is the first the cluster ever stored, created just before
/// the cut): the delete may be refused as `Unavailable`, but if it is
/// acknowledged the session must stay deleted after the heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_of_the_first_session_is_refused_or_sticks() {
    let _alone = MEASURING.write().await;
    delete_during_a_partition(false).await;
}

/// Cuts node-3 and node-4 (the holders of a session) off from the other
/// three, deletes the session on the majority, waits out the settle time
/// four times, heals, and reads it from every node for a while.
async fn delete_during_a_partition(lifetime_known: bool) {
    let settle = Duration::from_millis(500);
    let nodes = five(settle, &[], Duration::ZERO).await;
    if lifetime_known {
        create(&nodes[0], &counter_record(0)).await;
        // Leases carry each node's longest lifetime every few tens of ms.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let id = session_placed_on(&nodes[0], &["node-3", "node-4"]).await;
    let (majority, minority): (Vec<&ClusterStore>, Vec<&ClusterStore>) =
        (nodes[..3].iter().collect(), nodes[3..].iter().collect());
    cut(&minority, &majority);
    eventually(
        "both sides notice the partition",
        Duration::from_secs(10),
        async || {
            majority.iter().all(|n| n.members().len() == 3)
                && minority.iter().all(|n| n.members().len() == 2)
        },
    )
    .await;
    match nodes[0].delete(&id).await {
        Ok(()) => {}
        Err(err) if !lifetime_known && err.kind().is_transient() => {
            println!(
                "suspicion 2: the majority refused the delete: {}",
                err.to_line()
            );
            return;
        }
        Err(err) => panic!("delete on the majority: {}", err.to_line()),
    }
    assert!(matches!(nodes[1].load(&id).await, Ok(None)));
    // The partition outlasts the settle time by far.
    tokio::time::sleep(settle * 4).await;
    for node in &nodes {
        node.heal();
    }
    for node in &nodes {
        assert!(
            node.wait_for_members(5, Duration::from_secs(15)).await,
            "{} sees only {:?} after the heal",
            node.node_id(),
            node.members()
        );
    }
    // Read from every node for a while: through the settle time after the
    // heal and past it, when owners answer from their own copies.
    let healed = Instant::now();
    let mut reads = 0;
    while healed.elapsed() < settle * 6 {
        for node in &nodes {
            reads += 1;
            if let Ok(Some(record)) = node.load(&id).await {
                panic!(
                    "suspicion 2 confirmed: session deleted on the majority during the partition \
                     is back {} ms after the heal, loaded from {} (version {}, count {})",
                    healed.elapsed().as_millis(),
                    node.node_id(),
                    record.version,
                    count(&record)
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("suspicion 2: {reads} loads after the heal, none found the deleted session");
}

/// Suspicion 3. A minority node that has not noticed the partition yet
/// acknowledges writes to a session whose every holder is on its side,
/// though the majority has already declared those holders dead.
///
/// Forced by giving the two minority nodes a slow suspect timeout (4 s): the
/// majority declares them dead in well under a second, and they keep their
/// five-node view for seconds after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minority_acknowledges_no_write_before_it_notices_the_partition() {
    let _alone = MEASURING.write().await;
    let nodes = five(
        Duration::from_millis(500),
        &["node-3", "node-4"],
        Duration::from_secs(4),
    )
    .await;
    let id = session_placed_on(&nodes[0], &["node-3", "node-4"]).await;
    let (majority, minority): (Vec<&ClusterStore>, Vec<&ClusterStore>) =
        (nodes[..3].iter().collect(), nodes[3..].iter().collect());
    let cut_at = Instant::now();
    cut(&minority, &majority);
    eventually(
        "the majority declares the minority dead",
        Duration::from_secs(10),
        async || majority.iter().all(|n| n.members().len() == 3),
    )
    .await;
    let declared = cut_at.elapsed();
    let view = nodes[3].members().len();
    assert!(
        view >= 3,
        "node-3 noticed the partition before the test could write (sees {view}): nothing forced"
    );
    let answer = nodes[3]
        .commit(&id, &set_count(7), support::in_an_hour())
        .await;
    let on_majority = nodes[0].load(&id).await;
    println!(
        "suspicion 3: majority declared node-3/4 dead after {} ms; node-3 (view {view}) answered the commit {} ms after the cut with {:?}; the majority then loads {:?}",
        declared.as_millis(),
        cut_at.elapsed().as_millis(),
        answer.as_ref().map_err(StoreError::to_line),
        on_majority.as_ref().map(|r| r.as_ref().map(count)).map_err(StoreError::to_line),
    );
    // Refusing is right: `Unavailable`, or a `Timeout` from a lease wait.
    if !answer.as_ref().is_err_and(|e| e.kind().is_transient()) {
        panic!(
            "suspicion 3 confirmed: minority node-3 answered a commit {} ms after the majority \
             declared it dead with {answer:?}; the majority meanwhile loads the session as {:?}",
            declared.as_millis(),
            on_majority
                .map(|r| r.map(|r| count(&r)))
                .map_err(|e| e.to_line())
        );
    }
}
