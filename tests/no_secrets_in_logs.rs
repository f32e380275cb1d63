//! Secrets and session ids never reach logs, spans or `Debug` output.
//!
//! Every event and every span (its name, target and every field, those
//! recorded after it opened included) at every level, from every crate, is
//! captured while a full session lifecycle runs through axum and actix-web
//! on every kind of store: memory, Redis (with a password), Memcached,
//! PostgreSQL (with a password in its URL), a
//! three-node cluster (with its link secret) and a failover pair of Redis
//! and Memcached, all real servers from the test kit. The lifecycle has new
//! sessions, commits, a login that cycles the id, an owner and "log out
//! everywhere", a logout, forged and replayed cookies, a cookie signed by
//! the rotated-out key, a store outage and a hung store. Then neither the
//! captured text nor the `Debug` of any value an app holds may contain a
//! session id in full, a cookie value, or a signing, store or link secret
//! in any encoding.
//!
//! actix-web and reqwest log through the `log` crate, not `tracing`;
//! `tracing_log::LogTracer` forwards those records to the same subscriber,
//! so they are checked too.
//!
//! One test per binary: the subscriber and the `log` logger are
//! process-wide.

use std::{
    fmt::Write as _,
    io::Write,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use reqwest::header::{COOKIE, SET_COOKIE};
use session_conformance::{
    testkit::{MemcachedServer, PostgresServer, RedisServer},
    Fault, InstrumentedStore, RunningApp, TestApp,
};
use session_kit::{
    cluster::{ClusterConfig, ClusterStore},
    failover::FailoverStore,
    memcached::{MemcachedConfig, MemcachedStore},
    memory::MemoryStore,
    postgres::{PostgresConfig, PostgresStore},
    redis::{RedisConfig, RedisStore},
    store::SessionStore,
    ErrorKind, KeyRing, SessionManager,
};
use tracing::{
    field::{Field, Visit},
    span, Event, Subscriber,
};
use tracing_subscriber::{
    fmt::{format::FmtSpan, MakeWriter},
    layer::{Context, SubscriberExt as _},
    registry::LookupSpan,
    Layer,
};

const CURRENT: &str = "the-current-signing-secret-0123456789abcdef";
const OLD: &str = "the-rotated-out-signing-secret-9876543210fedcba";
const REDIS_PASSWORD: &str = "the-redis-password-0123456789";
const CLUSTER_SECRET: &str = "the-cluster-link-secret-0123456789abcdef";
/// In the PostgreSQL URL: the test server trusts every local login, so any
/// password connects, and this one must still never be logged.
const POSTGRES_PASSWORD: &str = "the-postgres-password-0123456789";

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

/// Writes every span (name, target, fields when it opens and every field
/// recorded later) and every event (target, level, fields) as a line of
/// text, whatever a formatter would show or leave out.
struct EverythingLayer(Captured);

/// Every field of one span or event as `name=value` pairs.
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl EverythingLayer {
    fn line(&self, line: &str) {
        let mut out = self.0.clone();
        let _ = writeln!(out, "{line}");
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for EverythingLayer {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, _: Context<'_, S>) {
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        let meta = attrs.metadata();
        self.line(&format!(
            "SPAN {id:?} {} {} {}:{}",
            meta.target(),
            meta.name(),
            meta.level(),
            fields.0
        ));
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, _: Context<'_, S>) {
        let mut fields = Fields(String::new());
        values.record(&mut fields);
        self.line(&format!("RECORD {id:?}:{}", fields.0));
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let meta = event.metadata();
        self.line(&format!(
            "EVENT {} {} {}:{}",
            meta.target(),
            meta.name(),
            meta.level(),
            fields.0
        ));
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

/// A full lifecycle against `app`, on `backend` behind a wrapper that can
/// fail it, with managers signing by `keys`.
async fn lifecycle(
    app: &dyn TestApp,
    backend: Arc<dyn SessionStore>,
    seen: &mut Seen,
) -> Vec<String> {
    let store = Arc::new(InstrumentedStore::new(backend));
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

/// The store kinds every lifecycle runs on, each from real servers.
struct Backends {
    _redis: RedisServer,
    _memcached: MemcachedServer,
    _postgres: PostgresServer,
    /// The cluster's nodes: the first serves the app, the others hold
    /// copies and own sessions it forwards to.
    _cluster: Vec<ClusterStore>,
    stores: Vec<(&'static str, Arc<dyn SessionStore>)>,
}

async fn backends() -> Backends {
    let redis = RedisServer::start();
    // Set once it runs: the test kit checks a new server with a PING that
    // carries no password.
    let _ = redis.cli(&["CONFIG", "SET", "requirepass", REDIS_PASSWORD]);
    let redis_url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", redis.port());
    let redis_store = || async {
        RedisStore::connect(RedisConfig::standalone(redis_url.clone()))
            .await
            .expect("Redis answers")
    };
    let memcached = MemcachedServer::start();
    let memcached_store = || async {
        MemcachedStore::connect(MemcachedConfig::new([memcached.addr()]))
            .await
            .expect("Memcached answers")
    };

    let postgres = PostgresServer::start();
    let postgres_url = postgres
        .url()
        .replacen("@", &format!(":{POSTGRES_PASSWORD}@"), 1);
    let postgres_store = PostgresStore::connect(PostgresConfig::new(postgres_url))
        .await
        .expect("PostgreSQL answers");

    let any_port = "127.0.0.1:0".parse().expect("an address");
    let config = |name: &str| {
        ClusterConfig::new(name, any_port, CLUSTER_SECRET.as_bytes())
            .with_cluster_size(3)
            .with_replication_factor(2)
            .with_probe_period(Duration::from_millis(100))
            .with_suspect_timeout(Duration::from_millis(300))
    };
    let first = ClusterStore::start(config("node-0"))
        .await
        .expect("the first node starts");
    let mut cluster = vec![first];
    for name in ["node-1", "node-2"] {
        let seed = cluster[0].local_addr();
        let node = ClusterStore::start(config(name).with_seeds([seed]))
            .await
            .expect("a node starts");
        cluster.push(node);
    }
    for node in &cluster {
        assert!(
            node.wait_for_members(3, Duration::from_secs(10)).await,
            "the cluster never formed"
        );
    }

    let stores: Vec<(&'static str, Arc<dyn SessionStore>)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        ("redis", Arc::new(redis_store().await)),
        ("memcached", Arc::new(memcached_store().await)),
        ("postgres", Arc::new(postgres_store)),
        ("cluster", Arc::new(cluster[0].clone())),
        (
            "failover",
            Arc::new(FailoverStore::new(
                redis_store().await,
                memcached_store().await,
            )),
        ),
    ];
    Backends {
        _redis: redis,
        _memcached: memcached,
        _postgres: postgres,
        _cluster: cluster,
        stores,
    }
}

#[test]
fn no_session_id_cookie_or_secret_reaches_the_logs_spans_or_debug_output() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_span_events(FmtSpan::FULL)
                    .with_writer(captured.clone())
                    .with_ansi(false)
                    .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
            )
            .with(
                EverythingLayer(captured.clone())
                    .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
            ),
    )
    .expect("the only subscriber in this binary");
    tracing_log::LogTracer::init().expect("the only `log` logger in this binary");

    let mut seen = Seen::default();
    let debug = session_conformance::block_on(async {
        let backends = backends().await;
        let mut debug = Vec::new();
        for (kind, store) in &backends.stores {
            for app in [
                &session_kit::tower::conformance::AxumApp as &dyn TestApp,
                &session_kit::actix::conformance::ActixApp,
            ] {
                let before = seen.cookie_values.len();
                debug.extend(lifecycle(app, Arc::clone(store), &mut seen).await);
                assert!(
                    seen.cookie_values.len() >= before + 5,
                    "the lifecycle on {kind} issued too few cookies to prove anything"
                );
            }
            debug.push(format!("{store:?}"));
        }
        debug
    });

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
    // Spans were captured, and from every kind of store: the test reads
    // what it claims to.
    for kind in [
        "memory",
        "redis",
        "memcached",
        "postgres",
        "cluster",
        "failover",
    ] {
        let field = format!("store.kind={kind} ");
        assert!(
            logs.lines().any(|line| line.starts_with("SPAN")
                && line.contains(" store_call DEBUG:")
                && line.contains(&field)),
            "no store-call span from {kind} was captured"
        );
    }
    assert!(
        logs.contains("session_request") && logs.contains("framework=actix"),
        "no request span was captured"
    );
    // Fields recorded after a span opened are read too.
    assert!(
        logs.lines()
            .any(|line| line.starts_with("RECORD") && line.contains("outcome=unavailable")),
        "no field recorded after a span opened was captured"
    );

    let mut secrets: Vec<String> = Vec::new();
    for secret in [
        CURRENT,
        OLD,
        REDIS_PASSWORD,
        CLUSTER_SECRET,
        POSTGRES_PASSWORD,
    ] {
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
