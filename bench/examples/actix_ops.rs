//! What session-kit's actix middleware costs in instructions per request,
//! next to bare actix-web: the counterpart of `session-instructions`
//! (which measures the axum layer) for the actix adapter. The app runs
//! in-process through `actix_web::test::call_service` (no socket, no HTTP
//! parsing) on the memory store, with the bench's routes.
//!
//! ```text
//! cargo build --release -p session-bench --example actix_ops
//! for n in 200 1200; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.actix.$n \
//!       target/release/examples/actix_ops kit-untouched $n
//! done
//! ```
//!
//! The instructions per request are the difference of the two runs'
//! totals over the difference in requests, so start-up and the login
//! cancel out. PATH is `bare-untouched`, `bare-read`, `kit-untouched`,
//! `kit-read` or `kit-write`.

use actix_web::{
    http::header,
    test::{self, TestRequest},
    web, App,
};
use session_kit::{
    actix::{Error, Session, SessionMiddleware},
    memory::MemoryStore,
    Key, SessionManager,
};

const USAGE: &str = "usage: actix_ops PATH REQUESTS (PATH: bare-untouched, bare-read, kit-untouched, kit-read, kit-write)";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(Ok(requests))) = (args.first(), args.get(1).map(|n| n.parse::<u32>()))
    else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    };
    let uri = match path.split_once('-').map(|(_, route)| route) {
        Some("untouched") => "/plain",
        Some("read") => "/read",
        Some("write") => "/incr",
        _ => {
            eprintln!("{USAGE}");
            return std::process::ExitCode::from(2);
        }
    };
    actix_web::rt::System::new().block_on(async move {
        if path.starts_with("bare-") {
            let app = test::init_service(
                App::new()
                    .route("/plain", web::get().to(|| async { "ok" }))
                    .route("/read", web::get().to(|| async { "0" })),
            )
            .await;
            for _ in 0..requests {
                let response =
                    test::call_service(&app, TestRequest::get().uri(uri).to_request()).await;
                assert!(response.status().is_success());
                drop(test::read_body(response).await);
            }
            return std::process::ExitCode::SUCCESS;
        }
        let key = Key::from_secret("actix_ops: a fixed secret of 32 bytes or more")
            .expect("a long secret");
        let manager = SessionManager::builder(MemoryStore::new(), key)
            .build()
            .expect("a valid manager");
        let app = test::init_service(
            App::new()
                .wrap(SessionMiddleware::new(manager))
                .route(
                    "/login",
                    web::get().to(|session: Session| async move {
                        session.insert("count", 0_u64).await?;
                        Ok::<_, Error>("0")
                    }),
                )
                .route("/plain", web::get().to(|| async { "ok" }))
                .route(
                    "/read",
                    web::get().to(|session: Session| async move {
                        let count = session.get::<u64>("count").await?.unwrap_or(0);
                        Ok::<_, Error>(count.to_string())
                    }),
                )
                .route(
                    "/incr",
                    web::get().to(|session: Session| async move {
                        let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
                        session.insert("count", count).await?;
                        Ok::<_, Error>(count.to_string())
                    }),
                ),
        )
        .await;
        let login = test::call_service(&app, TestRequest::get().uri("/login").to_request()).await;
        let cookie = login
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .expect("the login sets a cookie")
            .to_owned();
        for _ in 0..requests {
            let request = TestRequest::get()
                .uri(uri)
                .insert_header((header::COOKIE, cookie.as_str()))
                .to_request();
            let response = test::call_service(&app, request).await;
            assert!(response.status().is_success());
            drop(test::read_body(response).await);
        }
        std::process::ExitCode::SUCCESS
    })
}
