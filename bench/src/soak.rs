//! The soak test: `session-bench --soak`. A fixed time of load with many
//! concurrent sessions against one store, then a wait until every session
//! has expired, reporting errors, lost updates and the memory the process
//! (and the store) held from start to end.
//!
//! Each user logs in and drives its session from two tasks at once, each
//! incrementing its own key (`a` or `b`) and checking every answer against
//! the last one it had acknowledged. Every few seconds the user reads both
//! counters, checks them against what was acknowledged, and abandons the
//! session for a new one, so sessions keep being created and left to
//! expire: memory must come back once they have.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{extract::Path, routing::get, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{
    client::conn::http1::SendRequest,
    header::{COOKIE, SET_COOKIE},
    Request, StatusCode,
};
use hyper_util::rt::TokioIo;
use session_conformance::testkit::RedisServer;
use session_kit::{
    tower::{Error, Session, SessionLayer},
    CookieConfig, Key, MemoryStore, SessionManager, SessionStore,
};
use tokio::net::TcpStream;

/// Sessions end this long after their last request.
const IDLE: Duration = Duration::from_secs(2);
/// How long a user keeps one session before abandoning it.
const ROTATE: Duration = Duration::from_secs(3);
/// The most one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) seconds: u64,
    pub(crate) users: usize,
    pub(crate) stores: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seconds: 60,
            users: 200,
            stores: vec!["memory".to_owned(), "redis".to_owned()],
        }
    }
}

/// Parses `--seconds N`, `--users N` and `--store memory|redis` (repeatable).
pub(crate) fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut stores = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                options.seconds = value("--seconds")?
                    .parse()
                    .map_err(|_| "--seconds takes a whole number".to_owned())?;
            }
            "--users" => {
                options.users = value("--users")?
                    .parse()
                    .map_err(|_| "--users takes a whole number".to_owned())?;
            }
            "--store" => match value("--store")?.as_str() {
                store @ ("memory" | "redis") => stores.push(store.to_owned()),
                other => return Err(format!("--store is memory or redis, not {other:?}")),
            },
            other => return Err(format!("unknown soak argument {other:?}")),
        }
    }
    if options.seconds == 0 || options.users == 0 {
        return Err("--seconds and --users must be above 0".to_owned());
    }
    if !stores.is_empty() {
        options.stores = stores;
    }
    Ok(options)
}

/// Counters every task adds to.
#[derive(Debug, Default)]
struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    lost_updates: AtomicU64,
    sessions: AtomicU64,
}

/// One store's soak, as printed.
#[derive(Debug)]
struct Report {
    store: String,
    requests: u64,
    errors: u64,
    lost_updates: u64,
    sessions: u64,
    rss_start: u64,
    rss_peak: u64,
    rss_end: u64,
    held_at_end: String,
}

/// Runs the soak for each store in turn and prints one table.
pub(crate) fn run(options: &Options) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for store in &options.stores {
        eprintln!(
            "soak: {store}, {} users, {} s, sessions abandoned every {} s and idle after {} s",
            options.users,
            options.seconds,
            ROTATE.as_secs(),
            IDLE.as_secs()
        );
        reports.push(runtime.block_on(soak_one(store, options))?);
    }
    println!("| store | requests | errors | lost updates | sessions | RSS at start (after warm-up) | RSS peak | RSS after expiry | growth | store holds after expiry |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &reports {
        let growth = r.rss_end as f64 / r.rss_start.max(1) as f64 - 1.0;
        println!(
            "| {} | {} | {} | {} | {} | {} MiB | {} MiB | {} MiB | {:+.1} % | {} |",
            r.store,
            r.requests,
            r.errors,
            r.lost_updates,
            r.sessions,
            r.rss_start >> 20,
            r.rss_peak >> 20,
            r.rss_end >> 20,
            growth * 100.0,
            r.held_at_end
        );
    }
    let failed = reports.iter().any(|r| r.errors > 0 || r.lost_updates > 0);
    if failed {
        return Err("the soak saw errors or lost updates".into());
    }
    Ok(())
}

async fn soak_one(
    store_name: &str,
    options: &Options,
) -> Result<Report, Box<dyn std::error::Error + Send + Sync>> {
    let redis = (store_name == "redis").then(RedisServer::start);
    let memory = MemoryStore::new();
    let store: Arc<dyn SessionStore> = match &redis {
        Some(server) => Arc::new(
            session_kit::redis::RedisStore::connect(session_kit::redis::RedisConfig::standalone(
                server.url(),
            ))
            .await?,
        ),
        None => Arc::new(memory.clone()),
    };
    let manager = SessionManager::builder(store, Key::generate())
        .cookie(CookieConfig::default().with_secure(false))
        .idle_timeout(IDLE)
        .absolute_timeout(IDLE * 60)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app(manager)).await });

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let users: Vec<_> = (0..options.users)
        .map(|_| tokio::spawn(user(addr, deadline, Arc::clone(&tally))))
        .collect();

    // The first sample after one rotation: every user has a live session
    // and has abandoned one.
    let warm = (ROTATE + IDLE).min(Duration::from_secs(options.seconds) / 2);
    tokio::time::sleep(warm).await;
    let rss_start = rss();
    let mut rss_peak = rss_start;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss_peak = rss_peak.max(rss());
    }
    for user in users {
        let _ = user.await;
    }

    // Let every session pass its idle deadline, then nudge the memory
    // store so moka's maintenance runs (it runs on access).
    tokio::time::sleep(IDLE + Duration::from_secs(2)).await;
    let mut nudge = Client::connect(addr).await?;
    for _ in 0..50 {
        let _ = nudge.get("/login").await;
        nudge.cookie = None;
    }
    tokio::time::sleep(IDLE + Duration::from_secs(1)).await;
    let _ = nudge.get("/plain").await;
    let held_at_end = match &redis {
        Some(server) => format!(
            "{} keys, {} used",
            server.cli(&["DBSIZE"]).trim(),
            info_field(&server.cli(&["INFO", "memory"]), "used_memory_human")
        ),
        None => {
            memory.run_pending_tasks().await;
            format!("{} sessions", memory.approximate_len())
        }
    };
    let rss_end = rss();
    server.abort();
    Ok(Report {
        store: store_name.to_owned(),
        requests: tally.requests.load(Ordering::Relaxed),
        errors: tally.errors.load(Ordering::Relaxed),
        lost_updates: tally.lost_updates.load(Ordering::Relaxed),
        sessions: tally.sessions.load(Ordering::Relaxed),
        rss_start,
        rss_peak,
        rss_end,
        held_at_end,
    })
}

