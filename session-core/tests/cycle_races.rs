//! `cycle_id` racing other requests on the same session, forced with gates:
//! a commit acknowledged on the old id while the id changes is carried over
//! (or the cycle fails with nothing lost), and a session ended meanwhile
//! does not come back under the new id.

mod support;

use std::{sync::Arc, time::SystemTime};
use support::{id_of, set_cookie};

use async_trait::async_trait;
use session_conformance::{
    race::{GatedStore, Op},
    Fault, InstrumentedStore,
};
use session_core::{
    failover::{FailoverMode, FailoverStore},
    manager::Finish,
    memory::MemoryStore,
    store::{Changes, Committed, Created, Record, SessionStore},
    ErrorKind, Key, SessionId, SessionManager, StoreError,
};

struct Fixture {
    /// The store, ungated: what the tests look at.
    store: Arc<dyn SessionStore>,
    gated: Arc<GatedStore>,
    manager: SessionManager,
}

impl Fixture {
    fn new() -> Self {
        Self::over(Arc::new(MemoryStore::new()))
    }

    fn over(store: Arc<dyn SessionStore>) -> Self {
        let gated = Arc::new(GatedStore::new(Arc::clone(&store)));
        let manager = SessionManager::builder(Arc::clone(&gated), Key::generate())
            .build()
            .unwrap();
        Self {
            store,
            gated,
            manager,
        }
    }

    /// A finished request that stored `n = 1`, and its cookie.
    async fn visit(&self) -> String {
        let session = self.manager.start(std::iter::empty());
        session.insert("n", 1).await.unwrap();
        set_cookie(session.finish().await).expect("a new session gets a cookie")
    }

    /// Another request, on another server, that sets `n` on the session
    /// and is acknowledged: the store holds it when this returns.
    async fn commit_n(&self, cookie: &str, n: u32) {
        let session = self.manager.start([cookie.as_bytes()]);
        session.insert("n", n).await.unwrap();
        let _ = set_cookie(session.finish().await);
        assert_eq!(
            self.n(&id_of(cookie)).await.as_deref(),
            Some(n.to_string().as_str()),
            "the commit was not acknowledged"
        );
    }

    async fn n(&self, id: &SessionId) -> Option<String> {
        let record = self.store.load(id).await.unwrap()?;
        record.data.get("n").cloned()
    }
}

/// Race 7 of issue 21: request A loads the session (v1) and moves it to a
/// new id; request B commits `n = 2` to the old id and is acknowledged
/// before A creates the new one. A must carry B's write over, or fail
/// without losing it.
#[tokio::test]
async fn a_commit_acknowledged_while_the_id_cycles_is_carried_over() {
    assert!(commit_during_cycle_is_carried_over(&Fixture::new()).await);
}

/// The same through a mirror pair, with both stores up and with the
/// secondary down: the pair answers the conditional delete as a commit.
#[tokio::test]
async fn a_mirror_pair_carries_a_commit_acknowledged_while_the_id_cycles_over() {
    let pair = |secondary: Arc<InstrumentedStore>| {
        let store = FailoverStore::builder(MemoryStore::new(), secondary)
            .with_failure_threshold(1)
            .build()
            .unwrap();
        Fixture::over(Arc::new(store))
    };
    let secondary = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    assert!(commit_during_cycle_is_carried_over(&pair(Arc::clone(&secondary))).await);

    let secondary = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    let fixture = pair(Arc::clone(&secondary));
    secondary.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    assert!(commit_during_cycle_is_carried_over(&fixture).await);
}

/// The same in standby mode, where the primary decides.
#[tokio::test]
async fn a_standby_pair_carries_a_commit_acknowledged_while_the_id_cycles_over() {
    let store = FailoverStore::builder(MemoryStore::new(), MemoryStore::new())
        .with_mode(FailoverMode::Standby)
        .build()
        .unwrap();
    assert!(commit_during_cycle_is_carried_over(&Fixture::over(Arc::new(store))).await);
}

