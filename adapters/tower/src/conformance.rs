//! The `session-conformance` HTTP scenarios, served by axum.
//!
//! A store crate runs the whole HTTP suite against its store through this
//! adapter with one line in its tests:
//!
//! ```no_run
//! session_conformance::http_suite!(
//!     session_tower::conformance::AxumApp,
//!     session_conformance::MemoryFactory::new()
//! );
//! # fn main() {}
//! ```

use axum::{extract::Request, http::StatusCode, routing::any, Router};
use session_conformance::{async_trait, http::respond, RunningApp, TestApp};
use session_core::SessionManager;

use crate::{Session, SessionLayer};

/// Serves [`respond`] for every path on a loopback port, behind
/// [`SessionLayer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AxumApp;

#[async_trait]
impl TestApp for AxumApp {
    async fn serve(&self, manager: SessionManager) -> RunningApp {
        let app = Router::new()
            .fallback(any(|session: Session, request: Request| async move {
                let (status, body) = respond(request.uri().path(), &session).await;
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, body)
            }))
            .layer(SessionLayer::new(manager));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port to serve the conformance app on");
        let addr = listener.local_addr().expect("the bound address");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        RunningApp::new(addr, move || server.abort())
    }
}
