//! The failover races of issue 21, each forced into its bad interleaving
//! with gates (or a fault held across the steps) and checked against what
//! must hold: no acknowledged write lost, nothing deleted coming back, no
//! "no session" from a store known to be missing writes.
//!
//! Several `FailoverStore`s over the same two memory stores play several
//! app servers; each server's handles are wrapped on their own, so a gate
//! holds one server's call and not another's.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use session_conformance::{
    race::{Faults, GatedStore, Op, Schedule, SimulatedFaults, SimulatedStore, StoreFault},
    store::set,
    Fault, InstrumentedStore,
};
use session_core::{
    failover::{BreakerState, FailoverMode, FailoverStore, FailoverStoreBuilder},
    memory::MemoryStore,
    store::{Committed, Created, Record, SessionStore},
    ErrorKind, SessionId, StoreError,
};

const CALL_TIMEOUT: Duration = Duration::from_millis(200);
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// The two shared stores, as an operator reaches them.
struct Stores {
    primary: MemoryStore,
    secondary: MemoryStore,
}

/// One app server's handles on the shared stores.
struct Server {
    store: FailoverStore,
    primary: Arc<GatedStore>,
    secondary: Arc<GatedStore>,
    primary_faults: Arc<InstrumentedStore>,
    secondary_faults: Arc<InstrumentedStore>,
}

impl Stores {
    fn new() -> Self {
        Self {
            primary: MemoryStore::new(),
            secondary: MemoryStore::new(),
        }
    }

    fn server(&self, mode: FailoverMode) -> Server {
        let primary_faults = Arc::new(InstrumentedStore::new(Arc::new(self.primary.clone())));
        let secondary_faults = Arc::new(InstrumentedStore::new(Arc::new(self.secondary.clone())));
        let primary = Arc::new(GatedStore::new(primary_faults.clone()));
        let secondary = Arc::new(GatedStore::new(secondary_faults.clone()));
        let store = FailoverStore::builder(primary.clone(), secondary.clone())
            .with_mode(mode)
            .with_call_timeout(CALL_TIMEOUT)
            .with_failure_threshold(1)
            .with_open_for(Duration::from_secs(30))
            .with_max_open_for(Duration::from_secs(60))
            .with_probe_interval(PROBE_INTERVAL)
            .build()
            .unwrap();
        Server {
            store,
            primary,
            secondary,
            primary_faults,
            secondary_faults,
        }
    }
}

fn record() -> Record {
    let now = SystemTime::now();
    Record::new(
        SessionId::generate(),
        Default::default(),
        now,
        now + Duration::from_secs(600),
    )
}

/// Asserts that a create stored its record.
fn created(created: Result<Created, StoreError>) {
    assert_eq!(created.unwrap(), Created::Created);
}

fn later() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

fn down(store: &InstrumentedStore) {
    store.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
}

/// Polls `done` every few milliseconds for at most ten seconds: the
/// background probe answers within milliseconds, but a test run on a
/// loaded two-core machine once took over two seconds to schedule it.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} did not happen within 10 s");
}

/// Race 1: server L's load reads the primary before server D's logout and
/// the secondary after it. L must not take that for a lost copy and copy
/// the session back.
#[tokio::test]
async fn a_load_racing_a_logout_never_brings_the_session_back() {
    let stores = Stores::new();
    let l = stores.server(FailoverMode::Mirror);
    let d = stores.server(FailoverMode::Mirror);
    let session = record();
    created(d.store.create(&session).await);
    let id = session.id;

    let mut primary_answered = l.primary.hold(Op::Load.after().on(id));
    let mut secondary_asked = l.secondary.hold(Op::Load.before().on(id));
    let loading = tokio::spawn({
        let store = l.store.clone();
        async move { store.load(&id).await }
    });
    primary_answered.reached().await;
    secondary_asked.reached().await;
    // L holds the primary's copy; the logout now runs to the end.
    d.store.delete(&id).await.unwrap();
    secondary_asked.release();
    primary_answered.release();
    // Concurrent with the logout, L's own load may see either answer.
    let _ = loading.await.unwrap().unwrap();

    assert_ended_everywhere(&stores, &[&d, &l], &id).await;
}

