//! A "your devices" page: log in from several browsers, see every session
//! of your account with its user agent and when it was last active, log
//! one out, or log out all the others. At most three sessions per user: a
//! fourth login logs out the oldest. Served by axum with the embedded
//! memory store; swap in Redis, PostgreSQL or the cluster store unchanged.
//!
//! ```text
//! cargo run --example axum_devices --features axum
//! curl -i -A laptop http://127.0.0.1:3000/login/ada          # Set-Cookie: session=<laptop>
//! curl -i -A phone  http://127.0.0.1:3000/login/ada          # Set-Cookie: session=<phone>
//! curl -b 'session=<phone>' http://127.0.0.1:3000/devices    # two lines, the phone marked
//! curl -b 'session=<phone>' -X POST http://127.0.0.1:3000/devices/<handle>/end
//! curl -b 'session=<phone>' -X POST http://127.0.0.1:3000/devices/end-others
//! ```
//!
//! Ending goes through POST: a link that logs a device out must not be
//! followable by a crafted GET (the cookie is `SameSite=Lax`, which lets
//! cross-site GET navigations carry it).
//!
//! `SESSION_SECRET` (32 bytes or more) sets the signing secret; without it a
//! random key is used. Handles are derived from it, so every server that
//! shares the secret shows and accepts the same handles. `ADDR` sets the
//! listen address (default 127.0.0.1:3000).

mod support;

use std::time::{Duration, SystemTime};

use axum::{
    extract::Path,
    http::{header::USER_AGENT, HeaderMap, StatusCode},
    routing::{get, post},
    Router,
};
use session_kit::{
    devices::DeviceHandle,
    memory::MemoryStore,
    tower::{Error, Session, SessionLayer},
    SessionManager,
};

/// The most sessions one user keeps; a login past it ends the oldest.
const MAX_SESSIONS_PER_USER: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let manager = SessionManager::builder(MemoryStore::new(), support::key_from_env()?)
        .with_max_sessions_per_owner(MAX_SESSIONS_PER_USER)
        .build()?;
    let app = Router::new()
        .route("/login/{user}", get(login))
        .route("/devices", get(devices))
        .route("/devices/end-others", post(end_others))
        .route("/devices/{handle}/end", post(end_one))
        .layer(SessionLayer::new(manager));

    let addr: std::net::SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "axum_devices listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Logs `user` in (a real app checks a password first): a new id against
/// fixation, the owner, and the browser's user agent as the label.
async fn login(
    session: Session,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<String, Error> {
    session.cycle_id().await?;
    session.set_owner(&user).await?;
    let agent = headers
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown browser");
    session.set_label(agent).await?;
    Ok(format!("logged in as {user}\n"))
}

/// One line per device: handle, label, last active, and which one is this.
async fn devices(session: Session) -> Result<(StatusCode, String), Error> {
    if session.owner().await?.is_none() {
        return Ok((StatusCode::UNAUTHORIZED, "log in first\n".to_owned()));
    }
    let now = SystemTime::now();
    let lines: String = session
        .devices()
        .await?
        .into_iter()
        .map(|device| {
            let idle = now
                .duration_since(device.last_active)
                .unwrap_or(Duration::ZERO);
            format!(
                "{} {:<24} active {:>4}s ago{}\n",
                device.handle,
                device.label.as_deref().unwrap_or("-"),
                idle.as_secs(),
                if device.current {
                    "  (this device)"
                } else {
                    ""
                }
            )
        })
        .collect();
    Ok((StatusCode::OK, lines))
}

/// Logs out the device `handle` names, if it is one of this user's.
async fn end_one(session: Session, Path(handle): Path<String>) -> Result<StatusCode, Error> {
    let Some(handle) = DeviceHandle::parse(&handle) else {
        return Ok(StatusCode::NOT_FOUND);
    };
    Ok(if session.end_device(&handle).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    })
}

/// Logs out every other device of this user.
async fn end_others(session: Session) -> Result<String, Error> {
    let ended = session.log_out_other_sessions().await?;
    Ok(format!("logged out {ended} other session(s)\n"))
}
