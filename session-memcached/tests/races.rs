//! Commits to one session racing from two app servers, each with its own
//! `MemcachedStore`. Inside one store, commits to a session take turns; the
//! CAS check in Memcached is what keeps commits from different stores from
//! losing each other's changes, so these tests race across stores.

mod support;

use std::{sync::Arc, time::SystemTime};

use futures_util::future::join_all;
use session_conformance::{store::set, testkit::MemcachedServer};
use session_core::store::{Committed, Record, SessionStore};
use session_memcached::MemcachedStore;
use support::{config, connect, record};

const PREFIX: &str = "race:";
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

/// Two app servers on the same Memcached server.
async fn two_stores(server: &MemcachedServer) -> [Arc<MemcachedStore>; 2] {
    let config = config(std::slice::from_ref(server)).with_key_prefix(PREFIX);
    [
        Arc::new(connect(config.clone()).await),
        Arc::new(connect(config).await),
    ]
}

fn cas_conflicts(server: &MemcachedServer) -> u64 {
    server.stats()["cas_badval"].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_from_a_stale_read_loses_once_then_lands_on_top() {
    let server = MemcachedServer::start();
    let [a, b] = two_stores(&server).await;
    let session = record(LIFETIME);
    let _ = a.create(&session).await.unwrap();
    // `a` reads the session and remembers its CAS token, as a request does
    // before it commits; `b` then commits, which makes that token stale.
    let _ = a.load(&session.id).await.unwrap().unwrap();
    let expires_at = SystemTime::now() + LIFETIME;
    assert_eq!(
        b.commit(&session.id, &set("from_b", "1"), expires_at)
            .await
            .unwrap(),
        Committed::Applied {
            version: Record::FIRST_VERSION + 1
        }
    );

    let before = cas_conflicts(&server);
    assert_eq!(
        a.commit(&session.id, &set("from_a", "1"), expires_at)
            .await
            .unwrap(),
        Committed::Applied {
            version: Record::FIRST_VERSION + 2
        }
    );
    assert_eq!(
        cas_conflicts(&server) - before,
        1,
        "the stale token must be tried, refused once, and replaced by a fresh read"
    );

    let loaded = b.load(&session.id).await.unwrap().unwrap();
    assert_eq!(loaded.data["from_a"], "1");
    assert_eq!(loaded.data["from_b"], "1");
    assert_eq!(loaded.data["k"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disjoint_commits_racing_from_two_app_servers_all_survive() {
    const PER_STORE: u64 = 30;
    let server = MemcachedServer::start();
    let stores = two_stores(&server).await;
    let session = record(LIFETIME);
    let _ = stores[0].create(&session).await.unwrap();

    let expires_at = SystemTime::now() + LIFETIME;
    let commits = stores.iter().enumerate().flat_map(|(side, store)| {
        (0..PER_STORE).map(move |i| {
            let store = Arc::clone(store);
            let id = session.id;
            tokio::spawn(async move {
                store
                    .commit(&id, &set(&format!("key-{side}-{i}"), "1"), expires_at)
                    .await
            })
        })
    });
    for committed in join_all(commits).await {
        assert!(matches!(
            committed.unwrap().unwrap(),
            Committed::Applied { .. }
        ));
    }

    let loaded = stores[1].load(&session.id).await.unwrap().unwrap();
    for side in 0..2 {
        for i in 0..PER_STORE {
            assert!(
                loaded.data.contains_key(&format!("key-{side}-{i}")),
                "key-{side}-{i} was lost"
            );
        }
    }
    assert_eq!(loaded.version, Record::FIRST_VERSION + 2 * PER_STORE);
}
