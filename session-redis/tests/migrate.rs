//! Migration from actix-session's and tower-sessions' Redis records on a
//! real Redis: parallel first contacts end in one session, and an old
//! record that is gone, corrupt or too large gives a fresh session, never
//! a 503. (The peers writing their own records: `migration-tests/`.)

use std::sync::Arc;

use session_conformance::{
    race::{Gate, GatedStore, Op},
    testkit::RedisServer,
};
use session_core::{
    manager::{Finish, SessionManagerBuilder},
    Key, Lifetime, Session, SessionManager,
};
use session_redis::{
    migrate::{CookieSecurity, LegacyConfig, LegacyRedisSessions, PeerLibrary},
    RedisConfig, RedisStore,
};

/// An actix-session key, as its `RedisSessionStore` makes them.
const OLD_KEY: &str = "Zq3dE0vW9bC2xYh7Lk8mN1pR4sT6uV5wX0yZa1B2c3D4e5F6g7H8i9J0kL1mN2oP";

/// An old session in actix-session's format: JSON of JSON texts.
fn write_old(redis: &RedisServer, json: &str) {
    assert_eq!(redis.cli(&["SET", OLD_KEY, json, "EX", "3600"]), "OK");
}

/// Plain cookies keep the test on the claim; `migration-tests/` covers
/// the peers' signed and private cookies.
fn legacy_config() -> LegacyConfig {
    let mut config = LegacyConfig::new(PeerLibrary::ActixSession);
    config.cookie_security = Some(CookieSecurity::Plain);
    config
}

async fn manager_over(
    redis: &RedisServer,
    config: LegacyConfig,
) -> (SessionManager, Arc<GatedStore>) {
    manager_with(redis, config, |builder| builder).await
}

/// [`manager_over`] with the builder changed by `configure` first.
async fn manager_with(
    redis: &RedisServer,
    config: LegacyConfig,
    configure: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder,
) -> (SessionManager, Arc<GatedStore>) {
    let store = RedisStore::connect(RedisConfig::from_url(&redis.url()).unwrap())
        .await
        .unwrap();
    let legacy = LegacyRedisSessions::new(&store, config).unwrap();
    let gated = Arc::new(GatedStore::new(Arc::new(store)));
    let builder =
        SessionManager::builder(Arc::clone(&gated), Key::generate()).with_legacy_sessions(legacy);
    let manager = configure(builder).build().unwrap();
    (manager, gated)
}

fn old_cookie() -> String {
    format!("id={OLD_KEY}")
}

