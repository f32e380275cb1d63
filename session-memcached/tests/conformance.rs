//! The whole session-conformance suite, store-level and HTTP-level, against
//! one Memcached and against three. Each set of servers starts once per test
//! binary and is shared by its tests, which keep apart by key prefix; the
//! test kit stops them when the binary exits, however it exits.
//!
//! Filter by set: `cargo test -p session-memcached --test conformance three_servers::`.

mod support;

mod one_server {
    use std::sync::OnceLock;

    use session_conformance::testkit::MemcachedServer;

    use crate::support::{config, MemcachedFactory};

    fn factory() -> MemcachedFactory {
        static SERVERS: OnceLock<Vec<MemcachedServer>> = OnceLock::new();
        MemcachedFactory(config(
            SERVERS.get_or_init(|| MemcachedServer::start_many(1)),
        ))
    }

    session_conformance::store_suite!(factory());
    mod http {
        use super::factory;
        session_conformance::http_suite!(session_tower::conformance::AxumApp, factory());
    }
    /// The adapters do not differ by topology, so actix runs the HTTP
    /// scenarios on this one only.
    mod http_actix {
        use super::factory;
        session_conformance::http_suite!(session_actix::conformance::ActixApp, factory());
    }
}

mod three_servers {
    use std::sync::OnceLock;

    use session_conformance::testkit::MemcachedServer;

    use crate::support::{config, MemcachedFactory};

    fn factory() -> MemcachedFactory {
        static SERVERS: OnceLock<Vec<MemcachedServer>> = OnceLock::new();
        MemcachedFactory(config(
            SERVERS.get_or_init(|| MemcachedServer::start_many(3)),
        ))
    }

    session_conformance::store_suite!(factory());
    mod http {
        use super::factory;
        session_conformance::http_suite!(session_tower::conformance::AxumApp, factory());
    }
}
