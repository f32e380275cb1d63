//! # session-tower
//!
//! Tower and Axum support for session-kit: a [`SessionLayer`] that works with
//! any tower-compatible server (axum, hyper, tonic's HTTP stack), and with the
//! `axum` feature a [`Session`] extractor.
//!
//! The layer only moves cookies in and out. The lifecycle (lazy load, delta
//! commit, touch throttling, both timeouts, `cycle_id`, `destroy`, the error
//! policy) lives in [`session_core::SessionManager`] and is shared with the
//! Actix adapter, so a session started on one framework works on the other.
//!
//! ## Usage with axum
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{routing::get, Router};
//! use session_core::{Key, SessionManager, memory::MemoryStore};
//! use session_tower::{Error, Session, SessionLayer};
//!
//! async fn counter(session: Session) -> Result<String, Error> {
//!     let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
//!     session.insert("count", count).await?;
//!     Ok(count.to_string())
//! }
//!
//! let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
//! let app: Router = Router::new()
//!     .route("/", get(counter))
//!     .layer(SessionLayer::new(manager));
//! # let _ = app; }
//! ```
//!
//! ## What a request costs
//! - No session cookie and no session use: no store call, no `Set-Cookie`.
//! - A cookie, but the handler never touches the session: no store call.
//! - A read: one `load`. A read and a write: one `load` and one `commit`.
//!
//! ## Errors
//! - A handler that extracts [`Session`] on a route without the layer gets a
//!   500 whose body names the missing layer.
//! - When the store fails under the default `Reject` policy the response is a
//!   bare 503, whatever the handler returned; nothing is overwritten.
//! - Handlers can return [`Error`] (`?` converts a `SessionError`): a 503 for
//!   an unavailable store, a 500 otherwise, never a store detail in the body.
//! - The app renders its own response for either case with an
//!   [`ErrorResponder`](session_core::manager::ErrorResponder): given to the
//!   manager for an outage, and put in the request extensions
//!   (`Router::layer(axum::Extension(responder))`) for a missing layer. The
//!   response body type then needs `From<Vec<u8>>`, as axum's `Body` has.
//!
//! ## Tracing
//! Each request runs in a `session_request` span (target
//! `session_kit::request`, level `debug`) with `framework = "tower"` and the
//! `outcome` of the session write; the store calls it makes are its
//! children (see [`session_core::telemetry`]).
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod service;

use std::ops::Deref;

#[cfg(feature = "axum")]
pub use extract::MissingSessionLayer;
pub use future::ResponseFuture;
pub use layer::SessionLayer;
pub use service::SessionService;

/// The request's session, as the layer puts it in the request extensions and
/// as the axum extractor hands it out.
///
/// It dereferences to [`session_core::Session`], whose methods (`get`,
/// `insert`, `remove`, `cycle_id`, `destroy`, ...) do the work. It is `Clone`,
/// `Send` and `Sync`, so it can be held across `.await`.
#[derive(Debug, Clone)]
pub struct Session(pub(crate) session_core::Session);

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

/// A session error as a handler's error type: with the `axum` feature it
/// answers 503 for an unavailable store and 500 otherwise, with no detail in
/// the body.
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
