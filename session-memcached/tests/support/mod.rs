//! What the Memcached tests share: a `StoreFactory` over a config, raw
//! access to what the servers hold, and records to store.

#![allow(dead_code)] // each test binary uses its own part

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use memcache::exp::{AsyncMetaClient, Get, Meta};
use session_conformance::{async_trait, testkit::MemcachedServer, StoreFactory};
use session_core::store::{Record, SessionStore};
use session_memcached::{MemcachedConfig, MemcachedStore};

/// Memcached counts whole seconds, and a loaded `expires_at` is read back
/// from the item's remaining lifetime: up to a second off each way, plus a
/// second for the server's clock, which ticks once a second.
pub(crate) const EXPIRY_RESOLUTION: Duration = Duration::from_secs(2);

/// Hands the suite stores on one set of servers, each under the prefix the
/// test asks for, each with its own connections.
pub(crate) struct MemcachedFactory(pub(crate) MemcachedConfig);

#[async_trait]
impl StoreFactory for MemcachedFactory {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(connect(self.0.clone().with_key_prefix(prefix)).await)
    }

    fn expiry_resolution(&self) -> Duration {
        EXPIRY_RESOLUTION
    }

    /// Memcached cannot hold an index it will not evict; see `MemcachedStore`.
    fn indexes_owners(&self) -> bool {
        false
    }
}

/// Connects, failing the test with the reason if the servers are not there.
pub(crate) async fn connect(config: MemcachedConfig) -> MemcachedStore {
    match MemcachedStore::connect(config).await {
        Ok(store) => store,
        Err(err) => panic!("{err}: {:?}", std::error::Error::source(&err)),
    }
}

/// A config for `servers`.
pub(crate) fn config(servers: &[MemcachedServer]) -> MemcachedConfig {
    MemcachedConfig::new(servers.iter().map(MemcachedServer::addr))
}

/// What one server holds under `key`, read past the store: the value and
/// the remaining lifetime in seconds (`-1`: never expires).
pub(crate) async fn raw_item(server: &MemcachedServer, key: &str) -> Option<(Vec<u8>, i64)> {
    let client = AsyncMetaClient::connect(server.addr())
        .await
        .expect("the server answers");
    let read = client
        .run(Get::new(key).meta(Meta::NONE.ttl()))
        .await
        .expect("the server answers");
    read.hit()
        .then(|| (read.value.unwrap_or_default(), read.item.ttl.unwrap_or(0)))
}

/// Which of `servers` holds `key`, if any.
pub(crate) async fn holder(servers: &[MemcachedServer], key: &str) -> Option<usize> {
    for (index, server) in servers.iter().enumerate() {
        if server.is_running() && raw_item(server, key).await.is_some() {
            return Some(index);
        }
    }
    None
}

/// A record made now, to the millisecond, with one value.
pub(crate) fn record(lifetime: Duration) -> Record {
    session_conformance::store::record_with(&[("k", "0")], lifetime)
}

/// Asserts that `actual` is within [`EXPIRY_RESOLUTION`] of `expected`.
#[track_caller]
pub(crate) fn assert_near(actual: SystemTime, expected: SystemTime) {
    let gap = actual
        .duration_since(expected)
        .unwrap_or_else(|early| early.duration());
    assert!(gap <= EXPIRY_RESOLUTION, "{gap:?} off");
}
