//! The HTTP-level conformance scenarios, served by actix-web behind
//! `SessionMiddleware`.

session_conformance::http_suite!(
    session_actix::conformance::ActixApp,
    session_conformance::MemoryFactory::new()
);
