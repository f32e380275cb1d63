//! The middleware that runs the session lifecycle around each request.

use std::future::{ready, Ready};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    http::header::{HeaderValue, COOKIE, SET_COOKIE},
    HttpMessage, HttpResponse,
};
use futures_util::future::LocalBoxFuture;
use session_core::{manager::Finish, SessionManager};

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
        ready(Ok(SessionService {
            service,
            manager: self.manager.clone(),
        }))
    }
}

/// The service [`SessionMiddleware`] wraps around an app or scope.
#[derive(Debug)]
pub struct SessionService<S> {
    service: S,
    manager: SessionManager,
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
        // actix's header types are http 0.2's; the core only wants the bytes.
        let session = self
            .manager
            .start(request.headers().get_all(COOKIE).map(HeaderValue::as_bytes));
        request.extensions_mut().insert(Session(session.clone()));
        let response = self.service.call(request);
        Box::pin(async move {
            // If an inner middleware fails there is no response to
            // acknowledge the changes, so nothing is written.
            let response = response.await?;
            Ok(apply(session.finish().await, response))
        })
    }
}

fn apply<B>(finish: Finish, mut response: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    match finish {
        Finish::Respond { set_cookie } => {
            if let Some(set_cookie) = set_cookie {
                match HeaderValue::try_from(set_cookie) {
                    Ok(value) => response.headers_mut().append(SET_COOKIE, value),
                    // The codec only renders validated attributes, so this
                    // means a bug; the response still goes out, without the
                    // cookie.
                    Err(err) => {
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
            ServiceResponse::new(request, HttpResponse::ServiceUnavailable().finish())
                .map_into_right_body()
        }
    }
}
