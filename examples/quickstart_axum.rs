//! The README's axum quick start, word for word: `tests/readme.rs` checks that the
//! README shows this file (without these lines), and `scripts/smoke-example
//! quickstart_axum` runs it.

use axum::{routing::get, Router};
use session_kit::tower::{Error, Session, SessionLayer};
use session_kit::{memory::MemoryStore, Key, SessionManager};

async fn counter(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(format!("count: {count}\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = Key::from_secret(std::env::var("SESSION_SECRET")?)?; // 32+ random bytes
    let sessions = SessionLayer::new(SessionManager::builder(MemoryStore::new(), key).build()?);
    let app = Router::new().route("/", get(counter)).layer(sessions);
    let addr = std::env::var("ADDR").unwrap_or("127.0.0.1:3000".into());
    Ok(axum::serve(tokio::net::TcpListener::bind(addr).await?, app).await?)
}
