//! Store-level contract tests: each a public async fn over a [`StoreFactory`].
//!
//! Every test takes its own random key prefix, so the tests can run in
//! parallel against one shared server.

use std::{
    collections::HashSet,
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use futures_util::future::join_all;
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, Data, Owner, Record, SessionStore, Stamp,
    },
    ErrorKind, Lifetime, SessionId,
};

use crate::race::{GatedStore, Op};

mod devices;
pub use devices::*;

/// Makes stores for the suite.
///
/// Stores made by one factory must share their backing storage (one server,
/// one cache): that is what makes the prefix-isolation test mean something.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A store whose keys all carry `prefix`.
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore>;

    /// How far a loaded `expires_at` may be from the one written, either
    /// way. Zero (the default) for stores that keep it to the millisecond;
    /// a store whose backend counts whole seconds (Memcached) says so here,
    /// and its docs must say it too.
    fn expiry_resolution(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether the store implements
    /// [`delete_by_owner`](SessionStore::delete_by_owner). `true` by
    /// default; a store that cannot say so here, and the owner tests then
    /// check that it answers [`ErrorKind::Unsupported`] and ends nothing.
    fn indexes_owners(&self) -> bool {
        true
    }

    /// Whether the store implements
    /// [`delete_if_version`](SessionStore::delete_if_version). `true` by
    /// default; a store that cannot say so here, and the tests then check
    /// that it answers [`ErrorKind::Unsupported`] and deletes nothing.
    fn deletes_if_version(&self) -> bool {
        true
    }

    /// Whether [`delete_by_owner`](SessionStore::delete_by_owner) counts
    /// exactly the live sessions it ended. `true` by default; a mirror of
    /// two stores may count fewer when a racing write's repair ended a copy
    /// first (see `FailoverStore::delete_by_owner`), and says so here.
    fn owner_counts_are_exact(&self) -> bool {
        true
    }
}

/// Lifetime long enough that no test sees a record expire by accident.
const LONG: Duration = Duration::from_secs(600);
/// Lifetime short enough to watch a record expire. Over one second, so stores
/// with second-resolution expiry (Memcached) still get a fair chance.
const SHORT: Duration = Duration::from_millis(1500);
/// How long a test waits for an expiry it expects before it fails.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(10);
/// The most commits, and the longest time, one writer of a race test makes
/// before it gives up waiting for its session to be ended.
const RACE_COMMITS: usize = 100_000;
const RACE_DEADLINE: Duration = Duration::from_secs(20);

crate::__store_tests!(crate::__store_runner;);

/// `load` of an id that was never created is `None`.
pub async fn load_of_missing_id_is_none(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    assert_eq!(store.load(&SessionId::generate()).await.unwrap(), None);
}

/// A created record loads back equal: id, data, timestamps (to the
/// millisecond) and version.
pub async fn create_then_load_round_trips(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let record = record_with(
        &[
            ("user", "\"ada\""),
            ("n", "42"),
            ("nested", r#"{"a":[1,2]}"#),
        ],
        LONG,
    );
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    assert_same_record(factory, store.load(&record.id).await.unwrap(), &record);
}

/// A record past its `expires_at` is `None`: one created already expired at
/// once, and one that expires while the test watches within a bounded wait.
pub async fn load_of_expired_record_is_none(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;

    let mut already_expired = record_with(&[("k", "1")], LONG);
    already_expired.expires_at = ms_now() - Duration::from_secs(1);
    let _ = store.create(&already_expired).await.unwrap();
    assert_eq!(store.load(&already_expired.id).await.unwrap(), None);

    let short = record_with(&[("k", "1")], SHORT);
    assert_eq!(store.create(&short).await.unwrap(), Created::Created);
    assert!(store.load(&short.id).await.unwrap().is_some());
    poll_until("the short-lived record to expire", || async {
        store.load(&short.id).await.unwrap().is_none()
    })
    .await;
}

/// From the moment `load` calls a record expired, every other operation
/// agrees: `stamp` sees nothing, `commit` and `delete_if_version` find it
/// `Missing`, and `touch` cannot bring it back.
///
/// Each operation runs the instant `load` first answers `None`, so a store
/// whose own expiry lags the record's `expires_at` (Redis drops a key only
/// once its clock is past `PEXPIREAT`) is caught in that window rather than
/// by luck. The records expire 40 ms apart, so only one tight poll runs at a
/// time, and each operation is tried three times.
pub async fn every_operation_agrees_a_record_has_expired(factory: &dyn StoreFactory) {
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Stamp,
        Commit,
        Touch,
        DeleteIfVersion,
    }
    const OPS: [Op; 4] = [Op::Stamp, Op::Commit, Op::Touch, Op::DeleteIfVersion];
    const STAGGER: Duration = Duration::from_millis(40);

    let store = fresh_store(factory).await;
    let first_expiry = ms_now() + SHORT;
    let tries = (0..3u32).flat_map(|_| OPS).enumerate().map(|(n, op)| {
        let store = Arc::clone(&store);
        let mut record = record_with(&[("k", "1")], LONG);
        record.expires_at = first_expiry + STAGGER * u32::try_from(n).expect("a few tries");
        async move {
            assert_eq!(store.create(&record).await.unwrap(), Created::Created);
            let wake = record.expires_at - STAGGER / 2;
            if let Ok(early) = wake.duration_since(SystemTime::now()) {
                tokio::time::sleep(early).await;
            }
            let deadline = tokio::time::Instant::now() + EXPIRY_DEADLINE;
            while store.load(&record.id).await.unwrap().is_some() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out waiting for the record to expire"
                );
                tokio::task::yield_now().await;
            }
            let id = &record.id;
            match op {
                Op::Stamp => assert_eq!(store.stamp(id).await.unwrap(), None, "{op:?}"),
                Op::Commit => assert_eq!(
                    store
                        .commit(id, &set("k", "2"), expiry(LONG))
                        .await
                        .unwrap(),
                    Committed::Missing,
                    "{op:?}"
                ),
                Op::Touch => assert!(!store.touch(id, expiry(LONG)).await.unwrap(), "{op:?}"),
                Op::DeleteIfVersion => assert_eq!(
                    store.delete_if_version(id, record.version).await.unwrap(),
                    ConditionalDelete::Missing,
                    "{op:?}"
                ),
            }
            assert_eq!(
                store.load(id).await.unwrap(),
                None,
                "{op:?} brought it back"
            );
        }
    });
    join_all(tries).await;
}

