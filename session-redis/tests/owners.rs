//! How owners sit in Redis: one sorted set per owner that cleans itself,
//! written with the session in one script, except on Cluster, where the
//! index is written on its own node first; and a hot path that owners do not
//! slow down.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use session_conformance::{
    store::{owner, poll_until, record_owned_by, record_with, set},
    testkit::{RedisCluster, RedisServer},
};
use session_core::store::{Changes, Committed, Created, Record, SessionStore};
use session_redis::RedisConfig;
use support::{command_calls, connect, millis, standalone};

const LONG: Duration = Duration::from_secs(600);

fn owner_until(record: &Record) -> SystemTime {
    record.owner.as_ref().expect("an owned record").until
}

fn new_owner(name: &str) -> Changes {
    let mut changes = Changes::default();
    changes.set_owner(Some(owner(name, LONG)));
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_index_expires_at_its_highest_until_and_then_is_gone() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url()).with_key_prefix("app:")).await;
    let later = record_owned_by("ada", &[], Duration::from_millis(1500));
    let sooner = record_owned_by("ada", &[], Duration::from_millis(1000));
    // The later one first: the key's expiry follows the highest until, not
    // the last entry added.
    for record in [&later, &sooner] {
        assert_eq!(store.create(record).await.unwrap(), Created::Created);
    }
    let index = "app:owner:ada";

    assert_eq!(server.cli(&["TYPE", index]), "zset");
    assert_eq!(server.cli(&["ZCARD", index]), "2");
    for record in [&later, &sooner] {
        assert_eq!(
            server.cli(&["ZSCORE", index, &record.id.encode()]),
            millis(owner_until(record))
        );
    }
    assert_eq!(
        server.cli(&["PEXPIRETIME", index]),
        millis(owner_until(&later))
    );

    poll_until(
        "the index of sessions past their until to vanish",
        || async { server.cli(&["EXISTS", index]) == "0" },
    )
    .await;
    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_entry_drops_the_entries_whose_until_has_passed() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url()).with_key_prefix("app:")).await;
    let short = record_owned_by("ada", &[], Duration::from_millis(1000));
    let long = record_owned_by("ada", &[], LONG);
    for record in [&short, &long] {
        assert_eq!(store.create(record).await.unwrap(), Created::Created);
    }
    let index = "app:owner:ada";
    let until = owner_until(&short);
    poll_until("the short session's until to pass", || async {
        SystemTime::now() > until
    })
    .await;
    // Nothing has written the index since, so the stale entry is there.
    assert_eq!(server.cli(&["ZCARD", index]), "2");

    let next = record_owned_by("ada", &[], LONG);
    assert_eq!(store.create(&next).await.unwrap(), Created::Created);
    assert_eq!(server.cli(&["ZSCORE", index, &short.id.encode()]), "");
    assert_eq!(server.cli(&["ZCARD", index]), "2");
    assert_eq!(
        server.cli(&["PEXPIRETIME", index]),
        millis(owner_until(&next).max(owner_until(&long)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_moved_away_keeps_its_old_entry_and_is_found_when_it_moves_back() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url()).with_key_prefix("app:")).await;
    let record = record_owned_by("ada", &[("k", "1")], LONG);
    let _ = store.create(&record).await.unwrap();
    let id = record.id.encode();
    let key = format!("app:{id}");

    let bob = new_owner("bob");
    let _ = store
        .commit(&record.id, &bob, record.expires_at)
        .await
        .unwrap();
    assert_eq!(server.cli(&["HGET", &key, "owner"]), "bob");
    let bob_until = millis(bob.owner().flatten().unwrap().until);
    assert_eq!(server.cli(&["HGET", &key, "owner_until"]), bob_until);
    assert_eq!(server.cli(&["ZSCORE", "app:owner:bob", &id]), bob_until);

    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 0);
    assert!(store.load(&record.id).await.unwrap().is_some());
    assert_eq!(
        server.cli(&["ZSCORE", "app:owner:ada", &id]),
        millis(owner_until(&record)),
        "ada's entry was removed, so moving back would leave the session unindexed"
    );

    let mut back = Changes::default();
    back.set_owner(record.owner.clone());
    let _ = store
        .commit(&record.id, &back, record.expires_at)
        .await
        .unwrap();
    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 1);
    assert_eq!(server.cli(&["EXISTS", &key]), "0");
    assert_eq!(server.cli(&["ZSCORE", "app:owner:ada", &id]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_owner_removes_both_fields_and_an_ended_sessions_entry_goes() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url()).with_key_prefix("app:")).await;
    let kept = record_owned_by("ada", &[("k", "1")], LONG);
    let deleted = record_owned_by("ada", &[("k", "1")], LONG);
    for record in [&kept, &deleted] {
        let _ = store.create(record).await.unwrap();
    }
    let mut unowned = set("k", "2");
    unowned.set_owner(None);
    let _ = store
        .commit(&kept.id, &unowned, kept.expires_at)
        .await
        .unwrap();
    let key = format!("app:{}", kept.id.encode());
    assert_eq!(server.cli(&["HEXISTS", &key, "owner"]), "0");
    assert_eq!(server.cli(&["HEXISTS", &key, "owner_until"]), "0");
    assert_eq!(server.cli(&["HGET", &key, "d:k"]), "2");
    store.delete(&deleted.id).await.unwrap();

    // Neither session is ended, and neither entry is needed any more: the
    // deleted session's goes, the one that lost its owner stays (a session
    // that lost its owner may get it back, as far as the index can tell).
    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 0);
    assert!(store.load(&kept.id).await.unwrap().is_some());
    assert_eq!(
        server.cli(&["ZRANGE", "app:owner:ada", "0", "-1"]),
        kept.id.encode()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_keeps_the_owner_costs_what_it_cost_before_owners() {
    let server = RedisServer::start();
    let store = connect(standalone(server.url())).await;
    let record = record_owned_by("ada", &[("k", "0")], LONG);
    let _ = store.create(&record).await.unwrap();
    // Loads the commit script (one EVAL after NOSCRIPT on a new server).
    let _ = store
        .commit(&record.id, &set("k", "1"), record.expires_at)
        .await
        .unwrap();

    server.cli(&["CONFIG", "RESETSTAT"]);
    assert_eq!(
        store
            .commit(&record.id, &set("k", "2"), record.expires_at)
            .await
            .unwrap(),
        Committed::Applied { version: 3 }
    );
    let expected: BTreeMap<String, u64> = [
        ("evalsha", 1),
        ("hget", 1),
        // The new version rides in the HSET with the values.
        ("hset", 1),
        ("pexpireat", 1),
    ]
    .into_iter()
    .map(|(name, calls)| (name.to_owned(), calls))
    .collect();
    assert_eq!(command_calls(&server), expected);

    // A new owner is still one round trip, with the index work inside it.
    server.cli(&["CONFIG", "RESETSTAT"]);
    let _ = store
        .commit(&record.id, &new_owner("bob"), record.expires_at)
        .await
        .unwrap();
    let calls = command_calls(&server);
    assert_eq!(calls.get("evalsha"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("eval"), None, "{calls:?}");
    for inside in ["zadd", "zremrangebyscore", "zrange"] {
        assert_eq!(calls.get(inside), Some(&1), "{inside}: {calls:?}");
    }
    assert_eq!(calls.get("pexpireat"), Some(&2), "{calls:?}");
}

/// The slot ranges `node` says it serves, from `CLUSTER NODES`.
fn serves(node: &RedisServer, slot: u16) -> bool {
    let table = node.cli(&["CLUSTER", "NODES"]);
    let me = table
        .lines()
        .find(|line| {
            line.split(' ')
                .nth(2)
                .is_some_and(|flags| flags.contains("myself"))
        })
        .unwrap_or_else(|| panic!("no myself line in {table}"));
    me.split(' ')
        .skip(8)
        // Entries in brackets are slots being migrated, not served.
        .filter(|range| !range.starts_with('['))
        .any(|range| {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (first, last): (u16, u16) = (first.parse().unwrap(), last.parse().unwrap());
            (first..=last).contains(&slot)
        })
}

/// Which of `nodes` serves `key`.
fn node_of(nodes: &[RedisServer], key: &str) -> usize {
    let slot: u16 = nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).parse().unwrap();
    nodes
        .iter()
        .position(|node| serves(node, slot))
        .unwrap_or_else(|| panic!("no node serves slot {slot}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cluster_the_index_is_written_on_its_own_node_before_the_session() {
    let mut cluster = RedisCluster::start();
    let urls = cluster.seed_urls();
    let nodes: &[RedisServer] = cluster.nodes();
    let store = connect(RedisConfig::cluster(urls).with_key_prefix("app:")).await;

    // A session, and two owners whose indexes sit on other nodes than it.
    let record = record_with(&[("k", "1")], LONG);
    let id = record.id.encode();
    let key = format!("app:{id}");
    let session_node = node_of(nodes, &key);
    let names: Vec<String> = (0..1000)
        .map(|i| format!("user-{i}"))
        .filter(|name| node_of(nodes, &format!("app:owner:{name}")) != session_node)
        .take(2)
        .collect();
    let [first, second] = &names[..] else {
        panic!("no two owners off node {session_node}: {names:?}");
    };
    let (first_index, second_index) = (format!("app:owner:{first}"), format!("app:owner:{second}"));
    let (first_node, second_node) = (node_of(nodes, &first_index), node_of(nodes, &second_index));

    // What rules out one script over both keys: Redis refuses it.
    let mut raw = redis::Client::open(nodes[session_node].url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let refused = redis::cmd("EVAL")
        .arg("return 1")
        .arg(2)
        .arg(&key)
        .arg(&first_index)
        .query_async::<()>(&mut raw)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("CROSSSLOT"), "{refused}");

    let mut owned = record.clone();
    owned.owner = Some(owner(first, LONG));
    let first_until = millis(owner_until(&owned));
    assert_eq!(store.create(&owned).await.unwrap(), Created::Created);
    assert_eq!(
        nodes[first_node].cli(&["ZSCORE", &first_index, &id]),
        first_until
    );
    assert_eq!(
        nodes[first_node].cli(&["PEXPIRETIME", &first_index]),
        first_until
    );
    assert_eq!(nodes[session_node].cli(&["HGET", &key, "owner"]), *first);

    // A new owner: its index on its node, the session on the session's.
    for node in nodes {
        node.cli(&["CONFIG", "RESETSTAT"]);
    }
    let moved = new_owner(second);
    assert_eq!(
        store
            .commit(&owned.id, &moved, owned.expires_at)
            .await
            .unwrap(),
        Committed::Applied { version: 2 }
    );
    let second_calls = command_calls(&nodes[second_node]);
    let session_calls = command_calls(&nodes[session_node]);
    assert_eq!(second_calls.get("zadd"), Some(&1), "{second_calls:?}");
    assert_eq!(session_calls.get("hset"), Some(&1), "{session_calls:?}");
    assert_eq!(
        nodes[second_node].cli(&["ZSCORE", &second_index, &id]),
        millis(moved.owner().flatten().unwrap().until)
    );

    // The session moved away from `first`, so ending `first`'s sessions
    // leaves it, and its entry.
    assert_eq!(store.delete_by_owner(first).await.unwrap().ended, 0);
    assert_eq!(
        nodes[first_node].cli(&["ZSCORE", &first_index, &id]),
        first_until
    );
    assert_eq!(store.delete_by_owner(second).await.unwrap().ended, 1);
    assert_eq!(nodes[session_node].cli(&["EXISTS", &key]), "0");
    assert_eq!(nodes[second_node].cli(&["ZSCORE", &second_index, &id]), "");

    // An entry whose session was never written (a create that failed after
    // its index went first) ends nothing, and is left to its score: it may
    // be a create still on its way.
    let ghost = record_with(&[], LONG).id.encode();
    let ghost_until = millis(SystemTime::now() + LONG);
    nodes[second_node].cli(&["ZADD", &second_index, &ghost_until, &ghost]);
    assert_eq!(store.delete_by_owner(second).await.unwrap().ended, 0);
    assert_eq!(
        nodes[second_node].cli(&["ZSCORE", &second_index, &ghost]),
        ghost_until
    );
}
