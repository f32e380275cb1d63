//! # session-core
//!
//! The contract every part of session-kit agrees on, with no web framework and
//! no external store in sight:
//!
//! The root holds what an app uses; each module says whom it is for.
//!
//! | piece | what it is |
//! |---|---|
//! | [`SessionManager`], [`Session`] | the per-request lifecycle that adapters drive |
//! | [`CookieConfig`], [`Key`], [`KeyRing`] | the cookie's attributes, and the HMAC-SHA256 keys that sign it, with rotation |
//! | [`Lifetime`] | one session's own idle and absolute timeouts ("remember me") |
//! | [`Transport`], [`HeaderTransport`] | the token in the cookie, or in a header for API clients |
//! | [`SessionId`] | 128 random bits; 22 characters of base64url; `Debug` shows only a prefix |
//! | [`StoreError`], [`ErrorKind`], [`ConfigError`] | typed errors that failover and the error policy act on, and config errors naming their key |
//! | [`memory`] | [`MemoryStore`], an in-process store on quick_cache, and [`TieredStore`](memory::TieredStore), a near-cache (on moka) in front of a remote store (feature `memory`, on by default) |
//! | [`failover`] | [`FailoverStore`]: a primary and a secondary store behind circuit breakers, mirror or standby |
//! | [`lazy`] | [`LazyStore`]: a store connected in the background, so the app starts while Redis or Memcached is down |
//! | [`store`] | for store authors: the [`SessionStore`] trait and the records it moves |
//! | [`telemetry`] | the `tracing` spans and the `metrics` every part emits, in one table |
//! | [`cookie`] | for adapter authors: the [`CookieCodec`] that reads and writes the signed cookie |
//! | [`clock`] | the [`Clock`] timeouts are measured against, and a [`ManualClock`] for tests |
//!
//! Most apps use this crate through `session-kit` and an adapter
//! (`session-tower` for Axum/Tower, `session-actix` for Actix-web), which only
//! move cookies in and out; everything below is shared between them.
//!
//! ## The lifecycle
//! For every request the manager:
//! 1. reads the cookie and verifies its HMAC. A missing, malformed, forged or
//!    expired cookie means "no session": never an error, logged at debug;
//! 2. hands the handler a [`Session`] that loads lazily, so a request that
//!    never touches the session costs no store call;
//! 3. after the handler, writes only what changed: `create` for a new session
//!    with data, one `commit` of the delta for an existing one, nothing for an
//!    unchanged one (or a `touch` once less than half the idle timeout is
//!    left). A new empty session writes nothing and sets no cookie.
//!
//! Both timeouts are enforced by the manager against its [`Clock`], whatever
//! the store does: idle (sliding, default 30 minutes) and absolute (from
//! creation, default 24 hours). An id the store does not know is never adopted:
//! ids are only ever minted by the server.
//!
//! ## Concurrent requests: what is and is not guaranteed
//! - Two requests that change **different keys** of one session at the same
//!   time both survive: only the delta is committed, atomically, by the store.
//! - Two requests that set **the same key** race; the last commit wins.
//! - A read sees the session as loaded at the request's first use of it plus
//!   its own changes; it does not see another request's later commit.
//! - [`Session::cycle_id`] copies the data to a new id and deletes the old id
//!   only at the version it loaded: a commit another request got
//!   acknowledged on the old id meanwhile is carried over to the new id, and
//!   one that arrives after the old id is gone finds it `Missing`, its
//!   changes are dropped and the response clears its cookie, so no
//!   acknowledged write is lost either way.
//!
//! ## How these guarantees are tested
//! Each guarantee that involves two requests, two servers or a store failure
//! is tested the way it can break, not one step after another:
//! - *gates* (`session_conformance::race::GatedStore`) hold one chosen store
//!   call until the test releases it, forcing one exact interleaving (the
//!   `failover_races`, `races_manager` and `cycle_races` tests here);
//! - a *schedule explorer* runs small multi-server scenarios (logouts racing
//!   loads, commits racing repairs, a store down, paused or restarted empty)
//!   under a thousand seeded interleavings each, on a paused runtime, and
//!   replays a failing seed exactly;
//! - a *history checker* reads every request's start, end and outcome and
//!   checks: no acknowledged write missing from a later read, no read older
//!   than a write acknowledged before it began, nothing logged out coming
//!   back, no cookie replaced but by `cycle_id` or `destroy`, no value going
//!   backwards. A write that failed may or may not have happened; both are
//!   accepted.
//!
//! ## Logging a user out everywhere
//! [`Session::set_owner`] records whose session it is (say, at login);
//! [`SessionManager::end_all_for`] and [`Session::log_out_everywhere`] end
//! every session of that owner in the store, so on every server. When the
//! call returns, every session the owner had when it began is gone, a
//! commit racing it finds its session missing, and a session that was
//! changing id ([`Session::cycle_id`]) meanwhile does not survive under the
//! new id. Which stores support it, and what it costs, is in
//! [`SessionStore::delete_by_owner`] and each store's docs.
//!
//! ## A user's devices
//! [`Session::devices`] lists the live sessions of the session's owner for
//! a "your devices" page: an opaque [`DeviceHandle`](devices::DeviceHandle)
//! (a keyed MAC of the id, never the id), when each was created, last
//! active and logged in, the label the app set ([`Session::set_label`],
//! say the user agent), and which one is the current session.
//! [`Session::end_device`] ends one by its handle, only among the owner's
//! own sessions; [`Session::log_out_other_sessions`] ends all but the
//! current one. [`with_max_sessions_per_owner`](manager::SessionManagerBuilder::with_max_sessions_per_owner)
//! caps how many sessions one user keeps: a login past the cap ends the
//! oldest logins, and concurrent logins settle on the newest ones. Every
//! store that indexes owners lists them (memory, Redis in every topology,
//! the cluster, PostgreSQL, failover and tiered pairs); Memcached answers
//! [`ErrorKind::Unsupported`]. See [`devices`].
//!
//! ## "Remember me": one session's own lifetime
//! [`Session::set_lifetime`] gives one session a [`Lifetime`] of its own (an
//! idle and an absolute timeout, and whether its cookie is persistent) in
//! place of the manager's, bounded by the manager's maximums
//! ([`SessionManagerBuilder::with_max_idle_timeout`](manager::SessionManagerBuilder::with_max_idle_timeout),
//! by default the manager's own timeouts). It is stored with the record on
//! every store, so every server slides and ends the session by it, and a
//! persistent cookie's `Max-Age` follows the session's expiry.
//!
//! ## The token in a header
//! [`Transport::Header`] carries the same signed token in a header of its
//! own (`Authorization: Bearer <token>`, or `X-Session-Token`) instead of
//! the cookie, for API, mobile and WebSocket clients; both adapters read and
//! write whichever header the manager names. The [`transport`] docs give
//! the protocol and when to pick which: a header token cannot be sent by
//! another site (no CSRF), but must be readable by the client's scripts (so
//! XSS can steal it); a cookie is the reverse.
//!
//! ## When the store fails
//! Every store call runs under a per-operation timeout (default 2 s). The
//! [`ErrorPolicy`] decides what the request gets: by default a bare 503 with
//! nothing overwritten; optionally an empty session for reads
//! ([`ErrorPolicy::TreatAsEmpty`]), where a change after the failed load is
//! refused with a 503 and the cookie is left alone, so the user is never
//! logged out by an outage. A failed write is always a 503, so no response
//! acknowledges data that was not stored. The app can render that response
//! itself (status, headers, body) with an
//! [`ErrorResponder`](manager::ErrorResponder).
//!
//! ## What an operator sees
//! A `tracing` span around every store call (the manager's, and a failover
//! or tiered store's calls to the stores inside it) and every request, and
//! `metrics` for store latency and errors, the session lifecycle, refused
//! cookies, the breakers and the near-cache: [`telemetry`] has the spans
//! and the table of every metric.
//!
//! A failed or cancelled load never turns into an empty session: every
//! [`Session`] method is cancel-safe (a handler may wrap any call in
//! `tokio::time::timeout` or `select!`), and a call dropped mid-load leaves
//! the session to be loaded again by the next call.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use session_core::{Key, SessionManager, manager::Finish, memory::MemoryStore};
//!
//! let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
//! let session = manager.start(std::iter::empty());
//! session.insert("user", "ada").await.unwrap();
//! match session.finish().await {
//!     Finish::Respond { set_cookie } => assert!(set_cookie.unwrap().starts_with("session=")),
//!     Finish::Unavailable => unreachable!("the memory store does not fail"),
//!     _ => unreachable!(),
//! }
//! # }
//! ```
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod config;
pub mod cookie;
pub mod devices;
mod error;
#[cfg(feature = "memory")]
mod expiry;
pub mod failover;
mod id;
pub mod lazy;
mod lifetime;
pub mod manager;
#[cfg(feature = "memory")]
pub mod memory;
pub mod migrate;
mod record;
pub mod store;
pub mod telemetry;
#[cfg(feature = "memory")]
mod tiered;
pub mod transport;

pub use cookie::{
    config::{CookieConfig, SameSite},
    key::{Key, KeyError, KeyRing},
};
pub use error::{ConfigError, ErrorKind, StoreError};
pub use id::SessionId;
pub use lifetime::{Lifetime, LifetimeError};
pub use manager::lifecycle::{
    session::{Session, SessionError},
    ErrorPolicy, SessionManager,
};
pub use transport::{HeaderTransport, Transport};

// Short paths for this crate's own code; the public paths are the modules.
#[cfg(feature = "memory")]
#[allow(unused_imports)]
pub(crate) use memory::{MemoryStore, MemoryStoreBuilder};
#[allow(unused_imports)]
pub(crate) use {
    clock::{Clock, ManualClock, SystemClock},
    cookie::{CookieCodec, Verified},
    error::BoxError,
    failover::{FailoverMode, FailoverStore},
    lazy::LazyStore,
    manager::{Finish, SessionManagerBuilder},
    record::{Changes, Data, Owner, OwnerError, Record},
    store::{Committed, ConditionalDelete, Created, OwnerPass, SessionStore, Stamp},
};
