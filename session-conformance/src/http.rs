//! HTTP-level scenarios: a real server on a loopback port, driven by a real
//! HTTP client.
//!
//! An adapter takes part by implementing [`TestApp`]: serve [`respond`] on a
//! loopback port behind its session middleware. Every scenario is written
//! once, here, and runs unchanged against every framework.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use reqwest::header::{HeaderValue, COOKIE, SET_COOKIE};
use session_core::{
    clock::ManualClock,
    cookie::CookieCodec,
    manager::SessionManagerBuilder,
    store::{Record, SessionStore},
    CookieConfig, ErrorKind, ErrorPolicy, Key, KeyRing, Session, SessionError, SessionId,
    SessionManager,
};

use crate::{
    instrumented::{Calls, Fault, InstrumentedStore},
    store::{unique_prefix, StoreFactory},
};

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

/// What the server answered.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    set_cookies: Vec<String>,
}

impl Reply {
    /// The `name=value` pair of the one `Set-Cookie`, if any.
    fn cookie(&self) -> Option<String> {
        assert!(
            self.set_cookies.len() <= 1,
            "more than one Set-Cookie: {:?}",
            self.set_cookies
        );
        self.set_cookies.first().map(|header| {
            header
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
    }

    /// The cookie this reply issued, failing the test if it issued none or a
    /// removal.
    fn issued(&self) -> String {
        let cookie = self
            .cookie()
            .unwrap_or_else(|| panic!("expected a session cookie: {self:?}"));
        assert!(
            !self.is_removal(),
            "expected a session cookie, got a removal: {self:?}"
        );
        cookie
    }

    fn is_removal(&self) -> bool {
        self.set_cookies
            .iter()
            .any(|header| header.contains("Max-Age=0"))
    }

    fn assert_ok(&self, body: &str) {
        assert_eq!((self.status, self.body.as_str()), (200, body), "{self:?}");
    }
}

/// One scenario's world: a store that counts calls, a clock that moves on
/// command, a signing key, and an HTTP client.
struct World<'a> {
    app: &'a dyn TestApp,
    store: Arc<InstrumentedStore>,
    clock: ManualClock,
    key: Key,
    client: reqwest::Client,
}

impl<'a> World<'a> {
    async fn new(app: &'a dyn TestApp, factory: &dyn StoreFactory) -> Self {
        Self {
            app,
            store: Arc::new(InstrumentedStore::new(
                factory.store(&unique_prefix()).await,
            )),
            clock: ManualClock::starting_now(),
            key: Key::generate(),
            client: client(false),
        }
    }

    /// A manager over this world's store and clock, signing with its key.
    fn manager(&self) -> SessionManagerBuilder {
        SessionManager::builder(Arc::clone(&self.store), self.key.clone())
            .with_clock(self.clock.clone())
    }

    async fn serve(&self, manager: SessionManagerBuilder) -> RunningApp {
        self.app
            .serve(manager.build().expect("scenario config is valid"))
            .await
    }

    async fn serve_default(&self) -> RunningApp {
        self.serve(self.manager()).await
    }

    async fn get(&self, app: &RunningApp, path: &str, cookie: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("http://{}{path}", app.addr()));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        send(request).await
    }
}

fn client(cookie_jar: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(cookie_jar)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client builds")
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("request reaches the test server");
    let status = response.status().as_u16();
    let set_cookies = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("Set-Cookie is ASCII").to_owned())
        .collect();
    let body = response.text().await.expect("body reads");
    Reply {
        status,
        body,
        set_cookies,
    }
}

/// A `GET` of `path` with `cookie` as the raw bytes of its `Cookie`
/// header, over a fresh connection: the status, and the whole response as
/// (lossy) text. Bounded by a 10 s timeout.
async fn raw_get(addr: SocketAddr, path: &str, cookie: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: ").into_bytes();
        request.extend_from_slice(cookie);
        request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        stream.write_all(&request).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the server answers within 10 s")
        .expect("the server answers rather than dropping the connection");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (status, text)
}

