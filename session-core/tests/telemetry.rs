//! The metrics table in the docs (`session_core::telemetry`, from
//! `src/telemetry/metrics.md`) is what the code emits: a scripted run that
//! makes every documented event happen, recorded by `metrics-util`'s
//! debugging recorder, emits every documented metric with its documented
//! type and labels, and nothing else.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use metrics_util::{
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
    MetricKind,
};
use session_conformance::{
    race::{Faults, Schedule, SimulatedFaults, SimulatedStore, StoreFault},
    Fault, InstrumentedStore,
};
use session_core::{
    clock::ManualClock,
    failover::{BreakerState, FailoverMode, FailoverStore},
    manager::Finish,
    memory::{MemoryStore, NearCache, TieredStore},
    store::{Record, SessionStore},
    ErrorKind, Key, SessionId, SessionManager,
};
use support::{id_of, set_cookie};

const TABLE: &str = include_str!("../src/telemetry/metrics.md");

/// One documented metric: its type and its label names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Documented {
    kind: &'static str,
    labels: BTreeSet<String>,
}

/// The table's rows, by metric name.
fn documented() -> BTreeMap<String, Documented> {
    let mut metrics = BTreeMap::new();
    for line in TABLE.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "", name, type, labels, meaning, ""
        assert!(cells.len() >= 5, "a table row with too few cells: {line}");
        let name = cells[1].trim_matches('`').to_owned();
        let kind = match cells[2] {
            "counter" => "counter",
            "gauge" => "gauge",
            "histogram" => "histogram",
            other => panic!("unknown metric type {other:?} in: {line}"),
        };
        let labels = cells[3]
            .split(',')
            .map(|label| label.trim().trim_matches('`').to_owned())
            .filter(|label| !label.is_empty())
            .collect();
        let previous = metrics.insert(name.clone(), Documented { kind, labels });
        assert!(previous.is_none(), "{name} is documented twice");
    }
    metrics
}

/// What the recorder saw: each metric's type and label names (every
/// series of one metric must agree), and the counters' totals by series.
fn emitted(snapshotter: &Snapshotter) -> (BTreeMap<String, Documented>, BTreeMap<String, u64>) {
    let mut metrics: BTreeMap<String, Documented> = BTreeMap::new();
    let mut counts = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let kind = match key.kind() {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let (kind_of, key) = (kind, key.key());
        let labels: BTreeSet<String> = key.labels().map(|label| label.key().to_owned()).collect();
        let series = Documented {
            kind: kind_of,
            labels,
        };
        let name = key.name().to_owned();
        if let Some(seen) = metrics.get(&name) {
            assert_eq!(seen, &series, "two series of {name} disagree");
        }
        metrics.insert(name.clone(), series);
        if let DebugValue::Counter(count) = value {
            let labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            counts.insert(format!("{name}{{{}}}", labels.join(",")), count);
        }
    }
    (metrics, counts)
}

/// Polls `done` every 5 ms for up to 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} did not happen within 10 s");
}

fn finish_cookie(finish: Finish) -> String {
    set_cookie(finish).expect("a cookie")
}

