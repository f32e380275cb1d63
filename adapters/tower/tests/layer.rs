//! Behaviour specific to the tower layer and the axum extractor.

use axum::{body::Body, http::StatusCode, routing::get, Router};
use http::{header::SET_COOKIE, Request};
use http_body_util::BodyExt as _;
use session_core::{memory::MemoryStore, Key, SessionManager};
use session_tower::{Error, Session, SessionLayer};
use tower::ServiceExt as _;

async fn counter(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(count.to_string())
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn a_route_without_the_layer_gets_a_500_naming_the_layer() {
    let app: Router = Router::new().route("/", get(counter));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body_text(response).await.contains("SessionLayer"));
}

#[tokio::test]
async fn an_optional_session_is_none_without_the_layer() {
    let app: Router = Router::new().route(
        "/",
        get(|session: Option<Session>| async move { session.is_some().to_string() }),
    );
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(body_text(response).await, "false");
}

#[tokio::test]
async fn the_layer_works_as_a_plain_tower_service() {
    let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(counter))
        .layer(SessionLayer::new(manager));

    let first = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = first.headers()[SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(body_text(first).await, "1");

    let second = app
        .oneshot(
            Request::get("/")
                .header(http::header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(second.headers().get(SET_COOKIE).is_none());
    assert_eq!(body_text(second).await, "2");
}

/// The app's responder: a 500 with a header and a body for an outage, a
/// 418 for a missing layer.
fn responder() -> session_core::manager::ErrorResponder {
    use session_core::manager::{ErrorResponder, ErrorResponse, Failure};
    ErrorResponder::new(|failure| match failure {
        Failure::StoreUnavailable => Some(
            ErrorResponse::new(500)
                .with_header("retry-after", "7")
                .with_header("content-type", "text/html")
                .with_body("<p>sessions are down</p>"),
        ),
        Failure::MissingLayer => Some(
            ErrorResponse::new(418)
                .with_header("x-app", "own")
                .with_body("no layer here"),
        ),
        _ => None,
    })
}

/// A router over a store that is down, with or without the app's responder.
fn down_app(with_responder: bool) -> Router {
    use std::sync::Arc;

    use session_conformance::{Fault, InstrumentedStore};

    let store = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    store.set_fault(Some(Fault::Fail(session_core::ErrorKind::Unavailable)));
    let mut builder = SessionManager::builder(store, Key::generate());
    if with_responder {
        builder = builder.with_error_responder(responder());
    }
    Router::new()
        .route("/", get(counter))
        .layer(SessionLayer::new(builder.build().unwrap()))
}

#[tokio::test]
async fn a_store_outage_is_a_bare_503_by_default() {
    let response = down_app(false)
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // axum states the empty body's length; nothing else is added.
    assert!(
        response
            .headers()
            .keys()
            .all(|name| name == "content-length"),
        "{:?}",
        response.headers()
    );
    assert_eq!(body_text(response).await, "");
}

#[tokio::test]
async fn a_store_outage_gets_the_apps_own_response() {
    let response = down_app(true)
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["content-type"], "text/html");
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert_eq!(body_text(response).await, "<p>sessions are down</p>");
}

#[tokio::test]
async fn a_missing_layer_gets_the_apps_own_response_from_the_extensions() {
    let app: Router = Router::new()
        .route("/", get(counter))
        .layer(axum::Extension(responder()));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.headers()["x-app"], "own");
    assert_eq!(body_text(response).await, "no layer here");
}
