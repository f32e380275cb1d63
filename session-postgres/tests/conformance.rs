//! The whole session-conformance suite, store-level and HTTP-level (on both
//! adapters), against a real PostgreSQL server. One server per test binary;
//! the tests keep apart by key prefix in one table, and the test kit stops
//! the server when the binary exits, however it exits.

mod support;

use support::factory;

session_conformance::store_suite!(factory());

mod http {
    use super::factory;
    session_conformance::http_suite!(session_tower::conformance::AxumApp, factory());
}

mod http_actix {
    use super::factory;
    session_conformance::http_suite!(session_actix::conformance::ActixApp, factory());
}
