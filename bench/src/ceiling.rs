//! The ceiling rows: the bare framework plus the store's own round trips
//! made straight through the same client session-kit uses, with no session
//! layer at all. A session row can at best match its ceiling, so reading it
//! against its ceiling separates what the store itself costs from what the
//! session layer adds.
//!
//! Each app answers the bench's four routes:
//! - `/login` writes the value once;
//! - `/plain` makes no store call;
//! - `/read` makes the one read a session load makes (`GET`, `HGETALL` or
//!   `mg`);
//! - `/incr` makes that read and then one write (`SET`, `HSET` of one field,
//!   or `ms`): the two round trips of a session commit.
//!
//! Every user shares one key: the store's work per command does not depend
//! on which key it is, and the value has the size of the bench's session
//! (a user id and a count).

use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use axum::{extract::State, http::StatusCode, routing::get, Router};
use memcache::exp::{AsyncMemcache, Get, Set};
use redis::{aio::ConnectionManager, AsyncCommands};

use crate::load::LOGIN_PATH;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The key every ceiling app reads and writes.
const KEY: &str = "bench:ceiling";
/// A string value the size of the bench's session data.
const VALUE: &str = r#"{"user_id":"user-42","count":0}"#;

/// The Redis command pair a ceiling app makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RedisShape {
    /// `GET`, and `GET` + `SET`: a whole-value session, as the peers store.
    String,
    /// `HGETALL`, and `HGETALL` + `HSET` of one field: session-kit's hash.
    Hash,
}

/// A Redis connection as session-redis opens one on a standalone server.
pub(crate) async fn redis_connection(url: &str) -> Result<ConnectionManager, BoxError> {
    Ok(redis::Client::open(url)?.get_connection_manager().await?)
}

/// Redis's reply, mapped to the bench's only failure answer.
fn failed(_: redis::RedisError) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

/// One read in `shape`.
async fn redis_read(
    connection: &mut ConnectionManager,
    shape: RedisShape,
) -> Result<usize, StatusCode> {
    Ok(match shape {
        RedisShape::String => {
            let value: Option<String> = connection.get(KEY).await.map_err(failed)?;
            value.map_or(0, |value| value.len())
        }
        RedisShape::Hash => {
            let fields: Vec<(String, String)> = connection.hgetall(KEY).await.map_err(failed)?;
            fields.len()
        }
    })
}

/// One write in `shape`.
async fn redis_write(
    connection: &mut ConnectionManager,
    shape: RedisShape,
) -> Result<(), StatusCode> {
    match shape {
        RedisShape::String => connection.set::<_, _, ()>(KEY, VALUE).await.map_err(failed),
        RedisShape::Hash => connection
            .hset::<_, _, _, ()>(KEY, "d:count", "1")
            .await
            .map_err(failed),
    }
}

/// The initial value, written once before the load starts.
async fn redis_login(
    connection: &mut ConnectionManager,
    shape: RedisShape,
) -> Result<(), StatusCode> {
    match shape {
        RedisShape::String => redis_write(connection, shape).await,
        RedisShape::Hash => connection
            .hset_multiple::<_, _, _, ()>(KEY, &[("d:user_id", "\"user-42\""), ("d:count", "0")])
            .await
            .map_err(failed),
    }
}

/// The axum ceiling app over Redis.
pub(crate) fn axum_redis(connection: ConnectionManager, shape: RedisShape) -> Router {
    type Conn = State<ConnectionManager>;
    Router::new()
        .route(
            LOGIN_PATH,
            get(move |State(mut c): Conn| async move {
                redis_login(&mut c, shape).await.map(|()| "0")
            }),
        )
        .route("/plain", get(|| async { "ok" }))
        .route(
            "/read",
            get(move |State(mut c): Conn| async move {
                redis_read(&mut c, shape).await.map(|n| n.to_string())
            }),
        )
        .route(
            "/incr",
            get(move |State(mut c): Conn| async move {
                let n = redis_read(&mut c, shape).await?;
                redis_write(&mut c, shape).await?;
                Ok::<_, StatusCode>(n.to_string())
            }),
        )
        .with_state(connection)
}

/// A memcache client as session-memcached builds one, on `servers`.
pub(crate) async fn memcached_client(servers: &[String]) -> Result<AsyncMemcache, BoxError> {
    Ok(AsyncMemcache::builder()
        .max_idle(session_kit::memcached::MemcachedConfig::DEFAULT_POOL_SIZE)
        .degrade(false)
        .connect_async(servers.iter().map(String::as_str))
        .await?)
}

async fn mg(client: &AsyncMemcache) -> Result<usize, StatusCode> {
    let read = client
        .meta()
        .run(Get::new(KEY))
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(read.value.map_or(0, |value| value.len()))
}

async fn ms(client: &AsyncMemcache) -> Result<(), StatusCode> {
    client
        .meta()
        .run(Set::new(KEY, VALUE.as_bytes()))
        .await
        .map(drop)
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

/// The axum ceiling app over Memcached: `mg`, and `mg` + `ms`.
pub(crate) fn axum_memcached(client: AsyncMemcache) -> Router {
    type Client = State<Arc<AsyncMemcache>>;
    Router::new()
        .route(
            LOGIN_PATH,
            get(|State(c): Client| async move { ms(&c).await.map(|()| "0") }),
        )
        .route("/plain", get(|| async { "ok" }))
        .route(
            "/read",
            get(|State(c): Client| async move { mg(&c).await.map(|n| n.to_string()) }),
        )
        .route(
            "/incr",
            get(|State(c): Client| async move {
                let n = mg(&c).await?;
                ms(&c).await?;
                Ok::<_, StatusCode>(n.to_string())
            }),
        )
        .with_state(Arc::new(client))
}

/// Serves the actix ceiling app over Redis with one worker on a fresh
/// loopback port, from the current actix system; returns the address.
pub(crate) fn serve_actix_redis(
    connection: ConnectionManager,
    shape: RedisShape,
) -> std::io::Result<std::net::SocketAddr> {
    fn status(code: StatusCode) -> actix_web::Error {
        actix_web::error::InternalError::new(
            "store error",
            actix_web::http::StatusCode::from_u16(code.as_u16())
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .into()
    }
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(connection.clone()))
            .route(
                LOGIN_PATH,
                web::get().to(move |c: web::Data<ConnectionManager>| async move {
                    let mut c = c.get_ref().clone();
                    redis_login(&mut c, shape).await.map_err(status)?;
                    Ok::<_, actix_web::Error>("0")
                }),
            )
            .route("/plain", web::get().to(|| async { "ok" }))
            .route(
                "/read",
                web::get().to(move |c: web::Data<ConnectionManager>| async move {
                    let mut c = c.get_ref().clone();
                    let n = redis_read(&mut c, shape).await.map_err(status)?;
                    Ok::<_, actix_web::Error>(n.to_string())
                }),
            )
            .route(
                "/incr",
                web::get().to(move |c: web::Data<ConnectionManager>| async move {
                    let mut c = c.get_ref().clone();
                    let n = redis_read(&mut c, shape).await.map_err(status)?;
                    redis_write(&mut c, shape).await.map_err(status)?;
                    Ok::<_, actix_web::Error>(n.to_string())
                }),
            )
    })
    .workers(1)
    .bind("127.0.0.1:0")?;
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    Ok(addr)
}