fn session_id_of(cookie: &str) -> &str {
    let value = cookie.split_once('=').map_or("", |(_, value)| value);
    value.split('.').next().unwrap_or_default()
}

/// A counter driven through reqwest's own cookie jar counts 1, 2, 3; only the
/// first response sets a cookie, and each later request costs one load and
/// one commit.
pub async fn counter_counts_across_requests(app: &dyn TestApp, factory: &dyn StoreFactory) {
    let world = World::new(app, factory).await;
    // reqwest's jar keeps `Secure` cookies only for https, so this one
    // scenario runs with `Secure` off; the next checks the real defaults.
    let app = world
        .serve(
            world
                .manager()
                .with_cookie(CookieConfig::default().with_secure(false)),
        )
        .await;
    let client = client(true);
    let url = format!("http://{}/counter", app.addr());

    let first = send(client.get(&url)).await;
    first.assert_ok("1");
    let _ = first.issued();
    assert_eq!(
        world.store.take_calls(),
        Calls {
            create: 1,
            ..Calls::default()
        }
    );

    for expected in ["2", "3"] {
        let reply = send(client.get(&url)).await;
        reply.assert_ok(expected);
        assert!(
            reply.set_cookies.is_empty(),
            "an unchanged id needs no new cookie: {reply:?}"
        );
        assert_eq!(
            world.store.take_calls(),
            Calls {
                load: 1,
                commit: 1,
                ..Calls::default()
            }
        );
    }
}

/// The cookie is `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, with no
/// `Max-Age` and no `Domain` unless configured.
pub async fn default_cookie_attributes_are_secure(app: &dyn TestApp, factory: &dyn StoreFactory) {
    let world = World::new(app, factory).await;
    let app = world.serve_default().await;
    let reply = world.get(&app, "/counter", None).await;
    reply.assert_ok("1");
    let header = &reply.set_cookies[0];
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(header.contains(attribute), "missing {attribute}: {header}");
    }
    for attribute in ["Max-Age", "Domain", "Expires"] {
        assert!(
            !header.contains(attribute),
            "unexpected {attribute}: {header}"
        );
    }
}

/// After `/login` the session has a new id that keeps its data, and the old
/// cookie no longer reaches it.
pub async fn login_cycles_the_id_and_the_old_cookie_stops_working(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = world.serve_default().await;
    let before = world.get(&app, "/counter", None).await.issued();

    let login = world.get(&app, "/login", Some(&before)).await;
    login.assert_ok("ok");
    let after = login.issued();
    assert_ne!(session_id_of(&before), session_id_of(&after));

    world
        .get(&app, "/whoami", Some(&after))
        .await
        .assert_ok("ada");
    world.get(&app, "/read", Some(&after)).await.assert_ok("1");

    let replay = world.get(&app, "/whoami", Some(&before)).await;
    replay.assert_ok("anonymous");
    let old_id = SessionId::decode(session_id_of(&before)).unwrap();
    assert_eq!(world.store.load(&old_id).await.unwrap(), None);
}

/// `/logout` deletes the record and clears the cookie; the old cookie then
/// leads to an empty session.
pub async fn logout_ends_the_session(app: &dyn TestApp, factory: &dyn StoreFactory) {
    let world = World::new(app, factory).await;
    let app = world.serve_default().await;
    let cookie = world.get(&app, "/login", None).await.issued();

    let logout = world.get(&app, "/logout", Some(&cookie)).await;
    logout.assert_ok("bye");
    assert!(
        logout.is_removal(),
        "logout must clear the cookie: {logout:?}"
    );
    let id = SessionId::decode(session_id_of(&cookie)).unwrap();
    assert_eq!(world.store.load(&id).await.unwrap(), None);

    world
        .get(&app, "/whoami", Some(&cookie))
        .await
        .assert_ok("anonymous");
}

