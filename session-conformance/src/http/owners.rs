//! Scenarios of sessions that belong to a user: log out everywhere.

use session_core::{store::SessionStore, SessionId};

use super::{
    harness::{session_id_of, World},
    TestApp,
};
use crate::store::StoreFactory;

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
