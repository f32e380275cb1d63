//! Real Redis, Memcached and PostgreSQL servers for tests, started, crashed and
//! restarted by the test. No mock stands in for either: a store is tested
//! against the real thing.
//!
//! | type | what runs | to test |
//! |---|---|---|
//! | [`RedisServer`] | one `redis-server` | a store against a real server; crashes ([`kill`](RedisServer::kill), [`restart`](RedisServer::restart)) and hangs ([`pause`](RedisServer::pause)) |
//! | [`RedisSentinel`] | a master, a replica and three sentinels | failover: kill the master, see the replica promoted |
//! | [`RedisCluster`] | three masters sharing the 16384 slots | slot routing and redirects |
//! | [`RedisServer::start_tls`], [`RedisSentinel::start_tls`], [`RedisCluster::start_tls`] | the same, listening for TLS only, with certificates made at run time ([`RedisTls`], [`TlsFiles`]) | `rediss://`, mutual TLS, and a client's refusal of a wrong CA or an expired certificate |
//! | [`MemcachedServer`] | one `memcached`; [`start_many`](MemcachedServer::start_many) for several | a store against a real server, round trips counted by [`stats`](MemcachedServer::stats); crashes and hangs as for Redis |
//! | [`PostgresServer`] | `initdb`, then one `postgres` as an unprivileged user | a store against a real database; crashes, hangs and restarts (with its data) |
//!
//! Every server:
//! - listens on a free port on `127.0.0.1`; when another process takes the
//!   port before the server binds it, the start retries on a new one;
//! - runs in its own temporary folder, which holds its log and data, is
//!   kept across restarts and removed on drop;
//! - answers by the time `start` returns (Redis PING, Memcached `stats`,
//!   PostgreSQL's `postmaster.pid` saying `ready`),
//!   with the pid of the process the kit started, so that another test's
//!   server that won a race for the port is never taken for it;
//! - is killed on drop, **and** when the test process dies without dropping
//!   it (a static, `panic = "abort"`, SIGKILL, a harness timeout). A small
//!   `sh` watchdog starts the server and reads a pipe from the test process;
//!   when that pipe closes, however the process ended, it kills the server
//!   and removes the folder.
//!
//! Failures panic, and a panic about a server quotes the end of its log, so
//! a server that would not start says why. A missing binary fails the test
//! with the command that installs it; nothing is ever skipped. On Debian:
//! `sudo apt-get install -y redis-server redis-tools redis-sentinel memcached postgresql`.
//! A program that runs the servers only when they are installed (a demo, a
//! benchmark) can ask first with [`find_binary`], the same search the
//! servers' start makes.
//!
//! The API blocks, with plain std processes and sleeps, and every wait is
//! bounded. It creates no runtime, so it may be called from inside a tokio
//! runtime (a `#[tokio::test]`, say); it only holds up that worker thread
//! for as long as the call takes.
//!
//! # Example
//! ```
//! use session_conformance::testkit::RedisServer;
//!
//! let mut server = RedisServer::start();
//! server.cli(&["set", "greeting", "hello"]);
//! assert_eq!(server.cli(&["get", "greeting"]), "hello");
//!
//! server.kill(); // as a crash would
//! assert!(!server.is_running());
//!
//! server.restart(); // the same port; nothing was persisted
//! assert_eq!(server.cli(&["exists", "greeting"]), "0");
//! ```
//!
//! # One server for a whole test binary
//! A static is never dropped; the watchdog still stops the server when the
//! test binary exits.
//! ```
//! use std::sync::OnceLock;
//!
//! use session_conformance::testkit::RedisServer;
//!
//! fn shared_server() -> &'static RedisServer {
//!     static SERVER: OnceLock<RedisServer> = OnceLock::new();
//!     SERVER.get_or_init(RedisServer::start)
//! }
//!
//! assert_eq!(shared_server().cli(&["ping"]), "PONG");
//! ```

mod memcached;
mod ports;
mod postgres;
mod process;
mod redis;
mod server;
mod tcp;
mod tls;

use std::{
    thread,
    time::{Duration, Instant},
};

pub use self::{
    memcached::MemcachedServer,
    postgres::PostgresServer,
    process::find_binary,
    redis::{RedisCluster, RedisSentinel, RedisServer},
    tls::{RedisTls, TlsFiles},
};

/// The longest sleep between two checks of [`poll_until`].
const MAX_POLL_PAUSE: Duration = Duration::from_millis(50);

/// Calls `check` until it returns a value or `timeout` has passed, sleeping
/// between calls from 1 ms doubling up to 50 ms: quick for what is nearly
/// ready, cheap for what takes seconds. Bounded, as long as `check` is.
fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_POLL_PAUSE);
    }
}
