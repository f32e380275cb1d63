//! The read lease, forced: an owner cut off with one other node from the
//! three that hold the majority still sees all five members (so its quorum
//! check passes) and has not changed its view (so it counts as settled),
//! and it holds a copy of the key; the majority has declared it dead, taken
//! the key over and committed a newer version. When the other cut-off node
//! asks it for the key (a peer `Load`, which it may serve at once on the
//! connection's reader), only its lease, which lapsed half a suspect
//! timeout after the cut, stands between the caller and the old version.
//!
//! How the interleaving is forced rather than waited for: the two cut-off
//! nodes detect failures slowly (a 10 s suspect timeout, against 300 ms on
//! the majority), so in the seconds the test needs they declare no one dead
//! and their view does not change. Their leases do not care: a lease lasts
//! half the *shortest* suspect timeout any node has told it of (150 ms
//! here), which is what lets a slow detector sit in a cluster of fast ones.
//! Everything runs on a paused current-thread runtime over a `SimNetwork`,
//! so the run is the same every time.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use futures_util::future::join_all;
use session_cluster::{
    simulation::{LinkFaults, SimNetwork, SimNode, SimulatedClock},
    ClusterConfig, ClusterStore,
};
use session_core::{
    store::{Changes, Committed, Created, Data, Record, SessionStore},
    ErrorKind, SessionId,
};

const SECRET: &[u8; 32] = b"read-lease-test-secret-32-bytes!";
const NODES: usize = 5;
const COPIES: usize = 3;
/// The owner and the node that asks it: the minority of two.
const OWNER: usize = 0;
const ASKER: usize = 1;
const MAJORITY: [usize; 3] = [2, 3, 4];
const MAJORITY_NAMES: [&str; 3] = ["node-2", "node-3", "node-4"];
/// The cut-off nodes' failure detection: far longer than the test's run
/// after the cut, so their view cannot change while it runs.
const SLOW_SUSPECT: Duration = Duration::from_secs(10);
/// The majority's, which bounds every node's lease at half of it.
const FAST_SUSPECT: Duration = Duration::from_millis(300);
const SETTLE: Duration = Duration::from_secs(2);

/// Node `index`'s settings: `copies` copies and `suspect` as its suspect
/// timeout; the rest as every node of these tests has them.
fn config(index: usize, addrs: &[SocketAddr], copies: usize, suspect: Duration) -> ClusterConfig {
    ClusterConfig::new(format!("node-{index}"), addrs[index], SECRET.to_vec())
        .with_seeds(addrs.iter().copied().filter(|a| *a != addrs[index]))
        .with_cluster_size(NODES)
        .with_replication_factor(copies)
        .with_probe_period(Duration::from_millis(100))
        .with_suspect_timeout(suspect)
        .with_settle_time(SETTLE)
        .with_anti_entropy_interval(Duration::from_secs(5))
        .with_operation_timeout(Duration::from_millis(500))
}

/// A current-thread runtime with a paused clock: the run is the same
/// every time.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime starts")
}

/// Starts `NODES` nodes on `network`, node `i` at `127.0.<subnet>.<i + 1>`
/// with `config(i, addresses)`, and waits until each sees all the others.
async fn start_cluster(
    network: &SimNetwork,
    clock: SimulatedClock,
    subnet: u8,
    config: impl Fn(usize, &[SocketAddr]) -> ClusterConfig,
) -> (Vec<SocketAddr>, Vec<ClusterStore>) {
    let addrs: Vec<SocketAddr> = (1..=NODES as u8)
        .map(|i| SocketAddr::from(([127, 0, subnet, i], 7400)))
        .collect();
    let nodes: Vec<ClusterStore> = (0..NODES)
        .map(|i| {
            ClusterStore::start_simulated(config(i, &addrs), network, SimNode::new(i as u64, clock))
                .expect("a simulated node starts")
        })
        .collect();
    for node in &nodes {
        assert!(
            node.wait_for_members(NODES, Duration::from_secs(10)).await,
            "{} sees only {:?}",
            node.node_id(),
            node.members()
        );
    }
    (addrs, nodes)
}

/// Id `n` of a fixed sequence: 22 characters of canonical base64url.
fn id(n: u32) -> SessionId {
    SessionId::decode(&format!("readLease{n:012}A")).expect("a canonical id")
}