/// Race 1, the other side: L's copy lands after the logout. The next load
/// must still end it.
#[tokio::test]
async fn a_repair_copy_landing_after_a_logout_is_ended_by_the_next_load() {
    let stores = Stores::new();
    let l = stores.server(FailoverMode::Mirror);
    let d = stores.server(FailoverMode::Mirror);
    let session = record();
    created(d.store.create(&session).await);
    let id = session.id;
    // The secondary lost its copy (a restart), so L's load repairs it.
    stores.secondary.delete(&id).await.unwrap();

    let mut copying = l.secondary.hold(Op::Create.before().on(id));
    let loading = tokio::spawn({
        let store = l.store.clone();
        async move { store.load(&id).await }
    });
    copying.reached().await;
    d.store.delete(&id).await.unwrap();
    copying.release();
    let _ = loading.await.unwrap().unwrap();

    assert_ended_everywhere(&stores, &[&d, &l], &id).await;
}

/// Every load that begins after a logout was acknowledged finds nothing,
/// on every server (asked three times, so a repair one load makes is seen
/// by the next), and nothing is left in either store.
async fn assert_ended_everywhere(stores: &Stores, servers: &[&Server], id: &SessionId) {
    for _ in 0..3 {
        for (index, server) in servers.iter().enumerate() {
            assert_eq!(
                server.store.load(id).await.unwrap(),
                None,
                "server {index} brought it back"
            );
        }
    }
    assert_eq!(stores.primary.load(id).await.unwrap(), None);
    assert_eq!(stores.secondary.load(id).await.unwrap(), None);
}

/// Race 2: after the secondary restarted empty, two commits' repair copies
/// race; B's copy finds A's older copy there. B is acknowledged, so the
/// secondary must hold B's write: the primary is killed next.
#[tokio::test]
async fn a_repair_that_finds_an_older_copy_replaces_it_before_the_commit_is_acknowledged() {
    let stores = Stores::new();
    let a = stores.server(FailoverMode::Mirror);
    let b = stores.server(FailoverMode::Mirror);
    let session = record();
    created(a.store.create(&session).await);
    let id = session.id;
    // The secondary restarted empty.
    stores.secondary.delete(&id).await.unwrap();

    let mut a_copies = a.secondary.hold(Op::Create.before().on(id));
    let committing_a = tokio::spawn({
        let store = a.store.clone();
        async move { store.commit(&id, &set("a", "1"), later()).await }
    });
    a_copies.reached().await;
    let mut b_copies = b.secondary.hold(Op::Create.before().on(id));
    let committing_b = tokio::spawn({
        let store = b.store.clone();
        async move { store.commit(&id, &set("b", "2"), later()).await }
    });
    b_copies.reached().await;
    // A's copy (without b) lands first; B's then finds the id taken.
    a_copies.release();
    assert!(matches!(
        committing_a.await.unwrap().unwrap(),
        Committed::Applied { .. }
    ));
    b_copies.release();
    assert!(matches!(
        committing_b.await.unwrap().unwrap(),
        Committed::Applied { .. }
    ));

    // The primary dies: both acknowledged writes are on the secondary.
    let survivor = stores.secondary.load(&id).await.unwrap().expect("a copy");
    assert_eq!(survivor.data.get("a").map(String::as_str), Some("1"));
    assert_eq!(
        survivor.data.get("b").map(String::as_str),
        Some("2"),
        "B's acknowledged write is missing from the secondary"
    );
    let c = stores.server(FailoverMode::Mirror);
    down(&c.primary_faults);
    let served = c.store.load(&id).await.unwrap().expect("served");
    assert_eq!(served.data.get("b").map(String::as_str), Some("2"));
}

