//! The README's actix quick start, word for word: `tests/readme.rs` checks that the
//! README shows this file (without these lines), and `scripts/smoke-example
//! quickstart_actix` runs it.

use actix_web::{web, App, HttpServer};
use session_kit::actix::{Error, Session, SessionMiddleware};
use session_kit::{memory::MemoryStore, Key, SessionManager};

async fn counter(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(format!("count: {count}\n"))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = Key::from_secret(std::env::var("SESSION_SECRET")?)?; // 32+ random bytes
    let sessions =
        SessionMiddleware::new(SessionManager::builder(MemoryStore::new(), key).build()?);
    let app = move || {
        App::new()
            .wrap(sessions.clone())
            .route("/", web::get().to(counter))
    };
    let addr = std::env::var("ADDR").unwrap_or("127.0.0.1:3000".into());
    Ok(HttpServer::new(app).bind(addr)?.run().await?)
}
