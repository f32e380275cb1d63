//! `LazyStore` rules: calls fail at once as `Unavailable` until the
//! background connect succeeds and reach the connected store after it, the
//! retries back off, and the background task ends with the last clone. The
//! whole contract over a connected `LazyStore` is in
//! `composite_conformance.rs`.

use std::{
    error::Error as _,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant, SystemTime},
};

use session_conformance::InstrumentedStore;
use session_core::{
    failover::{FailoverMode, FailoverStore},
    lazy::LazyStore,
    memory::MemoryStore,
    store::{Changes, Committed, Created, Record, SessionStore},
    ConfigError, ErrorKind, SessionId, StoreError,
};

/// How long an unconnected call may take. Generous: it is a check that the
/// call does not wait for the connect, not a benchmark.
const PROMPT: Duration = Duration::from_millis(100);
/// How long a test waits for something it expects before it fails.
const DEADLINE: Duration = Duration::from_secs(5);

fn record() -> Record {
    let now = SystemTime::now();
    Record::new(
        SessionId::generate(),
        [("user".to_owned(), "\"ada\"".to_owned())].into(),
        now,
        now + Duration::from_secs(600),
    )
}

fn refused() -> StoreError {
    StoreError::new(ErrorKind::Unavailable, "connect").with_source("connection refused")
}

