//! # session-bench
//!
//! Benchmarks for session-kit (not published). The `session-bench` binary
//! (`src/main.rs`) is the framework benchmark: bare axum and actix-web,
//! session-kit on every store, and the peer crates, side by side in one run
//! (`cargo run --release -p session-bench -- --quick`). Each bench under
//! `benches/` is a criterion benchmark that starts the real servers it needs through
//! the `session-conformance` test kit; `BENCHMARKS.md` at the repository
//! root records the figures and the command that made them.
//!
//! | bench | what it compares |
//! |---|---|
//! | `near_cache` | `RedisStore::load` against `TieredStore::load` with a near-cache hit, for small, 2 KiB and 32 KiB sessions; prints the bytes Redis sends per load |
//! | `micro` | no store I/O: cookie sign and verify (forged, and by a rotated-out key), `SessionManager::start` + `Session::finish` for untouched sessions and for a new one given one value (into a `MemoryStore`), and the Redis and Memcached record codecs |
//!
//! `examples/peer_round_trip.rs` measures the CPU of one request/reply
//! round trip, both ends on one current-thread runtime as in the cluster
//! variant: HTTP/2 through hyper (the cluster's peer link up to v3), HTTP/2
//! on `h2` directly, length-prefixed frames on TCP (the shape of the link
//! since v4), and a Redis `HGETALL`.
//!
//! This crate holds what the benches share.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use session_conformance::testkit::RedisServer;
use session_core::{
    store::{Data, Record},
    SessionId,
};

/// A session of `keys` keys whose values are JSON strings of `value_len`
/// characters, living ten minutes.
///
/// ```
/// let record = session_bench::session_of(4, 10);
/// assert_eq!(record.data.len(), 4);
/// assert_eq!(record.data["key-0"].len(), 12); // the JSON quotes
/// ```
#[must_use]
pub fn session_of(keys: usize, value_len: usize) -> Record {
    let data: Data = (0..keys)
        .map(|i| (format!("key-{i}"), format!("\"{}\"", "x".repeat(value_len))))
        .collect();
    let now = SystemTime::now();
    Record::new(
        SessionId::generate(),
        data,
        now,
        now + Duration::from_secs(600),
    )
}

/// The bytes of session keys and values in `record`: its payload.
#[must_use]
pub fn payload_bytes(record: &Record) -> usize {
    record.data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// How many bytes `server` has sent to its clients so far
/// (`total_net_output_bytes` of `INFO stats`).
///
/// # Panics
/// When the server does not report it.
#[must_use]
pub fn redis_bytes_sent(server: &RedisServer) -> u64 {
    server
        .cli(&["info", "stats"])
        .lines()
        .find_map(|line| line.strip_prefix("total_net_output_bytes:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("INFO stats reports total_net_output_bytes")
}
