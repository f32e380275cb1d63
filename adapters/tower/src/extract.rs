//! The axum extractor and the response for session errors.

use std::{convert::Infallible, fmt};

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
};

use session_core::manager::{ErrorResponder, ErrorResponse, Failure};

use crate::{future::render, Error, Session};

/// The rejection when a handler asks for a [`Session`] but no
/// [`SessionLayer`](crate::SessionLayer) wraps the route: a 500 whose body
/// names the missing layer, so the mistake shows on the first request.
///
/// An [`ErrorResponder`] in the request extensions
/// (`Router::layer(axum::Extension(responder))`) renders it instead, when it
/// answers [`Failure::MissingLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSessionLayer {
    custom: Option<ErrorResponse>,
}

impl fmt::Display for MissingSessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the Session extractor found no session: add session_tower::SessionLayer \
             (session_kit::tower::SessionLayer) to this route with .layer(...)",
        )
    }
}

impl std::error::Error for MissingSessionLayer {}

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        match self.custom {
            Some(custom) => render(custom, StatusCode::INTERNAL_SERVER_ERROR),
            None => (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            let custom = parts
                .extensions
                .get::<ErrorResponder>()
                .and_then(|responder| responder.render(Failure::MissingLayer));
            MissingSessionLayer { custom }
        })
    }
}

/// `Option<Session>` is `None` instead of a 500 when no layer wraps the route.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

/// A store outage is a 503 and anything else a 500; the body never carries
/// store details.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.0.status_code();
        if !self.0.is_unavailable() {
            tracing::error!(error.message = %self.0, "session error in handler");
        }
        StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response()
    }
}
