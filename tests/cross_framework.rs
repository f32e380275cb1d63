//! One team, two frameworks, one session: an axum service and an actix-web
//! service on two loopback ports, each with its own `SessionManager` (as
//! two deployments would have) over one Redis and one signing secret. A
//! browser moves between them and its login and count survive every hop.

use session_conformance::{testkit::RedisServer, Browser, RunningApp, TestApp};
use session_kit::{
    actix::conformance::ActixApp,
    redis::{RedisConfig, RedisStore},
    tower::conformance::AxumApp,
    CookieConfig, Key, SessionManager,
};

/// 32 bytes, as both deployments would read it from their secret store.
const SECRET: &str = "shared by the axum and actix deployments";

/// One deployment's manager: its own connection, the shared secret.
async fn deployment(redis: &RedisServer) -> SessionManager {
    let store = RedisStore::connect(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .unwrap();
    SessionManager::builder(store, Key::from_secret(SECRET).unwrap())
        // Plain http on loopback: a Secure cookie would never be sent back.
        .with_cookie(CookieConfig::default().with_secure(false))
        .build()
        .unwrap()
}

/// GETs `path` and expects a 200 with `body`.
async fn expect(browser: &Browser, app: &RunningApp, path: &str, body: &str) {
    let (status, text, _) = browser.get(app, path).await;
    assert_eq!(
        (status, text.as_str()),
        (200, body),
        "GET {path} on {}",
        app.addr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_between_axum_and_actix_and_back() {
    let redis = RedisServer::start();
    let axum = AxumApp.serve(deployment(&redis).await).await;
    let actix = ActixApp.serve(deployment(&redis).await).await;
    assert_ne!(axum.addr().port(), actix.addr().port());

    // Cookies are scoped by host, not port (RFC 6265 §8.5), so one browser
    // jar sends the session to both services, as it would on one domain.
    let browser = Browser::new();
    expect(&browser, &axum, "/login", "ok").await;
    expect(&browser, &actix, "/whoami", "ada").await;
    expect(&browser, &actix, "/counter", "1").await;
    expect(&browser, &axum, "/counter", "2").await;
    expect(&browser, &actix, "/counter", "3").await;
    expect(&browser, &axum, "/read", "3").await;
    expect(&browser, &axum, "/whoami", "ada").await;

    // A login on actix cycles the id; the axum side follows the new cookie.
    expect(&browser, &actix, "/login", "ok").await;
    expect(&browser, &axum, "/read", "3").await;

    // And a logout on either ends it on both.
    expect(&browser, &axum, "/logout", "bye").await;
    expect(&browser, &actix, "/whoami", "anonymous").await;
    expect(&browser, &actix, "/read", "none").await;
}