/// `create` with an id a live record has answers `IdTaken` and leaves the
/// first record as it was.
pub async fn create_never_overwrites(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let first = record_with(&[("owner", "\"first\"")], LONG);
    assert_eq!(store.create(&first).await.unwrap(), Created::Created);

    let mut second = record_with(&[("owner", "\"second\"")], LONG);
    second.id = first.id;
    assert_eq!(store.create(&second).await.unwrap(), Created::IdTaken);
    assert_same_record(factory, store.load(&first.id).await.unwrap(), &first);
}

/// One commit sets, removes and clears as one step, in the order clear,
/// remove, set.
pub async fn commit_applies_set_remove_and_clear_atomically(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let record = record_with(&[("a", "1"), ("b", "2"), ("c", "3")], LONG);
    let _ = store.create(&record).await.unwrap();

    let mut changes = Changes::default();
    changes.set("a", "10");
    changes.remove("b");
    changes.set("d", "4");
    assert!(matches!(
        store
            .commit(&record.id, &changes, expiry(LONG))
            .await
            .unwrap(),
        Committed::Applied { .. }
    ));
    assert_eq!(
        store.load(&record.id).await.unwrap().unwrap().data,
        data(&[("a", "10"), ("c", "3"), ("d", "4")])
    );

    let mut changes = Changes::default();
    changes.clear();
    changes.set("e", "5");
    let _ = store
        .commit(&record.id, &changes, expiry(LONG))
        .await
        .unwrap();
    assert_eq!(
        store.load(&record.id).await.unwrap().unwrap().data,
        data(&[("e", "5")])
    );
}

/// A commit to an id that was never created, or was deleted, answers
/// `Missing` and does not bring the session (back) into existence.
pub async fn commit_to_missing_session_is_missing_and_does_not_resurrect(
    factory: &dyn StoreFactory,
) {
    let store = fresh_store(factory).await;
    let mut changes = Changes::default();
    changes.set("k", "1");

    let never = SessionId::generate();
    assert_eq!(
        store.commit(&never, &changes, expiry(LONG)).await.unwrap(),
        Committed::Missing
    );
    assert_eq!(store.load(&never).await.unwrap(), None);

    let record = record_with(&[("k", "0")], LONG);
    let _ = store.create(&record).await.unwrap();
    store.delete(&record.id).await.unwrap();
    assert_eq!(
        store
            .commit(&record.id, &changes, expiry(LONG))
            .await
            .unwrap(),
        Committed::Missing
    );
    assert_eq!(store.load(&record.id).await.unwrap(), None);
}

/// 100 commits that each set a different key, all at once, all survive, and
/// the version counts every one of them.
pub async fn concurrent_disjoint_commits_all_survive(factory: &dyn StoreFactory) {
    const WRITERS: u64 = 100;
    let store = fresh_store(factory).await;
    let record = record_with(&[("base", "true")], LONG);
    let _ = store.create(&record).await.unwrap();

    let results = join_all((0..WRITERS).map(|i| {
        let store = Arc::clone(&store);
        let id = record.id;
        tokio::spawn(async move {
            let mut changes = Changes::default();
            changes.set(format!("key-{i}"), i.to_string());
            store.commit(&id, &changes, expiry(LONG)).await
        })
    }))
    .await;
    for result in results {
        assert!(matches!(
            result.unwrap().unwrap(),
            Committed::Applied { .. }
        ));
    }

    let loaded = store.load(&record.id).await.unwrap().unwrap();
    for i in 0..WRITERS {
        assert_eq!(
            loaded.data.get(&format!("key-{i}")),
            Some(&i.to_string()),
            "key-{i} was lost"
        );
    }
    assert_eq!(loaded.data["base"], "true");
    assert_eq!(loaded.version, Record::FIRST_VERSION + WRITERS);
}

/// Concurrent commits to the same key leave exactly one of the written
/// values (the last to commit wins), and every commit counts in the version.
pub async fn concurrent_commits_to_one_key_leave_one_of_the_values(factory: &dyn StoreFactory) {
    const WRITERS: u64 = 20;
    let store = fresh_store(factory).await;
    let record = record_with(&[], LONG);
    let _ = store.create(&record).await.unwrap();

    let results = join_all((0..WRITERS).map(|i| {
        let store = Arc::clone(&store);
        let id = record.id;
        tokio::spawn(async move {
            let mut changes = Changes::default();
            changes.set("same", i.to_string());
            store.commit(&id, &changes, expiry(LONG)).await
        })
    }))
    .await;
    let mut versions: Vec<u64> = results
        .into_iter()
        .map(|result| match result.unwrap().unwrap() {
            Committed::Applied { version } => version,
            Committed::Missing => panic!("a live session was reported missing"),
        })
        .collect();
    versions.sort_unstable();
    let expected: Vec<u64> =
        (Record::FIRST_VERSION + 1..=Record::FIRST_VERSION + WRITERS).collect();
    assert_eq!(versions, expected, "each commit must get its own version");

    let loaded = store.load(&record.id).await.unwrap().unwrap();
    let value: u64 = loaded.data["same"].parse().unwrap();
    assert!(value < WRITERS);
    assert_eq!(loaded.version, Record::FIRST_VERSION + WRITERS);
}