/// The first id that `OWNER` owns and whose two backups are both on the
/// majority side, as `node` places it: the asker holds no copy, so only
/// the owner can answer it.
fn owned_by_the_minority_owner(node: &ClusterStore) -> SessionId {
    (0..10_000)
        .map(id)
        .find(|id| {
            let placement = node.placement(id);
            placement[0] == format!("node-{OWNER}")
                && placement[1..]
                    .iter()
                    .all(|name| MAJORITY_NAMES.contains(&name.as_str()))
        })
        .expect("some id of the first 10,000 has that placement")
}

fn value(record: &Record) -> &str {
    record.data.get("n").map_or("(none)", String::as_str)
}

#[test]
fn a_cut_off_owner_serves_no_superseded_copy_before_or_after_the_heal() {
    paused_runtime().block_on(async {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = SimulatedClock::starting_at(epoch);
        let network = SimNetwork::new(5, LinkFaults::default());
        // The two cut-off nodes detect failures slowly; the majority fast.
        let (addrs, nodes) = start_cluster(&network, clock, 2, |i, addrs| {
            let suspect = if MAJORITY.contains(&i) {
                FAST_SUSPECT
            } else {
                SLOW_SUSPECT
            };
            config(i, addrs, COPIES, suspect)
        })
        .await;

        let id = owned_by_the_minority_owner(&nodes[MAJORITY[0]]);
        let mut data = Data::new();
        data.insert("n".to_owned(), "1".to_owned());
        let expires = clock.now() + Duration::from_secs(3600);
        let record = Record::new(id, data, clock.now(), expires);
        assert_eq!(
            nodes[MAJORITY[0]].create(&record).await.expect("create"),
            Created::Created
        );
        // Past the settle time: the owner may answer from its own copy.
        tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
        for node in &nodes {
            assert_eq!(
                node.members().len(),
                NODES,
                "{} lost a member",
                node.node_id()
            );
        }
        assert!(nodes[OWNER].holds(&id).await, "the owner holds no copy");
        assert!(!nodes[ASKER].holds(&id).await, "the asker holds a copy");
        let before = nodes[ASKER].load(&id).await.expect("a load before the cut");
        assert_eq!(before.map(|r| r.version), Some(1));

        // The minority of two, cut off both ways from the three.
        let (minority, majority) = (&addrs[..2], &addrs[2..]);
        network.partition(minority, majority);
        let cut = tokio::time::Instant::now();
        let mut declared = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            declared = MAJORITY
                .iter()
                .all(|&i| nodes[i].members() == MAJORITY_NAMES);
            if declared {
                break;
            }
        }
        assert!(declared, "the majority did not drop the minority in 2 s");
        let new_owner = nodes[MAJORITY[0]].placement(&id)[0].clone();
        assert!(
            MAJORITY_NAMES.contains(&new_owner.as_str()),
            "the key went to {new_owner}"
        );

        // The majority writes past the owner's copy, acknowledged.
        let mut changes = Changes::default();
        changes.set("n", "2".to_owned());
        let committed = nodes[MAJORITY[0]]
            .commit(&id, &changes, expires)
            .await
            .unwrap_or_else(|err| panic!("the majority's commit: {}", err.to_line()));
        assert_eq!(committed, Committed::Applied { version: 2 });
        let on_majority = nodes[MAJORITY[1]]
            .load(&id)
            .await
            .expect("a load on the majority")
            .expect("the session on the majority");
        assert_eq!((on_majority.version, value(&on_majority)), (2, "2"));
        let wrote = cut.elapsed();

        // The interleaving: the owner still sees all five members (its
        // quorum check passes), its view is the one it had before the
        // cut (settled), its copy is the old one, and the asker still
        // routes the key to it.
        for i in [OWNER, ASKER] {
            assert_eq!(nodes[i].members().len(), NODES, "node-{i} dropped a member");
            assert!(nodes[i].health().await.is_ok(), "node-{i} lost its quorum");
        }
        assert!(nodes[OWNER].holds(&id).await, "the owner dropped its copy");
        assert_eq!(nodes[ASKER].placement(&id)[0], format!("node-{OWNER}"));

        let read = nodes[ASKER].load(&id).await;
        let answered = cut.elapsed();
        eprintln!(
            "read lease: the majority wrote version 2 {wrote:?} after the cut; \
                 the cut-off owner, asked {answered:?} after the cut, answered {:?}",
            read.as_ref()
                .map(|r| r.as_ref().map(|r| (r.version, value(r).to_owned())))
                .map_err(session_core::StoreError::to_line)
        );
        match read {
            Err(err) => assert_eq!(
                err.kind(),
                ErrorKind::Unavailable,
                "refused, but not as a node without a lease: {}",
                err.to_line()
            ),
            Ok(Some(record)) if record.version >= 2 => {}
            Ok(Some(record)) => panic!(
                "stale read: the cut-off owner served version {} (n = {}) after the \
                     majority acknowledged version 2",
                record.version,
                value(&record)
            ),
            Ok(None) => panic!("the cut-off owner said the session does not exist"),
        }
        // Still the same view on the owner: neither its quorum check
        // nor its settle check could have refused the read.
        assert_eq!(nodes[OWNER].members().len(), NODES);

        // The heal. The owner's view never changed, so it would count
        // as settled as soon as its lease came back, and the majority
        // re-admits it (and its lease returns) before the hand-over
        // brings it version 2: a lapsed lease must unsettle it as a
        // membership change does. Every node is read every 10 ms for
        // 3 s after the heal; no answer may be version 1.
        network.heal();
        let healed = tokio::time::Instant::now();
        let mut served = 0;
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            for node in &nodes {
                if let Ok(Some(record)) = node.load(&id).await {
                    assert!(
                        record.version >= 2,
                        "stale read after the heal: {} served version {} (n = {}) {:?} \
                             after the heal; the majority acknowledged version 2 before it",
                        node.node_id(),
                        record.version,
                        value(&record),
                        healed.elapsed()
                    );
                    served += 1;
                }
            }
        }
        // Not a pass by refusing everything: by the end every node
        // serves the majority's version.
        assert!(served > 0, "no node served the session after the heal");
        for node in &nodes {
            let record = node
                .load(&id)
                .await
                .unwrap_or_else(|err| {
                    panic!("{} after the heal: {}", node.node_id(), err.to_line())
                })
                .unwrap_or_else(|| panic!("{} lost the session", node.node_id()));
            assert_eq!(
                (record.version, value(&record)),
                (2, "2"),
                "on {}",
                node.node_id()
            );
        }
    });
}

