//! The session lifecycle at the manager level, for the paths the HTTP
//! scenarios cannot steer: faults on writes only, sessions ended by another
//! request, handles kept past the response.

mod support;

use std::sync::Arc;
use support::{id_of, set_cookie};

use session_conformance::{Calls, Fault, InstrumentedStore};
use session_core::ErrorPolicy;
use session_core::{
    manager::{Finish, SessionManagerBuilder},
    memory::MemoryStore,
    store::SessionStore,
    CookieConfig, ErrorKind, Key, Session, SessionError, SessionId, SessionManager,
};

struct Fixture {
    store: Arc<InstrumentedStore>,
    manager: SessionManager,
}

impl Fixture {
    fn new() -> Self {
        Self::with_cookie(CookieConfig::default())
    }

    fn with_cookie(cookie: CookieConfig) -> Self {
        Self::with(|builder| builder.with_cookie(cookie))
    }

    fn with(configure: impl FnOnce(SessionManagerBuilder) -> SessionManagerBuilder) -> Self {
        let store = Arc::new(InstrumentedStore::new(Arc::new(MemoryStore::new())));
        let builder = SessionManager::builder(Arc::clone(&store), Key::generate());
        let manager = configure(builder).build().unwrap();
        Self { store, manager }
    }

    fn request(&self, cookie: Option<&str>) -> Session {
        self.manager.start(cookie.map(str::as_bytes))
    }

    /// Checks that the response tells the browser to drop the cookie.
    fn assert_clears_cookie(&self, finish: Finish) {
        let removal = set_cookie(finish).expect("a removal cookie");
        assert_eq!(removal, format!("{}=", self.manager.codec().name()));
    }

    /// A stored session holding `user = "ada"`, and its cookie.
    async fn logged_in(&self) -> String {
        let session = self.request(None);
        session.insert("user", "ada").await.unwrap();
        let cookie = set_cookie(session.finish().await).expect("a new session gets a cookie");
        self.store.take_calls();
        cookie
    }
}

#[tokio::test]
async fn cycle_id_keeps_the_old_session_when_the_new_one_cannot_be_created() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    fixture
        .store
        .set_fault(Some(Fault::FailWrites(ErrorKind::Unavailable)));
    let session = fixture.request(Some(&cookie));
    session.cycle_id().await.unwrap();
    assert_eq!(session.finish().await, Finish::Unavailable);
    assert_eq!(
        fixture.store.take_calls(),
        Calls {
            load: 1,
            create: 1,
            ..Calls::default()
        },
        "the old record must not be deleted before the new one exists"
    );

    fixture.store.set_fault(None);
    let session = fixture.request(Some(&cookie));
    assert_eq!(
        session.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
}

#[tokio::test]
async fn cycle_id_moves_data_and_lifetime_to_the_new_id() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;
    let old = fixture.store.load(&id_of(&cookie)).await.unwrap().unwrap();
    fixture.store.take_calls();

    let session = fixture.request(Some(&cookie));
    session.cycle_id().await.unwrap();
    let new_cookie = set_cookie(session.finish().await).unwrap();
    assert_eq!(
        fixture.store.take_calls(),
        Calls {
            load: 1,
            create: 1,
            delete_if_version: 1,
            ..Calls::default()
        }
    );

    let new = fixture
        .store
        .load(&id_of(&new_cookie))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.data, old.data);
    assert_eq!(
        new.created_at, old.created_at,
        "the absolute timeout must survive cycle_id"
    );
    assert_eq!(new.version, old.version + 1);
    assert_eq!(fixture.store.load(&old.id).await.unwrap(), None);
}

#[tokio::test]
async fn a_cookie_for_an_unknown_id_is_never_adopted() {
    let fixture = Fixture::new();
    let unknown = SessionId::generate();
    let cookie = format!(
        "{}={}",
        fixture.manager.codec().name(),
        fixture.manager.codec().sign(&unknown)
    );

    let session = fixture.request(Some(&cookie));
    session.insert("k", 1).await.unwrap();
    let issued = set_cookie(session.finish().await).unwrap();
    assert_ne!(id_of(&issued), unknown);
    assert_eq!(fixture.store.load(&unknown).await.unwrap(), None);
}

#[tokio::test]
async fn destroy_then_insert_starts_a_new_session() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    let session = fixture.request(Some(&cookie));
    session.destroy().await.unwrap();
    session.insert("flash", "logged out").await.unwrap();
    let issued = set_cookie(session.finish().await).unwrap();

    assert_ne!(id_of(&issued), id_of(&cookie));
    assert_eq!(fixture.store.load(&id_of(&cookie)).await.unwrap(), None);
    let fresh = fixture.store.load(&id_of(&issued)).await.unwrap().unwrap();
    assert_eq!(fresh.data.len(), 1, "nothing of the old session survives");
}

#[tokio::test]
async fn destroy_needs_no_load() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    let session = fixture.request(Some(&cookie));
    session.destroy().await.unwrap();
    fixture.assert_clears_cookie(session.finish().await);
    assert_eq!(
        fixture.store.take_calls(),
        Calls {
            delete: 1,
            ..Calls::default()
        }
    );
}

/// `cookie` with one character of its tag changed (in the middle: the
/// last character carries padding bits, and changing it could make the
/// value non-canonical, refused before the HMAC is checked).
fn forged(cookie: &str) -> String {
    let at = cookie.len() - 20;
    let other = if &cookie[at..=at] == "A" { "B" } else { "A" };
    let mut forged = cookie.to_owned();
    forged.replace_range(at..=at, other);
    forged
}

