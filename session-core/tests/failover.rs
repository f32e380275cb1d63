//! `FailoverStore` and `TieredStore` rules, over memory stores with injected
//! faults: which store a call reaches, what a dead, hung or returning store
//! changes, and that no stale copy is ever served. Several failover stores
//! over the same two memory stores play several app servers. Real servers
//! being killed and restarted are the facade's `tests/failover.rs`.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use session_conformance::{store::set, Fault, InstrumentedStore};
use session_core::{
    failover::{BreakerState, FailoverMode, FailoverStore},
    memory::{MemoryStore, NearCache, TieredStore},
    store::{Committed, Created, Record, SessionStore},
    ErrorKind, SessionId,
};

const OPEN_FOR: Duration = Duration::from_millis(50);
const CALL_TIMEOUT: Duration = Duration::from_millis(100);

/// Two memory stores, each behind an `InstrumentedStore` that can fail it;
/// `raw` reaches the data under the faults, as an operator would.
struct Pair {
    primary: Arc<InstrumentedStore>,
    secondary: Arc<InstrumentedStore>,
    raw_primary: MemoryStore,
    raw_secondary: MemoryStore,
}

impl Pair {
    fn new() -> Self {
        let raw_primary = MemoryStore::new();
        let raw_secondary = MemoryStore::new();
        Self {
            primary: Arc::new(InstrumentedStore::new(Arc::new(raw_primary.clone()))),
            secondary: Arc::new(InstrumentedStore::new(Arc::new(raw_secondary.clone()))),
            raw_primary,
            raw_secondary,
        }
    }

    /// A failover store over the pair: one app server.
    fn server(&self, mode: FailoverMode) -> FailoverStore {
        FailoverStore::builder(Arc::clone(&self.primary), Arc::clone(&self.secondary))
            .with_mode(mode)
            .with_call_timeout(CALL_TIMEOUT)
            .with_failure_threshold(2)
            .with_open_for(OPEN_FOR)
            .with_max_open_for(OPEN_FOR * 4)
            .build()
            .unwrap()
    }
}

/// Makes every call to `store` fail as an unreachable server's would.
fn down(store: &InstrumentedStore) {
    store.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
}

fn record() -> Record {
    let now = SystemTime::now();
    let mut record = Record::new(
        SessionId::generate(),
        Default::default(),
        now,
        now + Duration::from_secs(600),
    );
    record.data.insert("n".to_owned(), "0".to_owned());
    record
}

fn later() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

async fn count_to(store: &FailoverStore, id: &SessionId, n: u32) {
    let committed = store
        .commit(id, &set("n", &n.to_string()), later())
        .await
        .unwrap();
    assert!(
        matches!(committed, Committed::Applied { .. }),
        "{committed:?}"
    );
}

/// Polls `check` every 5 ms for up to 5 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets the primary's breaker probe and close: waits out the back-off and
/// makes a call.
async fn recover_primary(store: &FailoverStore) {
    eventually("the primary's breaker to close", async || {
        let _ = store.load(&SessionId::generate()).await;
        store.state().primary == BreakerState::Closed
    })
    .await;
}

fn is_open(state: BreakerState) -> bool {
    matches!(state, BreakerState::Open { .. })
}

#[tokio::test]
async fn mirror_writes_reach_both_stores_and_reads_agree() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Mirror);
    let record = record();
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    count_to(&store, &record.id, 1).await;
    for raw in [&pair.raw_primary, &pair.raw_secondary] {
        let copy = raw.load(&record.id).await.unwrap().unwrap();
        assert_eq!((copy.version, copy.data["n"].as_str()), (2, "1"));
    }
    store.delete(&record.id).await.unwrap();
    assert_eq!(pair.raw_primary.load(&record.id).await.unwrap(), None);
    assert_eq!(pair.raw_secondary.load(&record.id).await.unwrap(), None);
}

#[tokio::test]
async fn mirror_serves_through_a_dead_primary_then_replays_what_it_missed() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Mirror);
    let record = record();
    let _ = store.create(&record).await.unwrap();

    down(&pair.primary);
    for n in 1..=3 {
        count_to(&store, &record.id, n).await;
    }
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.data["n"], "3");
    let state = store.state();
    assert!(is_open(state.primary), "{state:?}");
    assert_eq!(state.pending_primary, 1);
    // While it is open, calls skip the primary altogether.
    let calls = pair.primary.calls();
    count_to(&store, &record.id, 4).await;
    assert_eq!(pair.primary.calls(), calls);

    pair.primary.set_fault(None);
    recover_primary(&store).await;
    eventually("the replay to bring the primary up to date", async || {
        pair.raw_primary
            .load(&record.id)
            .await
            .unwrap()
            .is_some_and(|copy| copy.data["n"] == "4" && copy.version == 5)
    })
    .await;
    assert_eq!(store.state().pending_primary, 0);
}

