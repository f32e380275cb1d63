//! # session-tower-sessions
//!
//! Run a [tower-sessions](https://docs.rs/tower-sessions/0.14) app, and the
//! crates built on its `Session` ([axum-login](https://docs.rs/axum-login),
//! [axum-messages](https://docs.rs/axum-messages)), on session-kit's stores
//! without changing a handler: [`TowerSessionsStore`] implements
//! tower-sessions' [`SessionStore`](tower_sessions_core::SessionStore) (0.14)
//! over any session-kit store.
//!
//! | session-kit store | what the app gains over tower-sessions' stores |
//! |---|---|
//! | `RedisStore` | Redis standalone, Sentinel or Cluster, with typed errors and a per-operation timeout |
//! | `FailoverStore` | a second store that takes over when the first fails (mirror or standby) |
//! | `ClusterStore` | sessions replicated in the app servers' own memory, no Redis at all |
//! | `MemcachedStore` | several Memcached servers, each session on one |
//! | `PostgresStore` | a durable store |
//! | `MemoryStore` | one process, for development and tests |
//!
//! ## Usage
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//!
//! use axum::{routing::get, Router};
//! use session_core::memory::MemoryStore;
//! use session_tower_sessions::TowerSessionsStore;
//! use tower_sessions::{Session, SessionManagerLayer};
//!
//! async fn counter(session: Session) -> String {
//!     let count = session.get::<u64>("count").await.unwrap().unwrap_or(0) + 1;
//!     session.insert("count", count).await.unwrap();
//!     count.to_string()
//! }
//!
//! // Any session-kit store: `RedisStore::connect(..)`, a `FailoverStore`, ...
//! let store = TowerSessionsStore::new(Arc::new(MemoryStore::new()));
//! let app: Router = Router::new()
//!     .route("/", get(counter))
//!     .layer(SessionManagerLayer::new(store));
//! # let _ = app; }
//! ```
//! With axum-login, pass the same `SessionManagerLayer` to
//! `AuthManagerLayerBuilder::new(backend, session_layer)`; the crate's
//! `axum_login` example runs the whole login flow on Redis, with "log out
//! everywhere".
//!
//! Ids map one to one: a tower-sessions id and the session-kit id with the
//! same 16 bytes have the same 22-character text, so the store key is
//! `<key_prefix><cookie value>`. Values are stored as session-kit stores
//! them, each key's JSON text on its own, so session-kit's tools and other
//! services read them as they read any session-kit session.
//!
//! ## What carries over, and what does not
//! tower-sessions decides when to write and what; the store underneath
//! decides how safely. So the store's own guarantees hold, and those that
//! session-kit's [`SessionManager`](session_core::SessionManager) adds on top
//! do not.
//!
//! | session-kit guarantee | through this store |
//! |---|---|
//! | every store, topology and composite (failover, tiered, cluster) | **yes** |
//! | no acknowledged write lost through a store failure (mirror mode, cluster) | **yes**: that is the store's work |
//! | no read older than a write acknowledged before it began, on any server | **yes** |
//! | `create` never overwrites a live session | **yes**: an id collision gets a fresh id, as tower-sessions asks |
//! | nothing deleted, logged out or expired comes back | **yes**: a save to a session that is no longer live writes nothing (tower-sessions' own stores re-create it) |
//! | each write is atomic | **yes**: a save replaces the whole data in one commit, so a load sees one save whole, never a mix of two |
//! | concurrent requests that change different keys both survive (per-key merge) | **no**: tower-sessions saves whole records, so when two requests write one session at once, the last save wins whole and the other's changes are lost, even on other keys |
//! | the idle expiry slides on reads with a cheap `touch`, no rewrite | **no**: tower-sessions moves the expiry only when it saves: after a change, or on every request with `with_always_save(true)`, which rewrites the whole record each time |
//! | idle and absolute timeouts, per-session lifetimes | **no**: tower-sessions' `Expiry` alone sets the record's expiry; there is no absolute timeout |
//! | `cycle_id` creates the new id before it deletes the old one | **no**: tower-sessions deletes the old id first, so a store failure in between ends the session |
//! | signed cookies, key rotation, the header token | **no**: tower-sessions' own cookie (plain, or signed/private with its features) |
//! | "log this user out everywhere" (owner index) | **with [`with_owner`](TowerSessionsStore::with_owner)**: the app says where the user is in the session data (for axum-login, its `user_id`), and [`end_all_for`](TowerSessionsStore::end_all_for) ends that user's sessions on every store that indexes owners (not Memcached). tower-sessions itself records no owner |
//! | typed errors, failover by kind | **inside the store**; tower-sessions sees strings: a corrupt record is `Error::Decode`, anything else `Error::Backend` |
//! | the error policy (503, or "treat as empty") | **no**: tower-sessions' layer answers a store error with a 500 |
//!
//! Like session-kit, tower-sessions never adopts an id the store does not
//! know: a cookie naming an unknown or expired session gets a fresh id.
//!
//! `ExpiredDeletion` is implemented and does nothing: every session-kit
//! store forgets expired sessions by itself and never serves one.
//!
//! ## Versions
//! This crate implements tower-sessions-core 0.14's trait: the one that
//! tower-sessions 0.14, axum-login 0.17 and 0.18 and axum-messages 0.8 use.
//! tower-sessions 0.15 has a trait of its own, which a later release of
//! this crate will follow.
//!
//! The crate's tests hold it to tower-sessions' own expectations of a store
//! (its route tests, through a real `SessionManagerLayer` over HTTP) on
//! session-kit's memory store, Redis, Memcached, PostgreSQL and a failover
//! pair, and run the `axum_login` example on Redis.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod convert;
mod store;

pub use store::TowerSessionsStore;