/// The node cut off in the partial-heal test, and the two its peer links
/// stay cut from after the heal (with itself and the other two, a quorum
/// of the five).
const RETURNING: usize = 1;
const NOT_YET: [usize; 2] = [0, 2];
/// How long the partial-heal test watches the returning node.
const WATCH_AFTER_THE_HEAL: Duration = Duration::from_secs(45);

/// How the cut between node-1 and the others heals in the partial-heal
/// tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heal {
    /// Towards node-3 and node-4 only: node-1's datagrams and peer calls to
    /// node-0 and node-2 stay cut, both ways. SWIM's indirect probes still
    /// show node-1 all five members, after a while.
    TowardsTwo,
    /// Whole for membership, but node-1's peer link to node-0 and node-2
    /// stays cut, both ways: SWIM sees all five at once, and no hand-over
    /// from those two can reach node-1.
    BarThePeerLinkToTwo,
}

#[test]
fn a_node_back_from_a_partial_heal_serves_nothing_it_was_not_handed() {
    // Node-1 learns its members one by one, and with three or four of
    // five holds a quorum in which it owns the stranded keys and asks only
    // members that hold no copy. A lease is confirmed only for a node that
    // sees every member the confirming one sees, so it serves nothing
    // until it sees all five.
    run_partial_heal(Heal::TowardsTwo);
}

#[test]
fn a_node_its_peers_cannot_hand_over_to_never_settles() {
    // Node-1 sees all five at once and holds its lease (node-3 and node-4
    // confirm it), so after the settle time it would count as settled and
    // answer from its own copy, though node-0 and node-2 never could hand
    // it theirs. Settled also needs a finished hand-over from every member.
    run_partial_heal(Heal::BarThePeerLinkToTwo);
}

