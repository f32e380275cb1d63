//! Redis failing under a running app: killed, hung, restarted, failed over
//! by Sentinel, and holding data that is not a session.

mod support;

use std::time::{Duration, Instant, SystemTime};

use session_conformance::store::set;
use session_conformance::{
    serve_store,
    store::poll_until,
    testkit::{RedisSentinel, RedisServer},
    Browser,
};
use session_core::{
    store::{Committed, SessionStore},
    ErrorKind, ErrorPolicy, Key, SessionId, SessionManager,
};
use session_redis::RedisConfig;
use session_tower::conformance::AxumApp;
use support::{connect, record, standalone};

/// Far longer than the 500 ms operation timeout, far shorter than a hang.
const NO_HANG: Duration = Duration::from_secs(3);

fn in_ten_minutes() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_gets_503_within_the_timeout_and_the_same_store_serves_after_restart() {
    let mut server = RedisServer::start();
    let store = connect(standalone(server.url())).await;
    let app = serve_store(&AxumApp, store, ErrorPolicy::Reject).await;
    let client = Browser::new();
    assert_eq!(client.get(&app, "/counter").await.1, "1");
    assert_eq!(client.get(&app, "/counter").await.1, "2");

    server.kill();
    for path in ["/read", "/counter"] {
        let (status, body, took) = client.get(&app, path).await;
        assert_eq!((status, body.as_str()), (503, ""), "{path} with Redis dead");
        assert!(took < NO_HANG, "{path} took {took:?} with Redis dead");
    }

    server.restart();
    // The restarted server kept nothing (no persistence), so the old cookie
    // names a session that is gone: the client gets a fresh one.
    poll_until("the same store to serve again", || async {
        client.get(&app, "/counter").await.0 == 200
    })
    .await;
    assert_eq!(client.get(&app, "/counter").await.1, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_under_treat_as_empty_serves_reads_and_refuses_writes() {
    let mut server = RedisServer::start();
    let store = connect(standalone(server.url())).await;
    let app = serve_store(&AxumApp, store, ErrorPolicy::TreatAsEmpty).await;
    let client = Browser::new();
    assert_eq!(client.get(&app, "/counter").await.1, "1");

    server.kill();
    let (status, body, took) = client.get(&app, "/read").await;
    assert_eq!((status, body.as_str()), (200, "none"));
    assert!(took < NO_HANG, "a read took {took:?} with Redis dead");
    let (status, _, took) = client.get(&app, "/counter").await;
    assert_eq!(status, 503, "a write must never be acknowledged unstored");
    assert!(took < NO_HANG, "a write took {took:?} with Redis dead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_times_out_instead_of_hanging_and_recovers() {
    let mut server = RedisServer::start();
    let store = connect(standalone(server.url())).await;
    let record = record(Duration::from_secs(600));
    assert!(store.create(&record).await.is_ok());

    server.pause();
    let started = Instant::now();
    let err = store.load(&record.id).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(took < NO_HANG, "load took {took:?} against a hung Redis");

    let app = serve_store(&AxumApp, store.clone(), ErrorPolicy::Reject).await;
    let (status, _, took) = Browser::new().get(&app, "/counter").await;
    assert_eq!(status, 503);
    assert!(
        took < NO_HANG,
        "a request took {took:?} against a hung Redis"
    );

    server.resume();
    poll_until("the store to answer again", || async {
        store
            .load(&record.id)
            .await
            .is_ok_and(|loaded| loaded == Some(record.clone()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_that_is_not_a_session_is_corrupt_not_a_panic() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url()).with_key_prefix("c:")).await;
    let far = (SystemTime::now() + Duration::from_secs(600))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let ids: Vec<SessionId> = (0..4).map(|_| SessionId::generate()).collect();
    let key = |id: &SessionId| format!("c:{}", id.encode());
    server.cli(&[
        "HSET",
        &key(&ids[0]),
        "version",
        "seven",
        "created_at",
        "1",
        "expires_at",
        &far,
    ]);
    server.cli(&["HSET", &key(&ids[1]), "d:user", "\"ada\""]);
    server.cli(&["SET", &key(&ids[2]), "a plain string"]);
    // A number, but not a commit count: the commit script works the next
    // version out itself, so it must refuse one it cannot count from.
    server.cli(&[
        "HSET",
        &key(&ids[3]),
        "version",
        "2.5",
        "created_at",
        "1",
        "expires_at",
        &far,
    ]);

    for id in &ids {
        let err = store.load(id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "load: {err}");
    }
    // A version that is not a number, none at all, not a hash, and a
    // version that is a number but not a whole one.
    for id in &ids {
        let err = store
            .commit(id, &set("k", "1"), in_ten_minutes())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "commit: {err}");
    }
    let err = store.touch(&ids[2], in_ten_minutes()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "touch: {err}");

    // Over HTTP, a signed cookie naming a corrupt record gets a fresh
    // session, not a 500.
    let manager = SessionManager::builder(store.clone(), Key::generate())
        .build()
        .unwrap();
    let cookie = format!("session={}", manager.codec().sign(&ids[0]));
    let app = serve_store(&AxumApp, store, ErrorPolicy::Reject).await;
    let response = reqwest::Client::new()
        .get(format!("http://{}/counter", app.addr()))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_out_of_memory_is_too_large() {
    let server =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    let store = connect(standalone(server.url())).await;
    let big = format!("\"{}\"", "x".repeat(256 * 1024));
    let mut outcome = None;
    for _ in 0..64 {
        let mut record = record(Duration::from_secs(600));
        record.data.insert("big".to_owned(), big.clone());
        if let Err(err) = store.create(&record).await {
            outcome = Some(err);
            break;
        }
    }
    let err = outcome.expect("16 MiB of sessions must not fit in 4 MiB");
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
}

/// Waits until the replica has everything the master wrote, so a failover
/// test measures failover and not replication lag.
fn wait_for_replication(master: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = master.cli(&["INFO", "replication"]);
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|rest| rest.trim().to_owned())
        };
        let master_offset = field("master_repl_offset:").unwrap_or_default();
        let replica_offset = field("slave0:").and_then(|slave| {
            slave
                .split(',')
                .find_map(|part| part.strip_prefix("offset=").map(str::to_owned))
        });
        if replica_offset.as_deref() == Some(master_offset.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never caught up: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_with_no_restart() {
    let mut group = RedisSentinel::start();
    let config = RedisConfig::sentinel(group.sentinel_urls(), group.service_name())
        .with_operation_timeout(Duration::from_millis(500));
    let store = connect(config).await;
    let record = record(Duration::from_secs(600));
    assert_eq!(
        store.create(&record).await.unwrap(),
        session_core::store::Created::Created
    );
    assert!(matches!(
        store
            .commit(&record.id, &set("before", "1"), in_ten_minutes())
            .await
            .unwrap(),
        Committed::Applied { version: 2 }
    ));
    let old_master = group.master_port();
    wait_for_replication(group.server(old_master));

    let killed = group.kill_master();
    let killed_at = Instant::now();
    let mut failed_attempts = 0;
    loop {
        match store
            .commit(&record.id, &set("after", "1"), in_ten_minutes())
            .await
        {
            Ok(Committed::Applied { .. }) => break,
            Ok(Committed::Missing) => panic!("the promoted replica lost the session"),
            Err(err) => assert!(
                err.kind().is_transient(),
                "failover gave a non-transient {err}"
            ),
        }
        failed_attempts += 1;
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no commit succeeded within 30 s of the master's death"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed_at.elapsed();
    println!(
        "sentinel failover: master killed -> first successful commit in {:.2} s \
         ({failed_attempts} failed attempts, one every ~50 ms)",
        took.as_secs_f64()
    );
    assert_ne!(group.master_port(), killed);

    let loaded = store
        .load(&record.id)
        .await
        .unwrap()
        .expect("the session survived");
    assert_eq!(loaded.data["before"], "1");
    assert_eq!(loaded.data["after"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_sentinel_failover_costs_at_most_one_failed_call() {
    let group = RedisSentinel::start();
    let config = RedisConfig::sentinel(group.sentinel_urls(), group.service_name());
    let store = connect(config).await;
    let record = record(Duration::from_secs(600));
    let _ = store.create(&record).await.unwrap();
    let old_master = group.master_port();

    // A planned failover keeps the old master running, as a replica. The
    // sentinels close its clients' connections when they demote it; a
    // connection that survived would get READONLY instead. Either way the
    // store must move to the new master by itself.
    let sentinel = redis::Client::open(group.sentinel_urls()[0].as_str()).unwrap();
    let mut sentinel = sentinel.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg("FAILOVER")
        .arg(group.service_name())
        .query_async(&mut sentinel)
        .await
        .unwrap();
    let new_master = group.wait_for_new_master(old_master, Duration::from_secs(30));
    // Sentinels demote the old master at their next look at it, up to ten
    // seconds later; a write it accepted before then would be lost (see the
    // crate docs' caveats), so the test waits for the demotion.
    let deadline = Instant::now() + Duration::from_secs(30);
    while role_of(old_master) != "slave" {
        assert!(
            Instant::now() < deadline,
            "the old master was never demoted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut failures = Vec::new();
    let committed = loop {
        match store
            .commit(&record.id, &set("k", "after"), in_ten_minutes())
            .await
        {
            Ok(committed) => break committed,
            Err(err) if failures.is_empty() && err.kind().is_transient() => failures.push(err),
            Err(err) => panic!("failed again after {failures:?}: {err}"),
        }
    };
    assert!(matches!(committed, Committed::Applied { version: 2 }));
    assert_eq!(group.master_port(), new_master);
    let loaded = store
        .load(&record.id)
        .await
        .unwrap()
        .expect("the session survived");
    assert_eq!(loaded.data["k"], "after");
}

fn role_of(port: u16) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ROLE"])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_authenticate_and_wrong_ones_are_a_config_error() {
    let server = RedisServer::start();
    // Set after start: the kit's readiness probe does not authenticate.
    server.cli(&[
        "ACL",
        "SETUSER",
        "sessions",
        "on",
        ">app-secret",
        "~*",
        "+@all",
    ]);
    server.cli(&["CONFIG", "SET", "requirepass", "default-secret"]);
    let port = server.port();
    for url in [
        format!("redis://:default-secret@127.0.0.1:{port}"),
        format!("redis://sessions:app-secret@127.0.0.1:{port}"),
    ] {
        let store = connect(standalone(url)).await;
        let record = record(Duration::from_secs(600));
        let _ = store.create(&record).await.unwrap();
        assert_eq!(store.load(&record.id).await.unwrap(), Some(record));
    }

    let wrong = format!("redis://sessions:wrong@127.0.0.1:{port}");
    let err = session_redis::RedisStore::connect(standalone(wrong))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}
