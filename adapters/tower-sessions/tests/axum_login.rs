//! The `axum_login` example, driven over HTTP with session-kit's Redis
//! store underneath: an anonymous visit, a login (a new id, against
//! fixation), the user read back on a later request, a logout, and the
//! user gone, in the app and in Redis; and "log out everywhere" through
//! session-kit's owner index.

#[path = "../examples/axum_login.rs"]
mod example;
mod support;

use std::sync::Arc;

use session_conformance::testkit::RedisServer;
use session_core::store::DEFAULT_KEY_PREFIX;
use session_redis::{RedisConfig, RedisStore};

use crate::support::{get, send, serve};

#[tokio::test]
async fn axum_login_logs_in_reads_the_user_and_logs_out_on_redis() {
    let server = RedisServer::start();
    let store = RedisStore::connect(RedisConfig::standalone(server.url()))
        .await
        .unwrap();
    let addr = serve(example::app(example::session_store(Arc::new(store)))).await;
    let client = reqwest::Client::new();
    let login = |form: &'static str| {
        client
            .post(format!("http://{addr}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
    };
    let exists = |id: &str| server.cli(&["EXISTS", &format!("{DEFAULT_KEY_PREFIX}{id}")]);

    // Nobody is logged in yet; an anonymous visit starts a session.
    assert_eq!(get(addr, "/me", None).await.status, 401);
    let anonymous = get(addr, "/visit", None).await.cookie.unwrap();
    assert_eq!(get(addr, "/visit", Some(&anonymous)).await.body, "2");

    // A wrong password logs nobody in.
    let refused = send(login("username=ada&password=wrong"), Some(&anonymous)).await;
    assert_eq!(refused.status, 401);

    // Logging in moves the session to a new id and ends the old one.
    let answer = send(
        login("username=ada&password=correct+horse"),
        Some(&anonymous),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "logged in as ada")
    );
    let logged_in = answer.cookie.unwrap();
    assert_ne!(logged_in.value(), anonymous.value());
    assert_eq!(exists(anonymous.value()), "0");
    assert_eq!(get(addr, "/me", Some(&anonymous)).await.status, 401);

    // A second request reads the user from the session in Redis.
    let me = get(addr, "/me", Some(&logged_in)).await;
    assert_eq!((me.status, me.body.as_str()), (200, "ada"));
    assert_eq!(exists(logged_in.value()), "1");
    let stored = server.cli(&[
        "HGET",
        &format!("{DEFAULT_KEY_PREFIX}{}", logged_in.value()),
        "d:axum-login.data",
    ]);
    assert!(stored.contains("\"user_id\":1"), "{stored}");

    // Logging out removes the cookie and the session: the old cookie,
    // replayed, names nobody.
    let answer = send(
        client.post(format!("http://{addr}/logout")),
        Some(&logged_in),
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "logged out"));
    assert_eq!(answer.cookie.unwrap().value(), "");
    assert_eq!(exists(logged_in.value()), "0");
    let me = get(addr, "/me", Some(&logged_in)).await;
    assert_eq!((me.status, me.body.as_str()), (401, "not logged in"));
}

#[tokio::test]
async fn logging_out_everywhere_ends_each_device_of_the_user_and_no_other_session() {
    let server = RedisServer::start();
    let store = RedisStore::connect(RedisConfig::standalone(server.url()))
        .await
        .unwrap();
    let addr = serve(example::app(example::session_store(Arc::new(store)))).await;
    let client = reqwest::Client::new();
    let post = |path: &str| client.post(format!("http://{addr}{path}"));
    let log_in = || {
        post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=ada&password=correct+horse")
    };

    let laptop = send(log_in(), None).await.cookie.unwrap();
    let phone = send(log_in(), None).await.cookie.unwrap();
    let visitor = get(addr, "/visit", None).await.cookie.unwrap();
    // The owner index in Redis holds both of ada's sessions.
    let index = server.cli(&["ZRANGE", &format!("{DEFAULT_KEY_PREFIX}owner:1"), "0", "-1"]);
    assert_eq!(index.lines().count(), 2, "{index}");

    let answer = send(post("/logout_everywhere"), Some(&phone)).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (200, "ended 2 sessions")
    );

    for device in [&laptop, &phone] {
        assert_eq!(get(addr, "/me", Some(device)).await.status, 401);
    }
    // Someone else's session is untouched.
    assert_eq!(get(addr, "/visit", Some(&visitor)).await.body, "2");
}
