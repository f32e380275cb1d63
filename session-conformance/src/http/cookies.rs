//! Scenarios of the cookie itself: every hostile cookie an attacker can
//! send, and key rotation.

use std::sync::Arc;

use session_core::{
    cookie::CookieCodec,
    store::{Record, SessionStore},
    CookieConfig, Key, KeyRing, SessionId, SessionManager,
};

use super::{
    harness::{raw_get, session_id_of, Reply, World},
    RunningApp, TestApp,
};
use crate::{instrumented::Calls, store::StoreFactory};

/// What a hostile cookie must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// It does not verify: the answer a stranger gets, and the store never
    /// hears of the id in it.
    Fresh,
    /// It verifies, but names a session the store does not hold (logged
    /// out, cycled away, never issued): the id is looked up once and found
    /// dead, and a page that writes gets a session under a fresh id. The
    /// dead id is never created (strict mode), so an attacker cannot choose
    /// one.
    DeadId(SessionId),
    /// It is malformed or oversized at the HTTP level, so the server may
    /// refuse it with a clean 4xx before the session layer sees it; served,
    /// it is [`Expect::Fresh`].
    FreshOrRefused,
}

/// One hostile cookie: what it is, the raw bytes of its `Cookie` header,
/// and what it must come to.
struct Hostile {
    what: &'static str,
    header: Vec<u8>,
    expect: Expect,
}

/// The app under attack: a victim logged in, and cookies that were valid
/// once.
struct Target {
    app: RunningApp,
    /// The victim's genuine cookie, `name=<id>.<tag>`. Its session has
    /// `user` and `count` set, so an answer from it shows.
    victim: String,
    victim_id: SessionId,
    /// A genuine cookie whose session logged out.
    logged_out: String,
    /// A genuine cookie whose session moved to a new id.
    cycled_away: String,
}

impl Target {
    async fn set_up(world: &World<'_>) -> Self {
        let app = world.serve_default().await;
        let victim = world.get(&app, "/login", None).await.issued();
        world
            .get(&app, "/counter", Some(&victim))
            .await
            .assert_ok("1");
        let logged_out = world.get(&app, "/login", None).await.issued();
        let _ = world.get(&app, "/logout", Some(&logged_out)).await;
        let cycled_away = world.get(&app, "/login", None).await.issued();
        let _ = world.get(&app, "/login", Some(&cycled_away)).await.issued();
        Self {
            app,
            victim_id: SessionId::decode(session_id_of(&victim)).unwrap(),
            victim,
            logged_out,
            cycled_away,
        }
    }
}