/// A commit sets the record's expiry to the one it carries.
pub async fn commit_moves_the_expiry(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let record = record_with(&[("k", "1")], SHORT);
    let _ = store.create(&record).await.unwrap();

    let later = expiry(LONG);
    let mut changes = Changes::default();
    changes.set("k", "2");
    let _ = store.commit(&record.id, &changes, later).await.unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_expiry(factory, loaded.expires_at, later);
    assert_eq!(
        loaded.created_at, record.created_at,
        "created_at must survive a commit"
    );
}

/// `touch` moves the expiry, keeps data and version, and keeps the session
/// alive past its old expiry; on a missing id it answers `false`.
pub async fn touch_extends_the_lifetime_without_rewriting(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let record = record_with(&[("k", "\"v\"")], SHORT);
    let _ = store.create(&record).await.unwrap();

    let later = expiry(LONG);
    assert!(store.touch(&record.id, later).await.unwrap());
    // Real time has to pass the old expiry; no clock can stand in for the
    // store's own.
    tokio::time::sleep(SHORT + Duration::from_millis(1100)).await;
    let loaded = store
        .load(&record.id)
        .await
        .unwrap()
        .expect("touched session expired at its old time");
    assert_expiry(factory, loaded.expires_at, later);
    assert_eq!(loaded.data, record.data);
    assert_eq!(
        loaded.version, record.version,
        "touch must not bump the version"
    );

    assert!(!store.touch(&SessionId::generate(), later).await.unwrap());
}

/// `delete` makes `load` answer `None`; deleting again, or deleting an id that
/// never existed, is not an error.
pub async fn delete_forgets_and_is_idempotent(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let record = record_with(&[("k", "1")], LONG);
    let _ = store.create(&record).await.unwrap();
    store.delete(&record.id).await.unwrap();
    assert_eq!(store.load(&record.id).await.unwrap(), None);
    store.delete(&record.id).await.unwrap();
    store.delete(&SessionId::generate()).await.unwrap();
}

/// Two stores with different prefixes on the same backing storage never see,
/// block or delete each other's sessions, even under the same id.
pub async fn prefixes_do_not_see_each_other(factory: &dyn StoreFactory) {
    let a = fresh_store(factory).await;
    let b = fresh_store(factory).await;
    let record = record_with(&[("app", "\"a\"")], LONG);
    assert_eq!(a.create(&record).await.unwrap(), Created::Created);

    assert_eq!(b.load(&record.id).await.unwrap(), None);
    let mut theirs = record_with(&[("app", "\"b\"")], LONG);
    theirs.id = record.id;
    assert_eq!(b.create(&theirs).await.unwrap(), Created::Created);
    b.delete(&record.id).await.unwrap();

    assert_same_record(factory, a.load(&record.id).await.unwrap(), &record);
}

/// A 256 KiB value round-trips through create and commit.
pub async fn large_value_round_trips(factory: &dyn StoreFactory) {
    const SIZE: usize = 256 * 1024;
    let store = fresh_store(factory).await;
    let big = serde_json::to_string(&"x".repeat(SIZE - 2)).unwrap();
    assert_eq!(big.len(), SIZE);

    let record = record_with(&[("big", &big)], LONG);
    let _ = store.create(&record).await.unwrap();
    assert_eq!(
        store.load(&record.id).await.unwrap().unwrap().data["big"],
        big
    );

    let other = serde_json::to_string(&"y".repeat(SIZE - 2)).unwrap();
    let mut changes = Changes::default();
    changes.set("big2", other.clone());
    let _ = store
        .commit(&record.id, &changes, expiry(LONG))
        .await
        .unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.data["big"], big);
    assert_eq!(loaded.data["big2"], other);
}

/// The version starts at one and each commit adds exactly one; a touch does not.
pub async fn version_grows_by_one_per_commit(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let record = record_with(&[], LONG);
    let _ = store.create(&record).await.unwrap();
    assert_eq!(
        store.load(&record.id).await.unwrap().unwrap().version,
        Record::FIRST_VERSION
    );

    for step in 1..=3 {
        let mut changes = Changes::default();
        changes.set("step", step.to_string());
        assert_eq!(
            store
                .commit(&record.id, &changes, expiry(LONG))
                .await
                .unwrap(),
            Committed::Applied {
                version: Record::FIRST_VERSION + step
            }
        );
    }
    assert!(store.touch(&record.id, expiry(LONG)).await.unwrap());
    assert_eq!(
        store.load(&record.id).await.unwrap().unwrap().version,
        Record::FIRST_VERSION + 3
    );
}

