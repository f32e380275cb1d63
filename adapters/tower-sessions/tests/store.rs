//! tower-sessions' contract for a store, called directly: what its
//! `Session` relies on (create with a fresh id on collision, save, load
//! with expiry, delete), and what this bridge adds (a save replaces the
//! data whole and never brings back a session that ended; bad records and
//! outages are errors, never panics). On session-kit's memory store, a
//! real Redis, a real Memcached, a real PostgreSQL and a failover pair;
//! the owner tests on the stores that index owners.

mod support;

use std::sync::Arc;

use serde_json::json;
use session_core::{
    store::{Record as KitRecord, SessionStore as KitStore},
    SessionId,
};
use session_tower_sessions::TowerSessionsStore;
use time::{Duration, OffsetDateTime};
use tower_sessions_core::{
    session::{Id, Record},
    session_store::Error,
    ExpiredDeletion as _, SessionStore as _,
};

/// A record that tower-sessions' `Session` would create: a fresh id, an
/// hour to live.
fn record(data: &[(&str, serde_json::Value)]) -> Record {
    Record {
        id: Id::default(),
        data: data
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect(),
        expiry_date: OffsetDateTime::now_utc() + Duration::hours(1),
    }
}

/// Whether a loaded expiry is the one saved, as far as stores keep it:
/// memory and Redis to the millisecond, Memcached to about a second (its
/// items expire in whole seconds).
fn same_expiry(loaded: OffsetDateTime, saved: OffsetDateTime) -> bool {
    (loaded - saved).abs() <= Duration::seconds(1)
}

/// The session-kit id with the same text as `id`.
fn kit_id(id: Id) -> SessionId {
    SessionId::decode(&id.to_string()).unwrap()
}

/// The owner of a test session: its `user` value.
fn user(data: &std::collections::HashMap<String, serde_json::Value>) -> Option<String> {
    data.get("user")?.as_str().map(str::to_owned)
}