#[tokio::test]
async fn mirror_never_serves_a_copy_from_before_the_outage_on_any_server() {
    let pair = Pair::new();
    let during = pair.server(FailoverMode::Mirror);
    let record = record();
    let _ = during.create(&record).await.unwrap();
    count_to(&during, &record.id, 1).await;

    // This server commits while the primary is unreachable...
    down(&pair.primary);
    count_to(&during, &record.id, 2).await;
    count_to(&during, &record.id, 3).await;
    pair.primary.set_fault(None);

    // ...and another server, which knows nothing of it, reads afterwards.
    let after = pair.server(FailoverMode::Mirror);
    let stale = pair.raw_primary.load(&record.id).await.unwrap().unwrap();
    assert_eq!(stale.data["n"], "1", "the primary kept its old copy");
    let loaded = after.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.data["n"], "3");
    // The read started the primary's repair, which waits out one call
    // timeout (commits still on their way land first), then copies the
    // newest copy over.
    eventually("the read's repair of the primary", async || {
        pair.raw_primary
            .load(&record.id)
            .await
            .unwrap()
            .is_some_and(|copy| copy.data["n"] == "3" && copy.version == loaded.version)
    })
    .await;
    // With both copies equal again, the primary alone could serve it.
    down(&pair.secondary);
    assert_eq!(
        after.load(&record.id).await.unwrap().unwrap().data["n"],
        "3"
    );
}

#[tokio::test]
async fn a_delete_during_an_outage_is_not_undone_by_the_returning_store() {
    let pair = Pair::new();
    let during = pair.server(FailoverMode::Mirror);
    let record = record();
    let _ = during.create(&record).await.unwrap();

    down(&pair.primary);
    during.delete(&record.id).await.unwrap();
    pair.primary.set_fault(None);
    assert!(pair.raw_primary.load(&record.id).await.unwrap().is_some());

    // Another server reads before this one's replay reaches the primary:
    // the secondary's tombstone tells it the primary's copy is dead.
    let after = pair.server(FailoverMode::Mirror);
    assert_eq!(after.load(&record.id).await.unwrap(), None);
    assert_eq!(pair.raw_primary.load(&record.id).await.unwrap(), None);
    let mut changes = set("n", "9");
    changes.remove("gone");
    assert_eq!(
        after.commit(&record.id, &changes, later()).await.unwrap(),
        Committed::Missing
    );
}

#[tokio::test]
async fn mirror_copies_sessions_back_to_a_store_that_lost_them() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Mirror);
    let (read, written) = (record(), record());
    for record in [&read, &written] {
        let _ = store.create(record).await.unwrap();
        // A restart without persistence.
        pair.raw_primary.delete(&record.id).await.unwrap();
    }

    assert!(store.load(&read.id).await.unwrap().is_some());
    assert!(pair.raw_primary.load(&read.id).await.unwrap().is_some());

    count_to(&store, &written.id, 7).await;
    let copy = pair.raw_primary.load(&written.id).await.unwrap().unwrap();
    assert_eq!(copy.data["n"], "7");
}

#[tokio::test]
async fn a_copy_near_its_expiry_is_not_copied_back_to_outlive_it() {
    // Memcached rounds expiry up to whole seconds: its copy can outlive the
    // primary's by a second. Copying it back then would carry the later
    // expiry over, and a session read often enough would never expire.
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Mirror);
    let mut record = record();
    record.expires_at = SystemTime::now() + Duration::from_millis(300);
    let _ = store.create(&record).await.unwrap();
    let rounded_up = SystemTime::now() + Duration::from_millis(1300);
    assert!(pair
        .raw_secondary
        .touch(&record.id, rounded_up)
        .await
        .unwrap());

    eventually("the primary's copy to expire", async || {
        pair.raw_primary.load(&record.id).await.unwrap().is_none()
    })
    .await;
    assert!(store.load(&record.id).await.unwrap().is_some());
    assert_eq!(pair.raw_primary.load(&record.id).await.unwrap(), None);
    eventually("the session to expire", async || {
        store.load(&record.id).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn corrupt_and_too_large_are_answers_not_outages() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Mirror);
    for kind in [ErrorKind::Corrupt, ErrorKind::TooLarge] {
        pair.primary.set_fault(Some(Fault::Fail(kind)));
        for _ in 0..5 {
            let err = store.load(&SessionId::generate()).await.unwrap_err();
            assert_eq!(err.kind(), kind);
        }
        assert_eq!(store.state().primary, BreakerState::Closed);
    }
}