/// Sessions created, cycled, ended for every reason; cookies refused for
/// every reason; a store error; near-cache loads.
async fn session_lifecycle() {
    let clock = ManualClock::starting_now();
    let faults = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    let store = TieredStore::new(NearCache::new(), Arc::clone(&faults));
    let key = Key::generate();
    let manager = SessionManager::builder(store, key.clone())
        .with_idle_timeout(Duration::from_secs(600))
        .with_absolute_timeout(Duration::from_secs(900))
        .with_clock(clock.clone())
        .build()
        .unwrap();

    // Created, then read through the near-cache (a hit), cycled and
    // logged out.
    let session = manager.start(std::iter::empty());
    session.insert("n", 1).await.unwrap();
    let cookie = finish_cookie(session.finish().await);
    let session = manager.start([cookie.as_bytes()]);
    session.cycle_id().await.unwrap();
    let cookie = finish_cookie(session.finish().await);
    let session = manager.start([cookie.as_bytes()]);
    session.destroy().await.unwrap();
    let _ = session.finish().await;
    // Its cookie now names no session.
    let session = manager.start([cookie.as_bytes()]);
    assert_eq!(session.get::<u32>("n").await.unwrap(), None);
    let _ = session.finish().await;

    // Ended by "log out everywhere".
    let session = manager.start(std::iter::empty());
    session.set_owner("ada").await.unwrap();
    let _ = session.finish().await;
    assert_eq!(manager.end_all_for("ada").await.unwrap(), 1);

    // One session idle past its timeout, one kept active past the
    // absolute one.
    let session = manager.start(std::iter::empty());
    session.insert("n", 1).await.unwrap();
    let idle = finish_cookie(session.finish().await);
    let session = manager.start(std::iter::empty());
    session.insert("n", 1).await.unwrap();
    let active = finish_cookie(session.finish().await);
    clock.advance(Duration::from_secs(360));
    let session = manager.start([active.as_bytes()]);
    assert!(session.get::<u32>("n").await.unwrap().is_some());
    let _ = session.finish().await;
    clock.advance(Duration::from_secs(300));
    let session = manager.start([idle.as_bytes()]);
    assert_eq!(session.get::<u32>("n").await.unwrap(), None);
    clock.advance(Duration::from_secs(300));
    let session = manager.start([active.as_bytes()]);
    assert_eq!(session.get::<u32>("n").await.unwrap(), None);

    // Cookies refused: malformed, signed by another key, too many. A
    // cookie is verified, and a refusal counted, once the request uses
    // its session: the untouched request first counts nothing.
    let name = manager.codec().name().to_owned();
    let other = SessionManager::builder(MemoryStore::new(), Key::generate())
        .build()
        .unwrap();
    let forged = other
        .codec()
        .set_cookie(&id_of(&cookie), Duration::from_secs(60));
    let forged = forged.split(';').next().unwrap().to_owned();
    let _ = manager.start([forged.as_bytes()]).finish().await;
    let many = vec![format!("{name}=x"); 64].join("; ");
    for refused in [format!("{name}=nonsense"), forged, many] {
        let session = manager.start([refused.as_bytes()]);
        assert_eq!(session.get::<u32>("n").await.unwrap(), None);
    }

    // A store error.
    faults.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    let session = manager.start([active.as_bytes()]);
    assert!(session.get::<u32>("n").await.is_err());
    faults.set_fault(None);
}

