//! Scenarios of a user's devices: the "your devices" page, ending one
//! device, logging out the others, and the per-owner cap.

use std::time::Duration;

use super::{
    harness::{session_id_of, World},
    RunningApp, TestApp,
};
use crate::store::StoreFactory;

/// One line of `/devices`: `handle label current`.
#[derive(Debug)]
struct Line {
    handle: String,
    label: String,
    current: bool,
}

fn lines(body: &str) -> Vec<Line> {
    body.lines()
        .map(|line| {
            let mut parts = line.split(' ');
            Line {
                handle: parts.next().unwrap_or_default().to_owned(),
                label: parts.next().unwrap_or_default().to_owned(),
                current: parts.next() == Some("current"),
            }
        })
        .collect()
}

/// Logs `user` in on `server` a second after the last login, so pages
/// list logins in their order, and labels the session; its cookie.
async fn login(world: &World<'_>, server: &RunningApp, user: &str, label: &str) -> String {
    world.clock.advance(Duration::from_secs(1));
    let cookie = world
        .get(server, &format!("/login-as/{user}"), None)
        .await
        .issued();
    world
        .get(server, &format!("/label/{label}"), Some(&cookie))
        .await
        .assert_ok("ok");
    cookie
}

/// Ada logs in on a laptop, a phone and a tablet, over two app servers,
/// labelling each; bob on his own phone. Her phone's devices page lists
/// the three, newest login first, the phone marked current, by handles
/// that are not session ids. From it she ends the laptop (its next request
/// is anonymous), fails to end bob's phone by its handle, then logs out the
/// other sessions: the tablet goes, the phone stays, bob stays. A store
/// that cannot list owners' sessions answers 503.
pub async fn your_devices_page_lists_ends_one_and_logs_out_the_others(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let (one, two) = (world.serve_default().await, world.serve_default().await);
    let laptop = login(&world, &one, "ada", "laptop").await;
    let phone = login(&world, &two, "ada", "phone").await;
    let tablet = login(&world, &one, "ada", "tablet").await;
    let bob = login(&world, &two, "bob", "bobs-phone").await;

    let page = world.get(&one, "/devices", Some(&phone)).await;
    if !factory.indexes_owners() {
        assert_eq!(page.status, 503, "{page:?}");
        return;
    }
    assert_eq!(page.status, 200, "{page:?}");
    let devices = lines(&page.body);
    let labels: Vec<&str> = devices.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, ["tablet", "phone", "laptop"], "{page:?}");
    let current: Vec<bool> = devices.iter().map(|d| d.current).collect();
    assert_eq!(current, [false, true, false], "{page:?}");
    for cookie in [&laptop, &phone, &tablet] {
        let id = session_id_of(cookie);
        assert!(
            !page.body.contains(id),
            "the page shows a session id: {page:?}"
        );
    }

    let bobs_page = world.get(&two, "/devices", Some(&bob)).await;
    let bobs_handle = lines(&bobs_page.body)[0].handle.clone();
    world
        .get(&two, &format!("/end-device/{bobs_handle}"), Some(&phone))
        .await
        .assert_ok("false");
    world
        .get(&one, "/whoami", Some(&bob))
        .await
        .assert_ok("bob");

    world
        .get(
            &two,
            &format!("/end-device/{}", devices[2].handle),
            Some(&phone),
        )
        .await
        .assert_ok("true");
    let ended = world.get(&one, "/whoami", Some(&laptop)).await;
    ended.assert_ok("anonymous");
    assert!(ended.is_removal(), "{ended:?}");

    world
        .get(&one, "/logout-others", Some(&phone))
        .await
        .assert_ok("1");
    world
        .get(&two, "/whoami", Some(&tablet))
        .await
        .assert_ok("anonymous");
    world
        .get(&one, "/whoami", Some(&phone))
        .await
        .assert_ok("ada");
    world
        .get(&two, "/whoami", Some(&bob))
        .await
        .assert_ok("bob");
    let page = world.get(&two, "/devices", Some(&phone)).await;
    let labels: Vec<String> = lines(&page.body).into_iter().map(|d| d.label).collect();
    assert_eq!(labels, ["phone"], "{page:?}");
}

/// With a cap of two sessions per user, on two app servers: ada's third
/// login logs out her first device, never the new one, and bob's session
/// is untouched. A store that cannot index owners refuses the config.
pub async fn the_owner_cap_logs_out_the_oldest_device(
    app: &dyn TestApp,
    factory: &dyn StoreFactory,
) {
    let world = World::new(app, factory).await;
    let capped = world.manager().with_max_sessions_per_owner(2);
    if !factory.indexes_owners() {
        let err = capped.build().unwrap_err();
        assert_eq!(err.key(), "max_sessions_per_owner");
        return;
    }
    let one = world.serve(capped).await;
    let two = world
        .serve(world.manager().with_max_sessions_per_owner(2))
        .await;
    let bob = world.get(&one, "/login-as/bob", None).await.issued();
    let mut ada = Vec::new();
    for server in [&one, &two, &one] {
        world.clock.advance(Duration::from_secs(1));
        let cookie = world.get(server, "/login-as/ada", None).await.issued();
        world
            .get(server, "/whoami", Some(&cookie))
            .await
            .assert_ok("ada");
        ada.push(cookie);
    }
    let first = world.get(&two, "/whoami", Some(&ada[0])).await;
    first.assert_ok("anonymous");
    assert!(first.is_removal(), "{first:?}");
    world
        .get(&one, "/whoami", Some(&ada[1]))
        .await
        .assert_ok("ada");
    world
        .get(&two, "/whoami", Some(&ada[2]))
        .await
        .assert_ok("ada");
    world
        .get(&two, "/whoami", Some(&bob))
        .await
        .assert_ok("bob");
}