/// Node-1 is cut off from the four others and dropped by them; they commit
/// past node-1's copies of the keys node-1 owns whose other holders are now
/// node-0 and node-2 alone (the stranded keys). Then the cut heals as
/// `heal` says, except between node-1 and node-0 or node-2, for the rest of
/// the watch. Node-1 must serve none of the stranded keys in the watch,
/// and every one at the majority's version once everything heals.
fn run_partial_heal(heal: Heal) {
    paused_runtime().block_on(async {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = SimulatedClock::starting_at(epoch);
        let network = SimNetwork::new(9, LinkFaults::default());
        let (addrs, nodes) = start_cluster(&network, clock, 3, |i, addrs| {
            config(i, addrs, 2, FAST_SUSPECT)
        })
        .await;
        let name = |i: usize| format!("node-{i}");
        // Keys node-1 owns, backed up on node-0 or node-2.
        let candidates: Vec<SessionId> = (0..4_000)
            .map(id)
            .filter(|id| {
                let placement = nodes[0].placement(id);
                placement[0] == name(RETURNING) && NOT_YET.iter().any(|&i| placement[1] == name(i))
            })
            .take(40)
            .collect();
        let expires = clock.now() + Duration::from_secs(3600);
        for id in &candidates {
            let mut data = Data::new();
            data.insert("n".to_owned(), "1".to_owned());
            let record = Record::new(*id, data, clock.now(), expires);
            assert_eq!(
                nodes[0].create(&record).await.expect("create"),
                Created::Created
            );
        }
        tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;

        let others: Vec<SocketAddr> = (0..NODES)
            .filter(|&i| i != RETURNING)
            .map(|i| addrs[i])
            .collect();
        network.partition(&addrs[RETURNING..=RETURNING], &others);
        let majority: Vec<String> = (0..NODES).filter(|&i| i != RETURNING).map(name).collect();
        let mut dropped = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            dropped = (0..NODES)
                .filter(|&i| i != RETURNING)
                .all(|i| nodes[i].members() == majority);
            if dropped {
                break;
            }
        }
        assert!(dropped, "the four did not drop node-1 in 2 s");
        // The keys the four now place on node-0 and node-2 alone: after
        // the heal, node-1's view of three places them on node-1 and on
        // node-3 or node-4, which hold no copy.
        let stranded: Vec<SessionId> = candidates
            .iter()
            .copied()
            .filter(|id| {
                let mut placement = nodes[0].placement(id);
                placement.sort();
                placement == [name(0), name(2)]
            })
            .collect();
        assert!(
            !stranded.is_empty(),
            "no key of {} has that placement",
            candidates.len()
        );
        for id in &stranded {
            let mut changes = Changes::default();
            changes.set("n", "2".to_owned());
            let committed = nodes[3]
                .commit(id, &changes, expires)
                .await
                .unwrap_or_else(|err| panic!("the majority's commit: {}", err.to_line()));
            assert_eq!(committed, Committed::Applied { version: 2 });
        }

        // The heal, but not between node-1 and node-0 or node-2.
        network.heal();
        let (one, two) = (&addrs[RETURNING..=RETURNING], &NOT_YET.map(|i| addrs[i]));
        match heal {
            Heal::TowardsTwo => network.partition(one, two),
            Heal::BarThePeerLinkToTwo => network.cut_requests(one, two),
        }
        let healed = tokio::time::Instant::now();
        let (mut partial_view_seen, mut whole_view_since) = (false, None);
        let mut served = 0;
        while healed.elapsed() < WATCH_AFTER_THE_HEAL {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let view = nodes[RETURNING].members();
            if view.len() == NODES {
                whole_view_since.get_or_insert(healed.elapsed());
            } else if view.len() >= 3 && !NOT_YET.iter().all(|&i| view.contains(&name(i))) {
                partial_view_seen = true;
            }
            let loads = join_all(stranded.iter().map(|id| nodes[RETURNING].load(id))).await;
            for record in loads.into_iter().flatten().flatten() {
                assert!(
                    record.version >= 2,
                    "stale read: node-1, seeing {view:?} (all five since {whole_view_since:?} \
                         after the heal), served version {} (n = {}) {:?} after the heal; the \
                         four acknowledged version 2 before it",
                    record.version,
                    value(&record),
                    healed.elapsed()
                );
                served += 1;
            }
        }
        // What the run must have gone through for the checks above to
        // mean anything.
        let whole = whole_view_since.expect("node-1 never saw all five members again");
        assert!(
            WATCH_AFTER_THE_HEAL - whole > SETTLE + Duration::from_secs(1),
            "node-1 saw all five only {whole:?} after the heal: too late to be settled in the \
                 watch"
        );
        if heal == Heal::TowardsTwo {
            assert!(
                partial_view_seen,
                "node-1 never saw a quorum without node-0 or node-2: the test forced nothing"
            );
        }
        assert_eq!(served, 0, "node-1 served a session it was never handed");

        // Not a pass by refusing for ever: whole again, node-1 serves
        // the four's version.
        network.heal();
        tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
        for id in &stranded {
            let record = nodes[RETURNING]
                .load(id)
                .await
                .unwrap_or_else(|err| panic!("node-1 after the whole heal: {}", err.to_line()))
                .expect("node-1 lost the session");
            assert_eq!((record.version, value(&record)), (2, "2"));
        }
    });
}
