//! Secrets and session ids never reach logs or `Debug` output.
//!
//! Every event at every level, from every crate, is captured while a full
//! session lifecycle runs through axum and actix-web: new sessions,
//! commits, a login that cycles the id, an owner and "log out everywhere",
//! a logout, forged and replayed cookies, a cookie signed by the rotated-out
//! key, a store outage and a hung store. Then neither the captured text nor
//! the `Debug` of any value an app holds may contain a session id in full,
//! a cookie value, or a signing secret in any encoding.
//!
//! actix-web and reqwest log through the `log` crate, not `tracing`;
//! `tracing_log::LogTracer` forwards those records to the same subscriber,
//! so they are checked too.
//!
//! One test per binary: the subscriber and the `log` logger are
//! process-wide.

use std::{
    io::Write,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use reqwest::header::{COOKIE, SET_COOKIE};
use session_conformance::{Fault, InstrumentedStore, RunningApp, TestApp};
use session_kit::{memory::MemoryStore, store::SessionStore, ErrorKind, KeyRing, SessionManager};
use tracing_subscriber::fmt::MakeWriter;

const CURRENT: &str = "the-current-signing-secret-0123456789abcdef";
const OLD: &str = "the-rotated-out-signing-secret-9876543210fedcba";

/// Every byte the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What one framework's lifecycle issued and sent: every cookie value.
#[derive(Default)]
struct Seen {
    cookie_values: Vec<String>,
}

impl Seen {
    fn record(&mut self, response: &reqwest::Response) -> Option<String> {
        let header = response.headers().get(SET_COOKIE)?.to_str().ok()?;
        let pair = header.split(';').next()?.to_owned();
        let value = pair.split_once('=')?.1.to_owned();
        if value.is_empty() {
            return None;
        }
        self.cookie_values.push(value);
        Some(pair)
    }

    /// The full session ids: the part of each cookie value before the tag.
    fn ids(&self) -> impl Iterator<Item = &str> {
        self.cookie_values
            .iter()
            .map(|value| value.split('.').next().unwrap_or_default())
    }
}

async fn get(
    client: &reqwest::Client,
    app: &RunningApp,
    path: &str,
    cookie: Option<&str>,
    seen: &mut Seen,
) -> (u16, Option<String>) {
    let mut request = client.get(format!("http://{}{path}", app.addr()));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.expect("the app answers");
    let issued = seen.record(&response);
    (response.status().as_u16(), issued)
}

/// A full lifecycle against `app`, on a store that can be failed, with
/// managers signing by `keys`.
async fn lifecycle(app: &dyn TestApp, seen: &mut Seen) -> Vec<String> {
    let store = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    let old_keys = KeyRing::from_secrets([OLD]).unwrap();
    let keys = KeyRing::from_secrets([CURRENT, OLD]).unwrap();
    let manager = |keys: KeyRing| {
        SessionManager::builder(Arc::clone(&store), keys)
            .with_operation_timeout(Duration::from_millis(200))
            .build()
            .unwrap()
    };
    let client = reqwest::Client::new();

    // A session signed before the rotation.
    let before_rotation = app.serve(manager(old_keys)).await;
    let (_, old_cookie) = get(&client, &before_rotation, "/counter", None, seen).await;
    let old_cookie = old_cookie.expect("a new session gets a cookie");
    drop(before_rotation);

    let running = app.serve(manager(keys.clone())).await;
    let app = &running;
    let (_, resigned) = get(&client, app, "/counter", Some(&old_cookie), seen).await;
    let resigned = resigned.expect("an old-key cookie is re-signed");
    let (_, counter) = get(&client, app, "/counter", None, seen).await;
    let counter = counter.unwrap();
    let _ = get(&client, app, "/counter", Some(&counter), seen).await;
    let (_, login) = get(&client, app, "/login", Some(&counter), seen).await;
    let login = login.unwrap();
    let (_, ada) = get(&client, app, "/login-as/ada", None, seen).await;
    let ada = ada.unwrap();
    let (_, phone) = get(&client, app, "/login-as/ada", None, seen).await;
    let phone = phone.unwrap();

    // Replays and forgeries.
    let _ = get(&client, app, "/whoami", Some(&counter), seen).await;
    let forged = format!("{}X", &login[..login.len() - 1]);
    let _ = get(&client, app, "/whoami", Some(&forged), seen).await;

    // Outage and hang.
    store.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    assert_eq!(
        get(&client, app, "/counter", Some(&login), seen).await.0,
        503
    );
    store.set_fault(Some(Fault::Hang));
    assert_eq!(
        get(&client, app, "/counter", Some(&login), seen).await.0,
        503
    );
    store.set_fault(None);

    let _ = get(&client, app, "/logout-everywhere", Some(&ada), seen).await;
    let _ = get(&client, app, "/whoami", Some(&phone), seen).await;
    let _ = get(&client, app, "/logout", Some(&login), seen).await;
    let _ = get(&client, app, "/whoami", Some(&login), seen).await;

    let session = manager(keys.clone()).start([resigned.as_bytes()]);
    let _ = session.get::<u64>("count").await;
    vec![
        format!("{:?}", manager(keys.clone())),
        format!("{keys:?}"),
        format!("{session:?}"),
        format!("{store:?}"),
        format!(
            "{:?}",
            store.load(&session.id().await.unwrap().unwrap()).await
        ),
    ]
}

#[test]
fn no_session_id_cookie_or_secret_reaches_the_logs_or_debug_output() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish(),
    )
    .expect("the only subscriber in this binary");
    tracing_log::LogTracer::init().expect("the only `log` logger in this binary");

    let mut seen = Seen::default();
    let mut debug = session_conformance::block_on(async {
        lifecycle(&session_kit::tower::conformance::AxumApp, &mut seen).await
    });
    debug.extend(session_conformance::block_on(async {
        lifecycle(&session_kit::actix::conformance::ActixApp, &mut seen).await
    }));

    let logs = captured.text();
    assert!(
        logs.contains("session load failed") || logs.contains("session write failed"),
        "the outage was not logged at all, so this test would prove nothing:\n{logs}"
    );
    // reqwest logs each new connection through `log`: without the
    // `LogTracer` no `log` record would be checked at all.
    assert!(
        logs.contains("starting new connection"),
        "no `log`-crate record was captured, so theirs went unchecked:\n{logs}"
    );
    assert!(
        seen.cookie_values.len() >= 10,
        "{}",
        seen.cookie_values.len()
    );

    let mut secrets: Vec<String> = Vec::new();
    for secret in [CURRENT, OLD] {
        secrets.push(secret.to_owned());
        secrets.push(secret.bytes().map(|b| format!("{b:02x}")).collect());
        secrets.push(format!("{:?}", secret.as_bytes()));
    }
    for (what, text) in std::iter::once(("the logs", logs.as_str()))
        .chain(debug.iter().map(|text| ("a Debug output", text.as_str())))
    {
        for id in seen.ids() {
            assert!(
                !text.contains(id),
                "{what} show the full session id {id}:\n{text}"
            );
        }
        for value in &seen.cookie_values {
            assert!(
                !text.contains(value.as_str()),
                "{what} show a cookie value:\n{text}"
            );
        }
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} show a secret:\n{text}"
            );
        }
    }
}
