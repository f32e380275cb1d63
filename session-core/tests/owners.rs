//! Owners at the manager level: what `set_owner` stores, how the expiry
//! stays within the owner's index entry, and "log out everywhere" racing a
//! request that is changing its session's id.

mod support;

use std::{sync::Arc, time::Duration};
use support::{id_of, set_cookie};

use session_conformance::{Calls, InstrumentedStore};
use session_core::{
    clock::ManualClock, manager::SessionManagerBuilder, memory::MemoryStore, store::SessionStore,
    Key, Session, SessionError, SessionManager,
};

const IDLE: Duration = Duration::from_secs(30 * 60);
const ABSOLUTE: Duration = Duration::from_secs(8 * 60 * 60);

struct Fixture {
    store: Arc<InstrumentedStore>,
    key: Key,
    clock: ManualClock,
    manager: SessionManager,
}

impl Fixture {
    fn new() -> Self {
        let store = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
        let key = Key::generate();
        let clock = ManualClock::starting_now();
        let manager = Self::builder(&store, &key, &clock).build().unwrap();
        Self {
            store,
            key,
            clock,
            manager,
        }
    }

    fn builder(
        store: &Arc<InstrumentedStore>,
        key: &Key,
        clock: &ManualClock,
    ) -> SessionManagerBuilder {
        SessionManager::builder(Arc::clone(store), key.clone())
            .with_clock(clock.clone())
            .with_idle_timeout(IDLE)
            .with_absolute_timeout(ABSOLUTE)
    }

    fn request(&self, cookie: Option<&str>) -> Session {
        self.manager.start(cookie.map(str::as_bytes))
    }

    /// A finished request that logged in as `user`, and its cookie.
    async fn log_in(&self, user: &str) -> String {
        let session = self.request(None);
        session.insert("user", user).await.unwrap();
        session.set_owner(user).await.unwrap();
        let cookie = set_cookie(session.finish().await).expect("a new session gets a cookie");
        self.store.take_calls();
        cookie
    }

    async fn stored(&self, cookie: &str) -> Option<session_core::store::Record> {
        self.store.load(&id_of(cookie)).await.unwrap()
    }
}

#[tokio::test]
async fn an_owner_alone_is_worth_storing_and_lasts_until_the_absolute_deadline() {
    let fixture = Fixture::new();
    let session = fixture.request(None);
    session.set_owner("ada").await.unwrap();
    let cookie = set_cookie(session.finish().await).expect("an owned session is stored");

    let record = fixture.stored(&cookie).await.unwrap();
    let owner = record.owner.expect("the owner is stored");
    assert_eq!(owner.name, "ada");
    assert_eq!(owner.until, record.created_at + ABSOLUTE);
    // Nothing but the login time the per-owner cap ranks sessions by.
    assert!(
        record
            .data
            .keys()
            .all(|key| key == session_core::devices::LOGIN_KEY),
        "{:?}",
        record.data
    );
}

#[tokio::test]
async fn setting_the_same_owner_writes_nothing_and_a_new_one_commits_once() {
    let fixture = Fixture::new();
    let cookie = fixture.log_in("ada").await;

    let session = fixture.request(Some(&cookie));
    session.set_owner("ada").await.unwrap();
    let _ = session.finish().await;
    assert_eq!(fixture.store.take_calls(), Calls::ONE_LOAD);

    let session = fixture.request(Some(&cookie));
    session.set_owner("bob").await.unwrap();
    let _ = session.finish().await;
    assert_eq!(
        fixture.store.take_calls(),
        Calls {
            load: 1,
            commit: 1,
            ..Calls::default()
        }
    );
    let record = fixture.stored(&cookie).await.unwrap();
    assert_eq!(record.owner.unwrap().name, "bob");
}

#[tokio::test]
async fn clear_and_clear_owner_leave_the_session_ownerless() {
    let fixture = Fixture::new();
    for how in ["clear", "clear_owner"] {
        let cookie = fixture.log_in("ada").await;
        let session = fixture.request(Some(&cookie));
        if how == "clear" {
            session.clear().await.unwrap();
        } else {
            session.clear_owner().await.unwrap();
        }
        assert_eq!(session.owner().await.unwrap(), None);
        let _ = session.finish().await;
        let record = fixture.stored(&cookie).await.unwrap();
        assert_eq!(record.owner, None, "{how} kept the owner");
        assert_eq!(fixture.manager.end_all_for("ada").await.unwrap(), 0);
    }
}

#[tokio::test]
async fn invalid_owner_names_are_refused_and_end_nothing() {
    let fixture = Fixture::new();
    let session = fixture.request(None);
    for name in [String::new(), "x".repeat(257)] {
        assert!(matches!(
            session.set_owner(name).await,
            Err(SessionError::Owner(_))
        ));
    }
    assert_eq!(fixture.manager.end_all_for("").await.unwrap(), 0);
    assert_eq!(fixture.store.take_calls(), Calls::default());
}

