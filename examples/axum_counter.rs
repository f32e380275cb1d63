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

mod support;

use session_kit::{memory::MemoryStore, SessionManager};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let manager = SessionManager::builder(MemoryStore::new(), support::key_from_env()?).build()?;
    support::axum::serve(manager, "axum_counter").await
}
