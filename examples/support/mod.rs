//! What the examples share: logging, the signing key and the listen address
//! from the environment, and the two routes, written once over the
//! framework-neutral session; `axum` and `actix` serve them.

#[cfg(feature = "actix")]
#[allow(dead_code)] // only the actix example serves with it
pub(crate) mod actix;
#[cfg(feature = "axum")]
#[allow(dead_code)] // only the axum examples serve with it
pub(crate) mod axum;

use std::net::SocketAddr;

use session_kit::{Key, Session, SessionError};

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
#[allow(dead_code)] // from_config takes its key from the config instead
pub(crate) fn key_from_env() -> Result<Key, Box<dyn std::error::Error>> {
    match std::env::var("SESSION_SECRET") {
        Ok(secret) => Ok(Key::from_secret(secret)?),
        Err(_) => {
            tracing::warn!("SESSION_SECRET is not set; using a random key for this run");
            Ok(Key::generate())
        }
    }
}

/// `ADDR`, or 127.0.0.1:3000.
fn listen_addr() -> Result<SocketAddr, Box<dyn std::error::Error>> {
    Ok(std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?)
}

/// `/`: adds one to the count and answers it.
async fn count(session: &Session) -> Result<String, SessionError> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(format!("count: {count}\n"))
}

/// `/logout`: ends the session.
async fn logout(session: &Session) -> Result<&'static str, SessionError> {
    session.destroy().await?;
    Ok("logged out\n")
}
