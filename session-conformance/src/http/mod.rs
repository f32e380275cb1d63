//! HTTP-level scenarios: a real server on a loopback port, driven by a real
//! HTTP client.
//!
//! An adapter takes part by implementing [`TestApp`]: serve [`respond`] on a
//! loopback port behind its session middleware. Every scenario is written
//! once, here, and runs unchanged against every framework.
//!
//! The scenarios, by theme (each a public function here, and a `#[test]`
//! of [`http_suite!`](crate::http_suite)):
//!
//! | theme | scenarios |
//! |---|---|
//! | lifecycle | counting, the cookie's attributes, login, logout, read-only pages |
//! | cookies | one list of hostile cookies, key rotation |
//! | expiry | the idle and the absolute timeout |
//! | outage | 503 on a failing store, `TreatAsEmpty`, a hung store |
//! | owners | log out everywhere |
//! | devices | the "your devices" page, ending one device, logging out the others, the per-owner cap |
//! | lifetime | "remember me": one session's own lifetime, across managers, and its maximums |
//! | header | the token in a header: the round trip, rotation, logout, hostile headers |

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use session_core::{
    devices::DeviceHandle, store::SessionStore, CookieConfig, ErrorPolicy, Key, Lifetime, Session,
    SessionError, SessionManager,
};

use harness::{client, send};

use crate::store::StoreFactory;

mod cookies;
mod devices;
mod expiry;
mod harness;
mod header;
mod lifecycle;
mod lifetime;
mod outage;
mod owners;

pub use cookies::{
    hostile_cookies_get_a_fresh_session_and_touch_no_one_elses,
    rotated_key_still_verifies_and_is_re_signed,
};
pub use devices::{
    the_owner_cap_logs_out_the_oldest_device,
    your_devices_page_lists_ends_one_and_logs_out_the_others,
};
pub use expiry::{
    absolute_timeout_ends_even_an_active_session, idle_timeout_ends_an_unused_session,
};
pub use header::{
    header_token_carries_the_session_and_no_cookie_is_set,
    hostile_session_headers_get_a_fresh_session_and_touch_no_one_elses,
};
pub use lifecycle::{
    counter_counts_across_requests, default_cookie_attributes_are_secure,
    login_cycles_the_id_and_the_old_cookie_stops_working, logout_ends_the_session,
    read_only_request_sets_no_cookie_and_writes_nothing,
};
pub use lifetime::{
    remember_me_lifetime_is_bounded_by_the_managers_maximums,
    remember_me_outlives_a_normal_session_on_another_server,
};
pub use outage::{
    hung_store_answers_within_the_operation_timeout,
    store_outage_answers_503_and_overwrites_nothing,
    treat_as_empty_policy_refuses_a_write_after_a_failed_load,
    treat_as_empty_policy_serves_reads_during_an_outage,
};
pub use owners::log_out_everywhere_ends_the_users_sessions_on_every_server;

/// An adapter under test.
#[async_trait]
pub trait TestApp: Send + Sync {
    /// Serves every path on `127.0.0.1` behind the adapter's session
    /// middleware built from `manager`, answering each request with
    /// [`respond`] for its path. The server stops when the returned
    /// [`RunningApp`] is dropped.
    async fn serve(&self, manager: SessionManager) -> RunningApp;
}