macro_rules! store_tests {
    () => {
        use super::*;

        #[tokio::test]
        async fn a_created_record_loads_with_its_data_and_expiry() {
            let store = TowerSessionsStore::new(kit().await);
            let mut created = record(&[("n", json!(42)), ("user", json!({"name": "ada"}))]);
            let id = created.id;
            store.create(&mut created).await.unwrap();
            assert_eq!(created.id, id, "a free id is kept");

            let loaded = store.load(&id).await.unwrap().unwrap();
            assert_eq!(loaded.id, id);
            assert_eq!(loaded.data, created.data);
            assert!(same_expiry(loaded.expiry_date, created.expiry_date));
        }

        #[tokio::test]
        async fn create_on_a_taken_id_takes_a_fresh_one_and_leaves_the_other_alone() {
            let kit = kit().await;
            let store = TowerSessionsStore::new(kit.clone());
            let mut first = record(&[("owner", json!("first"))]);
            store.create(&mut first).await.unwrap();

            let mut second = record(&[("owner", json!("second"))]);
            second.id = first.id;
            store.create(&mut second).await.unwrap();

            assert_ne!(second.id, first.id);
            let first_loaded = store.load(&first.id).await.unwrap().unwrap();
            assert_eq!(first_loaded.data["owner"], "first");
            let second_loaded = store.load(&second.id).await.unwrap().unwrap();
            assert_eq!(second_loaded.data["owner"], "second");
        }

        #[tokio::test]
        async fn save_replaces_the_data_whole_and_moves_the_expiry() {
            let store = TowerSessionsStore::new(kit().await);
            let mut saved = record(&[("a", json!(1)), ("b", json!(2))]);
            store.create(&mut saved).await.unwrap();

            saved.data.remove("a");
            saved.data.insert("b".to_owned(), json!(3));
            saved.data.insert("c".to_owned(), json!([4]));
            saved.expiry_date += Duration::days(1);
            store.save(&saved).await.unwrap();

            let loaded = store.load(&saved.id).await.unwrap().unwrap();
            assert_eq!(loaded.data, saved.data, "the removed key is gone");
            assert!(same_expiry(loaded.expiry_date, saved.expiry_date));
        }

        #[tokio::test]
        async fn two_saves_of_one_session_leave_the_last_one_whole() {
            // Two requests load the same session, then save in turn: the
            // interleaving is the order of the calls. The second save wins
            // whole, so the first's change to another key is lost: the
            // last-writer-wins the crate docs state, unlike session-kit's
            // own per-key merge.
            let store = TowerSessionsStore::new(kit().await);
            let mut original = record(&[("a", json!(0)), ("b", json!(0))]);
            store.create(&mut original).await.unwrap();
            let mut first = store.load(&original.id).await.unwrap().unwrap();
            let mut second = store.load(&original.id).await.unwrap().unwrap();

            first.data.insert("a".to_owned(), json!(1));
            second.data.insert("b".to_owned(), json!(2));
            store.save(&first).await.unwrap();
            store.save(&second).await.unwrap();

            let loaded = store.load(&original.id).await.unwrap().unwrap();
            assert_eq!(loaded.data, second.data);
            assert_eq!(loaded.data["a"], 0);
        }

        #[tokio::test]
        async fn a_save_after_a_delete_does_not_bring_the_session_back() {
            let store = TowerSessionsStore::new(kit().await);
            let mut saved = record(&[("user", json!("ada"))]);
            store.create(&mut saved).await.unwrap();
            let loaded = store.load(&saved.id).await.unwrap().unwrap();

            // A logout elsewhere, then this request's save.
            store.delete(&saved.id).await.unwrap();
            store.save(&loaded).await.unwrap();

            assert_eq!(store.load(&saved.id).await.unwrap(), None);
        }

        #[tokio::test]
        async fn a_deleted_or_unknown_session_loads_as_none_and_deleting_twice_is_fine() {
            let store = TowerSessionsStore::new(kit().await);
            let mut saved = record(&[("k", json!(true))]);
            store.create(&mut saved).await.unwrap();
            store.delete(&saved.id).await.unwrap();
            assert_eq!(store.load(&saved.id).await.unwrap(), None);
            store.delete(&saved.id).await.unwrap();
            assert_eq!(store.load(&Id::default()).await.unwrap(), None);
        }

        #[tokio::test]
        async fn an_expired_session_loads_as_none() {
            let store = TowerSessionsStore::new(kit().await);
            let mut expired = record(&[("k", json!(1))]);
            expired.expiry_date = OffsetDateTime::now_utc() - Duration::seconds(1);
            store.create(&mut expired).await.unwrap();
            assert_eq!(store.load(&expired.id).await.unwrap(), None);

            let mut live = record(&[("k", json!(1))]);
            store.create(&mut live).await.unwrap();
            live.expiry_date = OffsetDateTime::now_utc() - Duration::seconds(1);
            store.save(&live).await.unwrap();
            assert_eq!(store.load(&live.id).await.unwrap(), None);
        }

        #[tokio::test]
        async fn a_value_that_is_not_json_is_a_decode_error_not_a_panic() {
            let kit = kit().await;
            let store = TowerSessionsStore::new(kit.clone());
            let id = Id::default();
            let now = std::time::SystemTime::now();
            let written = KitRecord::new(
                kit_id(id),
                [("k".to_owned(), "not json".to_owned())].into(),
                now,
                now + std::time::Duration::from_secs(60),
            );
            let _ = kit.create(&written).await.unwrap();
            assert!(matches!(store.load(&id).await, Err(Error::Decode(_))));
        }

        #[tokio::test]
        async fn expired_deletion_has_nothing_to_do() {
            let store = TowerSessionsStore::new(kit().await);
            store.delete_expired().await.unwrap();
        }
    };
}