/// Two clients log in as ada, on two app servers over one store, and a
/// third as bob. Ada's laptop logs out everywhere: her phone's next request,
/// on the other server, gets a fresh session, and bob keeps his. A store
/// that cannot index owners answers 503 and ends nothing.
pub async fn log_out_everywhere_ends_the_users_sessions_on_every_server(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let (one, two) = (world.serve_default().await, world.serve_default().await);
    let laptop = world.get(&one, "/login-as/ada", None).await.issued();
    let phone = world.get(&two, "/login-as/ada", None).await.issued();
    let bob = world.get(&two, "/login-as/bob", None).await.issued();
    world
        .get(&one, "/whoami", Some(&phone))
        .await
        .assert_ok("ada");

    let everywhere = world.get(&one, "/logout-everywhere", Some(&laptop)).await;
    if !factory.indexes_owners() {
        assert_eq!(everywhere.status, 503, "{everywhere:?}");
        world
            .get(&two, "/whoami", Some(&phone))
            .await
            .assert_ok("ada");
        world
            .get(&two, "/whoami", Some(&laptop))
            .await
            .assert_ok("ada");
        return;
    }
    everywhere.assert_ok("2");
    assert!(
        everywhere.is_removal(),
        "the caller's cookie must be cleared: {everywhere:?}"
    );

    let after = world.get(&two, "/whoami", Some(&phone)).await;
    after.assert_ok("anonymous");
    assert!(
        after.is_removal(),
        "the ended session's cookie must be cleared: {after:?}"
    );
    world
        .get(&one, "/whoami", Some(&laptop))
        .await
        .assert_ok("anonymous");
    world
        .get(&one, "/whoami", Some(&bob))
        .await
        .assert_ok("bob");
    for cookie in [&laptop, &phone] {
        let id = SessionId::decode(session_id_of(cookie)).unwrap();
        assert_eq!(world.store.load(&id).await.unwrap(), None);
    }
}

/// A session used within the idle timeout slides forward (a touch once past
/// half of it); one left alone longer than the idle timeout is gone.
pub async fn idle_timeout_ends_an_unused_session(app: &dyn TestApp, factory: &dyn StoreFactory) {
    const IDLE: Duration = Duration::from_secs(600);
    let world = World::new(app, factory).await;
    let app = world.serve(world.manager().with_idle_timeout(IDLE)).await;
    let cookie = world.get(&app, "/counter", None).await.issued();
    world.store.take_calls();

    // Three quarters of the idle timeout, twice: alive only because the first
    // read touched it.
    world.clock.advance(IDLE * 3 / 4);
    world.get(&app, "/read", Some(&cookie)).await.assert_ok("1");
    assert_eq!(
        world.store.take_calls(),
        Calls {
            load: 1,
            touch: 1,
            ..Calls::default()
        }
    );
    world.clock.advance(IDLE * 3 / 4);
    world.get(&app, "/read", Some(&cookie)).await.assert_ok("1");

    world.clock.advance(IDLE + Duration::from_secs(1));
    let expired = world.get(&app, "/read", Some(&cookie)).await;
    expired.assert_ok("none");
    assert!(
        expired.is_removal(),
        "a dead session's cookie is cleared: {expired:?}"
    );
}

/// A session kept busy still ends at the absolute timeout.
pub async fn absolute_timeout_ends_even_an_active_session(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    const IDLE: Duration = Duration::from_secs(600);
    const ABSOLUTE: Duration = Duration::from_secs(1800);
    let world = World::new(app, factory).await;
    let app = world
        .serve(
            world
                .manager()
                .with_idle_timeout(IDLE)
                .with_absolute_timeout(ABSOLUTE),
        )
        .await;
    let cookie = world.get(&app, "/counter", None).await.issued();

    for expected in ["2", "3", "4"] {
        world.clock.advance(IDLE * 9 / 10);
        world
            .get(&app, "/counter", Some(&cookie))
            .await
            .assert_ok(expected);
    }
    // 27 minutes in, touched a minute ago; 4 more minutes passes 30.
    world.clock.advance(Duration::from_secs(240));
    let reply = world.get(&app, "/read", Some(&cookie)).await;
    reply.assert_ok("none");
    assert!(reply.is_removal(), "{reply:?}");
}