/// The one list of hostile cookies, run by
/// [`hostile_cookies_get_a_fresh_session_and_touch_no_one_elses`]: forged
/// and foreign signatures, malformed values, dead ids, many and huge
/// cookies, bytes that are not text.
fn hostile_cookies(target: &Target, key: &Key) -> Vec<Hostile> {
    let (name, value) = target.victim.split_once('=').unwrap();
    let (id_text, tag_text) = value.split_once('.').unwrap();
    let victim_id = target.victim_id;
    let codec = |config: CookieConfig, keys: KeyRing| CookieCodec::new(config, keys).unwrap();
    let ours = codec(CookieConfig::default(), key.clone().into());
    let stranger = codec(CookieConfig::default(), KeyRing::new(Key::generate()));
    let other_name = codec(
        CookieConfig::default().with_name("other"),
        key.clone().into(),
    );
    let never_issued = SessionId::generate();
    let dead = |cookie: &str| Expect::DeadId(SessionId::decode(session_id_of(cookie)).unwrap());

    // One character changed inside the tag, not at its end: the last
    // character carries two padding bits, so changing it could make the
    // value non-canonical, which base64 refuses before the HMAC is checked.
    let mut forged = value.to_owned();
    let at = id_text.len() + 1 + 10;
    let other = if &forged[at..=at] == "A" { "B" } else { "A" };
    forged.replace_range(at..=at, other);
    // `=` inside the value at its exact length, so the length check passes
    // and base64url's canonical decoding is what must refuse it.
    let padded_id = format!("{}==.{tag_text}", &id_text[..id_text.len() - 2]);
    let padded_tag = format!("{id_text}.{}=", &tag_text[..tag_text.len() - 1]);
    let tag_with_a_gap = format!("{id_text}.{}={}", &tag_text[..20], &tag_text[21..]);
    for same_length in [&forged, &padded_id, &padded_tag, &tag_with_a_gap] {
        assert_eq!(same_length.len(), value.len(), "{same_length}");
    }
    // The victim's genuine cookie comes last: only the cap on how many of
    // our cookies one request may make us verify keeps the server from
    // working through all 200 of them, and this shows whether it held.
    let mut session_cookies_100_kb = String::with_capacity(100 * 1024 + 512);
    while session_cookies_100_kb.len() < 100 * 1024 {
        session_cookies_100_kb.push_str(&format!("{name}={}; ", "A".repeat(500)));
    }
    session_cookies_100_kb.push_str(&target.victim);
    let mut junk_then_ours = String::with_capacity(100 * 1024 + 4400);
    let mut i = 0;
    while junk_then_ours.len() < 100 * 1024 {
        junk_then_ours.push_str(&format!("junk{i}={}; ", "z".repeat(200)));
        i += 1;
    }
    junk_then_ours.push_str(&format!("{name}={}", "A".repeat(4096)));

    let ours_with = |value: &str| format!("{name}={value}").into_bytes();
    let bytes_after_name = |bytes: &[u8]| [format!("{name}=").as_bytes(), bytes].concat();
    let case = |what, header, expect| Hostile {
        what,
        header,
        expect,
    };
    vec![
        case("a forged HMAC", ours_with(&forged), Expect::Fresh),
        case(
            "an HMAC by another key",
            ours_with(&stranger.sign(&victim_id)),
            Expect::Fresh,
        ),
        case(
            "a cookie signed for another cookie name",
            ours_with(&other_name.sign(&victim_id)),
            Expect::Fresh,
        ),
        case(
            "a truncated cookie",
            ours_with(&value[..value.len() - 5]),
            Expect::Fresh,
        ),
        case("the id without its tag", ours_with(id_text), Expect::Fresh),
        case("garbage", ours_with("%%%not-a-cookie%%%"), Expect::Fresh),
        case("an empty value", ours_with(""), Expect::Fresh),
        case(
            "bad base64 padding after the value",
            ours_with(&format!("{value}==")),
            Expect::Fresh,
        ),
        case(
            "bad base64 padding inside the id, at full length",
            ours_with(&padded_id),
            Expect::Fresh,
        ),
        case(
            "bad base64 padding at the end of the tag, at full length",
            ours_with(&padded_tag),
            Expect::Fresh,
        ),
        case(
            "bad base64 padding inside the tag, at full length",
            ours_with(&tag_with_a_gap),
            Expect::Fresh,
        ),
        case(
            "standard base64, not base64url",
            ours_with(&format!("{}+/", &value[..value.len() - 2])),
            Expect::Fresh,
        ),
        case(
            "non-UTF-8 bytes",
            bytes_after_name(b"\xff\xfe\xfd\x80"),
            Expect::Fresh,
        ),
        case(
            "many session cookies in one header",
            format!("{name}={forged}; {name}=x; {name}=; {name}=%00; {name}={forged}; {name}=y")
                .into_bytes(),
            Expect::Fresh,
        ),
        case(
            "a replayed cookie after logout",
            target.logged_out.as_bytes().to_vec(),
            dead(&target.logged_out),
        ),
        case(
            "a replayed cookie after cycle_id",
            target.cycled_away.as_bytes().to_vec(),
            dead(&target.cycled_away),
        ),
        case(
            "an id the server never issued, validly signed",
            ours_with(&ours.sign(&never_issued)),
            Expect::DeadId(never_issued),
        ),
        case(
            "null bytes",
            bytes_after_name(b"a\x00b.\x00"),
            Expect::FreshOrRefused,
        ),
        case(
            "a 100 KB header of session cookies, the genuine one last",
            session_cookies_100_kb.into_bytes(),
            Expect::FreshOrRefused,
        ),
        case(
            "100 KB of other cookies, then a 4 KB session cookie",
            junk_then_ours.into_bytes(),
            Expect::FreshOrRefused,
        ),
    ]
}

