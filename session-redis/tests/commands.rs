//! What a request costs in Redis commands, counted by Redis itself
//! (`INFO commandstats`), for the two requests that matter: one that only
//! reads the session, and one that changes it.

mod support;

use session_conformance::{serve_store, testkit::RedisServer, Browser, RunningApp};
use session_core::ErrorPolicy;
use session_tower::conformance::AxumApp;
use support::{connect, standalone};

const REQUESTS: u64 = 50;

/// Commands the app sent per request, over `REQUESTS` requests to `path`.
/// Commands that Lua scripts run inside Redis are listed apart: they cost no
/// round trip.
async fn per_request(
    server: &RedisServer,
    client: &Browser,
    app: &RunningApp,
    path: &str,
) -> (f64, String) {
    server.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..REQUESTS {
        assert_eq!(client.get(app, path).await.0, 200);
    }
    let mut sent = 0;
    let mut detail = Vec::new();
    for (name, calls) in support::command_calls(server) {
        // RESETSTAT resets before it counts itself; INFO is this probe.
        if matches!(name.as_str(), "config|resetstat" | "info") {
            continue;
        }
        let scripted = !matches!(name.as_str(), "hgetall" | "evalsha" | "eval" | "unlink");
        if !scripted {
            sent += calls;
        }
        detail.push(format!(
            "{name}={:.2}{}",
            calls as f64 / REQUESTS as f64,
            if scripted { " (inside Lua)" } else { "" }
        ));
    }
    (sent as f64 / REQUESTS as f64, detail.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_costs_one_command_and_a_write_two() {
    let server = RedisServer::start();
    let app = serve_store(
        &AxumApp,
        connect(standalone(server.url())).await,
        ErrorPolicy::Reject,
    )
    .await;
    let client = Browser::new();
    // Warm up: the first request creates the session, the second loads the
    // commit script into Redis (one EVAL after NOSCRIPT); from then on
    // every commit is an EVALSHA.
    assert_eq!(client.get(&app, "/counter").await.1, "1");
    assert_eq!(client.get(&app, "/counter").await.1, "2");

    let (read, read_detail) = per_request(&server, &client, &app, "/read").await;
    let (write, write_detail) = per_request(&server, &client, &app, "/counter").await;
    println!("redis commands per request, over {REQUESTS} requests each (INFO commandstats):");
    println!("  read-only  /read    : {read:.2}  [{read_detail}]");
    println!("  writing    /counter : {write:.2}  [{write_detail}]");
    assert_eq!(read, 1.0, "a read-only request: {read_detail}");
    assert_eq!(write, 2.0, "a writing request: {write_detail}");
}
