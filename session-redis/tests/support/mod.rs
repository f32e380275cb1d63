//! What the Redis tests share: a `StoreFactory` over a config, and a store
//! on a server the test owns.

#![allow(dead_code)] // each test binary uses its own part

use std::{sync::Arc, time::Duration};

use session_conformance::{async_trait, StoreFactory};
use session_core::store::{Record, SessionStore};
use session_redis::{RedisConfig, RedisStore};

/// Hands the suite stores on one Redis deployment, each under the prefix the
/// test asks for. Every store opens its own connection, in the runtime of
/// the test that asked for it.
pub(crate) struct RedisFactory(pub(crate) RedisConfig);

#[async_trait]
impl StoreFactory for RedisFactory {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(connect(self.0.clone().with_key_prefix(prefix)).await)
    }
}

/// Connects, failing the test with the reason if Redis is not there.
pub(crate) async fn connect(config: RedisConfig) -> RedisStore {
    match RedisStore::connect(config).await {
        Ok(store) => store,
        Err(err) => panic!("{err}: {:?}", std::error::Error::source(&err)),
    }
}

/// A config for one server, with a timeout short enough for fault tests.
pub(crate) fn standalone(url: String) -> RedisConfig {
    RedisConfig::standalone(url).with_operation_timeout(Duration::from_millis(500))
}

/// A record made now, to the millisecond, with one value.
pub(crate) fn record(lifetime: Duration) -> Record {
    session_conformance::store::record_with(&[("k", "0")], lifetime)
}

/// `calls` per command name from `INFO commandstats` on `server`, as Redis
/// counts them: commands that Lua scripts run inside Redis included.
pub(crate) fn command_calls(
    server: &session_conformance::testkit::RedisServer,
) -> std::collections::BTreeMap<String, u64> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.split(',').find_map(|s| s.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        // RESETSTAT resets before it counts itself; INFO is this probe.
        .filter(|(name, _)| !matches!(name.as_str(), "config|resetstat" | "info"))
        .collect()
}

/// Milliseconds since the Unix epoch, as Redis and the session hash write
/// times.
pub(crate) fn millis(time: std::time::SystemTime) -> String {
    time.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        .to_string()
}
