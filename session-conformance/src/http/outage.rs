//! Scenarios of a store that fails or hangs: the error policies and the
//! operation timeout.

use std::time::{Duration, Instant};

use session_core::{manager::SessionManagerBuilder, ErrorKind, ErrorPolicy};

use super::{harness::World, RunningApp, TestApp};
use crate::{
    instrumented::{Calls, Fault},
    store::StoreFactory,
};

/// While the store fails, requests that need it get a bare 503 (no body, no
/// cookie change) under the default policy; once it is back, the session is
/// exactly as before.
pub async fn store_outage_answers_503_and_overwrites_nothing(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let unavailable = Fault::Fail(ErrorKind::Unavailable);
    let (app, cookie) = a_session_then_an_outage(&world, world.manager(), unavailable).await;
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

    end_the_outage_and_find_the_session_intact(&world, &app, &cookie).await;
}

/// Under `TreatAsEmpty` a read during an outage sees an empty session and the
/// cookie is left alone; a write is still refused with 503; afterwards the
/// session is intact.
pub async fn treat_as_empty_policy_serves_reads_during_an_outage(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let manager = world.manager().with_error_policy(ErrorPolicy::TreatAsEmpty);
    let unavailable = Fault::Fail(ErrorKind::Unavailable);
    let (app, cookie) = a_session_then_an_outage(&world, manager, unavailable).await;
    let read = world.get(&app, "/read", Some(&cookie)).await;
    read.assert_ok("none");
    assert!(
        read.set_cookies.is_empty(),
        "the cookie must survive the outage: {read:?}"
    );
    let write = world.get(&app, "/counter", Some(&cookie)).await;
    assert_eq!((write.status, write.body.as_str()), (503, ""), "{write:?}");

    end_the_outage_and_find_the_session_intact(&world, &app, &cookie).await;
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
    let manager = world.manager().with_error_policy(ErrorPolicy::TreatAsEmpty);
    let reads_time_out = Fault::FailReads(ErrorKind::Timeout);
    let (app, cookie) = a_session_then_an_outage(&world, manager, reads_time_out).await;
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

    end_the_outage_and_find_the_session_intact(&world, &app, &cookie).await;
}

/// A store that never answers costs a request at most the operation timeout,
/// then a 503.
pub async fn hung_store_answers_within_the_operation_timeout(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    const OPERATION_TIMEOUT: Duration = Duration::from_millis(200);
    let world = World::new(app, factory).await;
    let manager = world.manager().with_operation_timeout(OPERATION_TIMEOUT);
    let (app, cookie) = a_session_then_an_outage(&world, manager, Fault::Hang).await;
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

    end_the_outage_and_find_the_session_intact(&world, &app, &cookie).await;
}

/// Serves `manager`, starts a session that counts 1, then makes the store
/// fail with `fault`: the app, and the session's cookie. The store's call
/// counts start at zero from there.
async fn a_session_then_an_outage(
    world: &World<'_>,
    manager: SessionManagerBuilder,
    fault: Fault,
) -> (RunningApp, String) {
    let app = world.serve(manager).await;
    let cookie = world.get(&app, "/counter", None).await.issued();
    world.store.take_calls();
    world.store.set_fault(Some(fault));
    (app, cookie)
}

/// Ends the outage and checks that the session, which counted 1 before it,
/// came through it as it was: it reads 1 and counts on to 2.
async fn end_the_outage_and_find_the_session_intact(
    world: &World<'_>,
    app: &RunningApp,
    cookie: &str,
) {
    world.store.set_fault(None);
    world.get(app, "/read", Some(cookie)).await.assert_ok("1");
    world
        .get(app, "/counter", Some(cookie))
        .await
        .assert_ok("2");
}