/// For the stores that index owners.
macro_rules! owner_tests {
    () => {
        #[tokio::test]
        async fn the_owner_named_by_the_data_is_recorded_and_follows_it() {
            let kit = kit().await;
            let store = TowerSessionsStore::new(kit.clone()).with_owner(user);
            let mut saved = record(&[("user", json!("ada"))]);
            store.create(&mut saved).await.unwrap();
            let owner = kit
                .load(&kit_id(saved.id))
                .await
                .unwrap()
                .unwrap()
                .owner
                .unwrap();
            assert_eq!(owner.name, "ada");

            // Logged out (the key is gone): the session loses its owner.
            saved.data.clear();
            saved.data.insert("visits".to_owned(), json!(1));
            store.save(&saved).await.unwrap();
            let loaded = kit.load(&kit_id(saved.id)).await.unwrap().unwrap();
            assert_eq!(loaded.owner, None);

            // A name that cannot be indexed fails the write, loudly.
            let mut unnamed = record(&[("user", json!(""))]);
            assert!(matches!(
                store.create(&mut unnamed).await,
                Err(Error::Encode(_))
            ));
        }

        #[tokio::test]
        async fn end_all_for_ends_the_owners_sessions_only_and_they_stay_ended() {
            let store = TowerSessionsStore::new(kit().await).with_owner(user);
            let mut ada_laptop = record(&[("user", json!("ada"))]);
            let mut ada_phone = record(&[("user", json!("ada"))]);
            let mut grace = record(&[("user", json!("grace"))]);
            let mut visitor = record(&[("visits", json!(1))]);
            for created in [&mut ada_laptop, &mut ada_phone, &mut grace, &mut visitor] {
                store.create(created).await.unwrap();
            }
            // A request on the phone loaded its session before the logout.
            let phone_request = store.load(&ada_phone.id).await.unwrap().unwrap();

            assert_eq!(store.end_all_for("ada").await.unwrap(), 2);

            assert_eq!(store.load(&ada_laptop.id).await.unwrap(), None);
            assert_eq!(store.load(&ada_phone.id).await.unwrap(), None);
            assert!(store.load(&grace.id).await.unwrap().is_some());
            assert!(store.load(&visitor.id).await.unwrap().is_some());
            // Its save afterwards does not log ada back in.
            store.save(&phone_request).await.unwrap();
            assert_eq!(store.load(&ada_phone.id).await.unwrap(), None);
            assert_eq!(store.end_all_for("ada").await.unwrap(), 0);
        }
    };
}

mod memory {
    async fn kit() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::memory()
    }
    store_tests!();
    owner_tests!();
}

mod postgres {
    async fn kit() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::postgres().await
    }
    store_tests!();
    owner_tests!();
}

mod failover {
    async fn kit() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::failover().await
    }
    store_tests!();
    owner_tests!();
}

mod memcached {
    async fn kit() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::memcached().await
    }
    store_tests!();

    /// Memcached keeps no owner index: "log out everywhere" says so
    /// instead of ending some sessions.
    #[tokio::test]
    async fn end_all_for_is_unsupported_and_says_so() {
        let store = TowerSessionsStore::new(kit().await).with_owner(user);
        let mut saved = record(&[("user", json!("ada"))]);
        store.create(&mut saved).await.unwrap();
        let err = store.end_all_for("ada").await.unwrap_err();
        assert_eq!(err.kind(), session_core::ErrorKind::Unsupported);
        assert!(store.load(&saved.id).await.unwrap().is_some());
    }
}

mod redis {
    async fn kit() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::redis().await
    }
    store_tests!();
    owner_tests!();

    use session_conformance::testkit::RedisServer;

    /// A hash that is not a session (no version) is what Redis hands back:
    /// the bridge says "decode", and tower-sessions' layer answers 500.
    #[tokio::test]
    async fn a_hash_that_is_not_a_session_is_a_decode_error() {
        let prefix = crate::support::unique_prefix();
        let store = TowerSessionsStore::new(crate::support::redis_with_prefix(&prefix).await);
        let id = Id::default();
        crate::support::redis_server().cli(&["HSET", &format!("{prefix}{id}"), "d:k", "1"]);
        assert!(matches!(store.load(&id).await, Err(Error::Decode(_))));
    }

    /// With Redis gone, every call is a backend error naming the outage.
    #[tokio::test]
    async fn a_dead_redis_is_a_backend_error() {
        let mut server = RedisServer::start();
        let config = session_redis::RedisConfig::standalone(server.url())
            .with_operation_timeout(std::time::Duration::from_millis(500));
        let kit: Arc<dyn KitStore> =
            Arc::new(session_redis::RedisStore::connect(config).await.unwrap());
        let store = TowerSessionsStore::new(kit);
        let mut saved = record(&[("k", json!(1))]);
        store.create(&mut saved).await.unwrap();

        server.kill();
        let Err(Error::Backend(message)) = store.load(&saved.id).await else {
            panic!("not a backend error");
        };
        assert!(message.starts_with("store "), "{message}");
        assert!(matches!(store.save(&saved).await, Err(Error::Backend(_))));
        assert!(matches!(
            store.delete(&saved.id).await,
            Err(Error::Backend(_))
        ));
        let mut fresh = record(&[]);
        assert!(matches!(
            store.create(&mut fresh).await,
            Err(Error::Backend(_))
        ));
    }
}