/// A login (`cycle_id`) during a primary outage, of a session made on the
/// standby secondary meanwhile: the old id goes where it lives and the
/// login succeeds. (Ending the old id a second time, on both stores, failed
/// on the down primary: a 503 after the old id was already gone, which
/// logged the user out.)
#[tokio::test]
async fn a_standby_login_during_a_primary_outage_moves_the_session() {
    let primary = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
    primary.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    let store = FailoverStore::builder(Arc::clone(&primary), MemoryStore::new())
        .with_mode(FailoverMode::Standby)
        .build()
        .unwrap();
    let fixture = Fixture::over(Arc::new(store));
    let cookie = fixture.visit().await;
    let old = id_of(&cookie);

    let login = fixture.manager.start([cookie.as_bytes()]);
    login.insert("user", "ada").await.unwrap();
    login.cycle_id().await.unwrap();
    let header = set_cookie(login.finish().await).expect("the login's new cookie");
    let new = id_of(&header);
    assert_ne!(new, old);
    assert_eq!(fixture.n(&new).await.as_deref(), Some("1"));
    assert_eq!(fixture.store.load(&old).await.unwrap(), None);
}

/// Runs race 7 on `fixture`; true when the cycle carried the commit over,
/// false when it failed with the old id keeping it.
async fn commit_during_cycle_is_carried_over(fixture: &Fixture) -> bool {
    let cookie = fixture.visit().await;
    let old = id_of(&cookie);

    let login = fixture.manager.start([cookie.as_bytes()]);
    login.insert("user", "ada").await.unwrap();
    login.cycle_id().await.unwrap();
    let new = login.id().await.unwrap().unwrap();
    let mut create = fixture.gated.hold(Op::Create.before().on(new));
    let cycling = tokio::spawn(async move { login.finish().await });
    create.reached().await;

    fixture.commit_n(&cookie, 2).await;
    create.release();

    match cycling.await.unwrap() {
        Finish::Respond {
            set_cookie: Some(header),
        } => {
            let cycled = id_of(header.split(';').next().unwrap());
            assert_eq!(cycled, new);
            assert_eq!(
                fixture.n(&new).await.as_deref(),
                Some("2"),
                "the commit acknowledged on the old id was lost"
            );
            let record = fixture.store.load(&new).await.unwrap().unwrap();
            assert_eq!(record.data.get("user").map(String::as_str), Some("\"ada\""));
            assert_eq!(fixture.store.load(&old).await.unwrap(), None);
            true
        }
        failed => {
            assert_eq!(failed, Finish::Unavailable);
            assert_eq!(
                fixture.n(&old).await.as_deref(),
                Some("2"),
                "a failed cycle lost the commit"
            );
            false
        }
    }
}

/// The window that a version check followed by a plain delete leaves open:
/// the new id exists, and B's commit lands on the old id just before it is
/// deleted. Deleting at the loaded version refuses, and the cycle starts
/// again from B's record.
#[tokio::test]
async fn a_commit_acknowledged_after_the_new_id_exists_is_carried_over() {
    let fixture = Fixture::new();
    let cookie = fixture.visit().await;
    let old = id_of(&cookie);

    let login = fixture.manager.start([cookie.as_bytes()]);
    login.cycle_id().await.unwrap();
    let new = login.id().await.unwrap().unwrap();
    let mut end_old = fixture.gated.hold(Op::DeleteIfVersion.before().on(old));
    let cycling = tokio::spawn(async move { login.finish().await });
    end_old.reached().await;
    assert!(fixture.store.load(&new).await.unwrap().is_some());

    fixture.commit_n(&cookie, 2).await;
    end_old.release();

    let header = set_cookie(cycling.await.unwrap()).expect("the cycle sets the new cookie");
    assert_eq!(id_of(&header), new);
    assert_eq!(
        fixture.n(&new).await.as_deref(),
        Some("2"),
        "the commit acknowledged on the old id was lost"
    );
    assert_eq!(fixture.store.load(&old).await.unwrap(), None);
}

