//! Races between a request's `Session` handle and its store calls: loads
//! cancelled by the handler (`tokio::time::timeout`, `select!`) and loads
//! that fail under `ErrorPolicy::TreatAsEmpty`. Gates hold the chosen store
//! call, so every interleaving here is forced, never hoped for.
//!
//! What must hold: a failed or cancelled load never turns into an empty
//! session that a later write turns into a fresh cookie.

mod support;

use std::{future::Future, sync::Arc, time::Duration};
use support::{id_of, set_cookie};

use session_conformance::{
    race::{Gate, GatedStore, Op},
    Calls, Fault, InstrumentedStore,
};
use session_core::{
    manager::{Finish, SessionManagerBuilder},
    memory::MemoryStore,
    store::SessionStore,
    ErrorKind, ErrorPolicy, Key, Session, SessionError, SessionManager,
};

/// One app server: its manager over a gated store, over a counted store,
/// over memory. Calls a gate holds before the store are not counted.
struct Fixture {
    counted: Arc<InstrumentedStore>,
    gated: Arc<GatedStore>,
    manager: SessionManager,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|builder| builder)
    }

    fn treat_as_empty() -> Self {
        Self::with(|builder| builder.with_error_policy(ErrorPolicy::TreatAsEmpty))
    }

    fn with(configure: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder) -> Self {
        let counted = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
        let gated = Arc::new(GatedStore::new(counted.clone()));
        let builder = SessionManager::builder(Arc::clone(&gated), Key::generate());
        let manager = configure(builder).build().unwrap();
        Self {
            counted,
            gated,
            manager,
        }
    }

    fn request(&self, cookie: &str) -> Session {
        self.manager.start([cookie.as_bytes()])
    }

    /// A stored session holding `user = "ada"`, and its cookie.
    async fn logged_in(&self) -> String {
        let session = self.manager.start(std::iter::empty());
        session.insert("user", "ada").await.unwrap();
        let cookie = set_cookie(session.finish().await).expect("a new session gets a cookie");
        self.counted.take_calls();
        cookie
    }

    /// Holds the next load of the session `cookie` names, before the store.
    fn hold_load(&self, cookie: &str) -> Gate {
        self.gated.hold(Op::Load.before().on(id_of(cookie)))
    }

    /// The stored record's `user` and version, read past the gates and
    /// without counting.
    async fn stored(&self, cookie: &str) -> Option<(String, u64)> {
        let record = self.counted.load(&id_of(cookie)).await.unwrap();
        self.counted.take_calls();
        record.map(|record| (record.data["user"].clone(), record.version))
    }
}

/// Polls `call` until `gate` holds its store call, then drops it: what a
/// handler's `select!` does to a session call that loses the race.
async fn cancel_when_held<T>(gate: &mut Gate, call: impl Future<Output = T>) {
    tokio::select! {
        biased;
        () = gate.reached() => {}
        _ = call => panic!("the call finished although its store call was held"),
    }
}

#[tokio::test]
async fn a_get_cancelled_mid_load_leaves_the_session_unloaded_and_the_next_get_loads_again() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;
    let session = fixture.request(&cookie);

    let mut gate = fixture.hold_load(&cookie);
    cancel_when_held(&mut gate, session.get::<String>("user")).await;
    gate.release();

    assert_eq!(
        session.get::<String>("user").await.unwrap().as_deref(),
        Some("ada"),
        "a cancelled load must leave the session unloaded, not empty"
    );
    assert_eq!(fixture.counted.take_calls(), Calls::ONE_LOAD);
    assert_eq!(session.finish().await, Finish::Respond { set_cookie: None });
    assert_eq!(fixture.counted.take_calls(), Calls::default());
}

