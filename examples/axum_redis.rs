//! The same counter with sessions in Redis, so any number of servers behind
//! any load balancer share them.
//!
//! ```text
//! redis-server --port 6379 &
//! SESSION_SECRET=$(head -c 32 /dev/urandom | base64) \
//!   cargo run --example axum_redis --features axum,redis
//! curl -i http://127.0.0.1:3000/
//! ```
//!
//! `REDIS_URL` names the Redis (default `redis://127.0.0.1:6379`), and its
//! scheme the topology: `redis+sentinel://s1:26379,s2:26379/mymaster` or
//! `redis+cluster://n1:7000,n2:7000` work too. Start two copies on different
//! `ADDR`s with one `SESSION_SECRET`, and a cookie from one counts on the
//! other.

mod support;

use session_kit::{
    redis::{RedisConfig, RedisStore},
    SessionManager,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let store = RedisStore::connect(RedisConfig::from_url(&url)?).await?;
    let manager = SessionManager::builder(store, support::key_from_env()?).build()?;
    support::axum::serve(manager, "axum_redis").await
}
