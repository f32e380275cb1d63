//! Scenarios of the session token in a header instead of a cookie: the
//! round trip, rotation and logout, and every hostile header.

use session_core::{
    cookie::CookieCodec, CookieConfig, HeaderTransport, Key, KeyRing, SessionId, Transport,
};

use super::{
    harness::{raw_get_with, Reply, World},
    RunningApp, TestApp,
};
use crate::{instrumented::Calls, store::StoreFactory};

const AUTHORIZATION: &str = "authorization";

async fn serve_with_header(world: &World<'_>, header: HeaderTransport) -> RunningApp {
    world
        .serve(world.manager().with_transport(Transport::Header(header)))
        .await
}

/// The one token header value of `reply`, failing the test when it has
/// none or several.
fn token_of(reply: &Reply, name: &str) -> String {
    let values = reply.header(name);
    assert_eq!(values.len(), 1, "expected one `{name}` header: {reply:?}");
    values[0].to_owned()
}

/// The id inside a `Bearer <id>.<tag>` value.
fn id_of(value: &str) -> &str {
    let token = value.rsplit(' ').next().unwrap_or_default();
    token.split('.').next().unwrap_or_default()
}

/// With a header transport the token travels in the configured header
/// both ways and no cookie is ever set:
/// - a new session's response carries `Authorization: Bearer <token>`,
///   exactly what the client sends back; an unchanged session's carries
///   nothing;
/// - a login (`cycle_id`) answers with a new token, and the old one then
///   gets a fresh session and an empty header ("forget your token");
/// - a logout answers with an empty header, and the token is dead after;
/// - a cookie holding a valid token is ignored: one transport only;
/// - a custom header with no scheme works the same way.
pub async fn header_token_carries_the_session_and_no_cookie_is_set(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = serve_with_header(&world, HeaderTransport::bearer()).await;

    let first = world.get_with(&app, "/counter", &[]).await;
    first.assert_ok("1");
    assert!(first.set_cookies.is_empty(), "{first:?}");
    let token = token_of(&first, AUTHORIZATION);
    assert!(token.starts_with("Bearer "), "{token}");

    let again = world
        .get_with(&app, "/counter", &[(AUTHORIZATION, &token)])
        .await;
    again.assert_ok("2");
    assert!(
        again.header(AUTHORIZATION).is_empty() && again.set_cookies.is_empty(),
        "an unchanged id sends no token: {again:?}"
    );
    let cookie = format!("session={}", token.trim_start_matches("Bearer "));
    world
        .get(&app, "/read", Some(&cookie))
        .await
        .assert_ok("none");

    let login = world
        .get_with(&app, "/login", &[(AUTHORIZATION, &token)])
        .await;
    login.assert_ok("ok");
    let logged_in = token_of(&login, AUTHORIZATION);
    assert_ne!(id_of(&logged_in), id_of(&token), "login moves to a new id");
    let stale = world
        .get_with(&app, "/whoami", &[(AUTHORIZATION, &token)])
        .await;
    stale.assert_ok("anonymous");
    assert_eq!(
        stale.header(AUTHORIZATION),
        [""],
        "a token naming no session is told to go: {stale:?}"
    );
    world
        .get_with(&app, "/whoami", &[(AUTHORIZATION, &logged_in)])
        .await
        .assert_ok("ada");

    let logout = world
        .get_with(&app, "/logout", &[(AUTHORIZATION, &logged_in)])
        .await;
    logout.assert_ok("bye");
    assert_eq!(logout.header(AUTHORIZATION), [""], "{logout:?}");
    assert!(logout.set_cookies.is_empty(), "{logout:?}");
    world
        .get_with(&app, "/whoami", &[(AUTHORIZATION, &logged_in)])
        .await
        .assert_ok("anonymous");

    // Both apps stay up to the end: a store may hold connections opened on
    // the first app's runtime (actix runs each worker on its own).
    let custom = serve_with_header(&world, HeaderTransport::new("X-Session-Token")).await;
    let first = world.get_with(&custom, "/counter", &[]).await;
    let token = token_of(&first, "x-session-token");
    assert!(!token.contains(' '), "no scheme, just the token: {token}");
    world
        .get_with(&custom, "/counter", &[("X-Session-Token", &token)])
        .await
        .assert_ok("2");
}

/// One hostile header: what it is, the raw request header lines, and
/// whether the token in it verifies but names a dead session.
struct Hostile {
    what: &'static str,
    lines: Vec<u8>,
    dead: Option<SessionId>,
    /// Malformed at the HTTP level: the server may refuse it with a 4xx
    /// before the session layer sees it.
    may_be_refused: bool,
}