#[tokio::test]
async fn an_insert_after_a_load_cancelled_by_a_timeout_commits_to_the_existing_session() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;
    let (_, version) = fixture.stored(&cookie).await.unwrap();
    let session = fixture.request(&cookie);

    let mut gate = fixture.hold_load(&cookie);
    // The load is held until after the timeout, so the timeout always wins.
    let timed_out =
        tokio::time::timeout(Duration::from_millis(20), session.get::<String>("user")).await;
    assert!(timed_out.is_err(), "{timed_out:?}");
    assert!(gate.is_reached(), "the get was cancelled mid-load");
    gate.release();

    session.insert("cart", 3).await.unwrap();
    assert_eq!(
        set_cookie(session.finish().await),
        None,
        "the session keeps its cookie: no new session was created"
    );
    assert_eq!(
        fixture.counted.take_calls(),
        Calls {
            load: 1,
            commit: 1,
            ..Calls::default()
        }
    );
    let record = fixture
        .counted
        .load(&id_of(&cookie))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.data["user"], "\"ada\"");
    assert_eq!(record.data["cart"], "3");
    assert_eq!(record.version, version + 1);
}

#[tokio::test]
async fn a_change_cancelled_mid_load_is_not_applied_and_a_retry_commits_to_the_existing_session() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;
    let session = fixture.request(&cookie);

    let mut gate = fixture.hold_load(&cookie);
    cancel_when_held(&mut gate, session.insert("user", "eve")).await;
    gate.release();

    assert_eq!(
        session.get::<String>("user").await.unwrap().as_deref(),
        Some("ada"),
        "the cancelled insert did not happen"
    );
    session.insert("user", "bob").await.unwrap();
    assert_eq!(set_cookie(session.finish().await), None);
    assert_eq!(fixture.counted.calls().create, 0);
    assert_eq!(
        fixture
            .stored(&cookie)
            .await
            .map(|(user, _)| user)
            .as_deref(),
        Some("\"bob\"")
    );
}

#[tokio::test]
async fn a_finish_cancelled_mid_write_is_never_acknowledged_by_a_later_finish() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;
    let session = fixture.request(&cookie);
    session.insert("user", "bob").await.unwrap();

    let mut gate = fixture.gated.hold(Op::Commit.before().on(id_of(&cookie)));
    cancel_when_held(&mut gate, session.finish()).await;
    gate.release();

    // The commit may or may not have happened (here it did not): the
    // handle must not answer as if it had.
    assert_eq!(session.finish().await, Finish::Unavailable);
    assert!(matches!(
        session.insert("user", "eve").await,
        Err(SessionError::Finished)
    ));
}

#[tokio::test]
async fn under_treat_as_empty_a_write_after_a_failed_load_is_refused_and_the_cookie_stays() {
    let fixture = Fixture::treat_as_empty();
    let cookie = fixture.logged_in().await;
    let before = fixture.stored(&cookie).await;

    fixture
        .counted
        .set_fault(Some(Fault::FailReads(ErrorKind::Unavailable)));
    let session = fixture.request(&cookie);
    assert_eq!(
        session.get::<String>("user").await.unwrap(),
        None,
        "a read during the outage is served empty"
    );
    let err = session.insert("user", "eve").await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(
        session.finish().await,
        Finish::Unavailable,
        "the request answers 503, with no Set-Cookie"
    );
    assert_eq!(
        fixture.counted.take_calls(),
        Calls::ONE_LOAD,
        "nothing is created or written"
    );

    fixture.counted.set_fault(None);
    assert_eq!(fixture.stored(&cookie).await, before);
    let later = fixture.request(&cookie);
    assert_eq!(
        later.get::<String>("user").await.unwrap().as_deref(),
        Some("ada"),
        "the user is still logged in once the store answers"
    );
}

#[tokio::test]
async fn under_treat_as_empty_a_write_after_a_timed_out_load_is_refused_and_the_cookie_stays() {
    let fixture = Fixture::with(|builder| {
        builder
            .with_error_policy(ErrorPolicy::TreatAsEmpty)
            .with_operation_timeout(Duration::from_millis(20))
    });
    let cookie = fixture.logged_in().await;
    let before = fixture.stored(&cookie).await;
    let session = fixture.request(&cookie);

    // The load is held past the operation timeout, then the store works
    // again: the write that follows would reach it.
    let mut gate = fixture.hold_load(&cookie);
    let err = session.insert("user", "eve").await.unwrap_err();
    assert!(gate.is_reached());
    gate.release();
    assert!(
        matches!(&err, SessionError::Unavailable(cause) if cause.kind() == ErrorKind::Timeout),
        "{err:?}"
    );
    assert_eq!(session.finish().await, Finish::Unavailable);
    assert_eq!(fixture.counted.take_calls().writes(), 0);
    assert_eq!(fixture.stored(&cookie).await, before);
}

