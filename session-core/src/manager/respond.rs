//! The app's own response for a store outage and for a missing session
//! layer.

use std::{fmt, sync::Arc};

/// Which error response an [`ErrorResponder`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The store failed and the [`ErrorPolicy`](crate::ErrorPolicy) does not
    /// allow going on ([`Finish::Unavailable`](crate::manager::Finish::Unavailable)).
    /// The default is a bare `503 Service Unavailable`.
    StoreUnavailable,
    /// A handler asked for the session on a route that no session layer
    /// (tower) or middleware (actix) wraps. The default is a `500` whose
    /// body names the missing layer.
    MissingLayer,
}

/// An error response in no framework's types: the adapters turn it into
/// theirs. A header whose name or value HTTP does not allow is left out
/// (with an `error` event), and a status outside 100..=999 becomes the
/// default's.
///
/// ```
/// use session_core::manager::ErrorResponse;
///
/// let response = ErrorResponse::new(503)
///     .with_header("content-type", "text/html; charset=utf-8")
///     .with_header("retry-after", "5")
///     .with_body("<h1>Back in a moment</h1>");
/// assert_eq!(response.status, 503);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorResponse {
    /// The status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl ErrorResponse {
    /// A response with `status`, no header and an empty body.
    #[must_use]
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

type Render = dyn Fn(Failure) -> Option<ErrorResponse> + Send + Sync;

/// The app's hook for its own error responses: called with the
/// [`Failure`], it returns the response, or `None` for session-kit's
/// default. One value serves both adapters:
/// - for a store outage, give it to the manager
///   ([`SessionManagerBuilder::with_error_responder`](crate::manager::SessionManagerBuilder::with_error_responder));
/// - for a missing layer there is no manager to ask, so the extractor looks
///   for it where the app keeps shared values: the request extensions in
///   axum (`Router::layer(axum::Extension(responder))`) and the app data in
///   actix-web (`App::app_data(responder)`).
///
/// It runs on the request's task, once per failed request: keep it quick,
/// and never put store details in the response.
///
/// ```
/// use session_core::manager::{ErrorResponder, ErrorResponse, Failure};
///
/// let responder = ErrorResponder::new(|failure| match failure {
///     Failure::StoreUnavailable => Some(
///         ErrorResponse::new(503)
///             .with_header("retry-after", "5")
///             .with_body("sessions are down; try again in a moment"),
///     ),
///     _ => None,
/// });
/// assert_eq!(responder.render(Failure::StoreUnavailable).unwrap().status, 503);
/// assert_eq!(responder.render(Failure::MissingLayer), None);
/// ```
#[derive(Clone)]
pub struct ErrorResponder(Arc<Render>);

impl ErrorResponder {
    /// A responder calling `render`.
    pub fn new(render: impl Fn(Failure) -> Option<ErrorResponse> + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The app's response for `failure`, or `None` for the default.
    #[must_use]
    pub fn render(&self, failure: Failure) -> Option<ErrorResponse> {
        (self.0)(failure)
    }
}

impl fmt::Debug for ErrorResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorResponder").finish_non_exhaustive()
    }
}