/// Forged, truncated, garbage, foreign-key, foreign-name and non-UTF-8 cookies
/// all get a fresh session with status 200, and none reaches the store.
pub async fn bad_cookies_get_a_fresh_session(app: &dyn TestApp, factory: &dyn StoreFactory) {
    let world = World::new(app, factory).await;
    let app = world.serve_default().await;
    let good = world.get(&app, "/counter", None).await.issued();
    let name = good.split('=').next().unwrap().to_owned();
    let value = good.split_once('=').unwrap().1.to_owned();

    let stranger =
        CookieCodec::new(CookieConfig::default(), KeyRing::new(Key::generate())).unwrap();
    let other_name = CookieCodec::new(
        CookieConfig::default().with_name("other"),
        world.key.clone().into(),
    )
    .unwrap();
    let id = SessionId::decode(session_id_of(&good)).unwrap();
    let mut forged = value.clone();
    let last = if forged.ends_with('A') { "B" } else { "A" };
    forged.replace_range(forged.len() - 1.., last);

    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("forged tag", format!("{name}={forged}").into_bytes()),
        (
            "truncated",
            format!("{name}={}", &value[..value.len() - 5]).into_bytes(),
        ),
        (
            "id only",
            format!("{name}={}", session_id_of(&good)).into_bytes(),
        ),
        ("garbage", format!("{name}=%%%not-a-cookie%%%").into_bytes()),
        ("empty", format!("{name}=").into_bytes()),
        ("padded base64", format!("{name}={}==", &value).into_bytes()),
        (
            "unknown key",
            format!("{name}={}", stranger.sign(&id)).into_bytes(),
        ),
        (
            "signed for another name",
            format!("{name}={}", other_name.sign(&id)).into_bytes(),
        ),
        (
            "non-UTF-8",
            [format!("{name}=").as_bytes(), b"\xff\xfe\xfd"].concat(),
        ),
    ];
    world.store.take_calls();
    for (what, cookie) in bad {
        let request = world
            .client
            .get(format!("http://{}/counter", app.addr()))
            .header(COOKIE, HeaderValue::from_bytes(&cookie).unwrap());
        let reply = send(request).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "1"),
            "{what}: {reply:?}"
        );
        let fresh = reply.issued();
        assert_ne!(
            session_id_of(&fresh),
            session_id_of(&good),
            "{what} adopted the old id"
        );
        assert_eq!(
            world.store.take_calls(),
            Calls {
                create: 1,
                ..Calls::default()
            },
            "{what}: a cookie that does not verify must not reach the store"
        );
    }
    world.get(&app, "/read", Some(&good)).await.assert_ok("1");
}

/// How far a hostile cookie may get into the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// It does not verify, so the store never hears of the id in it.
    Nothing,
    /// It verifies (a genuine tag over a dead or never-issued id): the id is
    /// looked up once, found dead, and nothing is written.
    OneLoad,
}