/// The cookie is verified only when the session is first used; `destroy`
/// uses it without a load, so it must verify it first and end nothing
/// for a forged one.
#[tokio::test]
async fn a_forged_cookie_cannot_destroy_the_session_it_names() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    let session = fixture.request(Some(&forged(&cookie)));
    session.destroy().await.unwrap();
    assert_eq!(set_cookie(session.finish().await), None);
    assert_eq!(fixture.store.take_calls(), Calls::default());
    let session = fixture.request(Some(&cookie));
    assert_eq!(
        session.get::<String>("user").await.unwrap().as_deref(),
        Some("ada")
    );
}

/// An untouched request never verifies its cookie, and answers exactly as
/// if it had: no store call and no `Set-Cookie`, for a genuine cookie and
/// for a forged one alike.
#[tokio::test]
async fn an_untouched_request_answers_alike_for_a_genuine_and_a_forged_cookie() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;
    for sent in [cookie.clone(), forged(&cookie)] {
        let session = fixture.request(Some(&sent));
        assert_eq!(set_cookie(session.finish().await), None, "{sent}");
        assert_eq!(fixture.store.take_calls(), Calls::default(), "{sent}");
    }
    // A forged cookie used later in the request is still refused then.
    let session = fixture.request(Some(&forged(&cookie)));
    assert_eq!(session.get::<String>("user").await.unwrap(), None);
    assert_eq!(fixture.store.take_calls(), Calls::default());
}

#[tokio::test]
async fn setting_a_key_to_its_current_value_writes_nothing() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    let session = fixture.request(Some(&cookie));
    session.insert("user", "ada").await.unwrap();
    assert_eq!(set_cookie(session.finish().await), None);
    assert_eq!(fixture.store.take_calls(), Calls::ONE_LOAD);
}

#[tokio::test]
async fn removing_an_absent_key_writes_nothing() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    let session = fixture.request(Some(&cookie));
    assert!(!session.remove("nothing-here").await.unwrap());
    let _ = session.finish().await;
    assert_eq!(fixture.store.take_calls().writes(), 0);
}

#[tokio::test]
async fn a_session_ended_elsewhere_is_not_resurrected_by_a_late_commit() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    let late = fixture.request(Some(&cookie));
    assert!(late.get::<String>("user").await.unwrap().is_some());
    // Another request logs the user out while this one is still running.
    let logout = fixture.request(Some(&cookie));
    logout.destroy().await.unwrap();
    let _ = logout.finish().await;

    late.insert("cart", vec![1, 2]).await.unwrap();
    fixture.assert_clears_cookie(late.finish().await);
    assert_eq!(fixture.store.load(&id_of(&cookie)).await.unwrap(), None);
}

#[tokio::test]
async fn a_handle_used_after_the_response_refuses_changes() {
    let fixture = Fixture::new();
    let session = fixture.request(None);
    session.insert("a", 1).await.unwrap();
    let _ = session.finish().await;

    assert!(matches!(
        session.insert("b", 2).await,
        Err(SessionError::Finished)
    ));
    assert_eq!(session.finish().await, Finish::Respond { set_cookie: None });
}

#[tokio::test]
async fn a_corrupt_record_gets_a_fresh_session_even_under_reject() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    fixture
        .store
        .set_fault(Some(Fault::Fail(ErrorKind::Corrupt)));
    let session = fixture.request(Some(&cookie));
    assert_eq!(session.get::<String>("user").await.unwrap(), None);
    fixture.assert_clears_cookie(session.finish().await);
}

#[tokio::test]
async fn a_failed_load_under_reject_is_an_error_for_the_handler_and_a_503() {
    let fixture = Fixture::new();
    let cookie = fixture.logged_in().await;

    fixture
        .store
        .set_fault(Some(Fault::Fail(ErrorKind::Timeout)));
    let session = fixture.request(Some(&cookie));
    let err = session.get::<String>("user").await.unwrap_err();
    assert!(err.is_unavailable());
    // Asking again does not retry the store within the same request.
    assert!(session
        .get::<String>("user")
        .await
        .unwrap_err()
        .is_unavailable());
    assert_eq!(fixture.store.take_calls().load, 1);
    assert_eq!(session.finish().await, Finish::Unavailable);
}

#[tokio::test]
async fn a_persistent_cookie_is_refreshed_with_every_write() {
    let fixture = Fixture::with_cookie(CookieConfig::default().with_persistent(true));
    let session = fixture.request(None);
    session.insert("n", 1).await.unwrap();
    let header = match session.finish().await {
        Finish::Respond {
            set_cookie: Some(header),
        } => header,
        other => panic!("{other:?}"),
    };
    assert!(header.contains("Max-Age=1800"), "{header}");
    let cookie = header.split(';').next().unwrap().to_owned();

    let session = fixture.request(Some(&cookie));
    session.insert("n", 2).await.unwrap();
    assert!(set_cookie(session.finish().await).is_some());
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_decode_error_naming_the_key() {
    let fixture = Fixture::new();
    let session = fixture.request(None);
    session.insert("count", "not a number").await.unwrap();
    let err = session.get::<u64>("count").await.unwrap_err();
    assert!(matches!(&err, SessionError::Decode { key, .. } if key == "count"));
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn logout_works_even_when_the_load_failed_under_treat_as_empty() {
    let fixture = Fixture::with(|builder| builder.with_error_policy(ErrorPolicy::TreatAsEmpty));
    let cookie = fixture.logged_in().await;

    fixture
        .store
        .set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
    let session = fixture.request(Some(&cookie));
    assert_eq!(session.get::<String>("user").await.unwrap(), None);
    session.destroy().await.unwrap();
    fixture.store.set_fault(None);

    fixture.assert_clears_cookie(session.finish().await);
    assert_eq!(fixture.store.load(&id_of(&cookie)).await.unwrap(), None);
}
