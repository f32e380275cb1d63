//! # session-instructions
//!
//! Runs `REQUESTS` requests of one workload through an axum app with
//! session-kit's layer, in-process (`tower::ServiceExt::oneshot`, no
//! socket, no HTTP parsing), on one current-thread runtime, then exits.
//! Under callgrind the difference between two runs' instruction totals,
//! divided by the difference in requests, is what one request costs: the
//! set-up (runtime, app, login, connections) cancels out.
//!
//! ```text
//! session-instructions PATH REQUESTS
//! ```
//!
//! | PATH | the app | each request |
//! |---|---|---|
//! | `bare-read` | axum with no session layer | answers a constant, as the bench's bare app |
//! | `memory-untouched` | session-kit on `MemoryStore` | never touches its session (the cookie is still checked) |
//! | `memory-read` | the same | reads the count |
//! | `memory-write` | the same | reads the count and writes it plus one |
//! | `redis-read`, `redis-write` | session-kit on `RedisStore` at `REDIS_URL` | as above |
//! | `memcached-read`, `memcached-write` | session-kit on `MemcachedStore` at `MEMCACHED_URL` | as above |
//!
//! Callgrind counts this process's user-space instructions only: the
//! store server's work and the kernel's are not in the figure.
//! `scripts/check-instructions` runs it and fails when `memory-read` grows
//! by more than 10 % over `bench/instructions/baseline.txt`.
#![forbid(unsafe_code)]

use std::{process::ExitCode, sync::Arc};

use axum::{body::Body, routing::get, Router};
use http::{header, Request};
use http_body_util::BodyExt;
use session_kit::{
    memcached::{MemcachedConfig, MemcachedStore},
    memory::MemoryStore,
    redis::{RedisConfig, RedisStore},
    store::SessionStore,
    tower::{Error, Session, SessionLayer},
    Key, SessionManager,
};
use tower::ServiceExt;

const USAGE: &str = "usage: session-instructions PATH REQUESTS (PATH: bare-read, memory-untouched, memory-read, memory-write, redis-read, redis-write, memcached-read, memcached-write)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(requests)) = (args.first(), args.get(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let Ok(requests) = requests.parse::<u32>() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    match runtime.block_on(run(path, requests)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("session-instructions: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &str, requests: u32) -> Result<(), Box<dyn std::error::Error>> {
    let (store, route) = match path.split_once('-') {
        Some(("bare", "read")) => return drive(bare(), "/read", None, requests).await,
        Some((store, route @ ("untouched" | "read" | "write"))) => (store, route),
        _ => return Err(USAGE.into()),
    };
    let store: Arc<dyn SessionStore> = match store {
        "memory" => Arc::new(MemoryStore::new()),
        "redis" => Arc::new(RedisStore::connect(RedisConfig::from_url(&env("REDIS_URL")?)?).await?),
        "memcached" => Arc::new(
            MemcachedStore::connect(MemcachedConfig::from_url(&env("MEMCACHED_URL")?)?).await?,
        ),
        _ => return Err(USAGE.into()),
    };
    // A fixed key: the cookie's HMAC costs the same whatever the key.
    let key = Key::from_secret("session-instructions: a fixed 32-byte secret")?;
    let app = with_sessions(SessionManager::builder(store, key).build()?);
    let cookie = login(&app).await?;
    let uri = match route {
        "untouched" => "/plain",
        "read" => "/read",
        _ => "/incr",
    };
    drive(app, uri, Some(&cookie), requests).await
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// The bench's routes (session-bench's `apps.rs`), over session-kit.
fn with_sessions(manager: SessionManager) -> Router {
    Router::new()
        .route(
            "/login",
            get(|session: Session| async move {
                session.insert("user_id", "user-42").await?;
                session.insert("count", 0_u64).await?;
                Ok::<_, Error>("0")
            }),
        )
        .route("/plain", get(|| async { "ok" }))
        .route(
            "/read",
            get(|session: Session| async move {
                let count = session.get::<u64>("count").await?.unwrap_or(0);
                Ok::<_, Error>(count.to_string())
            }),
        )
        .route(
            "/incr",
            get(|session: Session| async move {
                let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
                session.insert("count", count).await?;
                Ok::<_, Error>(count.to_string())
            }),
        )
        .layer(SessionLayer::new(manager))
        .with_state(())
}

/// `with_state(())` as `axum::serve` does once per connection: without it
/// a `Router<()>` called directly turns each handler into a route on every
/// request, and applies every layer again (building a new
/// `SessionService` per request), which a served app never does.
fn bare() -> Router {
    Router::new()
        .route("/read", get(|| async { "0" }))
        .with_state(())
}

/// Logs in and returns the `Cookie` header value the app set.
async fn login(app: &Router) -> Result<String, Box<dyn std::error::Error>> {
    let response = app
        .clone()
        .oneshot(Request::get("/login").body(Body::empty())?)
        .await?;
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .ok_or("the login set no cookie")?
        .to_str()?;
    let pair = set_cookie.split(';').next().unwrap_or_default();
    Ok(pair.to_owned())
}

async fn drive(
    app: Router,
    uri: &str,
    cookie: Option<&str>,
    requests: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    for _ in 0..requests {
        let mut request = Request::get(uri);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = app.clone().oneshot(request.body(Body::empty())?).await?;
        if !response.status().is_success() {
            return Err(format!("{uri} answered {}", response.status()).into());
        }
        response.into_body().collect().await?;
    }
    Ok(())
}
