//! Scenarios of the idle and absolute timeouts.

use std::time::Duration;

use super::{harness::World, TestApp};
use crate::{instrumented::Calls, store::StoreFactory};

/// A session used within the idle timeout slides forward (a touch once past
/// half of it); one left alone longer than the idle timeout is gone.
pub async fn idle_timeout_ends_an_unused_session(app: &dyn TestApp, factory: &dyn StoreFactory) {
    const IDLE: Duration = Duration::from_secs(600);
    let world = World::new(app, factory).await;
    let app = world.serve(world.manager().idle_timeout(IDLE)).await;
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
                .idle_timeout(IDLE)
                .absolute_timeout(ABSOLUTE),
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
