//! The HTTP-level conformance scenarios, served by axum behind `SessionLayer`.

use axum::{extract::Request, http::StatusCode, routing::any, Router};
use session_conformance::{async_trait, http::respond, RunningApp, TestApp};
use session_core::SessionManager;
use session_tower::{Session, SessionLayer};

struct AxumApp;

#[async_trait]
impl TestApp for AxumApp {
    async fn serve(&self, manager: SessionManager) -> RunningApp {
        let app = Router::new()
            .fallback(any(|session: Session, request: Request| async move {
                let (status, body) = respond(request.uri().path(), &session).await;
                (StatusCode::from_u16(status).unwrap(), body)
            }))
            .layer(SessionLayer::new(manager));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RunningApp::new(addr, move || server.abort())
    }
}

session_conformance::http_suite!(AxumApp, session_conformance::MemoryFactory::new());