/// `stamp` agrees with `load` through a record's life: absent, created,
/// committed, touched, deleted, and expired.
pub async fn stamp_agrees_with_load(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let assert_agrees = |stamp: Option<Stamp>, loaded: Option<Record>| match (stamp, loaded) {
        (None, None) => {}
        (Some(stamp), Some(loaded)) => {
            assert_eq!(
                stamp.version, loaded.version,
                "stamp and load disagree on the version"
            );
            assert_expiry(factory, stamp.expires_at, loaded.expires_at);
        }
        (stamp, loaded) => panic!("stamp {stamp:?} but load {loaded:?}"),
    };

    let record = record_with(&[("k", "\"v\"")], LONG);
    assert_eq!(store.stamp(&record.id).await.unwrap(), None);
    let _ = store.create(&record).await.unwrap();
    let stamp = store.stamp(&record.id).await.unwrap();
    assert_eq!(stamp.map(|s| s.version), Some(Record::FIRST_VERSION));
    assert_expiry(factory, stamp.unwrap().expires_at, record.expires_at);

    let _ = store
        .commit(&record.id, &set("k", "2"), expiry(LONG))
        .await
        .unwrap();
    assert_agrees(
        store.stamp(&record.id).await.unwrap(),
        store.load(&record.id).await.unwrap(),
    );
    let touched = expiry(LONG * 2);
    assert!(store.touch(&record.id, touched).await.unwrap());
    let stamp = store.stamp(&record.id).await.unwrap().unwrap();
    assert_eq!(
        stamp.version,
        Record::FIRST_VERSION + 1,
        "a touch bumped the version"
    );
    assert_expiry(factory, stamp.expires_at, touched);

    store.delete(&record.id).await.unwrap();
    assert_eq!(store.stamp(&record.id).await.unwrap(), None);

    let short = record_with(&[("k", "1")], SHORT);
    let _ = store.create(&short).await.unwrap();
    poll_until("the short-lived record's stamp to go", || async {
        store.stamp(&short.id).await.unwrap().is_none()
    })
    .await;
    assert_eq!(store.load(&short.id).await.unwrap(), None);
}

/// A record's owner survives `create`, a commit that does not mention it,
/// and commits that change and remove it. Every store keeps it, whether or
/// not it indexes owners.
pub async fn owner_round_trips_through_create_and_commit(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let record = record_owned_by("ada", &[("k", "1")], LONG);
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    assert_same_record(factory, store.load(&record.id).await.unwrap(), &record);

    let _ = store
        .commit(&record.id, &set("k", "2"), expiry(LONG))
        .await
        .unwrap();
    assert_eq!(
        owner_of(&*store, &record.id).await,
        Some(record.owner.clone().unwrap())
    );

    let bob = owner("bob", LONG);
    let mut changes = set("k", "3");
    changes.set_owner(Some(bob.clone()));
    let _ = store
        .commit(&record.id, &changes, expiry(LONG))
        .await
        .unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.owner, Some(bob));
    assert_eq!(loaded.data["k"], "3");

    let mut changes = Changes::default();
    changes.set_owner(None);
    let _ = store
        .commit(&record.id, &changes, expiry(LONG))
        .await
        .unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.owner, None);
    assert_eq!(loaded.version, Record::FIRST_VERSION + 3);
}

/// A session's own [`Lifetime`] is stored with its record: `create`
/// writes it, `load` returns it, a commit changes it in the same atomic
/// step as the data (or leaves it as it is when the changes do not name
/// it), `touch` and `cycle`-style re-creation keep it, and `None` (every
/// record written before lifetimes existed) round-trips as `None`.
pub async fn lifetime_round_trips_through_create_commit_and_touch(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let days = |n: u64| Duration::from_secs(n * 24 * 60 * 60);
    let remember_me = Lifetime::new(days(14), days(30))
        .unwrap()
        .with_persistent(true);

    let plain = record_with(&[("k", "1")], LONG);
    assert_eq!(store.create(&plain).await.unwrap(), Created::Created);
    assert_same_record(factory, store.load(&plain.id).await.unwrap(), &plain);

    let mut record = record_with(&[("k", "1")], LONG);
    record.lifetime = Some(remember_me);
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    assert_same_record(factory, store.load(&record.id).await.unwrap(), &record);

    // A commit that does not name the lifetime keeps it; a touch too.
    let _ = store
        .commit(&record.id, &set("k", "2"), expiry(LONG))
        .await
        .unwrap();
    assert!(store.touch(&record.id, expiry(LONG)).await.unwrap());
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.lifetime, Some(remember_me));
    assert_eq!(loaded.data["k"], "2");

    // Data and lifetime change in one commit, and both land.
    let shorter = Lifetime::new(Duration::from_millis(1500), Duration::from_secs(90))
        .unwrap()
        .with_persistent(false);
    let mut changes = set("k", "3");
    changes.set_lifetime(Some(shorter));
    let _ = store
        .commit(&record.id, &changes, expiry(LONG))
        .await
        .unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(
        (loaded.lifetime, loaded.data["k"].as_str()),
        (Some(shorter), "3")
    );

    // A clear of the data leaves the lifetime; `None` goes back to the
    // manager's timeouts.
    let mut changes = Changes::default();
    changes.clear();
    let _ = store
        .commit(&record.id, &changes, expiry(LONG))
        .await
        .unwrap();
    assert_eq!(
        store.load(&record.id).await.unwrap().unwrap().lifetime,
        Some(shorter)
    );
    let mut changes = Changes::default();
    changes.set_lifetime(None);
    let _ = store
        .commit(&record.id, &changes, expiry(LONG))
        .await
        .unwrap();
    let loaded = store.load(&record.id).await.unwrap().unwrap();
    assert_eq!(loaded.lifetime, None);
    assert_eq!(loaded.version, Record::FIRST_VERSION + 4);

    // And one that sets it on a record created without one.
    let mut changes = Changes::default();
    changes.set_lifetime(Some(remember_me));
    let _ = store
        .commit(&plain.id, &changes, expiry(LONG))
        .await
        .unwrap();
    assert_eq!(
        store.load(&plain.id).await.unwrap().unwrap().lifetime,
        Some(remember_me)
    );
}

