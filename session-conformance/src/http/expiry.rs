//! Scenarios of the idle and absolute timeouts.

use std::time::Duration;

use super::{harness::World, TestApp};
use crate::{instrumented::Calls, store::StoreFactory};

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

/// A session kept busy still ends at the absolute timeout, to the second:
/// one kept busy by writes, and one kept alive by reads alone, as a stolen
/// cookie replayed often would be. Each is used well inside the idle
/// timeout, so the idle timeout cannot be what ends them.
pub async fn absolute_timeout_ends_even_an_active_session(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    const IDLE: Duration = Duration::from_secs(600);
    const ABSOLUTE: Duration = Duration::from_secs(1800);
    let world = World::new(app, factory).await;
    let app = world.serve_with_timeouts(IDLE, ABSOLUTE).await;
    let writer = world.get(&app, "/counter", None).await.issued();
    let reader = world.get(&app, "/login", None).await.issued();

    for expected in ["2", "3", "4"] {
        world.clock.advance(IDLE * 9 / 10);
        world
            .get(&app, "/counter", Some(&writer))
            .await
            .assert_ok(expected);
        world
            .get(&app, "/whoami", Some(&reader))
            .await
            .assert_ok("ada");
    }
    // 27 minutes in, used a moment ago: both live to a second before 30...
    world
        .clock
        .advance(ABSOLUTE - IDLE * 27 / 10 - Duration::from_secs(1));
    world.get(&app, "/read", Some(&writer)).await.assert_ok("4");
    world
        .get(&app, "/whoami", Some(&reader))
        .await
        .assert_ok("ada");
    // ...and a second past it, both are dead, at the cost of one load each.
    world.clock.advance(Duration::from_secs(2));
    for (cookie, path, empty) in [
        (&writer, "/read", "none"),
        (&reader, "/whoami", "anonymous"),
    ] {
        world.store.take_calls();
        let reply = world.get(&app, path, Some(cookie)).await;
        reply.assert_ok(empty);
        assert!(
            reply.is_removal(),
            "a dead session's cookie is cleared: {reply:?}"
        );
        assert_eq!(world.store.take_calls(), Calls::ONE_LOAD);
    }
}