/// A logout on another server while the id cycles: the old id is gone when
/// the cycle comes to end it, so the new id goes too. Before the fix an
/// unowned session came back under the new id.
#[tokio::test]
async fn a_session_logged_out_while_its_id_cycles_does_not_come_back_under_the_new_id() {
    let fixture = Fixture::new();
    let cookie = fixture.visit().await;

    let login = fixture.manager.start([cookie.as_bytes()]);
    login.cycle_id().await.unwrap();
    let new = login.id().await.unwrap().unwrap();
    let mut create = fixture.gated.hold(Op::Create.before().on(new));
    let cycling = tokio::spawn(async move { login.finish().await });
    create.reached().await;

    let logout = fixture.manager.start([cookie.as_bytes()]);
    logout.destroy().await.unwrap();
    let _ = set_cookie(logout.finish().await);
    create.release();

    let removal =
        set_cookie(cycling.await.unwrap()).expect("the browser is told to drop the cookie");
    assert_eq!(removal, format!("{}=", fixture.manager.codec().name()));
    assert_eq!(
        fixture.store.load(&new).await.unwrap(),
        None,
        "a logged-out session came back under its new id"
    );
}

/// Other requests commit before every attempt to end the old id: after a
/// bounded number of attempts the cycle gives up, the new id is deleted,
/// and the old id keeps every commit.
#[tokio::test]
async fn a_cycle_that_keeps_losing_to_commits_fails_and_keeps_every_commit() {
    const MOST_ATTEMPTS: u32 = 16;
    let fixture = Fixture::new();
    let cookie = fixture.visit().await;
    let old = id_of(&cookie);

    let login = fixture.manager.start([cookie.as_bytes()]);
    login.cycle_id().await.unwrap();
    let new = login.id().await.unwrap().unwrap();
    let mut gate = fixture.gated.hold(Op::DeleteIfVersion.before().on(old));
    let mut cycling = tokio::spawn(async move { login.finish().await });
    let mut n = 1;
    let finish = loop {
        tokio::select! {
            finish = &mut cycling => break finish.unwrap(),
            () = gate.reached() => {
                assert!(n < MOST_ATTEMPTS, "the cycle kept trying");
                n += 1;
                fixture.commit_n(&cookie, n).await;
                let next = fixture.gated.hold(Op::DeleteIfVersion.before().on(old));
                std::mem::replace(&mut gate, next).release();
            }
        }
    };
    assert_eq!(finish, Finish::Unavailable);
    assert!(n > 2, "the cycle gave up after {} attempts", n - 1);
    assert_eq!(fixture.n(&old).await, Some(n.to_string()));
    assert_eq!(
        fixture.store.load(&new).await.unwrap(),
        None,
        "the failed cycle left its new id"
    );
}

/// A store that cannot delete by version: the default of the trait.
#[derive(Debug)]
struct NoConditionalDelete(MemoryStore);

#[async_trait]
impl SessionStore for NoConditionalDelete {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.0.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.0.create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.0.commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.0.touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.0.delete(id).await
    }
}

/// Without an atomic conditional delete no cycle can promise to keep a
/// racing commit, so none is tried: the request fails, and the session
/// keeps its old id and data.
#[tokio::test]
async fn a_store_that_cannot_delete_by_version_fails_the_cycle_and_keeps_the_session() {
    let memory = MemoryStore::new();
    let manager = SessionManager::builder(NoConditionalDelete(memory.clone()), Key::generate())
        .build()
        .unwrap();
    let session = manager.start(std::iter::empty());
    session.insert("n", 1).await.unwrap();
    let cookie = set_cookie(session.finish().await).unwrap();

    let login = manager.start([cookie.as_bytes()]);
    login.cycle_id().await.unwrap();
    let new = login.id().await.unwrap().unwrap();
    assert_eq!(login.finish().await, Finish::Unavailable);

    let old = memory
        .load(&id_of(&cookie))
        .await
        .unwrap()
        .expect("the failed cycle lost the session");
    assert_eq!(old.data.get("n").map(String::as_str), Some("1"));
    assert_eq!(memory.load(&new).await.unwrap(), None);
}