/// `delete_by_owner` ends every live session of one owner, counts them,
/// reports each as found in the owner's index, and leaves other owners'
/// sessions, unowned sessions and the same owner's sessions under another
/// prefix alone. A second call ends nothing.
pub async fn delete_by_owner_ends_that_owners_sessions_and_no_others(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let neighbour = fresh_store(factory).await;
    let ada = create_all(&*store, "ada", 3).await;
    let bob = create_all(&*store, "bob", 2).await;
    let unowned = record_with(&[("k", "1")], LONG);
    let _ = store.create(&unowned).await.unwrap();
    let ada_next_door = create_all(&*neighbour, "ada", 1).await;

    assert_eq!(
        store.indexes_owners(),
        factory.indexes_owners(),
        "SessionStore::indexes_owners disagrees with what the factory expects"
    );
    if !factory.indexes_owners() {
        let err = store.delete_by_owner("ada").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert_eq!(
            live(&*store, &ada).await,
            3,
            "an unsupported delete_by_owner ended sessions"
        );
        return;
    }

    let pass = store.delete_by_owner("ada").await.unwrap();
    assert_eq!(pass.ended, 3);
    // SessionManager::end_all_for stops on what a pass found, so a session
    // the pass read from the index and left out here could outlive it.
    assert_eq!(
        pass.indexed.iter().copied().collect::<HashSet<_>>(),
        ada.iter().copied().collect::<HashSet<_>>(),
        "the pass did not report exactly ada's sessions as found in her index"
    );
    assert_eq!(live(&*store, &ada).await, 0, "an ada session survived");
    assert_eq!(live(&*store, &bob).await, 2, "a bob session was ended");
    assert!(
        store.load(&unowned.id).await.unwrap().is_some(),
        "an unowned session was ended"
    );
    assert_eq!(
        live(&*neighbour, &ada_next_door).await,
        1,
        "another prefix's session was ended"
    );
    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 0);
    assert_eq!(store.delete_by_owner("nobody").await.unwrap().ended, 0);
    for id in &ada {
        assert_eq!(
            store
                .commit(id, &set("k", "2"), expiry(LONG))
                .await
                .unwrap(),
            Committed::Missing,
            "a commit brought an ended session back"
        );
    }
}

/// A session follows its owner: one that moved from ada to bob is ended
/// with bob's, not ada's; one that gained ada as owner by a commit is ended
/// with ada's; one that lost its owner is ended with no one's.
pub async fn delete_by_owner_follows_owner_changes(factory: &dyn StoreFactory) {
    if !factory.indexes_owners() {
        return;
    }
    let store = fresh_store(factory).await;
    let moved = record_owned_by("ada", &[], LONG);
    let gained = record_with(&[("k", "1")], LONG);
    let lost = record_owned_by("ada", &[], LONG);
    for record in [&moved, &gained, &lost] {
        assert_eq!(store.create(record).await.unwrap(), Created::Created);
    }
    for (id, new_owner) in [
        (moved.id, Some(owner("bob", LONG))),
        (gained.id, Some(owner("ada", LONG))),
        (lost.id, None),
    ] {
        let mut changes = Changes::default();
        changes.set_owner(new_owner);
        let _ = store.commit(&id, &changes, expiry(LONG)).await.unwrap();
    }

    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 1);
    assert!(store.load(&gained.id).await.unwrap().is_none());
    assert!(
        store.load(&moved.id).await.unwrap().is_some(),
        "bob's session was ended as ada's"
    );
    assert!(
        store.load(&lost.id).await.unwrap().is_some(),
        "an unowned session was ended"
    );
    assert_eq!(store.delete_by_owner("bob").await.unwrap().ended, 1);
    assert!(store.load(&moved.id).await.unwrap().is_none());
}

/// Writers keep committing to every session of one owner while
/// `delete_by_owner` runs: every session ends, every commit after its end
/// is `Missing`, and none comes back.
///
/// The end-all starts only once every writer has committed, and each
/// writer keeps committing until it sees `Missing`, so every session is
/// really being written while it is ended.
pub async fn commits_racing_delete_by_owner_never_bring_a_session_back(factory: &dyn StoreFactory) {
    const SESSIONS: usize = 20;
    if !factory.indexes_owners() {
        return;
    }
    let store = fresh_store(factory).await;
    let ids = create_all(&*store, "ada", SESSIONS).await;
    let started = Arc::new(AtomicUsize::new(0));

    let writers = join_all(ids.iter().map(|&id| {
        let store = Arc::clone(&store);
        let started = Arc::clone(&started);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + RACE_DEADLINE;
            for i in 0..RACE_COMMITS {
                let committed = store
                    .commit(&id, &set("n", &i.to_string()), expiry(LONG))
                    .await
                    .unwrap();
                if committed == Committed::Missing {
                    return true;
                }
                if i == 0 {
                    started.fetch_add(1, Ordering::SeqCst);
                }
                if tokio::time::Instant::now() > deadline {
                    break;
                }
                tokio::task::yield_now().await;
            }
            false
        })
    }));
    let ender = {
        let store = Arc::clone(&store);
        let started = Arc::clone(&started);
        tokio::spawn(async move {
            poll_until("every writer to commit once", || {
                let started = Arc::clone(&started);
                async move { started.load(Ordering::SeqCst) == SESSIONS }
            })
            .await;
            store.delete_by_owner("ada").await.unwrap().ended
        })
    };
    let (writers, ended) = tokio::join!(writers, ender);
    let ended = ended.unwrap();
    if factory.owner_counts_are_exact() {
        assert_eq!(ended, SESSIONS as u64, "every session was live when it ran");
    } else {
        assert!(
            (1..=SESSIONS as u64).contains(&ended),
            "ended {ended} of {SESSIONS}"
        );
    }
    let stopped = writers.into_iter().filter(|w| *w.as_ref().unwrap()).count();
    assert_eq!(
        stopped, SESSIONS,
        "a writer never saw its session end (it ran out of commits or time first)"
    );
    assert_eq!(live(&*store, &ids).await, 0, "an ended session came back");
    for id in &ids {
        assert_eq!(
            store
                .commit(id, &set("n", "late"), expiry(LONG))
                .await
                .unwrap(),
            Committed::Missing
        );
    }
}

