//! # session-memcached
//!
//! The Memcached backend of session-kit: one [`MemcachedStore`] over one or
//! several `memcached` servers, speaking the meta protocol through the
//! `memcache` crate's `exp` client.
//!
//! ```no_run
//! # async fn run() -> Result<(), session_core::StoreError> {
//! use session_memcached::{MemcachedConfig, MemcachedStore};
//!
//! let config = MemcachedConfig::from_url("memcache://10.0.0.1:11211,10.0.0.2:11211,10.0.0.3:11211")
//!     .expect("a valid URL");
//! let store = MemcachedStore::connect(config).await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! ## Data model
//! One item per session, `<prefix><id>` (default prefix `session:`), whose
//! value is a binary envelope:
//!
//! ```text
//! "SK" 0x01 | version u64 | created_at ms u64 | n u32 | n × (key, JSON value)
//! ```
//!
//! The item's Memcached expiry is the session's expiry, and the only copy of
//! it: `touch` moves it without rewriting the envelope. Memcached counts
//! whole seconds, so a loaded record's `expires_at` is accurate to about a
//! second (it is read back from the item's remaining lifetime), where the
//! Redis and memory stores keep milliseconds. The envelope's first bytes
//! name its format; a reader refuses formats newer than it knows as
//! [`Corrupt`](session_core::ErrorKind::Corrupt) rather than misread them.
//!
//! ## Several servers
//! Keys are spread by rendezvous hashing on XXH3 over the servers as
//! configured, so:
//! - each server holds about `1/N` of the sessions;
//! - every app server, whatever Rust built it, sends a session to the same
//!   Memcached;
//! - adding or removing a server moves only the sessions that belong to it;
//! - a dead server's sessions fail with
//!   [`Unavailable`](session_core::ErrorKind::Unavailable) until it is back.
//!   They are not quietly moved to another server, where they would read as
//!   missing and the users would be logged out with no error anywhere.
//!
//! Memcached keeps nothing across a restart, so a server that comes back has
//! lost its sessions, and their users sign in again. Only a second copy in
//! another store survives that.
//!
//! ## The contract, on Memcached
//! - **`load`** is one `mg` that returns the value, the CAS token and the
//!   remaining lifetime.
//! - **`create`** is one `ms` in add mode: it never overwrites.
//! - **`commit`** applies the [`Changes`](session_core::store::Changes) to the item
//!   as last read and writes it back with `ms C<cas>`. When another commit
//!   got there first, the CAS check fails and the commit reads the item
//!   again, re-applies its own changes and tries again, after a short random
//!   pause, up to [`with_commit_attempts`](MemcachedConfig::with_commit_attempts)
//!   times (default 32) within the operation timeout. Commits to different
//!   keys of one session therefore all survive, and on the same key the last
//!   one wins. The CAS token that `load` read is remembered for a few
//!   seconds, so a request that loads and then commits needs no second read.
//! - **`touch`** is a meta touch (`mg T`): no data rewritten, no version
//!   bumped.
//! - **`delete`** is `md`.
//!
//! A request that only reads costs one round trip (`mg`); one that writes
//! costs two (`mg`, then `ms`), plus two per commit it loses a race to.
//!
//! ## Memcached's traps, handled
//! - **Exptime 0 means "never expire".** A session whose expiry has passed
//!   is deleted (`md`), never stored with a zero lifetime.
//! - **An exptime over 30 days is a Unix time.** Lifetimes up to 30 days go
//!   as relative seconds (independent of clock skew between app and cache);
//!   longer ones as the absolute Unix time.
//! - **Items over the size limit.** A refused `ms` makes Memcached delete
//!   the item it already had under that key. So the store sizes every item
//!   before sending it and refuses one that would not fit with
//!   [`TooLarge`](session_core::ErrorKind::TooLarge), naming the limit; the
//!   stored session is untouched. The limit is the smallest `item_size_max`
//!   (memcached's `-I`) that the servers report at connect.
//! - **Keys over 250 bytes** cannot happen: the prefix is capped at
//!   [`MemcachedConfig::MAX_KEY_PREFIX_LEN`] bytes of printable ASCII, and an id is 22.
//! - **Eviction.** Memcached evicts the least recently used items when its
//!   memory (`-m`) is full, sessions included, silently. Size `-m` for your
//!   sessions and watch the `evictions` stat.
//!
//! ## Errors
//! | Memcached says | kind |
//! |---|---|
//! | connection refused or reset | `Unavailable` |
//! | no answer within the operation timeout (default 500 ms) | `Timeout` |
//! | an item that is not a session envelope | `Corrupt` |
//! | an item over the size limit; `SERVER_ERROR object too large` or `out of memory` | `TooLarge` |
//! | invalid config | `Config` |
//! | a commit that lost every race it tried | `Other` |
//!
//! No error message carries a session id: the client's own errors name the
//! key, so they are rewritten before they leave this crate.
//!
//! ## Why the experimental client
//! `memcache::exp` is the crate's meta-protocol client. It has what the
//! contract needs and the classic client lacks: async I/O on tokio, CAS
//! tokens and TTLs returned by the read itself, touch without a rewrite, add
//! mode with the new CAS returned, per-exchange timeouts, and a pluggable
//! router. Its API may change between minor releases, so it is pinned to
//! `~0.21` and only `client.rs` in this crate touches it.
//!
//! ## Features
//! - `codec` (off): the `codec` module, which turns a session into its
//!   envelope and back without a server, for benchmarks, fuzzers and tools.
//!   Not a stable API.
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "serde")]
mod block;
mod client;
#[cfg(feature = "codec")]
pub mod codec;
mod config;
mod envelope;
mod error;
mod exptime;
mod router;
mod store;

pub use config::MemcachedConfig;
pub use store::MemcachedStore;
