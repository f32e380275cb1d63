//! For apps that configure a [`SessionManager`](crate::SessionManager) in
//! steps or from config, and for adapter authors: the builder, the settings
//! as one value ([`ManagerConfig`]), the [`Finish`] a request ends with,
//! and the app's own error responses ([`ErrorResponder`]).
//!
//! The manager itself, the [`Session`](crate::Session) it hands each
//! request and the [`ErrorPolicy`](crate::ErrorPolicy) are at the crate
//! root.

pub(crate) mod lifecycle;
mod respond;

pub use lifecycle::{Finish, ManagerConfig, SessionManagerBuilder};
pub use respond::{ErrorResponder, ErrorResponse, Failure};