#[tokio::test]
async fn one_call_into_the_timeout_opens_the_breaker_at_once() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Mirror);
    let record = record();
    let _ = store.create(&record).await.unwrap();

    pair.primary.set_fault(Some(Fault::Hang));
    let started = Instant::now();
    let loaded = store.load(&record.id).await.unwrap();
    assert!(started.elapsed() >= CALL_TIMEOUT);
    assert_eq!(loaded.map(|r| r.id), Some(record.id));
    assert!(is_open(store.state().primary));

    // Open: the hung primary is not called again until the back-off ends.
    let calls = pair.primary.calls();
    let _ = store.load(&record.id).await.unwrap();
    assert_eq!(pair.primary.calls(), calls);
}

#[tokio::test]
async fn a_failed_probe_keeps_the_breaker_open_longer() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Mirror);
    down(&pair.primary);
    for _ in 0..2 {
        let _ = store.load(&SessionId::generate()).await.unwrap();
    }
    let BreakerState::Open {
        opened_at,
        retry_at,
    } = store.state().primary
    else {
        panic!("the primary's breaker should be open");
    };
    assert_eq!(retry_at - opened_at, OPEN_FOR);
    eventually("a failed probe to reopen the breaker", async || {
        let _ = store.load(&SessionId::generate()).await;
        matches!(store.state().primary, BreakerState::Open { opened_at: at, .. } if at > opened_at)
    })
    .await;
    let BreakerState::Open {
        opened_at,
        retry_at,
    } = store.state().primary
    else {
        unreachable!()
    };
    assert_eq!(retry_at - opened_at, OPEN_FOR * 2);
}

/// The counter `session_kit_breaker_transitions_total` for the primary,
/// by the state it moved to.
fn primary_transitions(snapshotter: &Snapshotter) -> Vec<(String, u64)> {
    let mut counts: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<_> = key.labels().collect();
            let primary = labels
                .iter()
                .any(|label| label.key() == "role" && label.value() == "primary");
            let to = labels.iter().find(|label| label.key() == "to")?.value();
            match value {
                DebugValue::Counter(count)
                    if primary && key.name() == "session_kit_breaker_transitions_total" =>
                {
                    Some((to.to_owned(), count))
                }
                _ => None,
            }
        })
        .collect();
    counts.sort();
    counts
}

#[test]
fn every_breaker_transition_is_counted_through_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder is per thread: a current-thread runtime keeps every
    // task, the replay included, on this one.
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pair = Pair::new();
            let store = pair.server(FailoverMode::Mirror);
            down(&pair.primary);
            for _ in 0..2 {
                let _ = store.load(&SessionId::generate()).await.unwrap();
            }
            pair.primary.set_fault(None);
            recover_primary(&store).await;
        });
    });
    assert_eq!(
        primary_transitions(&snapshotter),
        [
            ("closed".to_owned(), 1),
            ("half_open".to_owned(), 1),
            ("open".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn standby_writes_to_the_primary_only() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Standby);
    let record = record();
    let _ = store.create(&record).await.unwrap();
    count_to(&store, &record.id, 1).await;
    assert!(pair.raw_primary.load(&record.id).await.unwrap().is_some());
    assert_eq!(pair.raw_secondary.load(&record.id).await.unwrap(), None);
    assert_eq!(pair.secondary.calls().writes(), 0);
}

#[tokio::test]
async fn standby_serves_new_sessions_from_the_secondary_and_keeps_them_after_recovery() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Standby);
    let before = record();
    let _ = store.create(&before).await.unwrap();

    down(&pair.primary);
    // The primary's sessions are out of reach: a fresh session for them...
    assert_eq!(store.load(&before.id).await.unwrap(), None);
    // ...and a commit to one fails rather than call it gone.
    let err = store
        .commit(&before.id, &set("n", "1"), later())
        .await
        .unwrap_err();
    assert!(err.kind().is_transient(), "{err:?}");
    // New sessions live on the secondary and keep working.
    let during = record();
    assert_eq!(store.create(&during).await.unwrap(), Created::Created);
    count_to(&store, &during.id, 1).await;
    assert!(pair.raw_secondary.load(&during.id).await.unwrap().is_some());

    pair.primary.set_fault(None);
    recover_primary(&store).await;
    // Both kinds of session are served again, each from where it lives.
    assert!(store.load(&before.id).await.unwrap().is_some());
    count_to(&store, &during.id, 2).await;
    let loaded = store.load(&during.id).await.unwrap().unwrap();
    assert_eq!(loaded.data["n"], "2");
    // New sessions go back to the primary.
    let after = record();
    let _ = store.create(&after).await.unwrap();
    assert!(pair.raw_primary.load(&after.id).await.unwrap().is_some());
    assert_eq!(pair.raw_secondary.load(&after.id).await.unwrap(), None);
}

