//! What the axum examples share: the signing key from the environment, the
//! two routes, and serving them until Ctrl-C.

use std::net::SocketAddr;

use axum::{routing::get, Router};
use session_kit::{
    tower::{Error, Session, SessionLayer},
    Key, SessionManager,
};

/// Starts logging: `RUST_LOG`, or info with session debug events.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,session_core=debug".into()),
        )
        .init();
}

/// The signing key from `SESSION_SECRET` (32 bytes or more), or a random
/// one for this run, with a warning.
pub(crate) fn key_from_env() -> Result<Key, Box<dyn std::error::Error>> {
    match std::env::var("SESSION_SECRET") {
        Ok(secret) => Ok(Key::from_secret(secret)?),
        Err(_) => {
            tracing::warn!("SESSION_SECRET is not set; using a random key for this run");
            Ok(Key::generate())
        }
    }
}

async fn counter(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(format!("count: {count}\n"))
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.destroy().await?;
    Ok("logged out\n")
}

/// Serves `/` (a counter) and `/logout` on `ADDR` (default
/// 127.0.0.1:3000) until Ctrl-C.
pub(crate) async fn serve(
    manager: SessionManager,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route("/", get(counter))
        .route("/logout", get(logout))
        .layer(SessionLayer::new(manager));

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "{name} listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
