//! The whole store contract, run against the composite stores over memory:
//! `FailoverStore` in both modes and `TieredStore`. The same suites run over
//! Redis and Memcached in the facade's `tests/failover.rs`.

use std::sync::Arc;

use session_conformance::{async_trait, StoreFactory};
use session_core::{
    FailoverMode, FailoverStore, MemoryStore, NearCache, SessionStore, TieredStore,
};

/// Failover stores over two memory stores, each shared by every prefix.
struct Failover {
    primary: MemoryStore,
    secondary: MemoryStore,
    mode: FailoverMode,
}

impl Failover {
    fn new(mode: FailoverMode) -> Self {
        Self {
            primary: MemoryStore::new(),
            secondary: MemoryStore::new(),
            mode,
        }
    }
}

#[async_trait]
impl StoreFactory for Failover {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(
            FailoverStore::builder(
                self.primary.with_prefix(prefix),
                self.secondary.with_prefix(prefix),
            )
            .mode(self.mode)
            .build()
            .expect("valid failover settings"),
        )
    }
}

/// Tiered stores, each with its own near-cache, over one far memory store.
struct Tiered(MemoryStore);

#[async_trait]
impl StoreFactory for Tiered {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(TieredStore::new(
            NearCache::new(),
            self.0.with_prefix(prefix),
        ))
    }
}

mod mirror {
    use super::*;
    session_conformance::store_suite!(Failover::new(FailoverMode::Mirror));
}

mod standby {
    use super::*;
    session_conformance::store_suite!(Failover::new(FailoverMode::Standby));
}

mod tiered {
    use super::*;
    session_conformance::store_suite!(Tiered(MemoryStore::new()));
}