/// Race 3: a logout while this server cannot reach the primary must not be
/// acknowledged when the session may live there: every other server goes
/// on serving it from the primary.
#[tokio::test]
async fn a_standby_logout_that_cannot_reach_the_primary_is_not_acknowledged() {
    let stores = Stores::new();
    let d = stores.server(FailoverMode::Standby);
    let e = stores.server(FailoverMode::Standby);
    let session = record();
    created(e.store.create(&session).await);
    let id = session.id;
    down(&d.primary_faults);

    let deleted = d.store.delete(&id).await;
    if deleted.is_ok() {
        assert_eq!(
            e.store.load(&id).await.unwrap(),
            None,
            "an acknowledged logout is undone on another server"
        );
    }
    assert!(
        deleted.is_err(),
        "the logout is acknowledged with the session alive on the primary"
    );
    // A server started after D (D restarted) sees the same.
    let f = stores.server(FailoverMode::Standby);
    assert!(f.store.load(&id).await.unwrap().is_some());
}

/// Race 3, the other half: a session created on the secondary during the
/// outage lives there only, so its logout is acknowledged and holds
/// everywhere.
#[tokio::test]
async fn a_standby_logout_of_a_session_made_during_the_outage_is_acknowledged_and_holds() {
    let stores = Stores::new();
    let d = stores.server(FailoverMode::Standby);
    let e = stores.server(FailoverMode::Standby);
    down(&d.primary_faults);
    let session = record();
    created(d.store.create(&session).await);
    let id = session.id;
    assert!(e.store.load(&id).await.unwrap().is_some());

    d.store.delete(&id).await.unwrap();
    assert_eq!(e.store.load(&id).await.unwrap(), None);
    d.primary_faults.set_fault(None);
    eventually("the primary's breaker closes", || {
        d.store.state().primary == BreakerState::Closed
    })
    .await;
    assert_eq!(d.store.load(&id).await.unwrap(), None);
}

