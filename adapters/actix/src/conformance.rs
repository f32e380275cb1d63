//! The `session-conformance` HTTP scenarios, served by actix-web.
//!
//! A store crate runs the whole HTTP suite against its store through this
//! adapter with one line in its tests:
//!
//! ```no_run
//! session_conformance::http_suite!(
//!     session_actix::conformance::ActixApp,
//!     session_conformance::MemoryFactory::new()
//! );
//! # fn main() {}
//! ```

use actix_web::{http::StatusCode, web, App, HttpRequest, HttpResponse, HttpServer};
use session_conformance::{async_trait, http::respond, RunningApp, TestApp};
use session_core::SessionManager;

use crate::{Session, SessionMiddleware};

/// Serves [`respond`] for every path on a loopback port, behind
/// [`SessionMiddleware`], on one actix worker thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActixApp;

async fn handle(session: Session, request: HttpRequest) -> HttpResponse {
    let (status, body) = respond(request.path(), &session).await;
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .body(body)
}

#[async_trait]
impl TestApp for ActixApp {
    async fn serve(&self, manager: SessionManager) -> RunningApp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a loopback port to serve the conformance app on");
        let addr = listener.local_addr().expect("the bound address");
        let server = HttpServer::new(move || {
            App::new()
                .wrap(SessionMiddleware::new(manager.clone()))
                .default_service(web::to(handle))
        })
        .workers(1)
        // The test process owns its signals, and a stopped test server has
        // no requests worth waiting for.
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("actix listens on the bound port")
        .run();
        let handle = server.handle();
        // actix-server runs in the caller's tokio runtime, its workers on
        // threads of their own.
        tokio::spawn(server);
        RunningApp::new(addr, move || {
            // The stop command is sent by the call; the returned future only
            // waits for it to finish, which nothing here needs.
            drop(handle.stop(false));
        })
    }
}
