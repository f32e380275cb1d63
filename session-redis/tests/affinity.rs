//! A store shared by worker threads that each run a current-thread runtime
//! (actix-web's shape) serves each worker's calls on a connection of that
//! worker's own, so no call crosses threads; and a worker whose runtime
//! was shut down and replaced gets a working connection again.

use std::time::{Duration, Instant, SystemTime};

use session_conformance::testkit::RedisServer;
use session_core::{
    store::{Record, SessionStore},
    SessionId,
};
use session_redis::{RedisConfig, RedisStore};

/// Redis's count of connected clients, the test's own `redis-cli` aside.
fn clients(server: &RedisServer) -> usize {
    server
        .cli(&["client", "list"])
        .lines()
        .filter(|line| !line.contains("cmd=client"))
        .count()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Loads `record` on `runtime` until the server counts `want` clients
/// (bounded), checking every answer.
fn load_until_clients(
    runtime: &tokio::runtime::Runtime,
    store: &RedisStore,
    server: &RedisServer,
    record: &Record,
    want: usize,
) {
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let loaded = store.load(&record.id).await.expect("a load");
            assert_eq!(loaded.as_ref(), Some(record));
            if clients(server) == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server still counts {} clients, not {want}",
                clients(server)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn each_current_thread_worker_gets_its_own_connection_and_a_new_one_after_its_runtime_ends() {
    let server = RedisServer::start();
    // The runtime the store is opened on keeps running, as an app's main
    // runtime does (actix-web's system thread): it drives the shared
    // connection that serves a worker's first calls.
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let (store, record) = home.block_on(async {
        let store = RedisStore::connect(RedisConfig::from_url(&server.url()).expect("a URL"))
            .await
            .expect("a store");
        // Whole milliseconds, as Redis keeps them, so a load equals it.
        let now = SystemTime::UNIX_EPOCH
            + Duration::from_millis(
                u64::try_from(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .expect("after 1970")
                        .as_millis(),
                )
                .expect("a u64 of milliseconds"),
            );
        let record = Record::new(
            SessionId::generate(),
            [("n".to_owned(), "1".to_owned())].into(),
            now,
            now + Duration::from_secs(600),
        );
        assert_eq!(
            store.create(&record).await.expect("a create"),
            session_core::store::Created::Created
        );
        (store, record)
    });
    assert_eq!(clients(&server), 1, "the store opens one connection");

    std::thread::scope(|scope| {
        scope.spawn(|| {
            // A worker's first calls are served by the shared connection
            // while its own opens.
            let first = current_thread();
            load_until_clients(&first, &store, &server, &record, 2);
            // A second worker, at the same time, gets one of its own too.
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let second = current_thread();
                    load_until_clients(&second, &store, &server, &record, 3);
                });
            });
            // The first worker's runtime ends and another starts on the
            // same thread: the old connection closed with it, and calls
            // must neither fail nor wait on it while a new one opens.
            drop(first);
            let again = current_thread();
            load_until_clients(&again, &store, &server, &record, 2);
        });
    });
    // The home runtime still serves it on the first connection.
    home.block_on(async {
        let loaded = store.load(&record.id).await.expect("a load");
        assert_eq!(loaded, Some(record.clone()));
    });
}
