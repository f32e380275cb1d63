//! What the Postgres tests share: one server per test binary, and a
//! `StoreFactory` over it.

#![allow(dead_code)] // each test binary uses its own part

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use session_conformance::{async_trait, testkit::PostgresServer, StoreFactory};
use session_core::store::SessionStore;
use session_postgres::{PostgresConfig, PostgresStore};

/// The server every test of this binary shares; tests keep apart by key
/// prefix (one table), as apps sharing a table do. Started once: `initdb`
/// and the start take about a second, too much per test.
pub(crate) fn server() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(PostgresServer::start)
}

/// A config for `url`: a timeout with room for a loaded 2-core CI machine
/// (a new connection prepares each statement once), and a
/// pool small enough for many tests at once.
pub(crate) fn config(url: String) -> PostgresConfig {
    PostgresConfig::new(url)
        .with_operation_timeout(Duration::from_secs(2))
        .with_pool_size(4)
}

/// Hands the suite stores on one server, each under the prefix the test
/// asks for. Every store opens its own pool, in the runtime of the test
/// that asked for it.
pub(crate) struct PostgresFactory(pub(crate) PostgresConfig);

#[async_trait]
impl StoreFactory for PostgresFactory {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(connect(self.0.clone().with_key_prefix(prefix)).await)
    }
}

/// Connects, failing the test with the reason if Postgres is not there.
pub(crate) async fn connect(config: PostgresConfig) -> PostgresStore {
    match PostgresStore::connect(config).await {
        Ok(store) => store,
        Err(err) => panic!("{}", err.to_line()),
    }
}

/// The factory on the shared server.
pub(crate) fn factory() -> PostgresFactory {
    PostgresFactory(config(server().url()))
}
