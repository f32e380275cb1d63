//! Memcached servers failing under a running store: killed and restarted,
//! hung, missing at start.

mod support;

use std::time::{Duration, Instant, SystemTime};

use session_conformance::store::set;
use session_conformance::{serve_store, testkit::MemcachedServer, Browser};
use session_core::{
    store::{Created, Record, SessionStore},
    ErrorKind, ErrorPolicy, StoreError,
};
use session_memcached::{MemcachedConfig, MemcachedStore};
use session_tower::conformance::AxumApp;
use support::{config, connect, holder, record};

/// Far longer than the 500 ms operation timeout, far shorter than a hang.
const NO_HANG: Duration = Duration::from_secs(3);
const PREFIX: &str = "fault:";
const HOUR: Duration = Duration::from_secs(3600);

fn key_of(record: &Record) -> String {
    format!("{PREFIX}{}", record.id.encode())
}

/// Creates `count` sessions and groups them by the server that holds them.
async fn spread(
    store: &MemcachedStore,
    servers: &[MemcachedServer],
    count: usize,
) -> Vec<Vec<Record>> {
    let mut by_server = vec![Vec::new(); servers.len()];
    for _ in 0..count {
        let session = record(HOUR);
        assert_eq!(store.create(&session).await.unwrap(), Created::Created);
        let index = holder(servers, &key_of(&session))
            .await
            .expect("stored somewhere");
        by_server[index].push(session);
    }
    by_server
}

/// Runs `call`, asserting that it fails with `kind` before [`NO_HANG`].
async fn fails_quickly<T: std::fmt::Debug>(
    kind: ErrorKind,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let err = call.await.expect_err("the call should fail");
    let took = started.elapsed();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(took < NO_HANG, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_its_own_sessions_moves_none_and_comes_back_empty() {
    let mut servers = MemcachedServer::start_many(3);
    let store = connect(config(&servers).with_key_prefix(PREFIX)).await;
    let by_server = spread(&store, &servers, 60).await;
    assert!(
        by_server.iter().all(|sessions| sessions.len() >= 5),
        "rendezvous hashing left a server nearly empty: {:?}",
        by_server.iter().map(Vec::len).collect::<Vec<_>>()
    );

    servers[0].kill();
    for session in &by_server[0] {
        fails_quickly(ErrorKind::Unavailable, store.load(&session.id)).await;
        fails_quickly(
            ErrorKind::Unavailable,
            store.commit(&session.id, &set("k", "1"), SystemTime::now() + HOUR),
        )
        .await;
    }
    // New sessions that belong to the dead server fail too, instead of
    // landing on a live one, which would not have them on the next read
    // once the dead one is back.
    let mut refused = 0;
    for _ in 0..30 {
        let session = record(HOUR);
        match store.create(&session).await {
            Ok(Created::Created) => {
                assert_ne!(holder(&servers, &key_of(&session)).await, None);
            }
            Ok(Created::IdTaken) => panic!("a fresh id was taken"),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Unavailable);
                assert_eq!(holder(&servers, &key_of(&session)).await, None);
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no new session was routed to the dead server");
    for session in by_server[1..].iter().flatten() {
        let loaded = store.load(&session.id).await.unwrap().expect("still there");
        assert_eq!(loaded.data, session.data);
        let _ = store
            .commit(&session.id, &set("k", "2"), SystemTime::now() + HOUR)
            .await
            .unwrap();
    }

    // Memcached keeps nothing across a restart: its sessions are gone, and
    // read as absent, not as an error; new ones work at once.
    servers[0].restart();
    for session in &by_server[0] {
        assert_eq!(store.load(&session.id).await.unwrap(), None);
    }
    for _ in 0..10 {
        assert_eq!(store.create(&record(HOUR)).await.unwrap(), Created::Created);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_times_out_within_the_operation_timeout() {
    let mut server = MemcachedServer::start();
    let store = connect(config(std::slice::from_ref(&server)).with_key_prefix(PREFIX)).await;
    let session = record(HOUR);
    let _ = store.create(&session).await.unwrap();

    server.pause();
    let started = Instant::now();
    let err = store.load(&session.id).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        took >= MemcachedConfig::DEFAULT_OPERATION_TIMEOUT && took < NO_HANG,
        "took {took:?}"
    );
    fails_quickly(
        ErrorKind::Timeout,
        store.commit(&session.id, &set("k", "1"), SystemTime::now() + HOUR),
    )
    .await;
    fails_quickly(
        ErrorKind::Timeout,
        store.touch(&session.id, SystemTime::now() + HOUR),
    )
    .await;

    server.resume();
    assert!(store.load(&session.id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_needs_one_answering_server() {
    let mut servers = MemcachedServer::start_many(2);
    servers[1].kill();
    let store = connect(config(&servers).with_key_prefix(PREFIX)).await;
    // The dead server's limit is unknown, so the default is assumed.
    assert_eq!(store.item_size_limit(), 1024 * 1024);
    let by_server = spread_live(&store, &servers).await;
    assert!(by_server > 0);

    servers[0].kill();
    let started = Instant::now();
    let err = MemcachedStore::connect(config(&servers)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < NO_HANG);
    assert!(store.health().await.is_err());
}

/// Creates sessions until some land on a live server; how many did.
async fn spread_live(store: &MemcachedStore, servers: &[MemcachedServer]) -> usize {
    let mut stored = 0;
    for _ in 0..20 {
        let session = record(HOUR);
        if store.create(&session).await.is_ok() {
            assert_eq!(holder(servers, &key_of(&session)).await, Some(0));
            stored += 1;
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_answers_503_while_its_server_is_down_and_recovers_after() {
    let mut servers = MemcachedServer::start_many(3);
    let store = connect(config(&servers).with_key_prefix(PREFIX)).await;
    let app = serve_store(&AxumApp, store, ErrorPolicy::Reject).await;
    let browser = Browser::new();
    assert_eq!(browser.get(&app, "/counter").await.1, "1");
    assert_eq!(browser.get(&app, "/counter").await.1, "2");

    // Find the browser's session on the servers, and kill its server.
    let index = servers
        .iter()
        .position(|server| curr_items(server) == 1)
        .expect("one server holds the session");
    servers[index].kill();
    for path in ["/read", "/counter"] {
        let (status, body, took) = browser.get(&app, path).await;
        assert_eq!((status, body.as_str()), (503, ""), "{path}");
        assert!(took < NO_HANG, "{path} took {took:?}");
    }

    servers[index].restart();
    // The session died with the server; the app starts a fresh one.
    let (status, body, _) = browser.get(&app, "/counter").await;
    assert_eq!((status, body.as_str()), (200, "1"));
    assert_eq!(browser.get(&app, "/counter").await.1, "2");
}

fn curr_items(server: &MemcachedServer) -> u64 {
    server.stats()["curr_items"].parse().unwrap()
}
