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
//! expires_at   1764001800000          (ms; the key's PEXPIREAT is 1 less)
//! owner        user-42                (only for a session with an owner)
//! owner_until  1764086400000          (ms; the owner's until, with owner)
//! d:user       "ada"                  (each value as JSON text)
//! d:cart       {"items":[1,2]}
//! ```
//!
//! Values stay JSON in their own fields, so another service can read one with
//! `HGET session:<id> d:user`. Redis expires the key itself at `expires_at`.
//!
//! A session with an [`Owner`](session_core::store::Owner) is also a member of its
//! owner's index, a sorted set per owner under `<prefix>owner:<name>`: the
//! member is the session id, the score the owner's `until` (ms). Writing an
//! entry drops the entries whose `until` has passed and sets the key's
//! `PEXPIREAT` to its highest score, so an index outlives its sessions by
//! nothing and never needs a sweeper.
//!
//! ## The contract, on Redis
//! - **`load`** is one `HGETALL`. An absent key, or one past its
//!   `expires_at`, is `None`; a hash that is not a session is
//!   [`ErrorKind::Corrupt`](session_core::ErrorKind::Corrupt), never a panic.
//! - **`create`** is insert-if-absent, in one Lua script.
//! - **`commit`** is one Lua script that applies the whole
//!   [`Changes`](session_core::store::Changes) (clear, removals, sets), bumps the
//!   version (written in the same `HSET` as the values) and moves the expiry,
//!   atomically. Two requests that
//!   change different keys at once both survive. A commit to an expired or
//!   deleted session answers `Missing` and writes nothing: it never brings the
//!   session back.
//! - **`touch`** is one Lua script that moves `expires_at` and `PEXPIREAT`,
//!   and nothing else.
//! - **Owners.** `create` of a session with an owner, and a `commit` that
//!   gives it a new one, also write the entry in the owner's index; nothing
//!   else touches the index, because an owner's `until` never moves.
//!   **`delete_by_owner`** reads the owner's live entries and ends each
//!   session whose hash still names that owner, with one script per session
//!   sent all at once: three round trips, however many sessions. A commit
//!   racing it finds its session `Missing`.
//! - **Cluster: per-node handling.** Every script touches one key, except
//!   that on standalone and Sentinel the scripts that write an owner's
//!   entry also take the index key, so the session and its entry change in
//!   one step. On Cluster the index and the session hash to different slots,
//!   so the store writes the index entry first with a script of its own, on
//!   its own node, then the session: a session with an owner is never live
//!   unindexed. It does not pin the keys together with hash tags, because a
//!   session's key must be computable from its id alone, and the id does
//!   not name its owner. The cost is one more round trip when an owner is
//!   set, on Cluster only (see [`RedisStore`]).
//!
//! A request that only reads costs one Redis command (`HGETALL`); one that
//! writes costs two (`HGETALL`, then `EVALSHA`), owner or not, except on
//! Cluster when it sets a new owner (three).
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
//!   `expires_at` against this server's, and the owner index is pruned and
//!   read by this server's. Keep the clocks in sync (NTP), as for any expiry
//!   shared between machines.
//! - **Owners need Redis 6.2** or later (`ZADD GT`). A session must not
//!   live past its owner's `until` (the manager caps `expires_at` at it):
//!   past it, the index no longer names the session.
//! - **Eviction.** Run session Redis servers with
//!   `maxmemory-policy noeviction`: a full server then refuses writes
//!   (`TooLarge`, above) and loses nothing. Under an `allkeys-*` or
//!   `volatile-*` policy Redis may drop any key with a TTL, which logs the
//!   session's user out, and, worse, may drop an owner's index while the
//!   sessions it names live on, so `delete_by_owner` would miss them.
//! - **TLS** (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`) needs
//!   feature `tls`, off so that plain deployments build no TLS stack. It is
//!   rustls with ring (no OpenSSL), trusting the system's root certificates,
//!   or only those of [`with_tls_ca_cert_file`](RedisConfig::with_tls_ca_cert_file);
//!   [`with_tls_client_cert`](RedisConfig::with_tls_client_cert) adds a
//!   client certificate for mutual TLS. Sentinel speaks TLS to the sentinels
//!   and the master alike. A certificate the client refuses (wrong CA,
//!   expired, wrong host) or a server that speaks no TLS fails the call as
//!   `Unavailable`, with rustls's reason in the error's source, within the
//!   timeouts; a bad certificate file is a `Config` error naming its key.
//!   ring becomes the process's rustls crypto provider on the first TLS
//!   connect, unless the app installed one before.
//!
//! ## Features
//! - `tls` (off): `rediss://` for every topology, on rustls, and the
//!   certificate settings above.
//! - `codec` (off): the `codec` module, which turns a record into its hash
//!   fields and back without a server, for benchmarks, fuzzers and tools.
//!   Not a stable API.
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod affinity;
#[cfg(feature = "serde")]
mod block;
#[cfg(feature = "codec")]
pub mod codec;
mod config;
mod error;
mod hash;
mod index;
#[cfg(feature = "migrate")]
#[cfg_attr(docsrs, doc(cfg(feature = "migrate")))]
pub mod migrate;
mod script;
mod store;
#[cfg(feature = "tls")]
mod tls;
mod topology;

pub use config::{RedisConfig, Topology};
pub use store::RedisStore;
