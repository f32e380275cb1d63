//! Serving the example routes with actix-web.

use actix_web::{web, App, HttpServer};
use session_kit::{
    actix::{Error, Session, SessionMiddleware},
    SessionManager,
};

/// Serves `/` (a counter) and `/logout` on `ADDR` (default
/// 127.0.0.1:3000) until Ctrl-C.
pub(crate) async fn serve(
    manager: SessionManager,
    name: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let addr = super::listen_addr()?;
    tracing::info!(%addr, "{name} listening");
    HttpServer::new(move || {
        App::new()
            .wrap(SessionMiddleware::new(manager.clone()))
            .route(
                "/",
                web::get().to(|session: Session| async move {
                    Ok::<_, Error>(super::count(&session).await?)
                }),
            )
            .route(
                "/logout",
                web::get().to(|session: Session| async move {
                    Ok::<_, Error>(super::logout(&session).await?)
                }),
            )
    })
    .bind(addr)?
    .run()
    .await?;
    Ok(())
}