/// Breaker transitions, fallbacks, the replay backlog and a full replay
/// set, repairs, a store that came back empty, and a call cut by the
/// failover call timeout.
async fn failover() {
    let raw = MemoryStore::new();
    let primary = Arc::new(SimulatedStore::new(
        Arc::new(raw.clone()),
        || Arc::new(MemoryStore::new()),
        Schedule::new(0, Duration::ZERO),
    ));
    let primary_faults = SimulatedFaults::new(vec![Arc::clone(&primary)]);
    let secondary = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    let store = FailoverStore::builder(Arc::clone(&primary), Arc::clone(&secondary))
        .with_mode(FailoverMode::Mirror)
        .with_call_timeout(Duration::from_millis(100))
        .with_failure_threshold(1)
        .with_open_for(Duration::from_millis(20))
        .with_probe_interval(Duration::from_millis(20))
        .with_max_pending(1)
        .build()
        .unwrap();
    let now = std::time::SystemTime::now();
    let record = |n: u64| {
        let mut record = Record::new(
            SessionId::generate(),
            Default::default(),
            now,
            now + Duration::from_secs(600),
        );
        record.data.insert("n".to_owned(), n.to_string());
        record
    };
    let first = record(1);
    let _ = store.create(&first).await.unwrap();
    // The session and this process's epoch mark, written in the background.
    for _ in 0..2000 {
        raw.run_pending_tasks().await;
        if raw.approximate_len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(raw.approximate_len(), 2, "the epoch mark was never written");

    // The secondary hangs: the call is cut by the call timeout.
    secondary.set_fault(Some(Fault::Hang));
    let _ = store.load(&first.id).await.unwrap();
    secondary.set_fault(None);
    eventually("the secondary's breaker closes", || {
        store.state().secondary == BreakerState::Closed
    })
    .await;

    // The secondary misses two sessions' writes: one is kept for replay,
    // the other does not fit.
    secondary.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    let (second, third) = (record(2), record(3));
    let _ = store.create(&second).await.unwrap();
    let _ = store.create(&third).await.unwrap();
    assert!(store.state().pending_secondary >= 1);
    secondary.set_fault(None);
    eventually("the replay empties the backlog", || {
        store.state().pending_secondary == 0 && store.state().secondary == BreakerState::Closed
    })
    .await;
    // The session that did not fit is repaired when read.
    assert!(store.load(&third.id).await.unwrap().is_some());

    // The primary restarts empty: a load served by the secondary alone
    // (a fallback), and the primary found to have lost its data.
    primary_faults.begin(0, StoreFault::RestartEmpty).await;
    assert!(store.load(&first.id).await.unwrap().is_some());
    primary_faults.end(0, StoreFault::RestartEmpty).await;
    eventually("the primary is found to have lost its data", || {
        store.state().lost_data_primary
    })
    .await;
}

#[test]
fn the_metrics_table_matches_what_a_scripted_run_emits() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder is per thread: a current-thread runtime keeps every
    // task, the failover store's background ones included, on this one.
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            session_lifecycle().await;
            failover().await;
        });
    });
    let (emitted, counts) = emitted(&snapshotter);
    let documented = documented();
    assert!(
        documented.len() >= 10,
        "the table was not parsed: {documented:?}"
    );
    for (name, doc) in &documented {
        assert_eq!(
            emitted.get(name),
            Some(doc),
            "{name} is documented as {doc:?} but emitted as {:?}",
            emitted.get(name)
        );
    }
    for name in emitted.keys() {
        assert!(documented.contains_key(name), "{name} is not documented");
    }

    // The lifecycle counted what happened, once each.
    for (series, expected) in [
        ("session_kit_sessions_created_total{}", 4),
        ("session_kit_sessions_cycled_total{}", 1),
        ("session_kit_sessions_ended_total{reason=logout}", 1),
        ("session_kit_sessions_ended_total{reason=end_all}", 1),
        ("session_kit_sessions_ended_total{reason=idle}", 1),
        ("session_kit_sessions_ended_total{reason=absolute}", 1),
        ("session_kit_cookies_refused_total{reason=malformed}", 1),
        ("session_kit_cookies_refused_total{reason=bad_signature}", 1),
        ("session_kit_cookies_refused_total{reason=too_many}", 1),
        ("session_kit_cookies_refused_total{reason=no_session}", 1),
        // The manager's call, and the tiered store's to the store inside
        // it (a stamp: the session was in the near-cache); the fault
        // wrapper reports the kind of the store it wraps.
        (
            "session_kit_store_errors_total{store=tiered,operation=load,error=unavailable}",
            1,
        ),
        (
            "session_kit_store_errors_total{store=memory,operation=stamp,error=unavailable}",
            1,
        ),
        (
            "session_kit_failover_store_lost_data_total{role=primary}",
            1,
        ),
    ] {
        assert_eq!(
            counts.get(series),
            Some(&expected),
            "{series} in {counts:#?}"
        );
    }
    // Background probes and replays make these timing-dependent in number,
    // not in being there.
    for series in [
        "session_kit_store_errors_total{store=memory,operation=load,error=cancelled}",
        "session_kit_store_errors_total{store=memory,operation=create,error=unavailable}",
        "session_kit_failover_replay_dropped_total{role=secondary}",
        "session_kit_failover_fallbacks_total{operation=load}",
        "session_kit_breaker_transitions_total{role=secondary,to=open}",
        "session_kit_breaker_transitions_total{role=primary,to=closed}",
    ] {
        assert!(
            counts.get(series).is_some_and(|count| *count >= 1),
            "{series} in {counts:#?}"
        );
    }
}