/// The hostile-input matrix: every cookie an attacker can send, each sent
/// to a page that reads the session (`/whoami`). Each must get the answer a
/// stranger gets, or a clean 4xx; never a 5xx, never someone else's
/// session, and never a store write (the fresh session of a read-only page
/// is not stored). A cookie that does not verify costs no store call at all,
/// so the id inside it is never looked up. A validly signed cookie for a
/// dead or never-issued id, sent to a page that writes, gets a fresh id:
/// the server never creates a session under an id it did not mint (strict
/// mode). The victim's session is unchanged by all of it, and ends at the
/// absolute timeout however active it is kept.
pub async fn hostile_cookies_get_a_fresh_session_and_touch_no_one_elses(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    const IDLE: Duration = Duration::from_secs(600);
    const ABSOLUTE: Duration = Duration::from_secs(3600);
    let world = World::new(app, factory).await;
    // The idle timeout is far shorter than the absolute one, and the victim
    // is kept active below, so only the absolute timeout can end it.
    let app = world
        .serve(
            world
                .manager()
                .with_idle_timeout(IDLE)
                .with_absolute_timeout(ABSOLUTE),
        )
        .await;
    let victim = world.get(&app, "/login", None).await.issued();
    let name = victim.split('=').next().unwrap().to_owned();
    let value = victim.split_once('=').unwrap().1.to_owned();
    let victim_id = SessionId::decode(session_id_of(&victim)).unwrap();
    let (id_text, tag_text) = value.split_once('.').unwrap();

    // Cookies that were valid once.
    let logged_out = world.get(&app, "/login", None).await.issued();
    let _ = world.get(&app, "/logout", Some(&logged_out)).await;
    let before_cycle = world.get(&app, "/login", None).await.issued();
    let _ = world
        .get(&app, "/login", Some(&before_cycle))
        .await
        .issued();

    let codec = |config: CookieConfig, keys: KeyRing| CookieCodec::new(config, keys).unwrap();
    let ours = codec(CookieConfig::default(), world.key.clone().into());
    let stranger = codec(CookieConfig::default(), KeyRing::new(Key::generate()));
    let other_name = codec(
        CookieConfig::default().with_name("other"),
        world.key.clone().into(),
    );
    let never_issued = SessionId::generate();
    let never_issued_cookie = format!("{name}={}", ours.sign(&never_issued));
    let mut forged = value.clone();
    let last = if forged.ends_with('A') { "B" } else { "A" };
    forged.replace_range(forged.len() - 1.., last);
    let mut huge = String::with_capacity(100 * 1024 + 64);
    while huge.len() < 100 * 1024 {
        huge.push_str(&format!("{name}={}; ", "A".repeat(500)));
    }
    // `=` inside the value at its exact length, so the length check passes
    // and base64url's canonical decoding is what must refuse it.
    let padded_id = format!("{}==.{tag_text}", &id_text[..id_text.len() - 2]);
    let padded_tag = format!("{id_text}.{}=", &tag_text[..tag_text.len() - 1]);
    let tag_with_a_gap = format!("{id_text}.{}={}", &tag_text[..20], &tag_text[21..]);
    for same_length in [&padded_id, &padded_tag, &tag_with_a_gap] {
        assert_eq!(same_length.len(), value.len(), "{same_length}");
    }

    let matrix: Vec<(&str, Vec<u8>, Reach)> = vec![
        (
            "a forged HMAC",
            format!("{name}={forged}").into_bytes(),
            Reach::Nothing,
        ),
        (
            "an HMAC by another key",
            format!("{name}={}", stranger.sign(&victim_id)).into_bytes(),
            Reach::Nothing,
        ),
        (
            "a cookie signed for another cookie name",
            format!("{name}={}", other_name.sign(&victim_id)).into_bytes(),
            Reach::Nothing,
        ),
        (
            "a replayed cookie after logout",
            logged_out.clone().into_bytes(),
            Reach::OneLoad,
        ),
        (
            "a replayed cookie after cycle_id",
            before_cycle.clone().into_bytes(),
            Reach::OneLoad,
        ),
        (
            "an id the server never issued, validly signed",
            never_issued_cookie.clone().into_bytes(),
            Reach::OneLoad,
        ),
        (
            "many session cookies in one header",
            format!("{name}={forged}; {name}=x; {name}=; {name}=%00; {name}={forged}; {name}=y")
                .into_bytes(),
            Reach::Nothing,
        ),
        ("a 100 KB cookie header", huge.into_bytes(), Reach::Nothing),
        (
            "non-UTF-8 bytes",
            [format!("{name}=").as_bytes(), b"\xff\xfe\x80"].concat(),
            Reach::Nothing,
        ),
        (
            "null bytes",
            [format!("{name}=").as_bytes(), b"a\x00b", b".\x00"].concat(),
            Reach::Nothing,
        ),
        (
            "bad base64 padding after the value",
            format!("{name}={value}==").into_bytes(),
            Reach::Nothing,
        ),
        (
            "bad base64 padding inside the id, at full length",
            format!("{name}={padded_id}").into_bytes(),
            Reach::Nothing,
        ),
        (
            "bad base64 padding at the end of the tag, at full length",
            format!("{name}={padded_tag}").into_bytes(),
            Reach::Nothing,
        ),
        (
            "bad base64 padding inside the tag, at full length",
            format!("{name}={tag_with_a_gap}").into_bytes(),
            Reach::Nothing,
        ),
        (
            "standard base64, not base64url",
            format!("{name}={}+/", &value[..value.len() - 2]).into_bytes(),
            Reach::Nothing,
        ),
    ];
    // What the victim's session holds. Not `expires_at`: a composite store
    // may answer from either copy, whose expiries differ by the
    // milliseconds between their writes.
    let content =
        |record: Option<Record>| record.map(|record| (record.data, record.version, record.owner));
    let victim_before = content(world.store.load(&victim_id).await.unwrap());
    assert!(victim_before.is_some(), "the victim's session was stored");
    world.store.take_calls();
    for (what, cookie, reach) in &matrix {
        // Raw bytes on a socket: an HTTP client library would refuse to send
        // some of these (a null byte), and an attacker's would not.
        let (status, head_and_body) = raw_get(app.addr(), "/whoami", cookie).await;
        assert!(status < 500, "{what}: answered {status}");
        if status == 200 {
            assert!(
                head_and_body.ends_with("anonymous"),
                "{what}: served someone's session: {head_and_body}"
            );
        } else {
            assert!((400..500).contains(&status), "{what}: answered {status}");
        }
        let expected = match reach {
            Reach::Nothing => Calls::default(),
            Reach::OneLoad => Calls::ONE_LOAD,
        };
        assert_eq!(
            world.store.take_calls(),
            expected,
            "{what}: the store saw more than a cookie of this kind may reach"
        );
    }

    // Strict mode where it matters: a page that writes. A genuine tag over an
    // id the store does not hold gets a session under a fresh id, and the
    // attacker's id is never created.
    for (what, cookie) in [
        ("never issued", &never_issued_cookie),
        ("logged out", &logged_out),
        ("cycled away", &before_cycle),
    ] {
        world.store.take_calls();
        let reply = world.get(&app, "/counter", Some(cookie)).await;
        reply.assert_ok("1");
        let issued = reply.issued();
        assert_ne!(
            session_id_of(&issued),
            session_id_of(cookie),
            "{what}: the server adopted an id it does not hold"
        );
        assert_eq!(
            world.store.take_calls(),
            Calls {
                load: 1,
                create: 1,
                ..Calls::default()
            },
            "{what}"
        );
        let id = SessionId::decode(session_id_of(cookie)).unwrap();
        assert_eq!(
            world.store.load(&id).await.unwrap(),
            None,
            "{what}: a session was created under the attacker's id"
        );
    }
    assert_eq!(
        content(world.store.load(&victim_id).await.unwrap()),
        victim_before,
        "the matrix changed the victim's session"
    );
    world
        .get(&app, "/whoami", Some(&victim))
        .await
        .assert_ok("ada");

    // Past the absolute timeout a stolen cookie is dead, however active. The
    // victim is used every 500 s, inside the idle timeout, up to a second
    // before the absolute deadline, so the idle timeout cannot be what ends
    // it.
    let mut elapsed = Duration::ZERO;
    while elapsed + Duration::from_secs(500) < ABSOLUTE {
        world.clock.advance(Duration::from_secs(500));
        elapsed += Duration::from_secs(500);
        world
            .get(&app, "/whoami", Some(&victim))
            .await
            .assert_ok("ada");
    }
    world
        .clock
        .advance(ABSOLUTE - elapsed - Duration::from_secs(1));
    world
        .get(&app, "/whoami", Some(&victim))
        .await
        .assert_ok("ada");
    world.store.take_calls();
    world.clock.advance(Duration::from_secs(2));
    let expired = world.get(&app, "/whoami", Some(&victim)).await;
    expired.assert_ok("anonymous");
    assert!(
        expired.is_removal(),
        "a dead session's cookie is cleared: {expired:?}"
    );
    assert_eq!(world.store.take_calls(), Calls::ONE_LOAD);
}

