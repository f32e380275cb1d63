//! The whole session-conformance suite, store-level and HTTP-level, against
//! each Redis topology. Each topology's servers start once per test binary
//! and are shared by its tests, which keep apart by key prefix; the test kit
//! stops them when the binary exits, however it exits.
//!
//! Filter by topology: `cargo test -p session-redis --test conformance sentinel::`.

mod support;

mod standalone {
    use std::sync::OnceLock;

    use session_conformance::testkit::RedisServer;

    use crate::support::{standalone, RedisFactory};

    fn factory() -> RedisFactory {
        static SERVER: OnceLock<RedisServer> = OnceLock::new();
        RedisFactory(standalone(SERVER.get_or_init(RedisServer::start).url()))
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

mod sentinel {
    use std::sync::OnceLock;

    use session_conformance::testkit::RedisSentinel;
    use session_redis::RedisConfig;

    use crate::support::RedisFactory;

    fn factory() -> RedisFactory {
        static GROUP: OnceLock<RedisSentinel> = OnceLock::new();
        let group = GROUP.get_or_init(RedisSentinel::start);
        RedisFactory(RedisConfig::sentinel(
            group.sentinel_urls(),
            group.service_name(),
        ))
    }

    session_conformance::store_suite!(factory());
    mod http {
        use super::factory;
        session_conformance::http_suite!(session_tower::conformance::AxumApp, factory());
    }
}

mod cluster {
    use std::sync::OnceLock;

    use session_conformance::testkit::RedisCluster;
    use session_redis::RedisConfig;

    use crate::support::RedisFactory;

    fn factory() -> RedisFactory {
        static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
        RedisFactory(RedisConfig::cluster(
            CLUSTER.get_or_init(RedisCluster::start).seed_urls(),
        ))
    }

    session_conformance::store_suite!(factory());
    mod http {
        use super::factory;
        session_conformance::http_suite!(session_tower::conformance::AxumApp, factory());
    }
}
