//! The response future: the inner service's response, then the session write.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{header::SET_COOKIE, HeaderName, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use session_core::{
    manager::{ErrorResponder, ErrorResponse, Failure, Finish},
    Session,
};

/// The write-back, and the `Set-Cookie` that clears another library's
/// cookie after a migration.
type FinishFuture = Pin<Box<dyn Future<Output = (Finish, Option<String>)> + Send>>;

pin_project! {
    /// Resolves to the inner service's response with the session written and
    /// its `Set-Cookie` added, or, when the store failed under the `Reject`
    /// policy, to the app's [`ErrorResponder`]'s response (a bare 503 by
    /// default).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        responder: Option<ErrorResponder>,
        span: tracing::Span,
        // `Set-Cookie`, or the token header of a header transport.
        header: Option<HeaderName>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Handling {
            #[pin]
            future: F,
            session: Option<Session>,
        },
        Writing {
            finish: FinishFuture,
            response: Option<Response<B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(
        future: F,
        session: Session,
        responder: Option<ErrorResponder>,
        span: tracing::Span,
    ) -> Self {
        Self {
            state: State::Handling {
                future,
                session: Some(session),
            },
            responder,
            span,
            header: Some(SET_COOKIE),
        }
    }

    /// Writes the session's header under `name` (the manager's
    /// `response_header`, parsed once by the service); `None` leaves it out.
    pub(crate) fn with_header(mut self, name: Option<HeaderName>) -> Self {
        self.header = name;
        self
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default + From<Vec<u8>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Handling { future, session } => {
                    // If the inner service fails there is no response to
                    // acknowledge the changes, so nothing is written.
                    let response = ready!(future.poll(cx))?;
                    let session = session.take().expect("session taken only once");
                    // An untouched session ends here, with no future to box.
                    if let Some(finish) = session.finish_now() {
                        let legacy_removal = session.legacy_cookie_removal();
                        return Poll::Ready(Ok(respond(
                            finish,
                            legacy_removal,
                            response,
                            this.span,
                            this.responder.as_ref(),
                            this.header.as_ref(),
                        )));
                    }
                    let finish: FinishFuture = Box::pin(async move {
                        let finish = session.finish().await;
                        (finish, session.legacy_cookie_removal())
                    });
                    this.state.set(State::Writing {
                        finish,
                        response: Some(response),
                    });
                }
                StateProj::Writing { finish, response } => {
                    let (finish, legacy_removal) = ready!(finish.as_mut().poll(cx));
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(respond(
                        finish,
                        legacy_removal,
                        response,
                        this.span,
                        this.responder.as_ref(),
                        this.header.as_ref(),
                    )));
                }
            }
        }
    }
}

/// The handler's response once the session is finished: its header added,
/// or the error response, and another library's cookie cleared after a
/// migration.
fn respond<B: Default + From<Vec<u8>>>(
    finish: Finish,
    legacy_removal: Option<String>,
    response: Response<B>,
    span: &tracing::Span,
    responder: Option<&ErrorResponder>,
    header: Option<&HeaderName>,
) -> Response<B> {
    let outcome = match finish {
        Finish::Respond { .. } => "ok",
        _ => "unavailable",
    };
    span.record("outcome", outcome);
    let mut response = apply(finish, response, responder, header);
    if let Some(removal) = legacy_removal.filter(|_| outcome == "ok") {
        if let Ok(value) = HeaderValue::try_from(removal) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

fn apply<B: Default + From<Vec<u8>>>(
    finish: Finish,
    mut response: Response<B>,
    responder: Option<&ErrorResponder>,
    header: Option<&HeaderName>,
) -> Response<B> {
    match finish {
        Finish::Respond { set_cookie: None } => response,
        Finish::Respond {
            set_cookie: Some(set_cookie),
        } => {
            match (header, HeaderValue::try_from(set_cookie)) {
                (Some(header), Ok(value)) => {
                    response.headers_mut().append(header.clone(), value);
                }
                (None, _) => {}
                // The codec only renders validated attributes, so this means a
                // bug; the response still goes out, without the cookie.
                (_, Err(err)) => {
                    tracing::error!(error.message = %err, "session cookie is not a valid header value");
                }
            }
            response
        }
        // Finish is non-exhaustive: anything but "respond" must not
        // acknowledge the handler's work, so it is a 503 too.
        _ => match responder.and_then(|responder| responder.render(Failure::StoreUnavailable)) {
            Some(custom) => render(custom, StatusCode::SERVICE_UNAVAILABLE),
            None => unavailable(),
        },
    }
}

/// A bare 503: no store detail leaks to the client.
pub(crate) fn unavailable<B: Default>() -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// The app's [`ErrorResponse`] as an `http` response. A status or header
/// that HTTP does not allow is a bug in the app's responder: the status
/// falls back to `fallback`, the header is left out, and either is logged.
pub(crate) fn render<B: From<Vec<u8>>>(custom: ErrorResponse, fallback: StatusCode) -> Response<B> {
    let mut response = Response::new(B::from(custom.body));
    *response.status_mut() = StatusCode::from_u16(custom.status).unwrap_or_else(|err| {
        tracing::error!(error.message = %err, "the app's error response has an invalid status");
        fallback
    });
    for (name, value) in custom.headers {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::error!("the app's error response has an invalid header; it is left out"),
        }
    }
    response
}