/// Sessions move from one owner to another while the first owner's
/// sessions are being ended: each ends, or lives on as the new owner's,
/// and none is left live under the owner that was ended. A session the
/// index lost track of while it moved would be that one.
pub async fn owner_changes_racing_delete_by_owner_leave_no_session_of_that_owner(
    factory: &dyn StoreFactory,
) {
    const SESSIONS: usize = 20;
    if !factory.indexes_owners() {
        return;
    }
    let store = fresh_store(factory).await;
    let ids = create_all(&*store, "ada", SESSIONS).await;
    let (ending, ending_seen) = tokio::sync::watch::channel(false);

    let movers = join_all(ids.iter().enumerate().map(|(n, &id)| {
        let store = Arc::clone(&store);
        let mut ending = ending_seen.clone();
        tokio::spawn(async move {
            // Half move before the end-all starts, half while it runs.
            if n % 2 == 1 {
                let _ = ending.wait_for(|started| *started).await;
                for _ in 0..n {
                    tokio::task::yield_now().await;
                }
            }
            let mut changes = set("moved", "1");
            changes.set_owner(Some(owner("bob", LONG)));
            store.commit(&id, &changes, expiry(LONG)).await.unwrap()
        })
    }));
    let ender = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            // Let the first half move before this starts.
            for _ in 0..SESSIONS {
                tokio::task::yield_now().await;
            }
            let ended = store.delete_by_owner("ada");
            let _ = ending.send(true);
            ended.await.unwrap().ended
        })
    };
    let (moved, ended) = tokio::join!(movers, ender);
    let ended = ended.unwrap();
    let mut live_as_bob = 0u64;
    for (id, moved) in ids.iter().zip(moved) {
        let moved = moved.unwrap();
        match store.load(id).await.unwrap() {
            None => assert_eq!(
                moved,
                Committed::Missing,
                "a session whose move to bob was acknowledged is gone"
            ),
            Some(record) => {
                let name = record.owner.map(|o| o.name);
                assert_eq!(
                    name.as_deref(),
                    Some("bob"),
                    "a session of the ended owner is still live"
                );
                live_as_bob += 1;
            }
        }
    }
    assert!(ended <= SESSIONS as u64, "ended {ended} of {SESSIONS}");
    assert_eq!(
        store.delete_by_owner("ada").await.unwrap().ended,
        0,
        "ada still has sessions"
    );
    assert_eq!(
        store.delete_by_owner("bob").await.unwrap().ended,
        live_as_bob
    );
    assert_eq!(live(&*store, &ids).await, 0);
}

/// Sessions that expired are not counted or touched by `delete_by_owner`,
/// and a live session of the same owner still is. That their entries
/// leave the index itself, so it cannot grow without bound, needs a look
/// inside the store; each backend's own tests check it (`MemoryStore`'s
/// unit tests, session-redis's and session-cluster's `tests/owners.rs`).
pub async fn expired_sessions_leave_the_owner_index(factory: &dyn StoreFactory) {
    if !factory.indexes_owners() {
        return;
    }
    let store = fresh_store(factory).await;
    let mut short = Vec::new();
    for _ in 0..3 {
        let record = record_owned_by("ada", &[], SHORT);
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        short.push(record.id);
    }
    poll_until("the owned sessions to expire", || async {
        live(&*store, &short).await == 0
    })
    .await;
    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 0);

    let long = create_all(&*store, "ada", 1).await;
    assert_eq!(store.delete_by_owner("ada").await.unwrap().ended, 1);
    assert_eq!(live(&*store, &long).await, 0);
}