/// A manager restarted with a longer absolute timeout must not let an owned
/// session outlive its index entry, or ending the owner would miss it.
#[tokio::test]
async fn the_expiry_never_passes_the_owners_until() {
    let fixture = Fixture::new();
    let cookie = fixture.log_in("ada").await;
    let until = fixture.stored(&cookie).await.unwrap().owner.unwrap().until;

    let longer = Fixture::builder(&fixture.store, &fixture.key, &fixture.clock)
        .with_idle_timeout(ABSOLUTE)
        .with_absolute_timeout(ABSOLUTE * 3)
        .build()
        .unwrap();
    fixture.clock.advance(Duration::from_secs(60 * 60));
    let session = longer.start([cookie.as_bytes()]);
    session.insert("n", 1).await.unwrap();
    let _ = session.finish().await;
    let record = fixture.stored(&cookie).await.unwrap();
    assert!(
        record.expires_at <= until,
        "expires {:?} after the owner's until {until:?}",
        record.expires_at
    );
}

#[tokio::test]
async fn end_all_makes_a_second_pass_that_ends_nothing() {
    let fixture = Fixture::new();
    let cookies = [
        fixture.log_in("ada").await,
        fixture.log_in("ada").await,
        fixture.log_in("bob").await,
    ];
    assert_eq!(fixture.manager.end_all_for("ada").await.unwrap(), 2);
    assert_eq!(
        fixture.store.take_calls(),
        Calls {
            delete_by_owner: 2,
            ..Calls::default()
        }
    );
    assert!(fixture.stored(&cookies[0]).await.is_none());
    assert!(fixture.stored(&cookies[1]).await.is_none());
    assert!(fixture.stored(&cookies[2]).await.is_some());
}

/// A request loaded ada's session and is moving it to a new id when ada's
/// sessions are ended: the new id must not survive as a way back in.
#[tokio::test]
async fn a_session_ended_while_its_id_cycles_does_not_survive_under_the_new_id() {
    let fixture = Fixture::new();
    let cookie = fixture.log_in("ada").await;

    let session = fixture.request(Some(&cookie));
    session.cycle_id().await.unwrap();
    let new_id = session.id().await.unwrap().unwrap();
    assert_eq!(fixture.manager.end_all_for("ada").await.unwrap(), 1);

    let finish = session.finish().await;
    let removal = set_cookie(finish).expect("the browser is told to drop the cookie");
    assert_eq!(removal, format!("{}=", fixture.manager.codec().name()));
    assert_eq!(fixture.store.load(&new_id).await.unwrap(), None);
    assert!(fixture.stored(&cookie).await.is_none());
}

#[tokio::test]
async fn a_cycled_owned_session_keeps_its_owner_and_stays_endable() {
    let fixture = Fixture::new();
    let cookie = fixture.log_in("ada").await;
    let until = fixture.stored(&cookie).await.unwrap().owner.unwrap().until;

    let session = fixture.request(Some(&cookie));
    session.cycle_id().await.unwrap();
    let cycled = set_cookie(session.finish().await).expect("a new cookie");
    let record = fixture.stored(&cycled).await.unwrap();
    assert_eq!(
        record.owner.as_ref().map(|o| (o.name.as_str(), o.until)),
        Some(("ada", until))
    );
    assert!(fixture.stored(&cookie).await.is_none());

    assert_eq!(fixture.manager.end_all_for("ada").await.unwrap(), 1);
    assert!(fixture.stored(&cycled).await.is_none());
}

#[tokio::test]
async fn log_out_everywhere_ends_the_owner_and_clears_this_cookie() {
    let fixture = Fixture::new();
    let laptop = fixture.log_in("ada").await;
    let phone = fixture.log_in("ada").await;

    let session = fixture.request(Some(&laptop));
    assert_eq!(session.log_out_everywhere().await.unwrap(), 2);
    let removal = set_cookie(session.finish().await).unwrap();
    assert_eq!(removal, format!("{}=", fixture.manager.codec().name()));
    assert!(fixture.stored(&phone).await.is_none());

    // Without an owner it is a plain logout.
    let anonymous = fixture.request(None);
    anonymous.insert("k", 1).await.unwrap();
    let cookie = set_cookie(anonymous.finish().await).unwrap();
    let session = fixture.request(Some(&cookie));
    assert_eq!(session.log_out_everywhere().await.unwrap(), 0);
    let _ = session.finish().await;
    assert!(fixture.stored(&cookie).await.is_none());
}