/// After a key rotation a cookie signed with the old key still works, and
/// the response re-signs it with the new key under the same id without a
/// store write: one load when the page reads the session, no store call at
/// all when it does not. Once the old key is retired, the re-signed cookie
/// keeps working and the old one does not.
pub async fn rotated_key_still_verifies_and_is_re_signed(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let old_app = world.serve_default().await;
    let old_cookie = world.get(&old_app, "/counter", None).await.issued();
    drop(old_app);

    let new_key = Key::generate();
    let ring = KeyRing::new(new_key.clone()).with_fallback(world.key.clone());
    let rotated = world
        .serve(
            SessionManager::builder(Arc::clone(&world.store), ring).with_clock(world.clock.clone()),
        )
        .await;
    world.store.take_calls();
    let reply = world.get(&rotated, "/read", Some(&old_cookie)).await;
    reply.assert_ok("1");
    let resigned = reply.issued();
    assert_eq!(session_id_of(&resigned), session_id_of(&old_cookie));
    assert_ne!(resigned, old_cookie);
    assert_eq!(
        world.store.take_calls(),
        Calls::ONE_LOAD,
        "re-signing a cookie is a new Set-Cookie, not a store write"
    );
    let untouched = world.get(&rotated, "/untouched", Some(&old_cookie)).await;
    untouched.assert_ok("untouched");
    assert_eq!(
        untouched.issued(),
        resigned,
        "a page that never opens the session still gets the cookie re-signed"
    );
    assert_eq!(world.store.take_calls(), Calls::default());
    drop(rotated);

    let retired = world
        .serve(
            SessionManager::builder(Arc::clone(&world.store), new_key)
                .with_clock(world.clock.clone()),
        )
        .await;
    world
        .get(&retired, "/counter", Some(&resigned))
        .await
        .assert_ok("2");
    world
        .get(&retired, "/read", Some(&old_cookie))
        .await
        .assert_ok("none");
}