/// `delete_if_version` deletes a live record only at the version given:
/// at any other version it answers `Changed` and keeps the record (a
/// `touch` does not change the version), an absent, deleted or expired
/// record is `Missing`, a deleted one takes no commit, another prefix's
/// record is untouched, and an owned one leaves nothing for its owner's
/// end-all to end.
pub async fn delete_if_version_deletes_only_at_the_version_given(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    let neighbour = fresh_store(factory).await;
    let record = record_with(&[("k", "1")], LONG);
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    let first = record.version;
    if !factory.deletes_if_version() {
        let err = store
            .delete_if_version(&record.id, first)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(
            store.load(&record.id).await.unwrap().is_some(),
            "an unsupported delete_if_version deleted the record"
        );
        return;
    }

    assert_eq!(
        store
            .delete_if_version(&record.id, first + 1)
            .await
            .unwrap(),
        ConditionalDelete::Changed,
        "a version the record never had"
    );
    let Committed::Applied { version: second } = store
        .commit(&record.id, &set("k", "2"), expiry(LONG))
        .await
        .unwrap()
    else {
        panic!("the commit found its record missing");
    };
    assert_eq!(
        store.delete_if_version(&record.id, first).await.unwrap(),
        ConditionalDelete::Changed,
        "the version before the commit"
    );
    let kept = store
        .load(&record.id)
        .await
        .unwrap()
        .expect("a Changed answer deleted the record");
    assert_eq!(kept.data.get("k").map(String::as_str), Some("2"));

    assert!(store.touch(&record.id, expiry(LONG)).await.unwrap());
    assert_eq!(
        store.delete_if_version(&record.id, second).await.unwrap(),
        ConditionalDelete::Deleted,
        "the current version, after a touch (which keeps it)"
    );
    assert_eq!(store.load(&record.id).await.unwrap(), None);
    assert_eq!(
        store.delete_if_version(&record.id, second).await.unwrap(),
        ConditionalDelete::Missing
    );
    assert_eq!(
        store
            .commit(&record.id, &set("k", "3"), expiry(LONG))
            .await
            .unwrap(),
        Committed::Missing,
        "a commit brought a conditionally deleted record back"
    );
    assert_eq!(
        store
            .delete_if_version(&SessionId::generate(), first)
            .await
            .unwrap(),
        ConditionalDelete::Missing,
        "an id never created"
    );

    let next_door = record_with(&[("k", "1")], LONG);
    assert_eq!(
        neighbour.create(&next_door).await.unwrap(),
        Created::Created
    );
    assert_eq!(
        store.delete_if_version(&next_door.id, first).await.unwrap(),
        ConditionalDelete::Missing,
        "another prefix's record was visible"
    );
    assert!(
        neighbour.load(&next_door.id).await.unwrap().is_some(),
        "another prefix's record was deleted"
    );

    let short = record_with(&[("k", "1")], SHORT);
    assert_eq!(store.create(&short).await.unwrap(), Created::Created);
    poll_until("the short-lived record to expire", || async {
        store.load(&short.id).await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        store
            .delete_if_version(&short.id, short.version)
            .await
            .unwrap(),
        ConditionalDelete::Missing,
        "an expired record"
    );

    let owned = record_owned_by("ada", &[], LONG);
    assert_eq!(store.create(&owned).await.unwrap(), Created::Created);
    assert_eq!(
        store
            .delete_if_version(&owned.id, owned.version)
            .await
            .unwrap(),
        ConditionalDelete::Deleted
    );
    if factory.indexes_owners() {
        assert_eq!(
            store.delete_by_owner("ada").await.unwrap().ended,
            0,
            "a conditionally deleted session was still live for its owner"
        );
    }
}

/// `delete_if_version` and `commit` on one session are ordered: a commit
/// that the store applied before the conditional delete makes it answer
/// `Changed` and stays; a commit after it finds the record `Missing`.
/// Both orders are forced with gates; then writers keep committing while
/// the record is deleted at the version last read, and no commit the store
/// acknowledged may be newer than the version deleted (a store that checks
/// the version and deletes in a second step deletes such a commit).
pub async fn commits_racing_delete_if_version_are_kept_or_refused(factory: &dyn StoreFactory) {
    const WRITERS: usize = 4;
    if !factory.deletes_if_version() {
        return;
    }
    let store = fresh_store(factory).await;
    let gated = Arc::new(GatedStore::new(Arc::clone(&store)));

    // A commit the store applied, not yet acknowledged: the version read
    // before it is stale.
    let record = record_with(&[("k", "1")], LONG);
    let id = record.id;
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    let mut gate = gated.hold(Op::Commit.after().on(id));
    let committing = tokio::spawn({
        let gated = Arc::clone(&gated);
        async move { gated.commit(&id, &set("k", "2"), expiry(LONG)).await }
    });
    gate.reached().await;
    assert_eq!(
        store.delete_if_version(&id, record.version).await.unwrap(),
        ConditionalDelete::Changed,
        "a conditional delete at the version before an applied commit"
    );
    gate.release();
    let Committed::Applied { version } = committing.await.unwrap().unwrap() else {
        panic!("the held commit found its record missing");
    };
    let loaded = store
        .load(&id)
        .await
        .unwrap()
        .expect("the record was deleted");
    assert_eq!(loaded.data.get("k").map(String::as_str), Some("2"));

    // A conditional delete the store applied, not yet acknowledged: a
    // commit now finds nothing to commit to.
    let mut gate = gated.hold(Op::DeleteIfVersion.after().on(id));
    let deleting = tokio::spawn({
        let gated = Arc::clone(&gated);
        async move { gated.delete_if_version(&id, version).await }
    });
    gate.reached().await;
    assert_eq!(
        store
            .commit(&id, &set("k", "3"), expiry(LONG))
            .await
            .unwrap(),
        Committed::Missing,
        "a commit after a conditional delete"
    );
    gate.release();
    assert_eq!(deleting.await.unwrap().unwrap(), ConditionalDelete::Deleted);

    // Free-running: writers commit until they see `Missing` while the
    // record is deleted at the version last read.
    let record = record_with(&[("k", "1")], LONG);
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    let id = record.id;
    let started = Arc::new(AtomicUsize::new(0));
    let writers = join_all((0..WRITERS).map(|writer| {
        let store = Arc::clone(&store);
        let started = Arc::clone(&started);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + RACE_DEADLINE;
            let mut newest = 0;
            for i in 0..RACE_COMMITS {
                let changes = set(&format!("w{writer}"), &i.to_string());
                match store.commit(&id, &changes, expiry(LONG)).await.unwrap() {
                    Committed::Applied { version } => newest = newest.max(version),
                    Committed::Missing => return Some(newest),
                }
                if i == 0 {
                    started.fetch_add(1, Ordering::SeqCst);
                }
                if tokio::time::Instant::now() > deadline {
                    break;
                }
                tokio::task::yield_now().await;
            }
            None
        })
    }));
    let deleter = {
        let store = Arc::clone(&store);
        let started = Arc::clone(&started);
        tokio::spawn(async move {
            poll_until("every writer to commit once", || {
                let started = Arc::clone(&started);
                async move { started.load(Ordering::SeqCst) == WRITERS }
            })
            .await;
            let deadline = tokio::time::Instant::now() + RACE_DEADLINE;
            loop {
                let read = store
                    .load(&id)
                    .await
                    .unwrap()
                    .expect("the record vanished before it was deleted")
                    .version;
                match store.delete_if_version(&id, read).await.unwrap() {
                    ConditionalDelete::Deleted => return read,
                    ConditionalDelete::Changed => {}
                    ConditionalDelete::Missing => {
                        panic!("the record vanished before it was deleted")
                    }
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the writers never left a gap to delete the record in"
                );
            }
        })
    };
    let (writers, deleted_at) = tokio::join!(writers, deleter);
    let deleted_at = deleted_at.unwrap();
    for newest in writers {
        let newest = newest
            .unwrap()
            .expect("a writer never saw the record deleted (it ran out of commits or time first)");
        assert!(
            newest <= deleted_at,
            "a commit acknowledged at version {newest} was deleted with the record at version {deleted_at}"
        );
    }
    assert_eq!(
        store.load(&id).await.unwrap(),
        None,
        "a deleted record came back"
    );
}