/// The session lives on the primary, which is down: the delete is not
/// acknowledged (other servers would go on serving the session from the
/// primary), and it is replayed once the primary is back.
#[tokio::test]
async fn standby_refuses_a_delete_the_primary_missed_and_replays_it() {
    let pair = Pair::new();
    let store = pair.server(FailoverMode::Standby);
    let record = record();
    let _ = store.create(&record).await.unwrap();
    down(&pair.primary);
    let err = store.delete(&record.id).await.unwrap_err();
    assert!(err.kind().is_transient(), "{err:?}");
    assert_eq!(store.state().pending_primary, 1);
    pair.primary.set_fault(None);
    recover_primary(&store).await;
    eventually("the replayed delete", async || {
        pair.raw_primary.load(&record.id).await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn both_stores_down_is_an_outage_error() {
    let pair = Pair::new();
    for mode in [FailoverMode::Mirror, FailoverMode::Standby] {
        let store = pair.server(mode);
        for side in [&pair.primary, &pair.secondary] {
            side.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
        }
        let err = store.create(&record()).await.unwrap_err();
        assert!(err.kind().is_transient(), "{mode:?}: {err:?}");
        let err = store.load(&SessionId::generate()).await.unwrap_err();
        assert!(err.kind().is_transient(), "{mode:?}: {err:?}");
        for side in [&pair.primary, &pair.secondary] {
            side.set_fault(None);
        }
    }
}

#[test]
fn bad_settings_name_their_key() {
    let build = |configure: fn(
        session_core::failover::FailoverStoreBuilder,
    ) -> session_core::failover::FailoverStoreBuilder| {
        configure(FailoverStore::builder(
            MemoryStore::new(),
            MemoryStore::new(),
        ))
        .build()
        .unwrap_err()
        .key()
        .to_owned()
    };
    assert_eq!(
        build(|b| b.with_call_timeout(Duration::ZERO)),
        "failover.call_timeout"
    );
    assert_eq!(
        build(|b| b.with_failure_threshold(0)),
        "failover.failure_threshold"
    );
    assert_eq!(
        build(|b| b.with_open_for(Duration::ZERO)),
        "failover.open_for"
    );
    assert_eq!(
        build(|b| b
            .with_open_for(Duration::from_secs(5))
            .with_max_open_for(Duration::from_secs(1))),
        "failover.max_open_for"
    );
    assert_eq!(
        build(|b| b.with_tombstone_ttl(Duration::ZERO)),
        "failover.tombstone_ttl"
    );
}

/// Two app servers, each with its own near-cache, over one far store.
fn two_tiered_servers() -> (TieredStore, TieredStore, Arc<InstrumentedStore>) {
    let far = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    (
        TieredStore::new(NearCache::new(), Arc::clone(&far)),
        TieredStore::new(NearCache::new(), Arc::clone(&far)),
        far,
    )
}

#[tokio::test]
async fn a_near_cache_hit_costs_one_stamp_and_no_load() {
    let (server, _, far) = two_tiered_servers();
    let record = record();
    let _ = server.create(&record).await.unwrap();
    far.take_calls();
    for _ in 0..3 {
        assert_eq!(server.load(&record.id).await.unwrap(), Some(record.clone()));
    }
    let calls = far.take_calls();
    assert_eq!((calls.stamp, calls.load), (3, 0));

    // Our own commit keeps the near copy current: still no full load.
    let committed = server
        .commit(&record.id, &set("n", "1"), record.expires_at)
        .await
        .unwrap();
    assert_eq!(committed, Committed::Applied { version: 2 });
    assert_eq!(
        server.load(&record.id).await.unwrap().unwrap().data["n"],
        "1"
    );
    assert_eq!(far.take_calls().load, 0);
}

#[tokio::test]
async fn a_near_cache_never_serves_what_another_server_changed() {
    let (a, b, _) = two_tiered_servers();
    let record = record();
    let _ = a.create(&record).await.unwrap();
    assert!(b.load(&record.id).await.unwrap().is_some());

    // A commit on `a`: `b`'s near copy is now stale.
    let _ = a.commit(&record.id, &set("n", "1"), later()).await.unwrap();
    assert_eq!(b.load(&record.id).await.unwrap().unwrap().data["n"], "1");

    // A touch on `a`: `b` serves the new expiry with its cached data.
    let touched = SystemTime::now() + Duration::from_secs(1200);
    assert!(a.touch(&record.id, touched).await.unwrap());
    let loaded = b.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.expires_at, touched);

    // A delete on `a`: `b` serves nothing.
    a.delete(&record.id).await.unwrap();
    assert_eq!(b.load(&record.id).await.unwrap(), None);
}

#[tokio::test]
async fn a_far_store_outage_is_not_hidden_by_the_near_cache() {
    let (server, _, far) = two_tiered_servers();
    let record = record();
    let _ = server.create(&record).await.unwrap();
    far.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    let err = server.load(&record.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

fn owned_by(name: &str) -> Record {
    let mut record = record();
    record.owner = Some(session_core::store::Owner::new(name, record.expires_at).unwrap());
    record
}

/// "Log out everywhere" must reach the session wherever failover put it:
/// in both stores in mirror mode, and in either store in standby mode,
/// including one created on the secondary while the primary was down.
#[tokio::test]
async fn ending_an_owner_reaches_both_stores_in_either_mode() {
    for mode in [FailoverMode::Mirror, FailoverMode::Standby] {
        let pair = Pair::new();
        let server = pair.server(mode);
        let both = owned_by("ada");
        assert_eq!(server.create(&both).await.unwrap(), Created::Created);
        down(&pair.primary);
        let during_outage = owned_by("ada");
        assert_eq!(
            server.create(&during_outage).await.unwrap(),
            Created::Created
        );
        pair.primary.set_fault(None);
        tokio::time::sleep(OPEN_FOR * 5).await;

        let ended = server.delete_by_owner("ada").await.unwrap().ended;
        assert!(
            ended >= 2 - u64::from(mode == FailoverMode::Mirror),
            "{mode:?}: {ended}"
        );
        for id in [both.id, during_outage.id] {
            assert_eq!(pair.raw_primary.load(&id).await.unwrap(), None, "{mode:?}");
            assert_eq!(
                pair.raw_secondary.load(&id).await.unwrap(),
                None,
                "{mode:?}"
            );
            assert_eq!(server.load(&id).await.unwrap(), None, "{mode:?}");
        }
    }
}

/// With one store down the call fails, so the caller knows to retry, but
/// the store that is up has already ended its share, and its owner fence
/// keeps the returning store's copy from being served or copied back; the
/// retry once both are up finishes the job.
#[tokio::test]
async fn ending_an_owner_with_one_store_down_fails_and_the_retry_finishes() {
    let pair = Pair::new();
    let server = pair.server(FailoverMode::Mirror);
    let record = owned_by("ada");
    assert_eq!(server.create(&record).await.unwrap(), Created::Created);

    down(&pair.secondary);
    let err = server.delete_by_owner("ada").await.unwrap_err();
    assert!(err.kind().is_transient(), "{err}");
    assert_eq!(pair.raw_primary.load(&record.id).await.unwrap(), None);

    pair.secondary.set_fault(None);
    tokio::time::sleep(OPEN_FOR * 5).await;
    assert!(pair.raw_secondary.load(&record.id).await.unwrap().is_some());
    assert_eq!(
        server.load(&record.id).await.unwrap(),
        None,
        "the returning store's copy of an ended session was served"
    );
    let _ = server.delete_by_owner("ada").await.unwrap();
    assert_eq!(pair.raw_secondary.load(&record.id).await.unwrap(), None);
    assert_eq!(server.load(&record.id).await.unwrap(), None);
}

/// A secondary that is still connecting in the background and, once
/// connected, could not index owners (a Memcached server) makes the pair
/// refuse "log out everywhere" before either store ends anything, not
/// after the primary has ended its share.
#[tokio::test]
async fn a_pair_over_a_connecting_store_that_cannot_index_owners_refuses_up_front() {
    let primary = MemoryStore::new();
    let connecting = session_core::lazy::LazyStore::builder("memcached")
        .with_indexes_owners(false)
        .connect_in_background(|| async {
            Err::<MemoryStore, _>(session_core::StoreError::new(
                ErrorKind::Unavailable,
                "connect",
            ))
        })
        .unwrap();
    let server = FailoverStore::builder(Arc::new(primary.clone()), Arc::new(connecting))
        .with_mode(FailoverMode::Mirror)
        .with_call_timeout(CALL_TIMEOUT)
        .build()
        .unwrap();
    let record = owned_by("ada");
    assert_eq!(primary.create(&record).await.unwrap(), Created::Created);

    let err = server.delete_by_owner("ada").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        primary.load(&record.id).await.unwrap().is_some(),
        "the primary ended its share before the pair refused"
    );
}
