//! What the conformance suite cannot see from outside the contract: the
//! rows themselves, the sweep, the migrations, bad config, and a hung
//! server.

mod support;

use std::time::{Duration, Instant, SystemTime};

use session_conformance::{
    store::{poll_until, record_with, unique_prefix},
    testkit::PostgresServer,
};
use session_core::{
    store::{Created, SessionStore},
    ConfigError, ErrorKind,
};
use session_postgres::{PostgresConfig, PostgresStore};
use support::{config, connect, server};

const LONG: Duration = Duration::from_secs(600);

/// How many rows of `prefix` the table holds, expired or not.
fn rows(prefix: &str, table: &str) -> u64 {
    server()
        .psql(&format!(
            "SELECT count(*) FROM {table} WHERE key_prefix = '{prefix}'"
        ))
        .parse()
        .expect("a count")
}

#[tokio::test]
async fn values_are_readable_by_other_services_as_json() {
    let prefix = unique_prefix();
    let store = connect(config(server().url()).with_key_prefix(&prefix)).await;
    let record = record_with(&[("user", "\"ada\""), ("cart", r#"{"items":[1,2]}"#)], LONG);
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    let id = record.id.encode();
    let read = |sql: &str| server().psql(&sql.replace("ID", &id));
    assert_eq!(
        read("SELECT data->>'user' FROM sessions WHERE id = 'ID'"),
        "\"ada\""
    );
    assert_eq!(
        read("SELECT (data->>'cart')::jsonb->'items'->>1 FROM sessions WHERE id = 'ID'"),
        "2"
    );
    assert_eq!(read("SELECT version FROM sessions WHERE id = 'ID'"), "1");
}

/// The sweep deletes every expired row of its table, whatever the prefix:
/// the tests that watch expired rows each have a table of their own, which
/// no other test's sweep reaches.
#[tokio::test]
async fn an_expired_row_the_sweep_has_not_reached_does_not_block_a_create() {
    let (prefix, table) = (unique_prefix(), "unswept_sessions");
    let store = connect(
        config(server().url())
            .with_table(table)
            .with_key_prefix(&prefix)
            .with_sweep_interval(Duration::ZERO),
    )
    .await;
    let mut old = record_with(&[("who", "\"old\"")], LONG);
    old.expires_at = SystemTime::now() - Duration::from_secs(1);
    assert_eq!(store.create(&old).await.unwrap(), Created::Created);
    assert_eq!(rows(&prefix, table), 1, "the expired row is still there");

    let mut new = record_with(&[("who", "\"new\"")], LONG);
    new.id = old.id;
    assert_eq!(store.create(&new).await.unwrap(), Created::Created);
    let loaded = store.load(&new.id).await.unwrap().expect("the new record");
    assert_eq!(loaded.data["who"], "\"new\"");
    // A live one still blocks.
    assert_eq!(store.create(&old).await.unwrap(), Created::IdTaken);
}

#[tokio::test]
async fn the_sweep_deletes_expired_rows_in_batches_and_keeps_live_ones() {
    let (prefix, table) = (unique_prefix(), "swept_sessions");
    let store = connect(
        config(server().url())
            .with_table(table)
            .with_key_prefix(&prefix)
            .with_sweep_interval(Duration::from_millis(50))
            .with_sweep_batch(2),
    )
    .await;
    for _ in 0..5 {
        let mut expired = record_with(&[], LONG);
        expired.expires_at = SystemTime::now() - Duration::from_secs(1);
        let _ = store.create(&expired).await.unwrap();
    }
    let live = record_with(&[], LONG);
    let _ = store.create(&live).await.unwrap();
    poll_until("the sweep to delete the expired rows", || async {
        rows(&prefix, table) == 1
    })
    .await;
    assert!(store.load(&live.id).await.unwrap().is_some());
}

#[tokio::test]
async fn the_sweep_stops_when_the_store_is_dropped() {
    let (prefix, table) = (unique_prefix(), "dropped_sweep_sessions");
    let sweeping = config(server().url())
        .with_table(table)
        .with_key_prefix(&prefix)
        .with_sweep_interval(Duration::from_millis(20));
    let store = connect(sweeping).await;
    drop(store);
    // Another store, without a sweep, writes a row that is expired at once.
    let quiet = connect(
        config(server().url())
            .with_table(table)
            .with_key_prefix(&prefix)
            .with_sweep_interval(Duration::ZERO),
    )
    .await;
    let mut expired = record_with(&[], LONG);
    expired.expires_at = SystemTime::now() - Duration::from_secs(1);
    let _ = quiet.create(&expired).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rows(&prefix, table), 1, "a sweep outlived its store");
}

#[tokio::test]
async fn migrations_run_once_per_table_and_can_be_turned_off() {
    let table = "migrated_sessions";
    for _ in 0..2 {
        let _ = connect(config(server().url()).with_table(table)).await;
    }
    // Each embedded migration recorded once, however many stores connect.
    let embedded = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("the migrations folder")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
        })
        .count();
    assert_eq!(
        server().psql(&format!(
            "SELECT count(*) FROM session_kit_migrations WHERE table_name = '{table}'"
        )),
        embedded.to_string()
    );
    assert_eq!(server().psql(&format!("SELECT count(*) FROM {table}")), "0");

    // Without migrations a missing table is a config error, at the first
    // statement.
    let store = connect(
        config(server().url())
            .with_table("never_created")
            .with_migrate(false),
    )
    .await;
    let err = store.load(&record_with(&[], LONG).id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{}", err.to_line());
}

#[tokio::test]
async fn a_bad_table_name_is_a_config_error_naming_the_key() {
    let err = PostgresStore::connect(config(server().url()).with_table("sessions; drop"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let source = std::error::Error::source(&err)
        .and_then(|source| source.downcast_ref::<ConfigError>())
        .expect("a ConfigError");
    assert_eq!(source.key(), "table");
}

#[tokio::test]
async fn an_unreachable_server_fails_connect_as_unavailable_within_the_timeout() {
    let mut server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap();
    let url = server.url();
    tokio::task::spawn_blocking(move || server.kill())
        .await
        .unwrap();
    let started = Instant::now();
    let err = PostgresStore::connect(
        PostgresConfig::new(url).with_connect_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert!(err.kind().is_transient(), "{}", err.to_line());
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A hung server (every process stopped) costs one operation timeout, and
/// its error fails over; once it resumes, the same store answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_times_out_within_the_operation_timeout() {
    let server = tokio::task::spawn_blocking(PostgresServer::start)
        .await
        .unwrap();
    let store = connect(
        PostgresConfig::new(server.url()).with_operation_timeout(Duration::from_millis(300)),
    )
    .await;
    let record = record_with(&[], LONG);
    let _ = store.create(&record).await.unwrap();
    let server = std::sync::Arc::new(std::sync::Mutex::new(server));
    let paused = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || paused.lock().unwrap().pause())
        .await
        .unwrap();

    let started = Instant::now();
    let err = store.load(&record.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{}", err.to_line());
    assert!(err.kind().is_transient());
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "took {:?}",
        started.elapsed()
    );

    let resumed = std::sync::Arc::clone(&server);
    tokio::task::spawn_blocking(move || resumed.lock().unwrap().resume())
        .await
        .unwrap();
    poll_until("the resumed server to answer", || async {
        store
            .load(&record.id)
            .await
            .is_ok_and(|loaded| loaded.is_some())
    })
    .await;
}
