//! What the bridge's tests share: the stores they run on (session-kit's
//! memory store, and a real Redis from the test kit), and a client that
//! drives an app over HTTP on a loopback port and keeps its cookie by hand,
//! so every `Set-Cookie` can be inspected.

#![allow(dead_code)] // each test binary uses its own part

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use axum::Router;
use cookie::Cookie;
use session_conformance::testkit::{MemcachedServer, PostgresServer, RedisServer};
use session_core::{failover::FailoverStore, memory::MemoryStore, store::SessionStore};
use session_memcached::{MemcachedConfig, MemcachedStore};
use session_postgres::{PostgresConfig, PostgresStore};
use session_redis::{RedisConfig, RedisStore};

/// A fresh in-process store.
pub(crate) fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

/// The Redis server this test binary shares; the test kit kills it when
/// the binary exits.
pub(crate) fn redis_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A key prefix no other test of this binary uses, so tests that share
/// the server never see each other's sessions.
pub(crate) fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("tsi{}:", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A session-kit `RedisStore` on the shared server under `prefix`,
/// connected in the calling test's runtime.
pub(crate) async fn redis_with_prefix(prefix: &str) -> Arc<dyn SessionStore> {
    let config = RedisConfig::standalone(redis_server().url())
        .with_key_prefix(prefix)
        .with_operation_timeout(Duration::from_secs(2));
    match RedisStore::connect(config).await {
        Ok(store) => Arc::new(store),
        Err(err) => panic!("{err}: {:?}", std::error::Error::source(&err)),
    }
}

/// A session-kit `RedisStore` on the shared server under a prefix of its own.
pub(crate) async fn redis() -> Arc<dyn SessionStore> {
    redis_with_prefix(&unique_prefix()).await
}

/// A mirrored failover pair: a Redis store of its own prefix in front, a
/// memory store behind.
pub(crate) async fn failover() -> Arc<dyn SessionStore> {
    Arc::new(FailoverStore::new(redis().await, MemoryStore::new()))
}

/// A session-kit `MemcachedStore` on a Memcached server this test binary
/// shares, under a prefix of its own.
pub(crate) async fn memcached() -> Arc<dyn SessionStore> {
    static SERVER: OnceLock<MemcachedServer> = OnceLock::new();
    let server = SERVER.get_or_init(MemcachedServer::start);
    let config = MemcachedConfig::new([server.addr()]).with_key_prefix(unique_prefix());
    match MemcachedStore::connect(config).await {
        Ok(store) => Arc::new(store),
        Err(err) => panic!("{err}: {:?}", std::error::Error::source(&err)),
    }
}

/// A session-kit `PostgresStore` on a PostgreSQL server this test binary
/// shares (one table), under a prefix of its own.
pub(crate) async fn postgres() -> Arc<dyn SessionStore> {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    // `initdb` and the start take a second or more: off the runtime.
    let url = tokio::task::spawn_blocking(|| SERVER.get_or_init(PostgresServer::start).url())
        .await
        .unwrap();
    let config = PostgresConfig::new(url)
        .with_key_prefix(unique_prefix())
        .with_operation_timeout(Duration::from_secs(2))
        .with_pool_size(2);
    match PostgresStore::connect(config).await {
        Ok(store) => Arc::new(store),
        Err(err) => panic!("{}", err.to_line()),
    }
}

/// An app served on a loopback port for the rest of the test.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One answer: its status, the session cookie it set (if any) and its body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) cookie: Option<Cookie<'static>>,
    pub(crate) body: String,
}

/// Sends `GET path`, with `cookie` as the request's only cookie.
pub(crate) async fn get(addr: SocketAddr, path: &str, cookie: Option<&Cookie<'_>>) -> Answer {
    send(
        reqwest::Client::new().get(format!("http://{addr}{path}")),
        cookie,
    )
    .await
}

/// Sends `request` with `cookie`, and reads the answer.
pub(crate) async fn send(request: reqwest::RequestBuilder, cookie: Option<&Cookie<'_>>) -> Answer {
    let request = match cookie {
        Some(cookie) => request.header("cookie", format!("{}={}", cookie.name(), cookie.value())),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| Cookie::parse(value.to_str().unwrap().to_owned()).unwrap())
        .next();
    let body = response.text().await.unwrap();
    Answer {
        status,
        cookie,
        body,
    }
}