/// Every way a handler can change a session.
#[derive(Debug, Clone, Copy)]
enum Change {
    Insert,
    Remove,
    Take,
    Clear,
    CycleId,
    SetOwner,
    ClearOwner,
    LogOutEverywhere,
}

impl Change {
    const ALL: [Self; 8] = [
        Self::Insert,
        Self::Remove,
        Self::Take,
        Self::Clear,
        Self::CycleId,
        Self::SetOwner,
        Self::ClearOwner,
        Self::LogOutEverywhere,
    ];

    async fn apply(self, session: &Session) -> Result<(), SessionError> {
        match self {
            Self::Insert => session.insert("user", "eve").await,
            Self::Remove => session.remove("user").await.map(drop),
            Self::Take => session.take::<String>("user").await.map(drop),
            Self::Clear => session.clear().await,
            Self::CycleId => session.cycle_id().await,
            Self::SetOwner => session.set_owner("eve").await,
            Self::ClearOwner => session.clear_owner().await,
            Self::LogOutEverywhere => session.log_out_everywhere().await.map(drop),
        }
    }
}

#[tokio::test]
async fn under_treat_as_empty_every_change_after_a_failed_load_is_refused() {
    let fixture = Fixture::treat_as_empty();
    let cookie = fixture.logged_in().await;
    let before = fixture.stored(&cookie).await;

    fixture
        .counted
        .set_fault(Some(Fault::FailReads(ErrorKind::Unavailable)));
    for change in Change::ALL {
        let session = fixture.request(&cookie);
        assert_eq!(session.get::<String>("user").await.unwrap(), None);
        let refused = change.apply(&session).await;
        assert!(
            refused.as_ref().is_err_and(SessionError::is_unavailable),
            "{change:?}: {refused:?}"
        );
        assert_eq!(session.finish().await, Finish::Unavailable, "{change:?}");
        assert_eq!(fixture.counted.take_calls(), Calls::ONE_LOAD, "{change:?}");
    }

    fixture.counted.set_fault(None);
    assert_eq!(fixture.stored(&cookie).await, before);
}

#[tokio::test]
async fn under_treat_as_empty_a_read_only_request_after_a_failed_load_is_served_empty_and_keeps_the_cookie(
) {
    let fixture = Fixture::treat_as_empty();
    let cookie = fixture.logged_in().await;

    fixture
        .counted
        .set_fault(Some(Fault::FailReads(ErrorKind::Unavailable)));
    let session = fixture.request(&cookie);
    assert_eq!(session.get::<String>("user").await.unwrap(), None);
    assert_eq!(session.owner().await.unwrap(), None);
    assert_eq!(session.finish().await, Finish::Respond { set_cookie: None });
    assert_eq!(fixture.counted.take_calls(), Calls::ONE_LOAD);
}

#[tokio::test]
async fn under_treat_as_empty_a_logout_after_a_failed_load_still_ends_the_session() {
    let fixture = Fixture::treat_as_empty();
    let cookie = fixture.logged_in().await;

    fixture
        .counted
        .set_fault(Some(Fault::FailReads(ErrorKind::Unavailable)));
    let session = fixture.request(&cookie);
    assert_eq!(session.get::<String>("user").await.unwrap(), None);
    session.destroy().await.unwrap();
    let removal = set_cookie(session.finish().await).expect("a removal cookie");
    assert_eq!(removal, format!("{}=", fixture.manager.codec().name()));

    fixture.counted.set_fault(None);
    assert_eq!(fixture.stored(&cookie).await, None);
}