/// A server started by [`TestApp::serve`]; dropping it stops the server.
pub struct RunningApp {
    addr: SocketAddr,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl RunningApp {
    /// A server listening on `addr`, stopped by calling `stop`.
    pub fn new(addr: SocketAddr, stop: impl FnOnce() + Send + 'static) -> Self {
        Self {
            addr,
            stop: Some(Box::new(stop)),
        }
    }

    /// Where the server listens.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Serves the conformance app over `store` behind `app`, with a fresh key,
/// `policy`, and cookies without `Secure` (the tests speak plain http): for
/// a backend's own tests that drive it over HTTP, such as fault and
/// round-trip counts.
///
/// # Panics
/// Never with a valid store; the manager config is fixed.
pub async fn serve_store(
    app: &dyn TestApp,
    store: impl SessionStore,
    policy: ErrorPolicy,
) -> RunningApp {
    let manager = SessionManager::builder(store, Key::generate())
        .with_cookie(CookieConfig::default().with_secure(false))
        .with_error_policy(policy)
        .build()
        .expect("a valid manager");
    app.serve(manager).await
}

/// An HTTP client that keeps cookies, as a browser does.
#[derive(Debug, Clone)]
pub struct Browser(reqwest::Client);

impl Browser {
    /// A browser with an empty cookie jar and a 10 s timeout per request.
    #[must_use]
    pub fn new() -> Self {
        Self(client(true))
    }

    /// GETs `path` from `app`: the status, the body, and how long the
    /// answer took.
    ///
    /// # Panics
    /// When the app does not answer within 10 s.
    pub async fn get(&self, app: &RunningApp, path: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let reply = send(self.0.get(format!("http://{}{path}", app.addr()))).await;
        (reply.status, reply.body, started.elapsed())
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// The conformance app, framework-neutral: the status and body for `path`.
///
/// | path | does |
/// |---|---|
/// | `/counter` | adds one to `count` and answers it |
/// | `/read` | answers `count`, or `none`, without writing |
/// | `/untouched` | never touches the session |
/// | `/login` | stores `user = "ada"` and cycles the id |
/// | `/whoami` | answers `user`, or `anonymous` |
/// | `/logout` | destroys the session |
/// | `/login-as/<user>` | stores `user`, cycles the id and makes `<user>` the session's owner |
/// | `/logout-everywhere` | ends every session of the owner and answers how many |
/// | `/label/<text>` | sets the session's device label |
/// | `/devices` | the owner's devices, one per line: `handle label current` (`-` when not current) |
/// | `/end-device/<handle>` | ends the owner's session with that handle; `true` or `false` |
/// | `/logout-others` | ends the owner's other sessions and answers how many |
/// | `/remember-me` | as `/login`, then gives the session a 14-day idle, 30-day absolute lifetime with a persistent cookie; `refused` when over the manager's maximums |
/// | `/forget-me` | puts the session back on the manager's timeouts |
///
/// A session error answers 503 when the store is unavailable and 500
/// otherwise, with an empty body.
pub async fn respond(path: &str, session: &Session) -> (u16, String) {
    match route(path, session).await {
        Ok(Some(body)) => (200, body),
        Ok(None) => (404, String::new()),
        Err(err) => (err.status_code(), String::new()),
    }
}

async fn route(path: &str, session: &Session) -> Result<Option<String>, SessionError> {
    let body = match path {
        "/counter" => {
            let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
            session.insert("count", count).await?;
            count.to_string()
        }
        "/read" => session
            .get::<u64>("count")
            .await?
            .map_or_else(|| "none".to_owned(), |count| count.to_string()),
        "/untouched" => "untouched".to_owned(),
        "/login" => {
            session.insert("user", "ada").await?;
            session.cycle_id().await?;
            "ok".to_owned()
        }
        "/whoami" => session
            .get::<String>("user")
            .await?
            .unwrap_or_else(|| "anonymous".to_owned()),
        "/logout" => {
            session.destroy().await?;
            "bye".to_owned()
        }
        "/logout-everywhere" => session.log_out_everywhere().await?.to_string(),
        "/devices" => session
            .devices()
            .await?
            .iter()
            .map(|device| {
                format!(
                    "{} {} {}\n",
                    device.handle,
                    device.label.as_deref().unwrap_or("-"),
                    if device.current { "current" } else { "-" }
                )
            })
            .collect(),
        "/logout-others" => session.log_out_other_sessions().await?.to_string(),
        _ if path.starts_with("/label/") => {
            session.set_label(&path["/label/".len()..]).await?;
            "ok".to_owned()
        }
        _ if path.starts_with("/end-device/") => {
            let Some(handle) = DeviceHandle::parse(&path["/end-device/".len()..]) else {
                return Ok(Some("false".to_owned()));
            };
            session.end_device(&handle).await?.to_string()
        }
        "/remember-me" => {
            session.insert("user", "ada").await?;
            session.cycle_id().await?;
            let lifetime = Lifetime::new(lifetime::REMEMBER_IDLE, lifetime::REMEMBER_ABSOLUTE)
                .expect("a valid lifetime")
                .with_persistent(true);
            match session.set_lifetime(lifetime).await {
                Ok(()) => "ok".to_owned(),
                Err(SessionError::Lifetime(_)) => "refused".to_owned(),
                Err(err) => return Err(err),
            }
        }
        "/forget-me" => {
            session.reset_lifetime().await?;
            "ok".to_owned()
        }
        _ => {
            let Some(user) = path.strip_prefix("/login-as/") else {
                return Ok(None);
            };
            session.insert("user", user).await?;
            session.cycle_id().await?;
            session.set_owner(user).await?;
            "ok".to_owned()
        }
    };
    Ok(Some(body))
}

crate::__http_scenarios!(crate::__http_runner;);
