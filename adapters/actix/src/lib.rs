//! # session-actix
//!
//! Actix-web support for session-kit: a [`SessionMiddleware`] and a
//! [`Session`] extractor.
//!
//! The middleware only moves cookies in and out. The lifecycle (lazy load,
//! delta commit, touch throttling, both timeouts, strict ids, `cycle_id`,
//! `destroy`, the error policy) lives in [`session_core::SessionManager`],
//! which the tower adapter (`session-tower`) runs too. Built over the same
//! store and the same keys, an actix service and an axum service share their
//! sessions: a user logged in on one is logged in on the other.
//!
//! ```
//! use actix_web::{web, App};
//! use session_actix::{Error, Session, SessionMiddleware};
//! use session_core::{Key, SessionManager, memory::MemoryStore};
//!
//! async fn counter(session: Session) -> Result<String, Error> {
//!     let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
//!     session.insert("count", count).await?;
//!     Ok(count.to_string())
//! }
//!
//! let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
//! let app = App::new()
//!     .wrap(SessionMiddleware::new(manager))
//!     .route("/", web::get().to(counter));
//! # let _ = app;
//! ```
//!
//! ## Holding the session across `.await` and threads
//! [`Session`] is `Clone + Send + Sync + 'static`: a handle on shared state,
//! not a borrow of the request. It can be held across `.await`, moved into
//! `tokio::spawn`ed tasks, or put into the context of libraries that demand
//! `Send + Sync` data (async-graphql, for one), which actix-session's
//! `Rc<RefCell<…>>` handle cannot (actix-extras #251).
//!
//! What stays `!Send` is actix's own: each actix worker runs its handlers on
//! one thread, so a handler's future is not `Send` whatever it holds. A task
//! the handler spawns must finish before the handler returns: the session is
//! written once, after the handler, and a change made later is refused with
//! [`SessionError::Finished`](session_core::SessionError::Finished).
//!
//! ## Errors
//! Exactly as on the tower side:
//! - A handler that extracts [`Session`] on a route without the middleware
//!   gets a 500 whose body names the missing middleware.
//!   `Option<Session>` is `None` there instead.
//! - When the store fails under the default `Reject` policy the response is
//!   a bare 503, whatever the handler returned, and nothing is overwritten.
//! - Handlers can return [`Error`] (`?` converts a `SessionError`): a 503
//!   for an unavailable store, a 500 otherwise, never a store detail in the
//!   body.
//! - The app renders its own response for either case with an
//!   [`ErrorResponder`](session_core::manager::ErrorResponder): given to the
//!   manager for an outage, and put in the app data
//!   (`App::app_data(responder)`) for a missing middleware.
//!
//! ## Tracing
//! Each request runs in a `session_request` span (target
//! `session_kit::request`, level `debug`) with `framework = "actix"` and the
//! `outcome` of the session write; the store calls it makes are its
//! children (see [`session_core::telemetry`]).
//!
//! ## What a request costs
//! - No session cookie and no session use: no store call, no `Set-Cookie`.
//! - A cookie, but the handler never touches the session: no store call.
//! - A read: one `load`. A read and a write: one `load` and one `commit`.
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "conformance")]
pub mod conformance;
mod extract;
mod middleware;

use std::ops::Deref;

pub use extract::MissingSessionMiddleware;
pub use middleware::{SessionMiddleware, SessionService};

/// The request's session, as the middleware puts it in the request
/// extensions and the extractor hands it out.
///
/// It dereferences to [`session_core::Session`], whose methods (`get`,
/// `insert`, `remove`, `cycle_id`, `destroy`, ...) do the work. It is
/// `Clone`, `Send` and `Sync`; see [the crate docs](crate#holding-the-session-across-await-and-threads).
#[derive(Debug, Clone)]
pub struct Session(session_core::Session);

// The promise the docs make, kept by the compiler: the build breaks if the
// handle ever stops being `Send + Sync + 'static`.
const _: fn() = || {
    fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    assert_send_sync_static::<Session>();
};

impl Session {
    /// The framework-neutral handle.
    #[must_use]
    pub fn into_inner(self) -> session_core::Session {
        self.0
    }
}

impl Deref for Session {
    type Target = session_core::Session;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// A session error as a handler's error type: a 503 for an unavailable
/// store and a 500 otherwise, with an empty body.
#[derive(Debug)]
pub struct Error(pub session_core::SessionError);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<session_core::SessionError> for Error {
    fn from(err: session_core::SessionError) -> Self {
        Self(err)
    }
}
