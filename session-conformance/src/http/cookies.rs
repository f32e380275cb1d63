//! Scenarios of the cookie itself: hostile cookies, oversized headers and
//! key rotation.

use std::{sync::Arc, time::Duration};

use reqwest::header::{HeaderValue, COOKIE};
use session_core::{
    CookieCodec, CookieConfig, Key, KeyRing, Record, SessionId, SessionManager, SessionStore,
};

use super::{
    harness::{raw_get, send, session_id_of, World},
    TestApp,
};
use crate::{instrumented::Calls, store::StoreFactory};

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
                .idle_timeout(IDLE)
                .absolute_timeout(ABSOLUTE),
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
        .serve(SessionManager::builder(Arc::clone(&world.store), ring).clock(world.clock.clone()))
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
            SessionManager::builder(Arc::clone(&world.store), new_key).clock(world.clock.clone()),
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
