//! tower-sessions' own expectations of a store, checked through a real
//! `SessionManagerLayer` over HTTP: the routes and assertions of
//! tower-sessions' shared route tests (insert, get, remove, cycle_id,
//! flush, expiry, cookie attributes, bogus and malformed cookies), run on
//! session-kit's memory store, a real Redis, a real Memcached, a real
//! PostgreSQL and a failover pair (Redis mirrored to memory). A few checks go further
//! than tower-sessions' (the old id after `cycle_id`, the store after
//! `flush`, the Redis key), since session-kit promises more.

mod support;

use std::{sync::Arc, time::Duration as StdDuration};

use axum::{routing::get, Router};
use cookie::{Cookie, SameSite};
use session_core::store::SessionStore;
use session_tower_sessions::TowerSessionsStore;
use time::{Duration, OffsetDateTime};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::support::{get as request, serve};

/// The handlers of tower-sessions' route tests.
fn routes() -> Router {
    Router::new()
        .route("/", get(|_: Session| async move { "Hello, world!" }))
        .route(
            "/insert",
            get(|session: Session| async move {
                session.insert("foo", 42).await.unwrap();
            }),
        )
        .route(
            "/get",
            get(|session: Session| async move {
                format!("{}", session.get::<usize>("foo").await.unwrap().unwrap())
            }),
        )
        .route(
            "/get_value",
            get(|session: Session| async move {
                format!("{:?}", session.get_value("foo").await.unwrap())
            }),
        )
        .route(
            "/remove",
            get(|session: Session| async move {
                session.remove::<usize>("foo").await.unwrap();
            }),
        )
        .route(
            "/remove_value",
            get(|session: Session| async move {
                session.remove_value("foo").await.unwrap();
            }),
        )
        .route(
            "/cycle_id",
            get(|session: Session| async move {
                session.cycle_id().await.unwrap();
            }),
        )
        .route(
            "/flush",
            get(|session: Session| async move {
                session.flush().await.unwrap();
            }),
        )
        .route(
            "/set_expiry",
            get(|session: Session| async move {
                let expiry = Expiry::AtDateTime(OffsetDateTime::now_utc() + Duration::days(1));
                session.set_expiry(Some(expiry));
            }),
        )
        .route(
            "/remove_expiry",
            get(|session: Session| async move {
                session.set_expiry(Some(Expiry::OnSessionEnd));
            }),
        )
}

/// The routes behind tower-sessions' layer over `store`, served on a
/// loopback port: as tower-sessions' `build_app`, with `max_age` as an
/// inactivity expiry and an optional cookie domain.
async fn app(
    store: Arc<dyn SessionStore>,
    max_age: Option<Duration>,
    domain: Option<&str>,
) -> std::net::SocketAddr {
    let mut layer = SessionManagerLayer::new(TowerSessionsStore::new(store)).with_secure(true);
    if let Some(max_age) = max_age {
        layer = layer.with_expiry(Expiry::OnInactivity(max_age));
    }
    if let Some(domain) = domain {
        layer = layer.with_domain(domain.to_owned());
    }
    serve(routes().layer(layer)).await
}

/// `actual` is `expected` give or take a second.
fn about(actual: Option<Duration>, expected: Duration) -> bool {
    actual.is_some_and(|actual| (actual - expected).abs() <= Duration::seconds(1))
}