/// A request that only reads sets no cookie and writes nothing; one that
/// never touches the session costs no store call at all.
pub async fn read_only_request_sets_no_cookie_and_writes_nothing(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = world.serve_default().await;
    let cookie = world.get(&app, "/counter", None).await.issued();
    world.store.take_calls();

    let read = world.get(&app, "/read", Some(&cookie)).await;
    read.assert_ok("1");
    assert!(read.set_cookies.is_empty(), "{read:?}");
    assert_eq!(world.store.take_calls(), Calls::ONE_LOAD);

    let untouched = world.get(&app, "/untouched", Some(&cookie)).await;
    untouched.assert_ok("untouched");
    assert!(untouched.set_cookies.is_empty(), "{untouched:?}");
    assert_eq!(world.store.take_calls(), Calls::default());

    let anonymous = world.get(&app, "/read", None).await;
    anonymous.assert_ok("none");
    assert!(
        anonymous.set_cookies.is_empty(),
        "a new empty session sets no cookie: {anonymous:?}"
    );
    assert_eq!(world.store.take_calls(), Calls::default());
}

/// A 100 KB `Cookie` header is either refused with a clean 4xx by the server
/// or served with a fresh session; never a 5xx.
pub async fn oversized_cookie_header_gets_a_fresh_session(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = world.serve_default().await;
    let name = world.get(&app, "/counter", None).await.issued();
    let name = name.split('=').next().unwrap();

    let mut header = String::with_capacity(100 * 1024 + 64);
    let mut i = 0;
    while header.len() < 100 * 1024 {
        header.push_str(&format!("junk{i}={}; ", "z".repeat(200)));
        i += 1;
    }
    header.push_str(&format!("{name}={}", "A".repeat(4096)));
    let reply = world.get(&app, "/counter", Some(&header)).await;
    assert!(reply.status < 500, "{}", reply.status);
    if reply.status == 200 {
        reply.assert_ok("1");
        let _ = reply.issued();
    } else {
        assert!((400..500).contains(&reply.status), "{reply:?}");
    }
}

