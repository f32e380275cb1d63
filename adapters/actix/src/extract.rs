//! The `Session` extractor and the responses for session errors.

use std::{
    fmt,
    future::{ready, Ready},
};

use actix_web::{
    dev::Payload, http::StatusCode, FromRequest, HttpMessage, HttpRequest, HttpResponse,
    ResponseError,
};

use session_core::manager::{ErrorResponder, ErrorResponse, Failure};

use crate::{middleware::render, Error, Session};

/// The error when a handler asks for a [`Session`] but no
/// [`SessionMiddleware`](crate::SessionMiddleware) wraps the route: a 500
/// whose body names the missing middleware, so the mistake shows on the
/// first request.
///
/// An [`ErrorResponder`] in the app data (`App::app_data(responder)`)
/// renders it instead, when it answers [`Failure::MissingLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSessionMiddleware {
    custom: Option<ErrorResponse>,
}

impl fmt::Display for MissingSessionMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the Session extractor found no session: add session_actix::SessionMiddleware \
             (session_kit::actix::SessionMiddleware) to this app or scope with .wrap(...)",
        )
    }
}

impl std::error::Error for MissingSessionMiddleware {}

/// A 500 with the message as a plain-text body (actix's default), or the
/// app's own response.
impl ResponseError for MissingSessionMiddleware {
    fn status_code(&self) -> StatusCode {
        self.custom
            .as_ref()
            .and_then(|custom| StatusCode::from_u16(custom.status).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match &self.custom {
            Some(custom) => render(custom.clone(), StatusCode::INTERNAL_SERVER_ERROR),
            None => HttpResponse::build(StatusCode::INTERNAL_SERVER_ERROR)
                .content_type("text/plain; charset=utf-8")
                .body(self.to_string()),
        }
    }
}

/// `Option<Session>` comes with it, from actix: `None` when no middleware
/// wraps the route.
impl FromRequest for Session {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = request.extensions().get::<Session>().cloned();
        ready(session.ok_or_else(|| {
            let custom = request
                .app_data::<ErrorResponder>()
                .and_then(|responder| responder.render(Failure::MissingLayer));
            MissingSessionMiddleware { custom }
        }))
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