/// The tests, for one store: `store()` in the calling module makes it.
macro_rules! route_tests {
    () => {
        use super::*;

        #[tokio::test]
        async fn no_session_set() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let answer = request(addr, "/", None).await;
            assert_eq!(answer.status, 200);
            assert!(answer.cookie.is_none());
        }

        #[tokio::test]
        async fn bogus_session_cookie() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let bogus = Cookie::new("id", "AAAAAAAAAAAAAAAAAAAAAA");
            let answer = request(addr, "/insert", Some(&bogus)).await;
            assert_eq!(answer.status, 200);
            let cookie = answer.cookie.unwrap();
            assert_ne!(cookie.value(), "AAAAAAAAAAAAAAAAAAAAAA");
            // The unknown id was not adopted: it still names no session.
            let answer = request(addr, "/get_value", Some(&bogus)).await;
            assert_eq!(answer.body, "None");
        }

        #[tokio::test]
        async fn malformed_session_cookie() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let malformed = Cookie::new("id", "malformed");
            let answer = request(addr, "/", Some(&malformed)).await;
            assert_eq!(answer.status, 200);
            assert_ne!(answer.cookie.unwrap().value(), "malformed");
        }

        #[tokio::test]
        async fn insert_session() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            assert_eq!(cookie.name(), "id");
            assert_eq!(cookie.http_only(), Some(true));
            assert_eq!(cookie.same_site(), Some(SameSite::Strict));
            assert!(cookie
                .max_age()
                .is_some_and(|age| age <= Duration::hours(1)));
            assert_eq!(cookie.secure(), Some(true));
            assert_eq!(cookie.path(), Some("/"));
        }

        #[tokio::test]
        async fn session_max_age() {
            let addr = app(store().await, None, None).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            assert_eq!(cookie.name(), "id");
            assert!(cookie.max_age().is_none());
        }

        #[tokio::test]
        async fn get_session() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            let answer = request(addr, "/get", Some(&cookie)).await;
            assert_eq!(answer.status, 200);
            assert_eq!(answer.body, "42");
        }

        #[tokio::test]
        async fn get_no_value() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            assert_eq!(request(addr, "/get_value", None).await.body, "None");
        }

        #[tokio::test]
        async fn remove_last_value() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            request(addr, "/remove_value", Some(&cookie)).await;
            assert_eq!(
                request(addr, "/get_value", Some(&cookie)).await.body,
                "None"
            );
        }

        #[tokio::test]
        async fn remove_typed_value() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            request(addr, "/remove", Some(&cookie)).await;
            assert_eq!(
                request(addr, "/get_value", Some(&cookie)).await.body,
                "None"
            );
        }

        #[tokio::test]
        async fn cycle_session_id() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let first = request(addr, "/insert", None).await.cookie.unwrap();
            let second = request(addr, "/cycle_id", Some(&first))
                .await
                .cookie
                .unwrap();
            assert_ne!(first.value(), second.value());
            assert_eq!(request(addr, "/get", Some(&second)).await.body, "42");
            // The old id is gone, not a second copy.
            assert_eq!(request(addr, "/get_value", Some(&first)).await.body, "None");
        }

        #[tokio::test]
        async fn flush_session() {
            let addr = app(store().await, Some(Duration::hours(1)), None).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            let removal = request(addr, "/flush", Some(&cookie)).await.cookie.unwrap();
            assert_eq!(removal.value(), "");
            assert_eq!(removal.max_age(), Some(Duration::ZERO));
            assert_eq!(removal.path(), Some("/"));
            // A client that keeps the old cookie finds nothing.
            assert_eq!(
                request(addr, "/get_value", Some(&cookie)).await.body,
                "None"
            );
        }

        #[tokio::test]
        async fn flush_with_domain() {
            let addr = app(store().await, Some(Duration::hours(1)), Some("localhost")).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            let removal = request(addr, "/flush", Some(&cookie)).await.cookie.unwrap();
            assert_eq!(removal.value(), "");
            assert_eq!(removal.max_age(), Some(Duration::ZERO));
            assert_eq!(removal.domain(), Some("localhost"));
            assert_eq!(removal.path(), Some("/"));
        }

        #[tokio::test]
        async fn set_expiry() {
            let addr = app(store().await, Some(Duration::hours(1)), Some("localhost")).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            assert!(about(cookie.max_age(), Duration::hours(1)));
            let cookie = request(addr, "/set_expiry", Some(&cookie))
                .await
                .cookie
                .unwrap();
            assert!(about(cookie.max_age(), Duration::days(1)));
            // The store keeps the session as long as the cookie says.
            assert_eq!(request(addr, "/get", Some(&cookie)).await.body, "42");
        }

        #[tokio::test]
        async fn change_expiry_type() {
            let addr = app(store().await, None, Some("localhost")).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            assert_eq!(cookie.max_age(), None);
            let cookie = request(addr, "/set_expiry", Some(&cookie))
                .await
                .cookie
                .unwrap();
            assert!(about(cookie.max_age(), Duration::days(1)));

            let addr = app(store().await, Some(Duration::hours(1)), Some("localhost")).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            assert!(about(cookie.max_age(), Duration::hours(1)));
            let cookie = request(addr, "/remove_expiry", Some(&cookie))
                .await
                .cookie
                .unwrap();
            assert_eq!(cookie.max_age(), None);
        }

        #[tokio::test]
        async fn an_inactive_session_expires_in_the_store() {
            let addr = app(store().await, Some(Duration::seconds(1)), None).await;
            let cookie = request(addr, "/insert", None).await.cookie.unwrap();
            assert_eq!(request(addr, "/get", Some(&cookie)).await.body, "42");
            // Polled, not slept: the store forgets it once a second has
            // passed with no request (a read does not save, so it does not
            // slide the expiry). Five seconds bounds the wait.
            let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
            loop {
                let body = request(addr, "/get_value", Some(&cookie)).await.body;
                if body == "None" {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "still served: {body}");
                tokio::time::sleep(StdDuration::from_millis(100)).await;
            }
        }
    };
}

mod memory {
    async fn store() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::memory()
    }
    route_tests!();
}

mod memcached {
    async fn store() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::memcached().await
    }
    route_tests!();
}

mod postgres {
    async fn store() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::postgres().await
    }
    route_tests!();
}

mod failover {
    async fn store() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::failover().await
    }
    route_tests!();
}

mod redis {
    async fn store() -> std::sync::Arc<dyn session_core::store::SessionStore> {
        crate::support::redis().await
    }
    route_tests!();

    /// The session lives in Redis under `<prefix><cookie value>`, each value
    /// as its own JSON field: what session-kit's own layer writes.
    #[tokio::test]
    async fn the_session_is_a_session_kit_hash_under_the_cookie_value() {
        let prefix = crate::support::unique_prefix();
        let addr = app(
            crate::support::redis_with_prefix(&prefix).await,
            Some(Duration::hours(1)),
            None,
        )
        .await;
        let cookie = request(addr, "/insert", None).await.cookie.unwrap();
        let key = format!("{prefix}{}", cookie.value());
        let server = crate::support::redis_server();
        assert_eq!(server.cli(&["HGET", &key, "d:foo"]), "42");
        assert_eq!(server.cli(&["HGET", &key, "version"]), "1");
    }
}
