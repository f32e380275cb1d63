//! The `Session` extractor and the responses for session errors.

use std::{
    fmt,
    future::{ready, Ready},
};

use actix_web::{
    dev::Payload, http::StatusCode, FromRequest, HttpMessage, HttpRequest, HttpResponse,
    ResponseError,
};

use crate::{Error, Session};

/// The error when a handler asks for a [`Session`] but no
/// [`SessionMiddleware`](crate::SessionMiddleware) wraps the route: a 500
/// whose body names the missing middleware, so the mistake shows on the
/// first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingSessionMiddleware;

impl fmt::Display for MissingSessionMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the Session extractor found no session: add session_actix::SessionMiddleware \
             (session_kit::actix::SessionMiddleware) to this app or scope with .wrap(...)",
        )
    }
}

impl std::error::Error for MissingSessionMiddleware {}

/// A 500 with the message as a plain-text body (actix's default).
impl ResponseError for MissingSessionMiddleware {}

/// `Option<Session>` comes with it, from actix: `None` when no middleware
/// wraps the route.
impl FromRequest for Session {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<Session>()
                .cloned()
                .ok_or(MissingSessionMiddleware),
        )
    }
}

/// A store outage is a 503 and anything else a 500; the body never carries
/// store details.
impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if !self.0.is_unavailable() {
            tracing::error!(error.message = %self.0, "session error in handler");
        }
        HttpResponse::new(self.status_code())
    }
}
