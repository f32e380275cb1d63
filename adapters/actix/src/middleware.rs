//! The middleware that runs the session lifecycle around each request.

use std::future::{ready, Ready};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    http::{
        header::{HeaderName, HeaderValue, SET_COOKIE},
        StatusCode,
    },
    HttpMessage, HttpResponse,
};
use futures_util::future::LocalBoxFuture;
use session_core::{
    manager::{ErrorResponder, ErrorResponse, Failure, Finish},
    SessionManager,
};
use tracing::Instrument as _;

use crate::Session;

/// Adds a session to every request of the app or scope it wraps, and the
/// session's cookie to every response.
///
/// Build it from a [`SessionManager`]; clones share the manager, so the one
/// built outside `HttpServer::new` serves every worker.
///
/// ```
/// use actix_web::{web, App, HttpServer};
/// use session_actix::SessionMiddleware;
/// use session_core::{Key, SessionManager, memory::MemoryStore};
///
/// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
/// let server = HttpServer::new(move || {
///     App::new()
///         .wrap(SessionMiddleware::new(manager.clone()))
///         .route("/", web::get().to(|| async { "hello" }))
/// });
/// # let _ = server;
/// ```
#[derive(Debug, Clone)]
pub struct SessionMiddleware {
    manager: SessionManager,
}

impl SessionMiddleware {
    /// A middleware running `manager`'s lifecycle on every request.
    #[must_use]
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        // The manager validated both names; an invalid one would be a bug,
        // logged here, once, and the header then left out.
        let parse = |name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .inspect_err(|err| {
                    tracing::error!(error.message = %err, "session header name is invalid");
                })
                .ok()
        };
        ready(Ok(SessionService {
            service,
            request_header: parse(self.manager.request_header())
                .unwrap_or(actix_web::http::header::COOKIE),
            response_header: parse(self.manager.response_header()),
            manager: self.manager.clone(),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps around an app or scope.
#[derive(Debug)]
pub struct SessionService<S> {
    service: S,
    manager: SessionManager,
    /// The manager's request and response header names, parsed once per
    /// worker rather than on every request.
    request_header: HeaderName,
    response_header: Option<HeaderName>,
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        // Nothing about the cookie or the session goes in it: only what
        // the session middleware did with the request.
        let span = tracing::debug_span!(
            target: "session_kit::request",
            "session_request",
            framework = "actix",
            outcome = tracing::field::Empty,
        );
        // actix's header types are http 0.2's; the core only wants the
        // bytes of `Cookie`, or of the token header of a header transport.
        let session = span.in_scope(|| {
            self.manager.start(
                request
                    .headers()
                    .get_all(&self.request_header)
                    .map(HeaderValue::as_bytes),
            )
        });
        request.extensions_mut().insert(Session(session.clone()));
        let response = span.in_scope(|| self.service.call(request));
        let responder = self.manager.error_responder().cloned();
        let header = self.response_header.clone();
        let request_span = span.clone();
        Box::pin(
            async move {
                // If an inner middleware fails there is no response to
                // acknowledge the changes, so nothing is written.
                let response = response.await?;
                let finish = session.finish().await;
                // Migration from another library clears its cookie too.
                let legacy_removal = session.legacy_cookie_removal();
                let outcome = match finish {
                    Finish::Respond { .. } => "ok",
                    _ => "unavailable",
                };
                request_span.record("outcome", outcome);
                let mut response = apply(finish, response, responder.as_ref(), header);
                if let Some(removal) = legacy_removal.filter(|_| outcome == "ok") {
                    if let Ok(value) = HeaderValue::try_from(removal) {
                        response.headers_mut().append(SET_COOKIE, value);
                    }
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

fn apply<B>(
    finish: Finish,
    mut response: ServiceResponse<B>,
    responder: Option<&ErrorResponder>,
    header: Option<HeaderName>,
) -> ServiceResponse<EitherBody<B>> {
    match finish {
        Finish::Respond { set_cookie } => {
            if let Some(set_cookie) = set_cookie {
                match (header, HeaderValue::try_from(set_cookie)) {
                    (Some(header), Ok(value)) => response.headers_mut().append(header, value),
                    // An invalid name was logged when the service was made.
                    (None, _) => {}
                    // The codec only renders validated attributes, so this
                    // means a bug; the response still goes out without it.
                    (_, Err(err)) => {
                        tracing::error!(error.message = %err, "session cookie is not a valid header value");
                    }
                }
            }
            response.map_into_left_body()
        }
        // Finish is non-exhaustive: anything but "respond" must not
        // acknowledge the handler's work, so it is a bare 503, with no store
        // detail for the client.
        _ => {
            let (request, _) = response.into_parts();
            let response =
                match responder.and_then(|responder| responder.render(Failure::StoreUnavailable)) {
                    Some(custom) => render(custom, StatusCode::SERVICE_UNAVAILABLE),
                    None => HttpResponse::ServiceUnavailable().finish(),
                };
            ServiceResponse::new(request, response).map_into_right_body()
        }
    }
}

/// The app's [`ErrorResponse`] as an actix response. A status or header
/// that HTTP does not allow is a bug in the app's responder: the status
/// falls back to `fallback`, the header is left out, and either is logged.
pub(crate) fn render(custom: ErrorResponse, fallback: StatusCode) -> HttpResponse {
    let status = StatusCode::from_u16(custom.status).unwrap_or_else(|err| {
        tracing::error!(error.message = %err, "the app's error response has an invalid status");
        fallback
    });
    let mut response = HttpResponse::build(status);
    for (name, value) in &custom.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                response.append_header((name, value));
            }
            _ => tracing::error!("the app's error response has an invalid header; it is left out"),
        }
    }
    response.body(custom.body)
}
