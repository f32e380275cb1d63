//! The same counter with sessions spread over several Memcached servers, so
//! any number of app servers behind any load balancer share them.
//!
//! ```text
//! memcached -p 11211 & memcached -p 11212 &
//! SESSION_SECRET=$(head -c 32 /dev/urandom | base64) \
//!   MEMCACHED_URL=memcache://127.0.0.1:11211,127.0.0.1:11212 \
//!   cargo run --example axum_memcached --features axum,memcached
//! curl -i http://127.0.0.1:3000/
//! ```
//!
//! `MEMCACHED_URL` lists the servers (default `memcache://127.0.0.1:11211`);
//! each session lives on one of them, chosen by rendezvous hashing. Start two
//! copies on different `ADDR`s with one `SESSION_SECRET`, and a cookie from
//! one counts on the other.

mod support;

use session_kit::{
    memcached::{MemcachedConfig, MemcachedStore},
    SessionManager,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let url =
        std::env::var("MEMCACHED_URL").unwrap_or_else(|_| "memcache://127.0.0.1:11211".to_owned());
    let store = MemcachedStore::connect(MemcachedConfig::from_url(&url)?).await?;
    let manager = SessionManager::builder(store, support::key_from_env()?).build()?;
    support::axum::serve(manager, "axum_memcached").await
}
