//! Sessions written by tower-sessions 0.14 and actix-session 0.11
//! themselves, over a real Redis, then read through session-kit over HTTP
//! with migration on: the user keeps their data, gets a session-kit
//! cookie, the old cookie is cleared and the old record is gone.

use std::{net::SocketAddr, sync::Arc};

use reqwest::{
    cookie::{CookieStore, Jar},
    header::SET_COOKIE,
};
use session_conformance::testkit::RedisServer;
use session_kit::{
    redis::{
        migrate::{CookieSecurity, LegacyConfig, LegacyRedisSessions, PeerLibrary},
        RedisConfig, RedisStore,
    },
    CookieConfig, Key, SessionManager,
};

/// The peers' `cookie::Key` master key, as their apps would load it.
const PEER_KEY: [u8; 64] = [42; 64];
/// session-kit's own signing secret.
const SECRET: &str = "session-kit's own secret, 32 bytes or more";

fn peer_key_base64() -> String {
    base64(&PEER_KEY)
}

/// Standard base64, as the config takes keys.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A browser: one cookie jar for every loopback port, as for one domain.
struct Browser {
    client: reqwest::Client,
    jar: Arc<Jar>,
}

impl Browser {
    fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(Arc::clone(&jar))
            .build()
            .unwrap();
        Self { client, jar }
    }

    /// GET `path`: the status, the body and every `Set-Cookie`.
    async fn get(&self, addr: SocketAddr, path: &str) -> (u16, String, Vec<String>) {
        let response = self
            .client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        let cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap(), cookies)
    }

    /// The names of the cookies the browser now holds.
    fn cookie_names(&self, addr: SocketAddr) -> Vec<String> {
        let url = format!("http://{addr}/").parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|header| {
                header
                    .to_str()
                    .unwrap()
                    .split("; ")
                    .map(|pair| pair.split('=').next().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every key in Redis.
fn keys(redis: &RedisServer) -> Vec<String> {
    redis
        .cli(&["KEYS", "*"])
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A session-kit manager over the same Redis, migrating `legacy`.
async fn session_kit(
    redis: &RedisServer,
    cookie_name: &str,
    legacy: LegacyConfig,
) -> SessionManager {
    let store = RedisStore::connect(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .unwrap();
    let legacy = LegacyRedisSessions::new(&store, legacy).unwrap();
    SessionManager::builder(store, Key::from_secret(SECRET).unwrap())
        .with_cookie(
            CookieConfig::default()
                .with_name(cookie_name)
                .with_secure(false),
        )
        .with_legacy_sessions(legacy)
        .build()
        .unwrap()
}

mod tower_side {
    use axum::{routing::get, Router};
    use session_kit::tower::{Session, SessionLayer};
    use tower_sessions::{cookie::Key as PeerKey, SessionManagerLayer};
    use tower_sessions_redis_store::{fred::prelude::*, RedisStore as PeerStore};

    use super::*;

    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// The old app: tower-sessions with its Redis store, as its docs show.
    pub(super) async fn old_app(redis: &RedisServer, security: CookieSecurity) -> SocketAddr {
        let pool = Pool::new(Config::from_url(&redis.url()).unwrap(), None, None, None, 1).unwrap();
        pool.connect();
        pool.wait_for_connect().await.unwrap();
        let layer = SessionManagerLayer::new(PeerStore::new(pool)).with_secure(false);
        let router = Router::new().route(
            "/login",
            get(|session: tower_sessions::Session| async move {
                session.insert("user", "ada").await.unwrap();
                session.insert("cart", vec![1, 2, 3]).await.unwrap();
                "ok"
            }),
        );
        let key = PeerKey::from(&PEER_KEY);
        match security {
            CookieSecurity::Plain => serve(router.layer(layer)).await,
            CookieSecurity::Signed => serve(router.layer(layer.with_signed(key))).await,
            CookieSecurity::Private => serve(router.layer(layer.with_private(key))).await,
            _ => unreachable!(),
        }
    }

    /// The new app: the same page on session-kit.
    pub(super) async fn new_app(manager: SessionManager) -> SocketAddr {
        let router = Router::new()
            .route(
                "/whoami",
                get(|session: Session| async move {
                    let user = session.get::<String>("user").await.unwrap();
                    let cart = session.get::<Vec<u32>>("cart").await.unwrap();
                    format!("{user:?} {cart:?}")
                }),
            )
            .layer(SessionLayer::new(manager));
        serve(router).await
    }
}

mod actix_side {
    use actix_session::{
        config::CookieContentSecurity, storage::RedisSessionStore, Session as PeerSession,
        SessionMiddleware as PeerMiddleware,
    };
    use actix_web::{cookie::Key as PeerKey, web, App, HttpServer};
    use session_kit::actix::{Session, SessionMiddleware};

    use super::*;

    fn serve<F, T, B>(factory: F) -> SocketAddr
    where
        F: Fn() -> App<T> + Send + Clone + 'static,
        T: actix_web::dev::ServiceFactory<
                actix_web::dev::ServiceRequest,
                Config = (),
                Response = actix_web::dev::ServiceResponse<B>,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
        B: actix_web::body::MessageBody + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = HttpServer::new(factory)
            .workers(1)
            .disable_signals()
            .shutdown_timeout(0)
            .listen(listener)
            .unwrap()
            .run();
        tokio::spawn(server);
        addr
    }

    /// The old app: actix-session with its Redis store.
    pub(super) async fn old_app(
        redis: &RedisServer,
        security: CookieContentSecurity,
    ) -> SocketAddr {
        let store = RedisSessionStore::new(redis.url()).await.unwrap();
        serve(move || {
            App::new()
                .wrap(
                    PeerMiddleware::builder(store.clone(), PeerKey::from(&PEER_KEY))
                        .cookie_secure(false)
                        .cookie_content_security(security)
                        .build(),
                )
                .route(
                    "/login",
                    web::get().to(|session: PeerSession| async move {
                        session.insert("user", "ada").unwrap();
                        session.insert("cart", vec![1, 2, 3]).unwrap();
                        "ok"
                    }),
                )
        })
    }

    /// The new app: the same page on session-kit.
    pub(super) fn new_app(manager: SessionManager) -> SocketAddr {
        serve(move || {
            App::new()
                .wrap(SessionMiddleware::new(manager.clone()))
                .route(
                    "/whoami",
                    web::get().to(|session: Session| async move {
                        let user = session.get::<String>("user").await.unwrap();
                        let cart = session.get::<Vec<u32>>("cart").await.unwrap();
                        format!("{user:?} {cart:?}")
                    }),
                )
        })
    }
}

/// The whole move for one peer setup: log in on the old app, then visit
/// the new one twice.
async fn migrates(
    redis: &RedisServer,
    old: SocketAddr,
    new: SocketAddr,
    old_cookie: &str,
    our_cookie: &str,
) {
    let browser = Browser::new();
    let (status, _, _) = browser.get(old, "/login").await;
    assert_eq!(status, 200);
    assert_eq!(browser.cookie_names(old), [old_cookie]);
    let old_keys = keys(redis);
    assert_eq!(old_keys.len(), 1, "the peer wrote one record: {old_keys:?}");

    let (status, body, set_cookies) = browser.get(new, "/whoami").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"Some("ada") Some([1, 2, 3])"#)
    );
    assert!(
        set_cookies
            .iter()
            .any(|c| c.starts_with(&format!("{our_cookie}=")) && !c.contains("Max-Age=0")),
        "our cookie is issued: {set_cookies:?}"
    );
    if old_cookie != our_cookie {
        assert!(
            set_cookies
                .iter()
                .any(|c| c.starts_with(&format!("{old_cookie}=;")) && c.contains("Max-Age=0")),
            "the old cookie is cleared: {set_cookies:?}"
        );
    }
    assert_eq!(browser.cookie_names(new), [our_cookie]);
    let now = keys(redis);
    assert!(
        !now.contains(&old_keys[0]),
        "the old record is gone: {now:?}"
    );
    assert!(
        now.iter()
            .any(|k| k.starts_with("session:") && !k.contains("migrated")),
        "{now:?}"
    );

    // The next visit is an ordinary session-kit request.
    let (status, body, set_cookies) = browser.get(new, "/whoami").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"Some("ada") Some([1, 2, 3])"#)
    );
    assert!(set_cookies.is_empty(), "{set_cookies:?}");
}

fn legacy(from: PeerLibrary, security: CookieSecurity) -> LegacyConfig {
    let mut config = LegacyConfig::new(from);
    config.cookie_security = Some(security);
    if security != CookieSecurity::Plain {
        config.key = Some(peer_key_base64().into());
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_sessions_signed_sessions_move_under_the_same_cookie_name() {
    let redis = RedisServer::start();
    let old = tower_side::old_app(&redis, CookieSecurity::Signed).await;
    // Both named `id`: ours replaces theirs in the browser.
    let manager = session_kit(
        &redis,
        "id",
        legacy(PeerLibrary::TowerSessions, CookieSecurity::Signed),
    )
    .await;
    let new = tower_side::new_app(manager).await;
    migrates(&redis, old, new, "id", "id").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_sessions_plain_and_private_sessions_move_and_their_cookie_is_cleared() {
    for security in [CookieSecurity::Plain, CookieSecurity::Private] {
        let redis = RedisServer::start();
        let old = tower_side::old_app(&redis, security).await;
        let manager = session_kit(
            &redis,
            "session",
            legacy(PeerLibrary::TowerSessions, security),
        )
        .await;
        let new = tower_side::new_app(manager).await;
        migrates(&redis, old, new, "id", "session").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actix_session_signed_and_private_sessions_move() {
    use actix_session::config::CookieContentSecurity;
    for (peer, ours) in [
        (CookieContentSecurity::Signed, CookieSecurity::Signed),
        (CookieContentSecurity::Private, CookieSecurity::Private),
    ] {
        let redis = RedisServer::start();
        let old = actix_side::old_app(&redis, peer).await;
        let manager = session_kit(&redis, "session", legacy(PeerLibrary::ActixSession, ours)).await;
        let new = actix_side::new_app(manager);
        migrates(&redis, old, new, "id", "session").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_made_with_another_key_gets_a_fresh_session_and_the_record_stays() {
    let redis = RedisServer::start();
    let old = tower_side::old_app(&redis, CookieSecurity::Signed).await;
    let mut config = legacy(PeerLibrary::TowerSessions, CookieSecurity::Signed);
    config.key = Some(base64(&[7u8; 64]).into());
    let new = tower_side::new_app(session_kit(&redis, "session", config).await).await;
    let browser = Browser::new();
    browser.get(old, "/login").await;
    let before = keys(&redis);
    let (status, body, _) = browser.get(new, "/whoami").await;
    assert_eq!((status, body.as_str()), (200, "None None"));
    assert_eq!(keys(&redis), before, "nothing is claimed or deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_config_block_turns_it_on() {
    use axum::{routing::get, Router};
    use session_kit::{config::SessionConfig, tower::Session};

    let redis = RedisServer::start();
    let old = tower_side::old_app(&redis, CookieSecurity::Signed).await;
    let config = SessionConfig::from_toml(&format!(
        r#"
        [cookie]
        secret = "{SECRET}"
        secure = false
        [store]
        kind = "redis"
        url = "{url}"
        [migrate]
        from = "tower-sessions"
        cookie_security = "signed"
        key = "{key}"
        "#,
        url = redis.url(),
        key = peer_key_base64(),
    ))
    .unwrap();
    let layer = session_kit::tower_layer(&config).await.unwrap();
    let router = Router::new()
        .route(
            "/whoami",
            get(|session: Session| async move {
                let user = session.get::<String>("user").await.unwrap();
                let cart = session.get::<Vec<u32>>("cart").await.unwrap();
                format!("{user:?} {cart:?}")
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let new = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    migrates(&redis, old, new, "id", "session").await;
}
