//! Memcached's traps, against a real server: exptime 0 means "forever", an
//! exptime over 30 days is a date, a refused oversized write deletes what
//! was there, and keys stop at 250 bytes.

mod support;

use std::time::{Duration, SystemTime};

use memcache::exp::{AsyncMetaClient, Set, Ttl};
use session_conformance::store::set;
use session_conformance::testkit::MemcachedServer;
use session_core::{
    store::{Committed, Created, SessionStore},
    ErrorKind,
};
use session_memcached::{MemcachedConfig, MemcachedStore};
use support::{assert_near, config, connect, raw_item, record};

const PREFIX: &str = "trap:";
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

async fn store_on(server: &MemcachedServer) -> MemcachedStore {
    connect(config(std::slice::from_ref(server)).with_key_prefix(PREFIX)).await
}

fn key_of(record: &session_core::store::Record) -> String {
    format!("{PREFIX}{}", record.id.encode())
}

/// The message of an error and its causes, one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        text.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_in_the_past_deletes_and_never_keeps_forever() {
    let server = MemcachedServer::start();
    let store = store_on(&server).await;
    let past = SystemTime::now() - Duration::from_secs(1);

    // A commit whose expiry has passed ends the session.
    let committed = record(DAY);
    assert_eq!(store.create(&committed).await.unwrap(), Created::Created);
    assert_eq!(
        store
            .commit(&committed.id, &set("k", "1"), past)
            .await
            .unwrap(),
        Committed::Applied { version: 2 }
    );
    assert_eq!(raw_item(&server, &key_of(&committed)).await, None);
    assert_eq!(store.load(&committed.id).await.unwrap(), None);

    // So does a touch.
    let touched = record(DAY);
    let _ = store.create(&touched).await.unwrap();
    assert!(store.touch(&touched.id, past).await.unwrap());
    assert_eq!(raw_item(&server, &key_of(&touched)).await, None);
    assert!(!store.touch(&touched.id, past).await.unwrap());

    // A record born expired stores nothing, but a live holder of its id
    // still makes the id taken.
    let mut stillborn = record(DAY);
    stillborn.expires_at = past;
    assert_eq!(store.create(&stillborn).await.unwrap(), Created::Created);
    assert_eq!(raw_item(&server, &key_of(&stillborn)).await, None);
    let mut clash = record(DAY);
    clash.expires_at = past;
    clash.id = touched.id;
    let _ = store.create(&touched).await.unwrap();
    assert_eq!(store.create(&clash).await.unwrap(), Created::IdTaken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifetime_over_thirty_days_is_sent_as_a_unix_time() {
    let server = MemcachedServer::start();
    let store = store_on(&server).await;
    let ttl_of = |record: &session_core::store::Record| {
        let key = key_of(record);
        let server = &server;
        async move { raw_item(server, &key).await.expect("the item is there").1 }
    };
    let secs = |lifetime: Duration| i64::try_from(lifetime.as_secs()).unwrap();
    let near = |ttl: i64, lifetime: Duration| (ttl - secs(lifetime)).abs() <= 2;

    // Sent as relative seconds, 40 days would be a date in February 1970,
    // and the server would drop the item at once.
    let long = record(40 * DAY);
    assert_eq!(store.create(&long).await.unwrap(), Created::Created);
    let ttl = ttl_of(&long).await;
    assert!(near(ttl, 40 * DAY), "40 days became a lifetime of {ttl} s");
    assert_near(
        store.load(&long.id).await.unwrap().unwrap().expires_at,
        long.expires_at,
    );

    let later = SystemTime::now() + 45 * DAY;
    let _ = store.commit(&long.id, &set("k", "1"), later).await.unwrap();
    let ttl = ttl_of(&long).await;
    assert!(near(ttl, 45 * DAY), "45 days became {ttl} s");

    let latest = SystemTime::now() + 60 * DAY;
    assert!(store.touch(&long.id, latest).await.unwrap());
    let ttl = ttl_of(&long).await;
    assert!(near(ttl, 60 * DAY), "60 days became {ttl} s");

    // Exactly 30 days is still relative; one second more is a date.
    for lifetime in [30 * DAY, 30 * DAY + Duration::from_secs(1)] {
        assert!(store
            .touch(&long.id, SystemTime::now() + lifetime)
            .await
            .unwrap());
        let ttl = ttl_of(&long).await;
        assert!(near(ttl, lifetime), "{lifetime:?} became {ttl} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_over_the_size_limit_is_refused_and_the_stored_session_survives() {
    let server = MemcachedServer::start();
    let store = store_on(&server).await;
    let limit: usize = server.stats_settings()["item_size_max"].parse().unwrap();
    assert_eq!(limit, 1024 * 1024, "memcached's default -I");
    assert_eq!(store.item_size_limit(), limit);

    let session = record(DAY);
    let _ = store.create(&session).await.unwrap();
    let huge = format!("\"{}\"", "x".repeat(limit));
    let err = store
        .commit(&session.id, &set("huge", &huge), SystemTime::now() + DAY)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(chain(&err).contains("1048576"), "{}", chain(&err));
    // Memcached deletes the old item when it refuses an `ms`: the store must
    // never have sent it.
    let kept = store
        .load(&session.id)
        .await
        .unwrap()
        .expect("the session survives");
    assert_eq!(kept.data, session.data);
    assert_eq!(kept.version, 1);

    let mut born_huge = record(DAY);
    born_huge.data.insert("huge".into(), huge);
    let err = store.create(&born_huge).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(raw_item(&server, &key_of(&born_huge)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_item_the_store_accepts_is_one_the_server_stores() {
    let server = MemcachedServer::start();
    let store = store_on(&server).await;
    let limit = store.item_size_limit();
    // Find, by the store's own answer, the largest value it accepts, then
    // check that the server really keeps it.
    let mut session = record(DAY);
    session.data.clear();
    let key_len = key_of(&session).len();
    let (mut low, mut high) = (0, limit);
    while low + 1 < high {
        let middle = (low + high) / 2;
        let value = format!("\"{}\"", "y".repeat(middle));
        let mut probe = record(DAY);
        probe.data.insert("v".into(), value);
        match store.create(&probe).await {
            Ok(_) => {
                store.delete(&probe.id).await.unwrap();
                low = middle;
            }
            Err(err) if err.kind() == ErrorKind::TooLarge => high = middle,
            Err(err) => panic!("{}", chain(&err)),
        }
    }
    let value = format!("\"{}\"", "y".repeat(low));
    session.data.insert("v".into(), value.clone());
    assert_eq!(store.create(&session).await.unwrap(), Created::Created);
    let (stored, _) = raw_item(&server, &key_of(&session)).await.expect("stored");
    println!(
        "largest accepted: a {}-byte value, a {}-byte item under a {key_len}-byte key; \
         limit {limit}, so {} bytes are kept for memcached's own item header",
        value.len(),
        stored.len(),
        limit - stored.len() - key_len
    );
    assert_eq!(
        store.load(&session.id).await.unwrap().unwrap().data["v"],
        value
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_item_size_limit_is_the_smallest_any_server_reports() {
    let servers = [
        MemcachedServer::start_with(&["-I", "2m"]),
        MemcachedServer::start(),
    ];
    assert_eq!(
        connect(config(&servers)).await.item_size_limit(),
        1024 * 1024
    );
    assert_eq!(
        connect(config(&servers[..1])).await.item_size_limit(),
        2 * 1024 * 1024
    );
    assert_eq!(
        connect(config(&servers).with_item_size_limit(100_000))
            .await
            .item_size_limit(),
        100_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_within_250_bytes() {
    let server = MemcachedServer::start();
    let prefix = "p".repeat(MemcachedConfig::MAX_KEY_PREFIX_LEN);
    let store =
        connect(config(std::slice::from_ref(&server)).with_key_prefix(prefix.clone())).await;
    let session = record(DAY);
    assert_eq!(store.create(&session).await.unwrap(), Created::Created);
    let key = format!("{prefix}{}", session.id.encode());
    assert_eq!(key.len(), 250);
    assert!(raw_item(&server, &key).await.is_some());
    assert!(matches!(
        store
            .commit(&session.id, &set("k", "1"), SystemTime::now() + DAY)
            .await,
        Ok(Committed::Applied { version: 2 })
    ));
    assert!(store
        .touch(&session.id, SystemTime::now() + DAY)
        .await
        .unwrap());
    store.delete(&session.id).await.unwrap();

    let too_long = MemcachedConfig::new([server.addr()]).with_key_prefix(format!("{prefix}p"));
    let err = MemcachedStore::connect(too_long).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(chain(&err).contains("key_prefix"), "{}", chain(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_is_not_a_session_is_corrupt_not_a_panic() {
    let server = MemcachedServer::start();
    let store = store_on(&server).await;
    let session = record(DAY);
    let raw = AsyncMetaClient::connect(server.addr()).await.unwrap();
    for junk in [
        &b"{\"user\":\"mallory\"}"[..],
        b"SK\x01\x00",
        b"SK\x09rest-of-it",
    ] {
        raw.run(Set::new(key_of(&session), junk).ttl(Ttl::secs(60)))
            .await
            .unwrap();
        assert_eq!(
            store.load(&session.id).await.unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            store
                .commit(&session.id, &set("k", "1"), SystemTime::now() + DAY)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Corrupt
        );
    }
}
