//! What a request costs in Memcached round trips, counted by memcached
//! itself (`stats`), for the two requests that matter: one that only reads
//! the session, and one that changes it.

mod support;

use std::collections::HashMap;

use session_conformance::{serve_store, testkit::MemcachedServer, Browser, RunningApp};
use session_core::ErrorPolicy;
use session_tower::conformance::AxumApp;
use support::{config, connect};

const REQUESTS: u64 = 50;

/// The counters that each command the store sends bumps exactly once: `mg`
/// with a value counts in `cmd_get`; a meta touch (`mg T` without a value)
/// only in `touch_hits` or `touch_misses`, not in `cmd_get` or `cmd_touch`;
/// `ms` in `cmd_set`; `md` in `delete_hits` or `delete_misses`.
const COMMANDS: [&str; 6] = [
    "cmd_get",
    "cmd_set",
    "touch_hits",
    "touch_misses",
    "delete_hits",
    "delete_misses",
];

fn counters(server: &MemcachedServer) -> HashMap<String, u64> {
    server
        .stats()
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.parse().ok()?)))
        .collect()
}

/// Commands the app sent per request, over `REQUESTS` requests to `path`,
/// and the per-request change of every counter that moved.
async fn per_request(
    server: &MemcachedServer,
    browser: &Browser,
    app: &RunningApp,
    path: &str,
) -> (f64, String) {
    let before = counters(server);
    for _ in 0..REQUESTS {
        assert_eq!(browser.get(app, path).await.0, 200);
    }
    let after = counters(server);
    let delta = |name: &str| after[name] - before[name];
    let sent: u64 = COMMANDS.iter().map(|name| delta(name)).sum();
    let mut detail: Vec<String> = COMMANDS
        .iter()
        .filter(|name| delta(name) > 0)
        .map(|name| format!("{name}={:.2}", delta(name) as f64 / REQUESTS as f64))
        .collect();
    detail.sort();
    (sent as f64 / REQUESTS as f64, detail.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_costs_one_round_trip_and_a_write_two() {
    let server = MemcachedServer::start();
    let store = connect(config(std::slice::from_ref(&server))).await;
    let app = serve_store(&AxumApp, store, ErrorPolicy::Reject).await;
    let browser = Browser::new();
    // The first request creates the session: one `ms` in add mode.
    let before = counters(&server);
    assert_eq!(browser.get(&app, "/counter").await.1, "1");
    let after = counters(&server);
    let created: u64 = COMMANDS
        .iter()
        .map(|name| after[*name] - before[*name])
        .sum();

    let (read, read_detail) = per_request(&server, &browser, &app, "/read").await;
    let (write, write_detail) = per_request(&server, &browser, &app, "/counter").await;
    println!("memcached round trips per request, over {REQUESTS} requests each (stats):");
    println!("  creating   /counter : {created}");
    println!("  read-only  /read    : {read:.2}  [{read_detail}]");
    println!("  writing    /counter : {write:.2}  [{write_detail}]");
    assert_eq!(created, 1, "the first request");
    assert_eq!(read, 1.0, "a read-only request: {read_detail}");
    assert_eq!(write, 2.0, "a writing request: {write_detail}");
}

/// The CAS token of `key`: memcached gives an item a new one whenever its
/// data is written.
async fn cas_of(server: &MemcachedServer, key: &str) -> u64 {
    let client = memcache::exp::AsyncMetaClient::connect(server.addr())
        .await
        .unwrap();
    let read = client
        .run(memcache::exp::Get::new(key).meta(memcache::exp::Meta::NONE.cas()))
        .await
        .unwrap();
    read.item.cas.expect("the item is there")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_is_one_meta_touch_and_rewrites_nothing() {
    use std::time::{Duration, SystemTime};

    use session_core::store::SessionStore;

    let server = MemcachedServer::start();
    let store = connect(config(std::slice::from_ref(&server)).with_key_prefix("touch:")).await;
    let session = support::record(Duration::from_secs(60));
    let _ = store.create(&session).await.unwrap();
    let key = format!("touch:{}", session.id.encode());
    let cas = cas_of(&server, &key).await;

    let before = counters(&server);
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert!(store.touch(&session.id, later).await.unwrap());
    let after = counters(&server);
    let delta = |name: &str| after[name] - before[name];
    assert_eq!(delta("touch_hits"), 1);
    assert_eq!(delta("cmd_set"), 0, "a touch must not rewrite the item");
    assert_eq!(COMMANDS.iter().map(|name| delta(name)).sum::<u64>(), 1);
    assert_eq!(cas_of(&server, &key).await, cas, "the data was rewritten");
    support::assert_near(
        store.load(&session.id).await.unwrap().unwrap().expires_at,
        later,
    );
}

/// Requests in flight at once in [`concurrent_requests_reuse_their_connections`],
/// as a busy app server has them (the bench drives 16).
const IN_FLIGHT: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_reuse_their_connections() {
    use std::time::Duration;

    use session_core::store::SessionStore;

    let server = MemcachedServer::start();
    let store = connect(config(std::slice::from_ref(&server)).with_key_prefix("pool:")).await;
    let session = support::record(Duration::from_secs(60));
    let _ = store.create(&session).await.unwrap();
    // Every connection open from here on is one of the pool's, or one that
    // did not fit in it and was opened for a single request, then closed.
    let before = counters(&server)["total_connections"];
    for _ in 0..50 {
        let loads = (0..IN_FLIGHT).map(|_| {
            let store = store.clone();
            let id = session.id;
            tokio::spawn(async move { store.load(&id).await })
        });
        for load in loads.collect::<Vec<_>>() {
            assert!(load.await.unwrap().unwrap().is_some());
        }
    }
    let opened = counters(&server)["total_connections"] - before;
    // Each round has at most IN_FLIGHT requests in flight, so a pool that
    // keeps them all opens no more than that over the 50 rounds; one that
    // keeps fewer opens a connection per request past its size, every round.
    assert!(
        opened <= IN_FLIGHT as u64,
        "{opened} connections opened for {IN_FLIGHT} requests at a time"
    );
}
