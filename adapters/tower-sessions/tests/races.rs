//! Concurrent requests on one session, with the interleaving forced by a
//! gate on the store (`session_conformance::race`): what the bridge
//! promises when tower-sessions' whole-record saves meet. A logout that
//! lands while another request of the same user is about to save stays a
//! logout; and two saves of one session leave the last one whole, the
//! other's change lost (the last-writer-wins the crate docs state).

#[path = "../examples/axum_login.rs"]
mod example;
mod support;

use std::sync::Arc;

use axum::{routing::get, Router};
use session_conformance::race::{GatedStore, Op};
use session_core::{store::SessionStore, SessionId};
use session_tower_sessions::TowerSessionsStore;
use tower_sessions::{Session, SessionManagerLayer};

use crate::support::{get as request, send, serve};

/// The session-kit id a tower-sessions cookie names.
fn id_of(cookie: &cookie::Cookie<'_>) -> SessionId {
    SessionId::decode(cookie.value()).unwrap()
}

/// An app whose two routes each change one key of the session.
fn two_keys(store: TowerSessionsStore) -> Router {
    let set = |key: &'static str| {
        get(move |session: Session| async move {
            session.insert(key, 1).await.unwrap();
        })
    };
    Router::new()
        .route(
            "/start",
            get(|session: Session| async move {
                session.insert("a", 0).await.unwrap();
                session.insert("b", 0).await.unwrap();
            }),
        )
        .route("/a", set("a"))
        .route("/b", set("b"))
        .route(
            "/both",
            get(|session: Session| async move {
                let a: u32 = session.get("a").await.unwrap().unwrap();
                let b: u32 = session.get("b").await.unwrap().unwrap();
                format!("a={a} b={b}")
            }),
        )
        .layer(SessionManagerLayer::new(store))
}

macro_rules! race_tests {
    () => {
        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_logout_that_lands_before_another_requests_save_stays_a_logout() {
            let gated = Arc::new(GatedStore::new(kit().await));
            let addr = serve(example::app(example::session_store(gated.clone()))).await;
            let client = reqwest::Client::new();
            let login = client
                .post(format!("http://{addr}/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("username=ada&password=correct+horse");
            let user = send(login, None).await.cookie.unwrap();

            // A request of ada's loads her session and is about to save it...
            let mut gate = gated.hold(Op::Commit.before().on(id_of(&user)));
            let visiting = tokio::spawn({
                let user = user.clone();
                async move { request(addr, "/visit", Some(&user)).await }
            });
            gate.reached().await;
            // ...when she logs out in another tab.
            let logout = client.post(format!("http://{addr}/logout"));
            assert_eq!(send(logout, Some(&user)).await.status, 200);
            gate.release();
            assert_eq!(visiting.await.unwrap().status, 200);

            // The late save wrote nothing: she stays logged out.
            assert_eq!(gated.load(&id_of(&user)).await.unwrap(), None);
            assert_eq!(request(addr, "/me", Some(&user)).await.status, 401);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_saves_of_one_session_leave_the_last_one_whole_and_lose_the_other() {
            let gated = Arc::new(GatedStore::new(kit().await));
            let addr = serve(two_keys(TowerSessionsStore::new(gated.clone()))).await;
            let cookie = request(addr, "/start", None).await.cookie.unwrap();

            // /a loads {a: 0, b: 0} and is held before its save; /b loads
            // the same, saves {a: 0, b: 1} and answers; then /a saves
            // {a: 1, b: 0}, whole.
            let mut gate = gated.hold(Op::Commit.before().on(id_of(&cookie)));
            let setting_a = tokio::spawn({
                let cookie = cookie.clone();
                async move { request(addr, "/a", Some(&cookie)).await }
            });
            gate.reached().await;
            assert_eq!(request(addr, "/b", Some(&cookie)).await.status, 200);
            gate.release();
            assert_eq!(setting_a.await.unwrap().status, 200);

            // session-kit's own layer would keep both (a=1 b=1); through
            // tower-sessions the last save wins whole.
            assert_eq!(request(addr, "/both", Some(&cookie)).await.body, "a=1 b=0");
        }
    };
}

mod memory {
    async fn kit() -> Arc<dyn SessionStore> {
        crate::support::memory()
    }
    race_tests!();
}

mod redis {
    async fn kit() -> Arc<dyn SessionStore> {
        crate::support::redis().await
    }
    race_tests!();
}
