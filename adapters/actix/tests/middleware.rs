//! Behaviour specific to the actix middleware and extractor.

use actix_web::{
    body::MessageBody,
    dev::ServiceResponse,
    http::{
        header::{COOKIE, SET_COOKIE},
        StatusCode,
    },
    test::{call_service, init_service, read_body, TestRequest},
    web, App, HttpResponse,
};
use session_actix::{Error, Session, SessionMiddleware};
use session_core::{memory::MemoryStore, Key, SessionManager};

fn manager() -> SessionManager {
    SessionManager::builder(MemoryStore::new(), Key::generate())
        .build()
        .unwrap()
}

async fn counter(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(count.to_string())
}

async fn text<B: MessageBody>(response: ServiceResponse<B>) -> String {
    String::from_utf8(read_body(response).await.to_vec()).unwrap()
}

/// The `name=value` pair of the response's one `Set-Cookie`.
fn issued<B>(response: &ServiceResponse<B>) -> String {
    let header = response.headers().get(SET_COOKIE).expect("a Set-Cookie");
    let header = header.to_str().unwrap();
    header.split(';').next().unwrap().to_owned()
}

#[actix_web::test]
async fn a_route_without_the_middleware_gets_a_500_naming_it() {
    let app = init_service(App::new().route("/", web::get().to(counter))).await;
    let response = call_service(&app, TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text(response).await.contains("SessionMiddleware"));
}

#[actix_web::test]
async fn an_optional_session_is_none_without_the_middleware() {
    let app = init_service(App::new().route(
        "/",
        web::get().to(|session: Option<Session>| async move { session.is_some().to_string() }),
    ))
    .await;
    let response = call_service(&app, TestRequest::get().uri("/").to_request()).await;
    assert_eq!(text(response).await, "false");
}

#[actix_web::test]
async fn only_the_wrapped_scope_has_sessions() {
    let app = init_service(
        App::new()
            .service(
                web::scope("/app")
                    .wrap(SessionMiddleware::new(manager()))
                    .route("/counter", web::get().to(counter)),
            )
            .route("/bare", web::get().to(counter)),
    )
    .await;
    let inside = call_service(&app, TestRequest::get().uri("/app/counter").to_request()).await;
    assert_eq!(inside.status(), StatusCode::OK);
    let outside = call_service(&app, TestRequest::get().uri("/bare").to_request()).await;
    assert_eq!(outside.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// The handle goes to another thread, with a runtime of its own, and the
/// change made there is written when the handler returns.
#[actix_web::test]
async fn the_session_can_be_used_on_another_thread() {
    async fn elsewhere(session: Session) -> Result<String, Error> {
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let written = runtime.block_on(async {
                let count = session.get::<u64>("count").await?.unwrap_or(0);
                session.insert("count", count + 10).await
            });
            let _ = done.send(written);
        });
        finished.await.expect("the thread answers")?;
        Ok("moved".to_owned())
    }

    let app = init_service(
        App::new()
            .wrap(SessionMiddleware::new(manager()))
            .route("/elsewhere", web::get().to(elsewhere))
            .route("/counter", web::get().to(counter)),
    )
    .await;
    let first = call_service(&app, TestRequest::get().uri("/elsewhere").to_request()).await;
    let cookie = issued(&first);
    assert_eq!(text(first).await, "moved");
    let second = call_service(
        &app,
        TestRequest::get()
            .uri("/counter")
            .insert_header((COOKIE, cookie))
            .to_request(),
    )
    .await;
    assert_eq!(text(second).await, "11");
}

/// A handler's session error is a 500 with an empty body: the message,
/// which may name a key, stays in the log.
#[actix_web::test]
async fn a_handler_error_is_a_500_with_no_detail() {
    async fn wrong_type(session: Session) -> Result<HttpResponse, Error> {
        session.insert("count", "not a number").await?;
        let _ = session.get::<u64>("count").await?;
        Ok(HttpResponse::Ok().finish())
    }

    let app = init_service(
        App::new()
            .wrap(SessionMiddleware::new(manager()))
            .route("/", web::get().to(wrong_type)),
    )
    .await;
    let response = call_service(&app, TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(response).await, "");
}

#[actix_web::test]
async fn an_unchanged_session_sets_no_cookie() {
    let app = init_service(
        App::new()
            .wrap(SessionMiddleware::new(manager()))
            .route("/counter", web::get().to(counter))
            .route(
                "/read",
                web::get().to(|session: Session| async move {
                    session
                        .get::<u64>("count")
                        .await
                        .map(|count| count.unwrap_or(0).to_string())
                        .map_err(Error)
                }),
            ),
    )
    .await;
    let first = call_service(&app, TestRequest::get().uri("/counter").to_request()).await;
    let cookie = issued(&first);
    let read = call_service(
        &app,
        TestRequest::get()
            .uri("/read")
            .insert_header((COOKIE, cookie))
            .to_request(),
    )
    .await;
    assert!(read.headers().get(SET_COOKIE).is_none());
    assert_eq!(text(read).await, "1");
}

/// The app's responder: a 500 with a header and a body for an outage, a
/// 418 for a missing middleware.
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

/// A manager over a store that is down, with or without the app's
/// responder.
fn down_manager(with_responder: bool) -> SessionManager {
    use std::sync::Arc;

    use session_conformance::{Fault, InstrumentedStore};

    let store = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    store.set_fault(Some(Fault::Fail(session_core::ErrorKind::Unavailable)));
    let mut builder = SessionManager::builder(store, Key::generate());
    if with_responder {
        builder = builder.with_error_responder(responder());
    }
    builder.build().unwrap()
}

#[actix_web::test]
async fn a_store_outage_is_a_bare_503_by_default() {
    let app = init_service(
        App::new()
            .wrap(SessionMiddleware::new(down_manager(false)))
            .route("/", web::get().to(counter)),
    )
    .await;
    let response = call_service(&app, TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // actix adds nothing to a bare response but the length the server
    // writes; the test service writes none.
    assert!(response.headers().is_empty(), "{:?}", response.headers());
    assert_eq!(text(response).await, "");
}

#[actix_web::test]
async fn a_store_outage_gets_the_apps_own_response() {
    let app = init_service(
        App::new()
            .wrap(SessionMiddleware::new(down_manager(true)))
            .route("/", web::get().to(counter)),
    )
    .await;
    let response = call_service(&app, TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers().get("retry-after").unwrap(), "7");
    assert_eq!(response.headers().get("content-type").unwrap(), "text/html");
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert_eq!(text(response).await, "<p>sessions are down</p>");
}

#[actix_web::test]
async fn a_missing_middleware_gets_the_apps_own_response_from_the_app_data() {
    let app = init_service(
        App::new()
            .app_data(responder())
            .route("/", web::get().to(counter)),
    )
    .await;
    let response = call_service(&app, TestRequest::get().uri("/").to_request()).await;
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.headers().get("x-app").unwrap(), "own");
    assert_eq!(text(response).await, "no layer here");
}
