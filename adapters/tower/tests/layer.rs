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