/// While the store fails, requests that need it get a bare 503 (no body, no
/// cookie change) under the default policy; once it is back, the session is
/// exactly as before.
pub async fn store_outage_answers_503_and_overwrites_nothing(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = world.serve_default().await;
    let cookie = world.get(&app, "/counter", None).await.issued();

    world
        .store
        .set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    for path in ["/counter", "/read", "/login"] {
        let reply = world.get(&app, path, Some(&cookie)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (503, ""),
            "{path}: {reply:?}"
        );
        assert!(reply.set_cookies.is_empty(), "{path}: {reply:?}");
    }
    let fresh = world.get(&app, "/counter", None).await;
    assert_eq!(
        fresh.status, 503,
        "a new session cannot be stored either: {fresh:?}"
    );
    world
        .get(&app, "/untouched", Some(&cookie))
        .await
        .assert_ok("untouched");

    world.store.set_fault(None);
    world.get(&app, "/read", Some(&cookie)).await.assert_ok("1");
    world
        .get(&app, "/counter", Some(&cookie))
        .await
        .assert_ok("2");
}

/// Under `TreatAsEmpty` a read during an outage sees an empty session and the
/// cookie is left alone; a write is still refused with 503; afterwards the
/// session is intact.
pub async fn treat_as_empty_policy_serves_reads_during_an_outage(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = world
        .serve(world.manager().with_error_policy(ErrorPolicy::TreatAsEmpty))
        .await;
    let cookie = world.get(&app, "/counter", None).await.issued();

    world
        .store
        .set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    let read = world.get(&app, "/read", Some(&cookie)).await;
    read.assert_ok("none");
    assert!(
        read.set_cookies.is_empty(),
        "the cookie must survive the outage: {read:?}"
    );
    let write = world.get(&app, "/counter", Some(&cookie)).await;
    assert_eq!((write.status, write.body.as_str()), (503, ""), "{write:?}");

    world.store.set_fault(None);
    world.get(&app, "/read", Some(&cookie)).await.assert_ok("1");
}

/// Under `TreatAsEmpty`, a request that changes a session whose load failed
/// gets a bare 503 and no `Set-Cookie`, even though the store takes writes
/// again by then (a load that timed out, then a write that would get
/// through): nothing is created, the user keeps their cookie, and the
/// session is intact once loads work again.
pub async fn treat_as_empty_policy_refuses_a_write_after_a_failed_load(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = world
        .serve(world.manager().with_error_policy(ErrorPolicy::TreatAsEmpty))
        .await;
    let cookie = world.get(&app, "/counter", None).await.issued();
    world.store.take_calls();

    world
        .store
        .set_fault(Some(Fault::FailReads(ErrorKind::Timeout)));
    for path in ["/counter", "/login", "/login-as/eve", "/logout-everywhere"] {
        let reply = world.get(&app, path, Some(&cookie)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (503, ""),
            "{path}: {reply:?}"
        );
        assert!(
            reply.set_cookies.is_empty(),
            "{path}: the user's cookie must stay: {reply:?}"
        );
        assert_eq!(
            world.store.take_calls(),
            Calls::ONE_LOAD,
            "{path}: nothing may be written"
        );
    }

    world.store.set_fault(None);
    world.get(&app, "/read", Some(&cookie)).await.assert_ok("1");
    world
        .get(&app, "/counter", Some(&cookie))
        .await
        .assert_ok("2");
}

/// A store that never answers costs a request at most the operation timeout,
/// then a 503.
pub async fn hung_store_answers_within_the_operation_timeout(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    const OPERATION_TIMEOUT: Duration = Duration::from_millis(200);
    let world = World::new(app, factory).await;
    let app = world
        .serve(world.manager().with_operation_timeout(OPERATION_TIMEOUT))
        .await;
    let cookie = world.get(&app, "/counter", None).await.issued();

    world.store.set_fault(Some(Fault::Hang));
    let started = Instant::now();
    let reply = world.get(&app, "/read", Some(&cookie)).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{reply:?}");
    // A bound, not a benchmark: generous for a loaded machine, far below the
    // client's own 10 s timeout.
    assert!(
        took < Duration::from_secs(5),
        "a hung store held the request for {took:?}"
    );

    world.store.set_fault(None);
    world.get(&app, "/read", Some(&cookie)).await.assert_ok("1");
}

crate::__http_scenarios!(crate::__http_runner;);