impl Hostile {
    /// Sends this cookie to `target`, first to a page that only reads the
    /// session (`/whoami`), then to one that writes it (`/counter`), and
    /// checks both answers and every store call they cost.
    async fn check(&self, world: &World<'_>, target: &Target) {
        let what = self.what;
        let read = raw_get(target.app.addr(), "/whoami", &self.header, what).await;
        if self.served(&read) {
            assert_eq!(
                read.body, "anonymous",
                "{what}: served someone's session: {read:?}"
            );
        }
        let expected = match self.expect {
            Expect::DeadId(_) => Calls::ONE_LOAD,
            Expect::Fresh | Expect::FreshOrRefused => Calls::default(),
        };
        assert_eq!(
            world.store.take_calls(),
            expected,
            "{what}: a read-only page costs at most the lookup of a dead id, and never a write"
        );

        let write = raw_get(target.app.addr(), "/counter", &self.header, what).await;
        if !self.served(&write) {
            assert_eq!(world.store.take_calls(), Calls::default(), "{what}");
            return;
        }
        assert_eq!(
            write.body, "1",
            "{what}: counted on in someone's session: {write:?}"
        );
        assert!(
            write.set_cookies.len() == 1 && !write.is_removal(),
            "{what}: expected one fresh session cookie: {write:?}"
        );
        let issued = write.issued();
        assert_ne!(
            session_id_of(&issued),
            target.victim_id.encode(),
            "{what}: the server adopted the victim's id"
        );
        let dead = match self.expect {
            Expect::DeadId(dead) => Some(dead),
            Expect::Fresh | Expect::FreshOrRefused => None,
        };
        assert_eq!(
            world.store.take_calls(),
            Calls {
                load: usize::from(dead.is_some()),
                create: 1,
                ..Calls::default()
            },
            "{what}: a page that writes creates one fresh session, after at most the lookup of a dead id"
        );
        if let Some(dead) = dead {
            assert_ne!(
                session_id_of(&issued),
                dead.encode(),
                "{what}: the server adopted an id it does not hold"
            );
            assert_eq!(
                world.store.load(&dead).await.unwrap(),
                None,
                "{what}: a session was created under the attacker's id"
            );
            world.store.take_calls();
        }
    }

    /// Whether the server served `reply` (true) or refused it with a clean
    /// 4xx, which only a cookie malformed at the HTTP level may get.
    /// Anything else, a 5xx above all, fails the test.
    fn served(&self, reply: &Reply) -> bool {
        let what = self.what;
        if reply.status == 200 {
            return true;
        }
        assert!(
            self.expect == Expect::FreshOrRefused && (400..500).contains(&reply.status),
            "{what}: answered {}: {reply:?}",
            reply.status
        );
        false
    }
}

/// Every cookie of one hostile list (forged and foreign signatures,
/// malformed values, dead ids, many and huge cookies, bytes that are not
/// text; each case named in the failure it causes) is sent to a page that reads the session and to
/// one that writes it. Each gets the answer a stranger gets, or, when it is
/// malformed at the HTTP level, a clean 4xx; never a 5xx and never someone
/// else's session. A cookie that does not verify costs no store call at
/// all, so the id inside it is never looked up; a validly signed cookie for
/// a dead or never-issued id costs one lookup, and a page that writes then
/// gets a fresh id: the server never creates a session under an id it did
/// not mint (strict mode). The read-only page writes nothing. The victim's
/// session is unchanged by all of it. (That a stolen cookie ends at the
/// absolute timeout however active it is kept is
/// [`absolute_timeout_ends_even_an_active_session`](super::absolute_timeout_ends_even_an_active_session).)
pub async fn hostile_cookies_get_a_fresh_session_and_touch_no_one_elses(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let target = Target::set_up(&world).await;
    let cases = hostile_cookies(&target, &world.key);
    // What the victim's session holds. Not `expires_at`: a composite store
    // may answer from either copy, whose expiries differ by the
    // milliseconds between their writes.
    let content =
        |record: Option<Record>| record.map(|record| (record.data, record.version, record.owner));
    let victim_before = content(world.store.load(&target.victim_id).await.unwrap());
    assert!(victim_before.is_some(), "the victim's session was stored");
    world.store.take_calls();
    for case in &cases {
        case.check(&world, &target).await;
    }
    assert_eq!(
        content(world.store.load(&target.victim_id).await.unwrap()),
        victim_before,
        "the hostile cookies changed the victim's session"
    );
    let (app, victim) = (&target.app, Some(target.victim.as_str()));
    world.get(app, "/whoami", victim).await.assert_ok("ada");
    world.get(app, "/read", victim).await.assert_ok("1");
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