/// A store that comes back is probed in the background and repaired from
/// the other, whatever its breaker's back-off (30 s here), with no request
/// needed.
#[tokio::test]
async fn a_returning_store_is_probed_and_repaired_within_the_probe_interval() {
    let stores = Stores::new();
    let server = stores.server(FailoverMode::Mirror);
    let session = record();
    created(server.store.create(&session).await);
    let id = session.id;
    down(&server.secondary_faults);
    assert!(matches!(
        server.store.commit(&id, &set("n", "1"), later()).await,
        Ok(Committed::Applied { .. })
    ));
    assert_eq!(server.store.state().pending_secondary, 1);

    server.secondary_faults.set_fault(None);
    eventually("the missed write is replayed", || {
        let state = server.store.state();
        state.secondary == BreakerState::Closed && state.pending_secondary == 0
    })
    .await;
    // The replay's repair waits out one call timeout before it copies.
    for _ in 0..2000 {
        let replayed = stores.secondary.load(&id).await.unwrap().expect("a copy");
        if replayed.data.get("n").map(String::as_str) == Some("1") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the secondary did not get the missed write within 10 s");
}

/// A load is never answered "no session" by a store this server knows is
/// missing writes: the primary came back empty, the secondary (which holds
/// the only copy of a write the primary missed) is down.
#[tokio::test]
async fn no_session_from_a_store_known_to_miss_writes_is_refused() {
    let stores = Stores::new();
    let server = stores.server(FailoverMode::Mirror);
    let session = record();
    created(server.store.create(&session).await);
    let id = session.id;
    down(&server.primary_faults);
    assert!(matches!(
        server.store.commit(&id, &set("n", "1"), later()).await,
        Ok(Committed::Applied { .. })
    ));
    // The secondary dies; the primary returns, restarted empty.
    down(&server.secondary_faults);
    stores.primary.delete(&id).await.unwrap();
    server.primary_faults.set_fault(None);
    eventually("the primary's breaker closes", || {
        server.store.state().primary == BreakerState::Closed
    })
    .await;

    let err = server
        .store
        .load(&id)
        .await
        .expect_err("a fresh session instead of the user's");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

/// A failover store whose primary can restart empty (store 0 of `faults`),
/// over a secondary that can be taken down, with one session created.
struct Restartable {
    faults: SimulatedFaults,
    secondary: Arc<InstrumentedStore>,
    store: FailoverStore,
    session: Record,
}

/// Builds a [`Restartable`] with the test's call timeout and what
/// `configure` adds, and waits until the primary holds the session and this
/// process's epoch mark (written in the background).
async fn restartable_primary(
    configure: impl FnOnce(FailoverStoreBuilder) -> FailoverStoreBuilder,
) -> Restartable {
    let raw = MemoryStore::new();
    let primary = Arc::new(SimulatedStore::new(
        Arc::new(raw.clone()),
        || Arc::new(MemoryStore::new()),
        Schedule::new(0, Duration::ZERO),
    ));
    let faults = SimulatedFaults::new(vec![Arc::clone(&primary)]);
    let secondary = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    let builder = FailoverStore::builder(Arc::clone(&primary), Arc::clone(&secondary))
        .with_call_timeout(CALL_TIMEOUT);
    let store = configure(builder).build().unwrap();
    let session = record();
    created(store.create(&session).await);
    for _ in 0..2000 {
        raw.run_pending_tasks().await;
        if raw.approximate_len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(raw.approximate_len(), 2, "the epoch mark was never written");
    Restartable {
        faults,
        secondary,
        store,
        session,
    }
}

/// A store that comes back without its data (restarted, no persistence) has
/// lost sessions that no replay set names: the ones nobody wrote during its
/// outage. While the other store is down, its "no session" is refused, not
/// taken as the answer.
#[tokio::test]
async fn a_store_that_came_back_empty_is_not_trusted_to_say_no_session() {
    let Restartable {
        faults,
        secondary,
        store,
        session,
    } = restartable_primary(|builder| {
        builder
            .with_failure_threshold(1)
            .with_open_for(Duration::from_secs(30))
            .with_probe_interval(PROBE_INTERVAL)
    })
    .await;
    // The mark is in the store, and the fault below may cut its write's
    // reply: a mark sent but never acknowledged must still be looked for.

    faults.begin(0, StoreFault::RestartEmpty).await;
    assert!(store.load(&session.id).await.unwrap().is_some());
    faults.end(0, StoreFault::RestartEmpty).await;
    eventually("the primary is found to have lost its data", || {
        store.state().lost_data_primary
    })
    .await;

    down(&secondary);
    let err = store
        .load(&session.id)
        .await
        .expect_err("a fresh session instead of the user's");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

/// A store that restarts empty between two calls opens no breaker, so no
/// check runs on its recovery. The next refresh of the epoch mark (due
/// after half the tombstone lifetime) finds the mark gone, and from then on
/// the store's "no session" is not trusted while the other store is down.
#[tokio::test]
async fn a_store_that_restarted_empty_between_calls_is_found_at_the_next_refresh() {
    let Restartable {
        faults,
        store,
        session,
        ..
    } = restartable_primary(|builder| builder.with_tombstone_ttl(Duration::from_secs(2))).await;
    // The mark is in the store; let its write's answer reach the failover
    // store too, so the mark counts as placed.
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Down and back with no call in between: no breaker opens.
    faults.begin(0, StoreFault::RestartEmpty).await;
    faults.end(0, StoreFault::RestartEmpty).await;
    assert!(!store.state().lost_data_primary);
    for _ in 0..2000 {
        let _ = store.load(&session.id).await;
        if store.state().lost_data_primary {
            assert_eq!(
                store.state().primary,
                BreakerState::Closed,
                "no outage was seen"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the refresh did not find the mark gone within 10 s");
}