/// Polls `check` every millisecond, failing the test after [`DEADLINE`].
async fn until(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs every store operation on `store`, each bounded by [`PROMPT`], and
/// checks that each fails as `Unavailable` with a cause naming `label`.
async fn assert_every_call_is_unavailable(store: &LazyStore, label: &str) {
    let id = SessionId::generate();
    let expiry = SystemTime::now() + Duration::from_secs(60);
    assert_unavailable("load", label, store.load(&id)).await;
    assert_unavailable("stamp", label, store.stamp(&id)).await;
    assert_unavailable("create", label, store.create(&record())).await;
    assert_unavailable(
        "commit",
        label,
        store.commit(&id, &Changes::default(), expiry),
    )
    .await;
    assert_unavailable("touch", label, store.touch(&id, expiry)).await;
    assert_unavailable("delete", label, store.delete(&id)).await;
    assert_unavailable("health", label, store.health()).await;
}

async fn assert_unavailable<T: std::fmt::Debug>(
    operation: &str,
    label: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) {
    let start = Instant::now();
    let err = tokio::time::timeout(PROMPT, call)
        .await
        .unwrap_or_else(|_| panic!("{operation} waited for the connect"))
        .expect_err("no store to answer yet");
    assert!(
        start.elapsed() < PROMPT,
        "{operation} took {:?}",
        start.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{operation}");
    assert_eq!(err.operation(), operation);
    assert_eq!(
        err.source().expect("a cause").to_string(),
        format!("{label} is not connected yet; retrying in the background"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_as_unavailable_at_once_while_the_connect_hangs() {
    let store = LazyStore::connect_in_background("redis", || {
        std::future::pending::<Result<MemoryStore, StoreError>>()
    })
    .unwrap();

    assert_every_call_is_unavailable(&store, "redis").await;
    assert!(!store.is_connected());
    assert!(!store.wait_connected(Duration::from_millis(20)).await);
}

// One thread: the background task runs only when the test awaits
// something that is not ready, so "before" and "between attempts" are
// exact points, not races.
#[tokio::test(flavor = "current_thread")]
async fn calls_reach_the_inner_store_once_a_failing_connect_succeeds() {
    const FAILURES: usize = 3;
    let inner = MemoryStore::new();
    let attempts = Arc::new(AtomicUsize::new(0));
    let store = LazyStore::builder("redis")
        .with_first_retry(Duration::from_millis(50))
        .with_max_retry(Duration::from_millis(50))
        .connect_in_background({
            let (inner, attempts) = (inner.clone(), Arc::clone(&attempts));
            move || {
                let failed_so_far = attempts.fetch_add(1, Ordering::SeqCst);
                let inner = inner.clone();
                async move {
                    if failed_so_far < FAILURES {
                        Err(refused())
                    } else {
                        Ok(inner)
                    }
                }
            }
        })
        .unwrap();
    let other_clone = store.clone();

    assert_every_call_is_unavailable(&store, "redis").await;
    until("the first attempt failed", || {
        attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_every_call_is_unavailable(&store, "redis").await;

    assert!(store.wait_connected(DEADLINE).await);
    assert_eq!(attempts.load(Ordering::SeqCst), FAILURES + 1);
    assert!(other_clone.is_connected(), "clones share the connection");

    let through_lazy = record();
    assert_eq!(store.create(&through_lazy).await.unwrap(), Created::Created);
    assert_eq!(
        inner.load(&through_lazy.id).await.unwrap(),
        Some(through_lazy.clone())
    );
    let through_inner = record();
    assert_eq!(
        inner.create(&through_inner).await.unwrap(),
        Created::Created
    );
    assert_eq!(
        other_clone.load(&through_inner.id).await.unwrap(),
        Some(through_inner.clone())
    );
    let mut changes = Changes::default();
    changes.set("cart", "3");
    assert_eq!(
        store
            .commit(&through_inner.id, &changes, through_inner.expires_at)
            .await
            .unwrap(),
        Committed::Applied { version: 2 }
    );
    let committed = inner.load(&through_inner.id).await.unwrap().unwrap();
    assert_eq!(committed.data["cart"], "3");
    store.delete(&through_lazy.id).await.unwrap();
    assert_eq!(inner.load(&through_lazy.id).await.unwrap(), None);
}

#[tokio::test]
async fn stamp_and_health_go_to_the_connected_store() {
    let inner = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    let store = LazyStore::connect_in_background("sessions", {
        let inner = Arc::clone(&inner);
        move || {
            let inner = Arc::clone(&inner);
            async move { Ok(inner) }
        }
    })
    .unwrap();
    assert!(store.wait_connected(DEADLINE).await);
    let record = record();
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    inner.take_calls();

    let stamp = store.stamp(&record.id).await.unwrap().unwrap();

    assert_eq!(stamp.version, record.version);
    let calls = inner.take_calls();
    assert_eq!(
        (calls.stamp, calls.load),
        (1, 0),
        "the inner store's own stamp"
    );
    // The trait's default answers `Unsupported`; the memory store's own is Ok.
    store.health().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_attempt_that_succeeds_connects_without_any_delay() {
    let attempts = Arc::new(AtomicUsize::new(0));
    // Delays this long would outlast the test: any wait before or after
    // the first attempt shows as a timeout.
    let store = LazyStore::builder("sessions")
        .with_first_retry(Duration::from_secs(3600))
        .with_max_retry(Duration::from_secs(3600))
        .connect_in_background({
            let attempts = Arc::clone(&attempts);
            move || {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Ok(MemoryStore::new()) }
            }
        })
        .unwrap();

    assert!(store.wait_connected(DEADLINE).await);
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

// Real time, because session-core's dev-dependencies do not enable tokio's
// `test-util` (paused time). The assertions rely only on what a timer
// guarantees (never early) and on a slack for lateness far larger than
// any scheduler delay: an uncapped back-off would overshoot the bound by
// about a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delays_double_from_the_first_up_to_the_cap() {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_millis(40);
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let store = LazyStore::builder("redis")
        .with_first_retry(FIRST)
        .with_max_retry(MAX)
        .connect_in_background({
            let attempts = Arc::clone(&attempts);
            move || {
                attempts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Instant::now());
                async { Err::<MemoryStore, _>(refused()) }
            }
        })
        .unwrap();
    let at = || {
        attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    };

    until("eight attempts were made", || at().len() >= 8).await;
    drop(store);

    let at = at();
    let gaps: Vec<Duration> = at.windows(2).map(|pair| pair[1] - pair[0]).collect();
    let expected = [10, 20, 40, 40, 40, 40, 40].map(Duration::from_millis);
    for (n, (gap, expected)) in gaps.iter().zip(expected).enumerate() {
        assert!(
            *gap >= expected,
            "wait {n} was {gap:?}, expected at least {expected:?}: {gaps:?}"
        );
    }
    // Capped: 4 x 40 ms. Uncapped it would be 80 + 160 + 320 + 640 ms.
    let capped: Duration = gaps[3..7].iter().sum();
    assert!(
        capped < Duration::from_millis(800),
        "waits past the cap took {capped:?}: {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_clone_ends_the_background_task() {
    let attempts = Arc::new(AtomicUsize::new(0));
    // The connect function lives in the task: when the task ends, it is
    // dropped, and with it this sender.
    let (alive, task_ended) = tokio::sync::oneshot::channel::<()>();
    let store = LazyStore::builder("redis")
        .with_first_retry(Duration::from_millis(5))
        .with_max_retry(Duration::from_millis(5))
        .connect_in_background({
            let attempts = Arc::clone(&attempts);
            move || {
                let _task_alive = &alive;
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<MemoryStore, _>(refused()) }
            }
        })
        .unwrap();
    let clone = store.clone();
    until("two attempts were made", || {
        attempts.load(Ordering::SeqCst) >= 2
    })
    .await;

    drop(store);
    drop(clone);
    let at_drop = attempts.load(Ordering::SeqCst);

    let ended = tokio::time::timeout(DEADLINE, task_ended).await;
    assert!(
        matches!(ended, Ok(Err(_))),
        "the task still holds the connect function"
    );
    // At most the attempt that had already passed its check when the last
    // clone went.
    assert!(attempts.load(Ordering::SeqCst) <= at_drop + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_store_serves_from_its_secondary_until_the_lazy_primary_connects() {
    let primary =
        LazyStore::connect_in_background("redis", || async { Err::<MemoryStore, _>(refused()) })
            .unwrap();
    let store = FailoverStore::builder(primary, MemoryStore::new())
        .with_mode(FailoverMode::Standby)
        .build()
        .unwrap();
    let record = record();

    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    assert_eq!(store.load(&record.id).await.unwrap(), Some(record));
}

#[tokio::test(flavor = "current_thread")]
async fn debug_shows_the_label_and_whether_connected_only() {
    let store =
        LazyStore::connect_in_background("sessions", || async { Ok(MemoryStore::new()) }).unwrap();
    assert_eq!(
        format!("{store:?}"),
        r#"LazyStore { label: "sessions", connected: false, .. }"#
    );

    assert!(store.wait_connected(DEADLINE).await);

    assert_eq!(
        format!("{store:?}"),
        r#"LazyStore { label: "sessions", connected: true, .. }"#
    );
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_retry_delays_are_config_errors_naming_the_key() {
    let ms = Duration::from_millis;
    for (first, max, key) in [
        (ms(0), ms(100), "lazy.first_retry"),
        (ms(100), ms(0), "lazy.max_retry"),
        (ms(100), ms(99), "lazy.max_retry"),
    ] {
        let err = LazyStore::builder("sessions")
            .with_first_retry(first)
            .with_max_retry(max)
            .connect_in_background(|| async { Ok(MemoryStore::new()) })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        let config = err
            .source()
            .and_then(|source| source.downcast_ref::<ConfigError>())
            .expect("a ConfigError as the source");
        assert_eq!(config.key(), key, "first {first:?}, max {max:?}");
    }
}

#[test]
fn outside_a_tokio_runtime_it_is_a_config_error() {
    let err = LazyStore::connect_in_background("sessions", || async { Ok(MemoryStore::new()) })
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Config);
}
