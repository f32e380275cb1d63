//! A counter kept in a signed-cookie session, served by axum with the
//! embedded memory store; no external server needed.
//!
//! ```text
//! cargo run --example axum_counter --features axum
//! curl -i http://127.0.0.1:3000/            # count 1, and a Set-Cookie
//! curl -i -b 'session=<value>' http://127.0.0.1:3000/   # count 2
//! ```
//!
//! `SESSION_SECRET` (32 bytes or more) sets the signing secret; without it a
//! random key is used and cookies stop verifying when the process restarts.
//! `ADDR` sets the listen address (default 127.0.0.1:3000).

use std::net::SocketAddr;

use axum::{routing::get, Router};
use session_kit::{
    tower::{Error, Session, SessionLayer},
    Key, MemoryStore, SessionManager,
};

async fn counter(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(format!("count: {count}\n"))
}

async fn logout(session: Session) -> Result<&'static str, Error> {
    session.destroy().await?;
    Ok("logged out\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,session_core=debug".into()),
        )
        .init();

    let key = match std::env::var("SESSION_SECRET") {
        Ok(secret) => Key::from_secret(secret)?,
        Err(_) => {
            tracing::warn!("SESSION_SECRET is not set; using a random key for this run");
            Key::generate()
        }
    };
    let manager = SessionManager::builder(MemoryStore::new(), key).build()?;

    let app = Router::new()
        .route("/", get(counter))
        .route("/logout", get(logout))
        .layer(SessionLayer::new(manager));

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "axum_counter listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
