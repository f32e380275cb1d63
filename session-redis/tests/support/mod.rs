//! What the Redis tests share: a `StoreFactory` over a config, and a store
//! on a server the test owns.

#![allow(dead_code)] // each test binary uses its own part

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use session_conformance::{async_trait, StoreFactory};
use session_core::{Changes, Record, SessionId, SessionStore};
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

use session_conformance::{RunningApp, TestApp};
use session_core::{CookieConfig, ErrorPolicy, Key, SessionManager};
use session_tower::conformance::AxumApp;

/// The conformance app (`/counter`, `/read`, `/login`, …) served by axum over
/// `store`. `Secure` is off because the test client speaks plain http.
pub(crate) async fn serve(store: RedisStore, policy: ErrorPolicy) -> RunningApp {
    let manager = SessionManager::builder(store, Key::generate())
        .cookie(CookieConfig::default().with_secure(false))
        .error_policy(policy)
        .build()
        .expect("a valid manager");
    AxumApp.serve(manager).await
}

/// A client that keeps cookies, like a browser.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

/// GETs `path`: the status, the body, and how long the answer took.
pub(crate) async fn get(
    client: &reqwest::Client,
    app: &RunningApp,
    path: &str,
) -> (u16, String, Duration) {
    let started = std::time::Instant::now();
    let response = client
        .get(format!("http://{}{path}", app.addr()))
        .send()
        .await
        .expect("the app answers");
    let status = response.status().as_u16();
    let body = response.text().await.expect("a body");
    (status, body, started.elapsed())
}

/// A record made now with one value, to the millisecond: what Redis keeps,
/// so a loaded record compares equal.
pub(crate) fn record(lifetime: Duration) -> Record {
    let now = whole_ms(SystemTime::now());
    Record::new(
        SessionId::generate(),
        [("k".to_owned(), "0".to_owned())].into(),
        now,
        now + lifetime,
    )
}

/// `time`, cut to whole milliseconds.
pub(crate) fn whole_ms(time: SystemTime) -> SystemTime {
    let since_epoch = time.duration_since(UNIX_EPOCH).expect("after 1970");
    UNIX_EPOCH + Duration::from_millis(since_epoch.as_millis().try_into().expect("before 2500"))
}

/// Changes that set `key` to `value`.
pub(crate) fn set(key: &str, value: &str) -> Changes {
    let mut changes = Changes::default();
    changes.set(key, value);
    changes
}
