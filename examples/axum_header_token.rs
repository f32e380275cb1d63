//! An API whose session token travels in `Authorization: Bearer <token>`
//! instead of a cookie, for mobile, CLI and WebSocket clients, with
//! "remember me" logins that last 30 days and normal ones that end after
//! 30 idle minutes. Served by axum with the embedded memory store.
//!
//! ```text
//! cargo run --example axum_header_token --features axum
//! curl -i -X POST http://127.0.0.1:3000/login                # authorization: Bearer <token>
//! curl -i -X POST 'http://127.0.0.1:3000/login?remember=1'   # the same, for 30 days
//! curl -i -H 'Authorization: Bearer <token>' http://127.0.0.1:3000/me
//! curl -i -X POST -H 'Authorization: Bearer <token>' http://127.0.0.1:3000/logout
//!                                                             # authorization: (empty): forget it
//! ```
//!
//! The client keeps the latest `authorization` value any response gave it
//! and sends it back as is; an empty value means the session ended. No
//! browser sends the header by itself, so there is no CSRF to defend
//! against; a browser app must keep the token where scripts can read it,
//! so an XSS bug could steal it (see `session_kit::Transport`).
//!
//! `SESSION_SECRET` (32 bytes or more) sets the signing secret; `ADDR` the
//! listen address (default 127.0.0.1:3000).

mod support;

use std::time::Duration;

use axum::{
    extract::RawQuery,
    routing::{get, post},
    Router,
};
use session_kit::{
    memory::MemoryStore,
    tower::{Error, Session, SessionLayer},
    HeaderTransport, Lifetime, SessionManager, Transport,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let manager = SessionManager::builder(MemoryStore::new(), support::key_from_env()?)
        .with_transport(Transport::Header(HeaderTransport::bearer()))
        // Normal sessions keep the defaults (30 minutes idle, 24 hours in
        // all); one session may ask for up to 30 days of either.
        .with_max_idle_timeout(30 * DAY)
        .with_max_absolute_timeout(30 * DAY)
        .build()?;

    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(manager));

    let addr: std::net::SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "axum_header_token listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Logs "ada" in: a new id against fixation (the response carries the new
/// token), and with `?remember=1` a 30-day lifetime for this session only.
async fn login(session: Session, RawQuery(query): RawQuery) -> Result<&'static str, Error> {
    session.insert("user", "ada").await?;
    session.cycle_id().await?;
    if query.as_deref() == Some("remember=1") {
        session
            .set_lifetime(Lifetime::new(30 * DAY, 30 * DAY).expect("30 days is a valid lifetime"))
            .await?;
        return Ok("logged in for 30 days\n");
    }
    Ok("logged in\n")
}

async fn me(session: Session) -> Result<String, Error> {
    Ok(match session.get::<String>("user").await? {
        Some(user) => format!("you are {user}\n"),
        None => "anonymous\n".to_owned(),
    })
}

/// Ends the session; the response's empty `authorization` header tells the
/// client to forget its token.
async fn logout(session: Session) -> Result<&'static str, Error> {
    session.destroy().await?;
    Ok("logged out\n")
}