/// An owner called `name` whose index entry lasts `lifetime` from now.
///
/// # Panics
/// When `name` cannot be an owner.
#[must_use]
pub fn owner(name: &str, lifetime: Duration) -> Owner {
    Owner::new(name, ms_now() + lifetime).expect("a valid owner name")
}

/// A record like [`record_with`]'s, owned by `name` until it expires.
#[must_use]
pub fn record_owned_by(name: &str, pairs: &[(&str, &str)], lifetime: Duration) -> Record {
    let mut record = record_with(pairs, lifetime);
    record.owner = Some(Owner::new(name, record.expires_at).expect("a valid owner name"));
    record
}

async fn create_all(store: &dyn SessionStore, name: &str, count: usize) -> Vec<SessionId> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let record = record_owned_by(name, &[("k", "1")], LONG);
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        ids.push(record.id);
    }
    ids
}

async fn live(store: &dyn SessionStore, ids: &[SessionId]) -> usize {
    let mut live = 0;
    for id in ids {
        if store.load(id).await.unwrap().is_some() {
            live += 1;
        }
    }
    live
}

async fn owner_of(store: &dyn SessionStore, id: &SessionId) -> Option<Owner> {
    store
        .load(id)
        .await
        .unwrap()
        .and_then(|record| record.owner)
}

/// A store under a prefix no other test uses.
pub async fn fresh_store(factory: &dyn StoreFactory) -> Arc<dyn SessionStore> {
    factory.store(&unique_prefix()).await
}

/// A key prefix no other test run uses.
#[must_use]
pub fn unique_prefix() -> String {
    format!("conformance:{}:", &SessionId::generate().encode()[..10])
}

/// Polls `check` every 50 ms until it is true, failing the test after a
/// bounded wait.
///
/// # Panics
/// When `check` is still false after ten seconds.
pub async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EXPIRY_DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `loaded` is `expected`, with `expires_at` within the
/// factory's [`expiry_resolution`](StoreFactory::expiry_resolution).
fn assert_same_record(factory: &dyn StoreFactory, loaded: Option<Record>, expected: &Record) {
    let mut loaded = loaded.expect("the record is missing");
    assert_expiry(factory, loaded.expires_at, expected.expires_at);
    loaded.expires_at = expected.expires_at;
    assert_eq!(&loaded, expected);
}

/// Asserts that `loaded` is `written`, give or take the factory's
/// [`expiry_resolution`](StoreFactory::expiry_resolution).
fn assert_expiry(factory: &dyn StoreFactory, loaded: SystemTime, written: SystemTime) {
    let resolution = factory.expiry_resolution();
    let gap = loaded
        .duration_since(written)
        .unwrap_or_else(|early| early.duration());
    assert!(
        gap <= resolution,
        "expires_at is {gap:?} away from the one written; the store promises {resolution:?}"
    );
}

/// Now, truncated to whole milliseconds: the precision the contract promises.
fn ms_now() -> SystemTime {
    whole_ms(SystemTime::now())
}

/// `time` cut to whole milliseconds, the precision the contract promises:
/// a record made with it loads back equal.
///
/// # Panics
/// For a time before 1970 or after the year 500,000,000.
#[must_use]
pub fn whole_ms(time: SystemTime) -> SystemTime {
    let since_epoch = time.duration_since(UNIX_EPOCH).expect("after 1970");
    let millis = u64::try_from(since_epoch.as_millis()).expect("within u64 milliseconds");
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// Changes that set `key` to `value` (JSON text).
#[must_use]
pub fn set(key: &str, value: &str) -> Changes {
    let mut changes = Changes::default();
    changes.set(key, value);
    changes
}

fn expiry(lifetime: Duration) -> SystemTime {
    ms_now() + lifetime
}

fn data(pairs: &[(&str, &str)]) -> Data {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A record created now, to the millisecond, holding `pairs` and living for
/// `lifetime`.
#[must_use]
pub fn record_with(pairs: &[(&str, &str)], lifetime: Duration) -> Record {
    let now = ms_now();
    Record::new(SessionId::generate(), data(pairs), now, now + lifetime)
}
