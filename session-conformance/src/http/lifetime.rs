//! Scenarios of one session's own lifetime ("remember me").

use std::time::Duration;

use super::{
    harness::{Reply, World},
    RunningApp, TestApp,
};
use crate::store::StoreFactory;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// The idle timeout `/remember-me` asks for.
pub(super) const REMEMBER_IDLE: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// The absolute timeout `/remember-me` asks for.
pub(super) const REMEMBER_ABSOLUTE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The manager's own timeouts in these scenarios.
const IDLE: Duration = Duration::from_secs(600);
const ABSOLUTE: Duration = Duration::from_secs(3600);

/// A manager with the short defaults, allowing remember-me lifetimes.
async fn serve_allowing_remember_me(world: &World<'_>) -> RunningApp {
    world
        .serve(
            world
                .manager()
                .with_idle_timeout(IDLE)
                .with_absolute_timeout(ABSOLUTE)
                .with_max_idle_timeout(REMEMBER_IDLE)
                .with_max_absolute_timeout(REMEMBER_ABSOLUTE),
        )
        .await
}

/// Asserts the reply's cookie `Max-Age` is `expected`, give or take the
/// two seconds a store keeping whole seconds (Memcached) may move it.
fn assert_max_age(reply: &Reply, expected: Duration) {
    let max_age = reply
        .max_age()
        .unwrap_or_else(|| panic!("expected a persistent cookie: {reply:?}"));
    assert!(
        max_age.abs_diff(expected.as_secs()) <= 2,
        "Max-Age {max_age} s, expected {} s: {reply:?}",
        expected.as_secs()
    );
}

/// A user who ticked "remember me" keeps their session for days, on any
/// server, while a normal login on the same servers ends after the
/// manager's short timeouts. The lifetime travels with the record: a
/// second server (its own manager over the same store) applies the
/// session's idle timeout when it slides the expiry, and the session's
/// absolute timeout when it ends it. The cookie is persistent for the
/// remember-me session only, and its `Max-Age` follows the session's
/// expiry: the idle timeout after each slide, then what is left before
/// the absolute cap.
pub async fn remember_me_outlives_a_normal_session_on_another_server(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let first = serve_allowing_remember_me(&world).await;
    let second = serve_allowing_remember_me(&world).await;

    let normal = world.get(&first, "/login", None).await;
    assert_eq!(
        normal.max_age(),
        None,
        "a normal login gets a browser-session cookie: {normal:?}"
    );
    let normal = normal.issued();
    let remembered = world.get(&first, "/remember-me", None).await;
    remembered.assert_ok("ok");
    assert_max_age(&remembered, REMEMBER_IDLE);
    let remembered = remembered.issued();

    // Past both of the manager's timeouts: the normal session is gone on
    // the other server, the remembered one is not.
    world.clock.advance(ABSOLUTE + Duration::from_secs(1));
    let reply = world.get(&second, "/whoami", Some(&normal)).await;
    reply.assert_ok("anonymous");
    assert!(reply.is_removal(), "{reply:?}");
    let reply = world.get(&second, "/whoami", Some(&remembered)).await;
    reply.assert_ok("ada");
    assert_max_age(&reply, REMEMBER_IDLE - ABSOLUTE - Duration::from_secs(1));

    // 13 days idle is within its 14: the read slides it by 14 more days.
    world.clock.advance(13 * DAY);
    let reply = world.get(&second, "/whoami", Some(&remembered)).await;
    reply.assert_ok("ada");
    assert_max_age(&reply, REMEMBER_IDLE);
    assert_eq!(
        reply.issued(),
        remembered,
        "the id stays; only Max-Age moves"
    );

    // 13 more: 26 days and an hour since login, and the absolute 30 caps
    // the slide.
    world.clock.advance(13 * DAY);
    let reply = world.get(&first, "/whoami", Some(&remembered)).await;
    reply.assert_ok("ada");
    let left = REMEMBER_ABSOLUTE - 26 * DAY - ABSOLUTE - Duration::from_secs(1);
    assert_max_age(&reply, left);

    // A second past the absolute timeout, however active: gone.
    world.clock.advance(left + Duration::from_secs(1));
    let reply = world.get(&second, "/whoami", Some(&remembered)).await;
    reply.assert_ok("anonymous");
    assert!(reply.is_removal(), "{reply:?}");
}

/// A manager refuses a lifetime over its maximums (by default its own
/// timeouts): the login still works, on the manager's timeouts and a
/// browser-session cookie. A lifetime stored by a manager with higher
/// maximums is held to a manager with lower ones: its absolute cap at
/// once, and its cookie's `Max-Age` says so.
pub async fn remember_me_lifetime_is_bounded_by_the_managers_maximums(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let strict = world
        .serve(
            world
                .manager()
                .with_idle_timeout(IDLE)
                .with_absolute_timeout(ABSOLUTE),
        )
        .await;
    let refused = world.get(&strict, "/remember-me", None).await;
    refused.assert_ok("refused");
    assert_eq!(refused.max_age(), None, "{refused:?}");
    let refused = refused.issued();
    world.clock.advance(IDLE + Duration::from_secs(1));
    world
        .get(&strict, "/whoami", Some(&refused))
        .await
        .assert_ok("anonymous");

    let lenient = serve_allowing_remember_me(&world).await;
    let remembered = world.get(&lenient, "/remember-me", None).await;
    remembered.assert_ok("ok");
    let remembered = remembered.issued();
    let reply = world.get(&strict, "/whoami", Some(&remembered)).await;
    reply.assert_ok("ada");
    assert_max_age(&reply, ABSOLUTE);
    world.clock.advance(ABSOLUTE + Duration::from_secs(1));
    world
        .get(&strict, "/whoami", Some(&remembered))
        .await
        .assert_ok("anonymous");
    // The lenient server agrees it is alive: the lifetime was stored, not
    // lost, and the strict server only held it to its own maximums.
    world
        .get(&lenient, "/whoami", Some(&remembered))
        .await
        .assert_ok("ada");
}