fn app(manager: SessionManager) -> Router {
    Router::new()
        .route(
            "/login",
            get(|session: Session| async move {
                session.insert("a", 0_u64).await?;
                session.insert("b", 0_u64).await?;
                Ok::<_, Error>("0")
            }),
        )
        .route("/plain", get(|| async { "ok" }))
        .route(
            "/read",
            get(|session: Session| async move {
                let a = session.get::<u64>("a").await?;
                let b = session.get::<u64>("b").await?;
                Ok::<_, Error>(match (a, b) {
                    (Some(a), Some(b)) => format!("{a} {b}"),
                    _ => "none".to_owned(),
                })
            }),
        )
        .route(
            "/incr/{key}",
            get(|session: Session, Path(key): Path<String>| async move {
                let Some(count) = session.get::<u64>(&key).await? else {
                    return Ok::<_, Error>("none".to_owned());
                };
                session.insert(&key, count + 1).await?;
                Ok(format!("{}", count + 1))
            }),
        )
        .layer(SessionLayer::new(manager))
}

/// One user until `deadline`: a session at a time, two writers each.
async fn user(addr: SocketAddr, deadline: Instant, tally: Arc<Tally>) {
    while Instant::now() < deadline {
        let Ok(mut login) = Client::connect(addr).await else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match login.get("/login").await {
            Some((StatusCode::OK, _)) if login.cookie.is_some() => {}
            _ => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        tally.sessions.fetch_add(1, Ordering::Relaxed);
        let cookie = login.cookie.clone();
        let until = (Instant::now() + ROTATE).min(deadline);
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|key| tokio::spawn(writer(addr, cookie.clone(), key, until, Arc::clone(&tally))))
            .collect();
        let mut acked = Vec::new();
        for writer in writers {
            acked.push(writer.await.unwrap_or(None));
        }
        let read = login.get("/read").await;
        tally.requests.fetch_add(2, Ordering::Relaxed);
        match (read, acked.as_slice()) {
            (Some((StatusCode::OK, body)), [Some(a), Some(b)]) => {
                let counts: Vec<u64> = body.split(' ').filter_map(|n| n.parse().ok()).collect();
                if counts.len() != 2 {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                } else {
                    let lost = a.saturating_sub(counts[0]) + b.saturating_sub(counts[1]);
                    tally.lost_updates.fetch_add(lost, Ordering::Relaxed);
                }
            }
            _ => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The session is abandoned here, left to expire.
    }
}

/// Increments `key` of one session until `until`; the last count the
/// server acknowledged, or `None` if the connection could not be made.
async fn writer(
    addr: SocketAddr,
    cookie: Option<String>,
    key: &'static str,
    until: Instant,
    tally: Arc<Tally>,
) -> Option<u64> {
    let mut client = Client::connect(addr).await.ok()?;
    client.cookie = cookie;
    let path = format!("/incr/{key}");
    let mut acked = 0_u64;
    while Instant::now() < until {
        tally.requests.fetch_add(1, Ordering::Relaxed);
        match client.get(&path).await {
            Some((StatusCode::OK, body)) => match body.parse::<u64>() {
                // Only this task writes `key`, so every answer is one more.
                Ok(count) if count == acked + 1 => acked = count,
                Ok(count) => {
                    tally
                        .lost_updates
                        .fetch_add(acked.saturating_sub(count - 1), Ordering::Relaxed);
                    acked = count;
                }
                Err(_) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                }
            },
            _ => {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                client = Client::connect(addr).await.ok()?;
            }
        }
    }
    Some(acked)
}

/// One keep-alive HTTP/1.1 connection with a cookie.
struct Client {
    sender: SendRequest<Empty<Bytes>>,
    cookie: Option<String>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            cookie: None,
        })
    }

    /// The status and body of `GET path`, keeping any cookie set; `None`
    /// for a transport error or a timeout.
    async fn get(&mut self, path: &str) -> Option<(StatusCode, String)> {
        let mut request = Request::get(path).header("host", "soak");
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let request = request.body(Empty::new()).ok()?;
        let exchange = async {
            self.sender.ready().await.ok()?;
            let response = self.sender.send_request(request).await.ok()?;
            let status = response.status();
            if let Some(set) = response.headers().get(SET_COOKIE) {
                let pair = set.to_str().ok()?.split(';').next()?.to_owned();
                self.cookie = (!pair.ends_with('=')).then_some(pair);
            }
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.ok()?
    }
}

/// This process's resident memory in bytes, from `/proc/self/statm`; 0
/// where there is no such file.
fn rss() -> u64 {
    const PAGE: u64 = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE)
}

fn info_field(info: &str, field: &str) -> String {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or("?")
        .trim()
        .to_owned()
}
