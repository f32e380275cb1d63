//! Scenarios of a session's ordinary life: counting, the cookie's attributes,
//! login, logout and read-only pages.

use session_core::{store::SessionStore, CookieConfig, SessionId};

use super::{
    harness::{client, send, session_id_of, World},
    TestApp,
};
use crate::{instrumented::Calls, store::StoreFactory};

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
