//! The same four routes in every variant, so the variants differ only in
//! their session layer:
//!
//! - `/login` starts a session holding a user id and a count of 0;
//! - `/plain` never touches the session;
//! - `/read` reads the count;
//! - `/incr` reads the count and writes it back plus one.
//!
//! The bare apps answer the same paths with the same bodies' shape and no
//! session at all.

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use axum::{routing::get, Router};
use session_kit::SessionManager;

use crate::load::LOGIN_PATH;

const USER: &str = "user-42";

/// The axum app with no session layer.
pub(crate) fn axum_bare() -> Router {
    Router::new()
        .route(LOGIN_PATH, get(|| async { "0" }))
        .route("/plain", get(|| async { "ok" }))
        .route("/read", get(|| async { "0" }))
        .route("/incr", get(|| async { "1" }))
}

/// The axum app over session-kit's tower layer.
pub(crate) fn axum_kit(manager: SessionManager) -> Router {
    use session_kit::tower::{Error, Session, SessionLayer};

    Router::new()
        .route(
            LOGIN_PATH,
            get(|session: Session| async move {
                session.insert("user_id", USER).await?;
                session.insert("count", 0_u64).await?;
                Ok::<_, Error>("0")
            }),
        )
        .route("/plain", get(|| async { "ok" }))
        .route(
            "/read",
            get(|session: Session| async move {
                let count = session.get::<u64>("count").await?.unwrap_or(0);
                Ok::<_, Error>(count.to_string())
            }),
        )
        .route(
            "/incr",
            get(|session: Session| async move {
                let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
                session.insert("count", count).await?;
                Ok::<_, Error>(count.to_string())
            }),
        )
        .layer(SessionLayer::new(manager))
}

/// The axum app over tower-sessions 0.14, with signed cookies as
/// session-kit's are.
pub(crate) fn axum_tower_sessions<S>(store: S) -> Router
where
    S: tower_sessions::SessionStore + Clone,
{
    use axum::http::StatusCode;
    use tower_sessions::{cookie::Key, Session, SessionManagerLayer};

    fn failed(_: tower_sessions::session::Error) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    Router::new()
        .route(
            LOGIN_PATH,
            get(|session: Session| async move {
                session.insert("user_id", USER).await.map_err(failed)?;
                session.insert("count", 0_u64).await.map_err(failed)?;
                Ok::<_, StatusCode>("0")
            }),
        )
        .route("/plain", get(|| async { "ok" }))
        .route(
            "/read",
            get(|session: Session| async move {
                let count = session.get::<u64>("count").await.map_err(failed)?;
                Ok::<_, StatusCode>(count.unwrap_or(0).to_string())
            }),
        )
        .route(
            "/incr",
            get(|session: Session| async move {
                let count = session
                    .get::<u64>("count")
                    .await
                    .map_err(failed)?
                    .unwrap_or(0)
                    + 1;
                session.insert("count", count).await.map_err(failed)?;
                Ok::<_, StatusCode>(count.to_string())
            }),
        )
        .layer(
            SessionManagerLayer::new(store)
                .with_secure(false)
                .with_signed(Key::generate()),
        )
}

/// Serves `app` on a fresh loopback port of the current (tokio) runtime
/// until the runtime ends; returns the port's address.
pub(crate) async fn serve_axum(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the bench's axum server runs until the process ends");
    });
    Ok(addr)
}

/// Which session layer an actix app gets.
#[derive(Clone)]
pub(crate) enum ActixLayer {
    Bare,
    Kit(SessionManager),
    ActixSessionRedis(actix_session::storage::RedisSessionStore),
    ActixSessionCookie,
}

/// Binds an actix app factory with one worker on a fresh loopback port and
/// spawns it on the current actix system; evaluates to the address. A
/// macro, because each variant's `App` is its own type.
macro_rules! serve_actix_app {
    ($factory:expr) => {{
        let server = HttpServer::new($factory).workers(1).bind("127.0.0.1:0")?;
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        Ok(addr)
    }};
}

/// Serves the actix app with one worker on a fresh loopback port, from
/// the current actix system, until the process ends; returns the address.
pub(crate) fn serve_actix(layer: ActixLayer) -> std::io::Result<SocketAddr> {
    match layer {
        ActixLayer::Bare => serve_actix_app!(|| App::new()
            .route(LOGIN_PATH, web::get().to(|| async { "0" }))
            .route("/plain", web::get().to(|| async { "ok" }))
            .route("/read", web::get().to(|| async { "0" }))
            .route("/incr", web::get().to(|| async { "1" }))),
        ActixLayer::Kit(manager) => serve_actix_app!(move || {
            use session_kit::actix::{Error, Session, SessionMiddleware};
            App::new()
                .wrap(SessionMiddleware::new(manager.clone()))
                .route(
                    LOGIN_PATH,
                    web::get().to(|session: Session| async move {
                        session.insert("user_id", USER).await?;
                        session.insert("count", 0_u64).await?;
                        Ok::<_, Error>("0")
                    }),
                )
                .route("/plain", web::get().to(|| async { "ok" }))
                .route(
                    "/read",
                    web::get().to(|session: Session| async move {
                        let count = session.get::<u64>("count").await?.unwrap_or(0);
                        Ok::<_, Error>(count.to_string())
                    }),
                )
                .route(
                    "/incr",
                    web::get().to(|session: Session| async move {
                        let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
                        session.insert("count", count).await?;
                        Ok::<_, Error>(count.to_string())
                    }),
                )
        }),
        ActixLayer::ActixSessionRedis(store) => {
            // One key for every worker, or a cookie signed by one worker
            // would not verify on another.
            let key = actix_web::cookie::Key::generate();
            serve_actix_app!(move || actix_session_app(store.clone(), key.clone()))
        }
        ActixLayer::ActixSessionCookie => {
            let key = actix_web::cookie::Key::generate();
            serve_actix_app!(move || actix_session_app(
                actix_session::storage::CookieSessionStore::default(),
                key.clone()
            ))
        }
    }
}

/// The actix app over actix-session 0.11 with `store`, its cookie signed
/// (not encrypted) as session-kit's is.
fn actix_session_app<S>(
    store: S,
    key: actix_web::cookie::Key,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
>
where
    S: actix_session::storage::SessionStore + 'static,
{
    use actix_session::{config::CookieContentSecurity, Session, SessionMiddleware};

    fn failed(err: impl std::fmt::Display) -> actix_web::Error {
        actix_web::error::ErrorInternalServerError(err.to_string())
    }

    App::new()
        .wrap(
            SessionMiddleware::builder(store, key)
                .cookie_secure(false)
                .cookie_content_security(CookieContentSecurity::Signed)
                .build(),
        )
        .route(
            LOGIN_PATH,
            web::get().to(|session: Session| async move {
                session.insert("user_id", USER).map_err(failed)?;
                session.insert("count", 0_u64).map_err(failed)?;
                Ok::<_, actix_web::Error>(HttpResponse::Ok().body("0"))
            }),
        )
        .route("/plain", web::get().to(|| async { "ok" }))
        .route(
            "/read",
            web::get().to(|session: Session| async move {
                let count = session.get::<u64>("count").map_err(failed)?.unwrap_or(0);
                Ok::<_, actix_web::Error>(HttpResponse::Ok().body(count.to_string()))
            }),
        )
        .route(
            "/incr",
            web::get().to(|session: Session| async move {
                let count = session.get::<u64>("count").map_err(failed)?.unwrap_or(0) + 1;
                session.insert("count", count).map_err(failed)?;
                Ok::<_, actix_web::Error>(HttpResponse::Ok().body(count.to_string()))
            }),
        )
}
