//! One app server: the same three routes on every node of every strategy,
//! behind session-kit's tower layer, so the strategies differ only in their
//! store and their balancer.
//!
//! - `/login/{user}` stores the user and a count of 0, then moves the
//!   session to a new id (`cycle_id`), as a real login does;
//! - `/incr` reads the count and writes it back plus one (401 when the
//!   session holds no user: the user was logged out);
//! - `/read` answers the count (401 likewise).
//!
//! Each answers `{"node": i, "count": n}`. A store failure is session-kit's
//! default answer, a bare 503.

use std::{net::SocketAddr, time::Duration};

use axum::{
    extract::Path,
    http::{header::CONTENT_TYPE, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use session_kit::{
    tower::{Error, Session, SessionLayer},
    SessionManager,
};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::{
    error::LabError,
    shutdown::{self, Shutdown},
};

/// The session key holding the logged-in user.
const USER: &str = "user";
/// The session key holding the counter.
const COUNT: &str = "count";

/// The app of node `node` over `manager`.
pub(crate) fn router(manager: SessionManager, node: usize) -> Router {
    Router::new()
        .route(
            "/login/{user}",
            get(
                move |Path(user): Path<String>, session: Session| async move {
                    session.insert(USER, user).await?;
                    session.insert(COUNT, 0_u64).await?;
                    session.cycle_id().await?;
                    Ok::<_, Error>(answer(node, 0))
                },
            ),
        )
        .route(
            "/incr",
            get(move |session: Session| async move {
                if session.get::<String>(USER).await?.is_none() {
                    return Ok::<_, Error>(StatusCode::UNAUTHORIZED.into_response());
                }
                let count = session.get::<u64>(COUNT).await?.unwrap_or(0) + 1;
                session.insert(COUNT, count).await?;
                Ok(answer(node, count))
            }),
        )
        .route(
            "/read",
            get(move |session: Session| async move {
                if session.get::<String>(USER).await?.is_none() {
                    return Ok::<_, Error>(StatusCode::UNAUTHORIZED.into_response());
                }
                let count = session.get::<u64>(COUNT).await?.unwrap_or(0);
                Ok(answer(node, count))
            }),
        )
        .layer(SessionLayer::new(manager))
}

fn answer(node: usize, count: u64) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        format!("{{\"node\":{node},\"count\":{count}}}"),
    )
        .into_response()
}

/// How long a restarted node keeps trying to bind its old port: the killed
/// server's socket closes as soon as the runtime drops its task, which is
/// at once unless the machine is very busy.
const REBIND_FOR: Duration = Duration::from_secs(5);

/// An app server running on the lab's runtime, until the run's
/// [`Shutdown`]. [`kill`](Self::kill) (or drop) ends it sooner, as a crash
/// would: its listener and every open connection close, and its router,
/// with the session manager and store inside, is dropped with them.
#[derive(Debug)]
pub(crate) struct NodeServer {
    task: JoinHandle<()>,
}

impl NodeServer {
    /// Binds `addr` (port 0 for a fresh one) and serves `app` there until
    /// `shutdown`; returns the server and the address it is on. A taken
    /// port is tried again for a few seconds, for a node restarted on its
    /// old port.
    pub(crate) async fn start(
        addr: SocketAddr,
        app: Router,
        shutdown: Shutdown,
    ) -> Result<(Self, SocketAddr), LabError> {
        let listener = bind(addr).await?;
        let bound = listener
            .local_addr()
            .map_err(|source| LabError::Bind { addr, source })?;
        let task = tokio::spawn(serve(listener, app, shutdown));
        Ok((Self { task }, bound))
    }

    /// Ends the server at once, connections and all.
    pub(crate) fn kill(self) {
        self.task.abort();
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr`, retrying for [`REBIND_FOR`] while the port is still held.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, LabError> {
    let give_up = tokio::time::Instant::now() + REBIND_FOR;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(source) if tokio::time::Instant::now() >= give_up => {
                return Err(LabError::Bind { addr, source })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Serves `app` until `shutdown`, or until aborted (a kill).
async fn serve(listener: TcpListener, app: Router, shutdown: Shutdown) {
    shutdown::accept_until(listener, shutdown, |stream| {
        let service = TowerToHyperService::new(app.clone());
        async move {
            // A connection that ends in an error is the client's business
            // (a timeout, a balancer that gave up).
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}
