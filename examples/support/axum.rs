//! Serving the example routes with axum.

use axum::{routing::get, Router};
use session_kit::{
    tower::{Error, Session, SessionLayer},
    SessionManager,
};

/// Serves `/` (a counter) and `/logout` on `ADDR` (default
/// 127.0.0.1:3000) until Ctrl-C.
pub(crate) async fn serve(
    manager: SessionManager,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new()
        .route(
            "/",
            get(|session: Session| async move { Ok::<_, Error>(super::count(&session).await?) }),
        )
        .route(
            "/logout",
            get(|session: Session| async move { Ok::<_, Error>(super::logout(&session).await?) }),
        )
        .layer(SessionLayer::new(manager));

    let addr = super::listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "{name} listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
