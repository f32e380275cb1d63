//! # session-redis
//!
//! The Redis backend of session-kit: one [`RedisStore`] for a single server,
//! a Sentinel-managed master or a Redis Cluster, chosen by one
//! [`RedisConfig`] value, so moving between them is a config change.
//!
//! | topology | config | what happens when a node dies |
//! |---|---|---|
//! | standalone | `redis://host:6379` | calls fail with `Unavailable` until it is back; the same store reconnects by itself |
//! | Sentinel | `redis+sentinel://s1:26379,s2:26379/service` | calls fail until the sentinels promote a replica; then the store asks them again and carries on |
//! | Cluster | `redis+cluster://n1:7000,n2:7000` | the redis crate follows `MOVED`/`ASK` and refreshes its slot map |
//!
//! ## Data model
//! One hash per session, `<prefix><id>` (default prefix `session:`):
//!
//! ```text
//! version      3
//! created_at   1764000000000          (ms since the Unix epoch)
//! expires_at   1764001800000          (ms; also the key's PEXPIREAT)
//! d:user       "ada"                  (each value as JSON text)
//! d:cart       {"items":[1,2]}
//! ```
//!
//! Values stay JSON in their own fields, so another service can read one with
//! `HGET session:<id> d:user`. Redis expires the key itself at `expires_at`.
//!
//! ## The contract, on Redis
//! - **`load`** is one `HGETALL`. An absent key, or one past its
//!   `expires_at`, is `None`; a hash that is not a session is
//!   [`ErrorKind::Corrupt`](session_core::ErrorKind::Corrupt), never a panic.
//! - **`create`** is insert-if-absent, in one Lua script.
//! - **`commit`** is one Lua script that applies the whole
//!   [`Changes`](session_core::Changes) (clear, removals, sets), bumps the
//!   version with `HINCRBY` and moves the expiry, atomically. Two requests that
//!   change different keys at once both survive. A commit to an expired or
//!   deleted session answers `Missing` and writes nothing: it never brings the
//!   session back.
//! - **`touch`** is one Lua script that moves `expires_at` and `PEXPIREAT`,
//!   and nothing else.
//! - Every script touches only its one key, so all of it runs on Cluster.
//!
//! A request that only reads costs one Redis command (`HGETALL`); one that
//! writes costs two (`HGETALL`, then `EVALSHA`).
//!
//! ## Errors
//! | Redis says | kind |
//! |---|---|
//! | connection refused or reset, `LOADING`, `READONLY`, `CLUSTERDOWN`, `MASTERDOWN` | `Unavailable` |
//! | no answer within the operation timeout (default 500 ms) | `Timeout` |
//! | `WRONGTYPE`, or a hash that is not a session | `Corrupt` |
//! | `OOM` (`maxmemory` reached) | `TooLarge` |
//! | authentication failed, bad URL, `NOPERM` | `Config` |
//!
//! ## Caveats
//! - **Sentinel failover can lose the last writes.** Redis replication is
//!   asynchronous: a commit the old master acknowledged just before it died
//!   may be missing on the replica that replaces it. In a planned failover
//!   the old master also keeps accepting writes until the sentinels demote
//!   it (up to ten seconds, at their next `INFO`), and the demotion discards
//!   them. Configure `min-replicas-to-write` on the servers if that matters
//!   more than availability.
//! - **Clocks.** Redis expires keys by its own clock; `load` also checks
//!   `expires_at` against this server's. Keep the clocks in sync (NTP), as
//!   for any expiry shared between machines.
//! - **TLS** (`rediss://`) needs the redis crate's TLS support, which this
//!   crate leaves off so that plain deployments build no TLS stack. Add
//!   `redis = { version = "1", features = ["tokio-rustls-comp"] }` and a
//!   rustls crypto provider to your own `Cargo.toml`; session-redis builds
//!   with it, but its tests run without TLS.
//!
//! ## Features
//! - `codec` (off): the `codec` module, which turns a record into its hash
//!   fields and back without a server, for benchmarks, fuzzers and tools.
//!   Not a stable API.
#![forbid(unsafe_code)]

#[cfg(feature = "codec")]
pub mod codec;
mod config;
mod error;
mod hash;
mod script;
mod store;
mod topology;

pub use config::{
    RedisConfig, Topology, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_OPERATION_TIMEOUT,
};
pub use store::RedisStore;
