//! # session-conformance
//!
//! The session-kit contract as runnable tests, published so that every
//! backend in this repository, and any third-party store or adapter, is held
//! to the same rules.
//!
//! | module | what it checks | what you provide |
//! |---|---|---|
//! | [`store`] | the [`SessionStore`](session_core::store::SessionStore) contract: expiry, create-never-overwrites, atomic delta commits, 100 concurrent disjoint commits, touch, delete, prefix isolation, 256 KiB values, versions, stamps | a [`StoreFactory`] |
//! | [`http`] | the lifecycle over real HTTP: counter, login with `cycle_id`, logout, idle and absolute expiry, one list of hostile cookies (forged, foreign, malformed, dead, many, oversized, not UTF-8), key rotation, no-write reads, the error policy and the operation timeout | a [`TestApp`] for your framework, and a [`StoreFactory`] |
//!
//! [`InstrumentedStore`] wraps a real store to count calls and inject
//! faults; it stands in for no backend. The [`race`] module holds the race
//! harness: gates that hold one chosen store call to force an exact
//! interleaving, a Jepsen-style history checker, and a schedule explorer
//! that runs small multi-server scenarios, with faults, under many seeded
//! interleavings and checks every history.
//!
//! With the `testkit` feature, the `testkit` module starts the real servers
//! that backends are tested against: a standalone Redis, a Sentinel group,
//! a Redis Cluster, Memcached servers and a PostgreSQL server, on free
//! loopback ports, killed on drop.
//!
//! ## Running the suite on your store
//! Implement [`StoreFactory`]: hand out stores that share one backing server
//! (or cache) under the prefix asked for. Then generate the tests, one
//! `#[test]` per contract rule, in your crate's `tests/conformance.rs`:
//! ```no_run
//! use std::sync::Arc;
//! use session_conformance::{async_trait, StoreFactory};
//! use session_core::{memory::MemoryStore, store::SessionStore};
//!
//! /// Stands in for a factory holding, say, a connection to one test server.
//! struct MyFactory(MemoryStore);
//!
//! #[async_trait]
//! impl StoreFactory for MyFactory {
//!     async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
//!         Arc::new(self.0.prefixed(prefix))
//!     }
//! }
//!
//! session_conformance::store_suite!(MyFactory(MemoryStore::new()));
//! # fn main() {}
//! ```
//! Or run the whole suite from code, as this example does against
//! [`MemoryFactory`]:
//! ```
//! session_conformance::block_on(session_conformance::store::run_all(
//!     &session_conformance::MemoryFactory::new(),
//! ));
//! ```
//! [`store_suite!`] and [`http_suite!`] expand to one `#[test]` per contract
//! test, so failures are reported by name and tests run in parallel.
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod instrumented;
mod macros;

pub mod http;
pub mod race;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::future::Future;

/// Re-exported so implementations of [`StoreFactory`] and [`TestApp`] need no
/// dependency of their own.
pub use async_trait::async_trait;

pub use http::{serve_store, Browser, RunningApp, TestApp};
pub use instrumented::{Calls, Fault, InstrumentedStore};
pub use store::StoreFactory;

/// Runs `future` to completion on a fresh multi-threaded tokio runtime: what
/// the generated tests run in.
///
/// # Panics
/// When the runtime cannot start, or `future` panics.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime starts")
        .block_on(future)
}

#[cfg(feature = "memory")]
pub use memory::MemoryFactory;

#[cfg(feature = "memory")]
mod memory {
    use std::sync::Arc;

    use async_trait::async_trait;
    use session_core::{memory::MemoryStore, store::SessionStore};

    use crate::StoreFactory;

    /// Serves prefixed views of one [`MemoryStore`], the way stores on one
    /// Redis server share it.
    #[derive(Debug, Clone, Default)]
    pub struct MemoryFactory {
        store: MemoryStore,
    }

    impl MemoryFactory {
        /// A factory over a new, empty store.
        #[must_use]
        pub fn new() -> Self {
            Self::default()
        }
    }

    #[async_trait]
    impl StoreFactory for MemoryFactory {
        async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
            Arc::new(self.store.prefixed(prefix))
        }
    }
}