fn our_cookie(finish: &Finish) -> String {
    let Finish::Respond {
        set_cookie: Some(set_cookie),
    } = finish
    else {
        panic!("expected our cookie, got {finish:?}");
    };
    assert!(set_cookie.starts_with("session="), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Request A on `cookie`: `work` runs on its session in a task, and this
/// returns once A's claim of the old session is held just before it
/// stores it (release the gate to let A go on).
async fn held_first_contact<T, F>(
    manager: &SessionManager,
    gated: &GatedStore,
    cookie: &str,
    work: impl FnOnce(Session) -> F,
) -> (Gate, tokio::task::JoinHandle<T>)
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut create = gated.hold(Op::Create.before());
    let a = manager.start([cookie.as_bytes()]);
    let task = tokio::spawn(work(a));
    create.reached().await;
    (create, task)
}

#[tokio::test]
async fn parallel_first_contacts_end_in_one_session_with_every_write() {
    let redis = RedisServer::start();
    write_old(&redis, r#"{"user":"\"ada\""}"#);
    let (manager, gated) = manager_over(&redis, legacy_config()).await;
    let cookie = old_cookie();

    // A claims the old session and is held just before storing it.
    let (create, a_task) = held_first_contact(&manager, &gated, &cookie, |a| async move {
        a.insert("a", 1).await.unwrap();
        a.finish().await
    })
    .await;

    // B, the browser's parallel request, runs to the end meanwhile.
    let b = manager.start([cookie.as_bytes()]);
    assert_eq!(
        b.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    b.insert("b", 2).await.unwrap();
    let b_cookie = our_cookie(&b.finish().await);

    // A goes on: the id is taken by B's copy, so A joins that session.
    create.release();
    let a_cookie = our_cookie(&a_task.await.unwrap());
    assert_eq!(a_cookie, b_cookie, "one session, not two");

    let after = manager.start([a_cookie.as_bytes()]);
    assert_eq!(
        after.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(after.get::<i32>("a").await.unwrap(), Some(1));
    assert_eq!(after.get::<i32>("b").await.unwrap(), Some(2));
    assert_eq!(
        redis.cli(&["EXISTS", OLD_KEY]),
        "0",
        "the old record is gone"
    );
}

#[tokio::test]
async fn a_request_after_the_migration_is_forwarded_to_the_same_session() {
    let redis = RedisServer::start();
    write_old(&redis, r#"{"user":"\"ada\""}"#);
    let (manager, _) = manager_over(&redis, legacy_config()).await;
    let cookie = old_cookie();

    let first = manager.start([cookie.as_bytes()]);
    first.insert("step", 1).await.unwrap();
    let ours = our_cookie(&first.finish().await);

    // The old record is gone, but a request sent before the browser saw
    // our cookie still reaches the migrated session.
    let late = manager.start([cookie.as_bytes()]);
    assert_eq!(late.get::<i32>("step").await.unwrap(), Some(1));
    assert_eq!(our_cookie(&late.finish().await), ours);
}

/// Starts one request with the old cookie and expects a fresh, empty
/// session and a response that is not a 503.
async fn fresh_session(manager: &SessionManager) {
    let cookie = old_cookie();
    let session = manager.start([cookie.as_bytes()]);
    assert_eq!(session.get::<String>("user").await.unwrap(), None);
    session.insert("new", true).await.unwrap();
    our_cookie(&session.finish().await);
}

#[tokio::test]
async fn a_gone_corrupt_or_oversized_old_record_gives_a_fresh_session() {
    let redis = RedisServer::start();
    let (manager, _) = manager_over(&redis, legacy_config()).await;
    // Gone (expired, or never there).
    fresh_session(&manager).await;

    // Corrupt: not JSON, and JSON whose values are not JSON texts.
    for corrupt in ["not json at all", r#"{"user":"ada"}"#] {
        let redis = RedisServer::start();
        write_old(&redis, corrupt);
        let (manager, _) = manager_over(&redis, legacy_config()).await;
        fresh_session(&manager).await;
    }

    // Over `max_record_bytes`: not moved, and not a 503.
    let redis = RedisServer::start();
    write_old(&redis, &format!(r#"{{"blob":"\"{}\""}}"#, "x".repeat(2048)));
    let mut config = legacy_config();
    config.max_record_bytes = 1024;
    let (manager, _) = manager_over(&redis, config).await;
    fresh_session(&manager).await;
}

#[tokio::test]
async fn a_forged_cookie_costs_no_claim() {
    let redis = RedisServer::start();
    write_old(&redis, r#"{"user":"\"ada\""}"#);
    let mut config = LegacyConfig::new(PeerLibrary::ActixSession);
    config.key = Some(base64_of_64_bytes().into());
    let (manager, _) = manager_over(&redis, config).await;
    // The bare key where a private (encrypted) cookie is expected.
    fresh_session(&manager).await;
    assert_eq!(redis.cli(&["EXISTS", OLD_KEY]), "1", "nothing was claimed");
}

fn base64_of_64_bytes() -> String {
    // 64 bytes of 0x2a, in standard base64.
    "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg=="
        .to_owned()
}

#[tokio::test]
async fn a_logout_during_a_parallel_migration_is_not_undone() {
    let redis = RedisServer::start();
    write_old(&redis, r#"{"user":"\"ada\""}"#);
    let (manager, gated) = manager_over(&redis, legacy_config()).await;
    let cookie = old_cookie();

    // A claims the old session (with its data) and is held before storing it.
    let (create, a_task) = held_first_contact(&manager, &gated, &cookie, |a| async move {
        let user = a.get::<String>("user").await.unwrap();
        (user, a.finish().await)
    })
    .await;

    // B migrates the same session, then the user logs out.
    let b = manager.start([cookie.as_bytes()]);
    assert_eq!(
        b.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
    let id = b.id().await.unwrap().unwrap();
    b.destroy().await.unwrap();
    let _ = b.finish().await;

    // A's copy would bring the ended session back: it is dropped instead.
    create.release();
    let (user, finish) = a_task.await.unwrap();
    assert_eq!(user, None, "the logged-out session came back");
    assert!(matches!(finish, Finish::Respond { .. }), "{finish:?}");
    assert!(
        manager.store().load(&id).await.unwrap().is_none(),
        "the ended session stays ended"
    );
}

#[tokio::test]
async fn a_logout_on_first_contact_ends_the_old_session_too() {
    let redis = RedisServer::start();
    write_old(&redis, r#"{"user":"\"ada\""}"#);
    let (manager, _) = manager_over(&redis, legacy_config()).await;
    let cookie = old_cookie();

    let logout = manager.start([cookie.as_bytes()]);
    logout.destroy().await.unwrap();
    let finish = logout.finish().await;
    let Finish::Respond {
        set_cookie: Some(removal),
    } = &finish
    else {
        panic!("{finish:?}");
    };
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(
        logout.legacy_cookie_removal().unwrap().starts_with("id=;"),
        "the old cookie is cleared"
    );
    assert_eq!(redis.cli(&["EXISTS", OLD_KEY]), "0");

    // The old cookie, sent again, leads nowhere.
    let again = manager.start([cookie.as_bytes()]);
    assert_eq!(again.get::<String>("user").await.unwrap(), None);
}

#[tokio::test]
async fn a_request_that_joins_a_parallel_migration_keeps_the_lifetime_set_since() {
    let redis = RedisServer::start();
    write_old(&redis, r#"{"user":"\"ada\""}"#);
    let day = std::time::Duration::from_secs(24 * 3600);
    let (manager, gated) = manager_with(&redis, legacy_config(), |builder| {
        builder
            .with_max_idle_timeout(30 * day)
            .with_max_absolute_timeout(30 * day)
    })
    .await;
    let cookie = old_cookie();
    let remember = Lifetime::new(14 * day, 30 * day)
        .unwrap()
        .with_persistent(true);

    // A claims the old session and is held just before storing it.
    let (create, a_task) = held_first_contact(&manager, &gated, &cookie, |a| async move {
        a.insert("a", 1).await.unwrap();
        let lifetime = a.lifetime().await.unwrap();
        (lifetime, a.finish().await)
    })
    .await;

    // B migrates the session first, and the user ticks "remember me".
    let b = manager.start([cookie.as_bytes()]);
    b.set_lifetime(remember).await.unwrap();
    let id = b.id().await.unwrap().unwrap();
    let _ = b.finish().await;

    // A joins B's session: it loads the lifetime with the rest, and its
    // commit does not shorten the session to the manager's timeouts.
    create.release();
    let (lifetime, _) = a_task.await.unwrap();
    assert_eq!(
        lifetime,
        Some(remember),
        "the joined session lost its lifetime"
    );
    let record = manager.store().load(&id).await.unwrap().unwrap();
    assert_eq!(record.lifetime, Some(remember));
    let idle_left = record
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(idle_left > 13 * day, "expires in {idle_left:?}");
}