/// Every hostile token header (missing or wrong scheme, forged, foreign,
/// truncated, empty, oversized, repeated, not text, a dead id, the token
/// in a cookie) is sent to a page that reads the session and to one that
/// writes it. Each gets the answer a stranger gets (or, malformed at the
/// HTTP level, a clean 4xx), never a 5xx and never the victim's session.
/// A token that does not verify costs no store call; a validly signed one
/// for a dead id costs one lookup. A page that writes gets a fresh token,
/// never the victim's id. Several values of the header are refused even
/// when one is the victim's genuine token: no rule could tell which one
/// the client meant.
pub async fn hostile_session_headers_get_a_fresh_session_and_touch_no_one_elses(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let app = serve_with_header(&world, HeaderTransport::bearer()).await;
    let header = |value: &str| (AUTHORIZATION, value.to_owned());
    let victim = token_of(&world.get_with(&app, "/login", &[]).await, AUTHORIZATION);
    world
        .get_with(&app, "/counter", &[(header(&victim).0, &victim)])
        .await
        .assert_ok("1");
    let logged_out = token_of(&world.get_with(&app, "/login", &[]).await, AUTHORIZATION);
    let _ = world
        .get_with(&app, "/logout", &[(AUTHORIZATION, &logged_out)])
        .await;
    let victim_id = id_of(&victim).to_owned();

    let token = victim.trim_start_matches("Bearer ").to_owned();
    let mut forged = token.clone();
    let at = victim_id.len() + 1 + 10;
    let other = if &forged[at..=at] == "A" { "B" } else { "A" };
    forged.replace_range(at..=at, other);
    let stranger =
        CookieCodec::new(CookieConfig::default(), KeyRing::new(Key::generate())).unwrap();
    let victim_session = SessionId::decode(&victim_id).unwrap();
    let line = |value: &str| format!("Authorization: {value}\r\n").into_bytes();
    let case = |what, lines, dead, may_be_refused| Hostile {
        what,
        lines,
        dead,
        may_be_refused,
    };
    let cases = vec![
        case("no header at all", Vec::new(), None, false),
        case("the token without its scheme", line(&token), None, false),
        case(
            "another scheme",
            line(&format!("Basic {token}")),
            None,
            false,
        ),
        case(
            "the scheme glued to the token",
            line(&format!("Bearer{token}")),
            None,
            false,
        ),
        case(
            "a forged HMAC",
            line(&format!("Bearer {forged}")),
            None,
            false,
        ),
        case(
            "an HMAC by another key",
            line(&format!("Bearer {}", stranger.sign(&victim_session))),
            None,
            false,
        ),
        case(
            "a truncated token",
            line(&format!("Bearer {}", &token[..token.len() - 5])),
            None,
            false,
        ),
        case("the scheme alone", line("Bearer"), None, false),
        case("an empty value", line(""), None, true),
        case(
            "a 4 KB value ending in the genuine token",
            line(&format!("Bearer {}{token}", " ".repeat(4096))),
            None,
            true,
        ),
        case(
            "two values in one header",
            line(&format!("{victim}, {victim}")),
            None,
            false,
        ),
        case(
            "the header twice, the genuine token second",
            [line("Bearer junk"), line(&victim)].concat(),
            None,
            false,
        ),
        case(
            "the header twice, the genuine token both times",
            [line(&victim), line(&victim)].concat(),
            None,
            false,
        ),
        case(
            "non-UTF-8 bytes",
            [
                b"Authorization: Bearer \xff\xfe\xfd\x80".as_slice(),
                b"\r\n",
            ]
            .concat(),
            None,
            true,
        ),
        case(
            "a replayed token after logout",
            line(&logged_out),
            SessionId::decode(id_of(&logged_out)),
            false,
        ),
        case(
            "the genuine token in a cookie",
            format!("Cookie: session={token}\r\n").into_bytes(),
            None,
            false,
        ),
    ];
    world.store.take_calls();
    for hostile in &cases {
        hostile.check(&world, &app, &victim_id).await;
    }
    // The victim's session is as it was.
    world
        .get_with(&app, "/read", &[(AUTHORIZATION, &victim)])
        .await
        .assert_ok("1");
    world
        .get_with(&app, "/whoami", &[(AUTHORIZATION, &victim)])
        .await
        .assert_ok("ada");
}

impl Hostile {
    async fn check(&self, world: &World<'_>, app: &RunningApp, victim_id: &str) {
        let what = self.what;
        let read = raw_get_with(app.addr(), "/whoami", &self.lines, what).await;
        if self.served(&read) {
            assert_eq!(read.body, "anonymous", "{what}: served someone's session");
        }
        let lookups = usize::from(self.dead.is_some());
        assert_eq!(
            world.store.take_calls(),
            Calls {
                load: lookups,
                ..Calls::default()
            },
            "{what}: a read-only page costs at most the lookup of a dead id"
        );
        let write = raw_get_with(app.addr(), "/counter", &self.lines, what).await;
        if !self.served(&write) {
            assert_eq!(world.store.take_calls(), Calls::default(), "{what}");
            return;
        }
        assert_eq!(write.body, "1", "{what}: counted on in someone's session");
        let issued = token_of(&write, AUTHORIZATION);
        assert!(write.set_cookies.is_empty(), "{what}: {write:?}");
        assert_ne!(id_of(&issued), victim_id, "{what}: adopted the victim's id");
        if let Some(dead) = self.dead {
            assert_ne!(id_of(&issued), dead.encode(), "{what}: adopted a dead id");
        }
        assert_eq!(
            world.store.take_calls(),
            Calls {
                load: lookups,
                create: 1,
                ..Calls::default()
            },
            "{what}: a page that writes creates one fresh session"
        );
    }

    fn served(&self, reply: &Reply) -> bool {
        let what = self.what;
        if reply.status == 200 {
            return true;
        }
        assert!(
            self.may_be_refused && (400..500).contains(&reply.status),
            "{what}: answered {}: {reply:?}",
            reply.status
        );
        false
    }
}
