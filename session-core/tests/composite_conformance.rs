//! The whole store contract, run against the composite stores over memory:
//! `FailoverStore` in both modes, `TieredStore` and a connected `LazyStore`.
//! The same suites run over Redis and Memcached in the facade's
//! `tests/failover.rs`.

use std::{sync::Arc, time::Duration};

use session_conformance::{async_trait, StoreFactory};
use session_core::{
    failover::{FailoverMode, FailoverStore},
    lazy::LazyStore,
    memory::{MemoryStore, NearCache, TieredStore},
    store::SessionStore,
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
                self.primary.prefixed(prefix),
                self.secondary.prefixed(prefix),
            )
            .with_mode(self.mode)
            .build()
            .expect("valid failover settings"),
        )
    }

    fn owner_counts_are_exact(&self) -> bool {
        self.mode != FailoverMode::Mirror
    }
}

/// Tiered stores, each with its own near-cache, over one far memory store.
struct Tiered(MemoryStore);

#[async_trait]
impl StoreFactory for Tiered {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(TieredStore::new(NearCache::new(), self.0.prefixed(prefix)))
    }
}

/// Lazy stores whose background connect succeeds at once, each over one
/// shared memory store, handed out once connected.
struct Lazy(MemoryStore);

#[async_trait]
impl StoreFactory for Lazy {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        let inner = self.0.prefixed(prefix);
        let store = LazyStore::connect_in_background("conformance", move || {
            let inner = inner.clone();
            async move { Ok(inner) }
        })
        .expect("the suite runs in a tokio runtime");
        assert!(
            store.wait_connected(Duration::from_secs(5)).await,
            "a connect that succeeds at once connects"
        );
        Arc::new(store)
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

mod lazy {
    use super::*;
    session_conformance::store_suite!(Lazy(MemoryStore::new()));
}
