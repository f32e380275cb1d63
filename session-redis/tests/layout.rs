//! How sessions sit in Redis: one hash per session that Redis expires by
//! itself, scripts that survive a flushed script cache, and commits far
//! larger than one Lua call can unpack.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_conformance::store::{set, whole_ms};
use session_conformance::testkit::RedisServer;
use session_core::{
    store::{Changes, Committed, Record, SessionStore},
    SessionId,
};
use support::{connect, record, standalone};

fn millis(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

/// The key's `PEXPIRETIME` for a record that expires at `time`: one
/// millisecond before it, because Redis keeps a key through that millisecond
/// while the record has expired from its first instant.
fn key_expiry(time: SystemTime) -> String {
    let ms: u64 = millis(time).parse().unwrap();
    (ms - 1).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_one_hash_that_redis_expires_at_its_expires_at() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url()).with_key_prefix("app:")).await;
    let now = whole_ms(SystemTime::now());
    let record = Record::new(
        SessionId::generate(),
        [("user".to_owned(), "\"ada\"".to_owned())].into(),
        now,
        now + Duration::from_secs(600),
    );
    let _ = store.create(&record).await.unwrap();
    let key = format!("app:{}", record.id.encode());

    assert_eq!(server.cli(&["TYPE", &key]), "hash");
    assert_eq!(server.cli(&["HGET", &key, "d:user"]), "\"ada\"");
    assert_eq!(server.cli(&["HGET", &key, "version"]), "1");
    assert_eq!(server.cli(&["HGET", &key, "created_at"]), millis(now));
    assert_eq!(
        server.cli(&["PEXPIRETIME", &key]),
        key_expiry(record.expires_at)
    );

    let later = whole_ms(now + Duration::from_secs(1200));
    let mut changes = Changes::default();
    changes.set("n", "1");
    let _ = store.commit(&record.id, &changes, later).await.unwrap();
    assert_eq!(server.cli(&["PEXPIRETIME", &key]), key_expiry(later));
    assert_eq!(server.cli(&["HGET", &key, "expires_at"]), millis(later));

    let latest = whole_ms(now + Duration::from_secs(1800));
    assert!(store.touch(&record.id, latest).await.unwrap());
    assert_eq!(server.cli(&["PEXPIRETIME", &key]), key_expiry(latest));
    assert_eq!(server.cli(&["HGET", &key, "version"]), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_an_expiry_already_past_leaves_nothing_behind() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url())).await;
    let now = SystemTime::now();
    let record = record(Duration::from_secs(600));
    let _ = store.create(&record).await.unwrap();
    let _ = store
        .commit(&record.id, &set("k", "1"), now - Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(store.load(&record.id).await.unwrap(), None);
    assert_eq!(
        server.cli(&["EXISTS", &format!("session:{}", record.id.encode())]),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_script_cache_falls_back_to_eval_once() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url())).await;
    let now = SystemTime::now();
    let record = record(Duration::from_secs(600));
    let _ = store.create(&record).await.unwrap();

    server.cli(&["SCRIPT", "FLUSH"]);
    server.cli(&["CONFIG", "RESETSTAT"]);
    let changes = set("k", "1");
    for expected in 2..=3 {
        assert_eq!(
            store
                .commit(&record.id, &changes, now + Duration::from_secs(600))
                .await
                .unwrap(),
            Committed::Applied { version: expected }
        );
    }
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_eval:calls=1,"), "{stats}");
    assert!(stats.contains("cmdstat_evalsha:calls=2,"), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_fields_commit_in_one_script() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url())).await;
    let now = SystemTime::now();
    let expires = now + Duration::from_secs(600);
    let data = (0..5000)
        .map(|i| (format!("old-{i}"), i.to_string()))
        .collect();
    let record = Record::new(SessionId::generate(), data, now, expires);
    let _ = store.create(&record).await.unwrap();

    // More removals and sets than Lua's unpack() takes in one call.
    let mut changes = Changes::default();
    for i in 0..4500 {
        changes.remove(format!("old-{i}"));
    }
    for i in 0..6000 {
        changes.set(format!("new-{i}"), i.to_string());
    }
    let _ = store.commit(&record.id, &changes, expires).await.unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.data.len(), 500 + 6000);
    assert_eq!(loaded.data["old-4999"], "4999");
    assert_eq!(loaded.data["new-5999"], "5999");

    let mut changes = Changes::default();
    changes.clear();
    changes.set("only", "1");
    let _ = store.commit(&record.id, &changes, expires).await.unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.data, [("only".to_owned(), "1".to_owned())].into());
    assert_eq!(loaded.version, 3);
}
