//! The HTTP-level conformance scenarios, served by axum behind `SessionLayer`.

session_conformance::http_suite!(
    session_tower::conformance::AxumApp,
    session_conformance::MemoryFactory::new()
);
