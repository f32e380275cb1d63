//! The `Service` that runs the session lifecycle around each request.

use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use session_core::SessionManager;
use tower_service::Service;

use crate::{ResponseFuture, Session};

/// Wraps a service so that each request carries a [`Session`] in its
/// extensions and each response carries the session's cookie.
///
/// Created by [`SessionLayer`](crate::SessionLayer).
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
    /// The manager's request and response header names, parsed once here
    /// rather than on every request.
    request_header: HeaderName,
    response_header: Option<HeaderName>,
}

impl<S> SessionService<S> {
    pub(crate) fn new(inner: S, manager: SessionManager) -> Self {
        // The manager validated both names; an invalid one would be a bug,
        // logged, and the header then left out.
        let parse = |name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .inspect_err(|err| {
                    tracing::error!(error.message = %err, "session header name is invalid");
                })
                .ok()
        };
        let request_header = parse(manager.request_header()).unwrap_or(http::header::COOKIE);
        let response_header = parse(manager.response_header());
        Self {
            inner,
            manager,
            request_header,
            response_header,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default + From<Vec<u8>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Nothing about the cookie or the session goes in it: only what
        // the session layer did with the request.
        let span = tracing::debug_span!(
            target: "session_kit::request",
            "session_request",
            framework = "tower",
            outcome = tracing::field::Empty,
        );
        // `Cookie`, or the token header of a header transport.
        let session = span.in_scope(|| {
            let tokens = request.headers().get_all(&self.request_header);
            self.manager
                .start(tokens.iter().map(http::HeaderValue::as_bytes))
        });
        request.extensions_mut().insert(Session(session.clone()));
        let future = span.in_scope(|| self.inner.call(request));
        ResponseFuture::new(
            future,
            session,
            self.manager.error_responder().cloned(),
            span,
        )
        .with_header(self.response_header.clone())
    }
}
