//! Contract tests of a user's devices ([`session_core::devices`]): the
//! store's [`sessions_of`](SessionStore::sessions_of), and the manager's
//! list, end-one, log-out-others and per-owner cap over the store, with
//! the races that matter forced by gates and checked by the history
//! checker.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::future::join_all;
use session_core::{
    devices::{Device, DeviceHandle, LOGIN_KEY},
    manager::Finish,
    store::{Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore},
    ErrorKind, Key, SessionError, SessionId, SessionManager, StoreError,
};

use super::{fresh_store, owner, record_owned_by, record_with, StoreFactory, LONG};
use crate::race::{Client, GatedStore, History, Op};

/// A manager over `store`; `cap` is the per-owner cap, if any.
fn manager(store: Arc<dyn SessionStore>, cap: Option<usize>) -> SessionManager {
    let mut builder = SessionManager::builder(store, Key::from_secret([42u8; 32]).unwrap());
    if let Some(cap) = cap {
        builder = builder.with_max_sessions_per_owner(cap);
    }
    builder.build().expect("a valid manager")
}

/// Logs `owner` in on a new session labelled `label`; its cookie.
async fn login(manager: &SessionManager, owner: &str, label: &str) -> String {
    let session = manager.start(std::iter::empty());
    session.set_owner(owner).await.unwrap();
    session.set_label(label).await.unwrap();
    let Finish::Respond {
        set_cookie: Some(set),
    } = session.finish().await
    else {
        panic!("a login got no cookie");
    };
    set.split(';').next().unwrap().to_owned()
}

/// The devices the session behind `cookie` lists.
async fn devices(manager: &SessionManager, cookie: &str) -> Vec<Device> {
    let session = manager.start([cookie.as_bytes()]);
    let devices = session.devices().await.unwrap();
    let _ = session.finish().await;
    devices
}

/// Whether `cookie` still names a live session.
async fn is_live(manager: &SessionManager, cookie: &str) -> bool {
    let session = manager.start([cookie.as_bytes()]);
    let live = session.id().await.unwrap().is_some();
    let _ = session.finish().await;
    live
}

fn labels(devices: &[Device]) -> Vec<&str> {
    devices
        .iter()
        .map(|device| device.label.as_deref().unwrap_or(""))
        .collect()
}

/// `sessions_of` lists every live session of one owner and nothing else:
/// not another owner's, not an unowned one, not one that moved to another
/// owner or was deleted. A store without an owner index answers
/// [`ErrorKind::Unsupported`], naming why, and a manager with a per-owner
/// cap refuses to be built over it.
pub async fn sessions_of_lists_that_owners_live_sessions_and_no_others(factory: &dyn StoreFactory) {
    let store = fresh_store(factory).await;
    if !factory.indexes_owners() {
        let err = store.sessions_of("ada").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(
            std::error::Error::source(&err).is_some(),
            "an unsupported sessions_of must say why: {err}"
        );
        let refused = SessionManager::builder(store, Key::generate())
            .with_max_sessions_per_owner(3)
            .build()
            .unwrap_err();
        assert_eq!(refused.key(), "max_sessions_per_owner");
        return;
    }
    let mut ada = Vec::new();
    for _ in 0..3 {
        let record = record_owned_by("ada", &[("k", "1")], LONG);
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        ada.push(record.id);
    }
    let bob = record_owned_by("bob", &[], LONG);
    let unowned = record_with(&[("k", "1")], LONG);
    let moved = record_owned_by("ada", &[], LONG);
    let deleted = record_owned_by("ada", &[], LONG);
    for record in [&bob, &unowned, &moved, &deleted] {
        assert_eq!(store.create(record).await.unwrap(), Created::Created);
    }
    let mut changes = Changes::default();
    changes.set_owner(Some(owner("bob", LONG)));
    let moved_expiry = moved.expires_at;
    assert!(matches!(
        store
            .commit(&moved.id, &changes, moved_expiry)
            .await
            .unwrap(),
        Committed::Applied { .. }
    ));
    store.delete(&deleted.id).await.unwrap();
    // A commit to one of ada's sessions shows in the list.
    let mut changes = Changes::default();
    changes.set("k", "2");
    let _ = store.commit(&ada[0], &changes, moved_expiry).await.unwrap();

    let listed = store.sessions_of("ada").await.unwrap();
    let mut ids: Vec<SessionId> = listed.iter().map(|record| record.id).collect();
    ids.sort_by_key(SessionId::encode);
    ada.sort_by_key(SessionId::encode);
    assert_eq!(ids, ada, "exactly ada's live sessions");
    for record in &listed {
        assert_eq!(record.owner.as_ref().unwrap().name, "ada");
        assert_eq!(
            Some(record),
            store.load(&record.id).await.unwrap().as_ref(),
            "a listed record is what load returns"
        );
    }
    let bobs: Vec<SessionId> = store
        .sessions_of("bob")
        .await
        .unwrap()
        .iter()
        .map(|record| record.id)
        .collect();
    assert_eq!(bobs.len(), 2);
    assert!(bobs.contains(&bob.id) && bobs.contains(&moved.id));
    assert!(store.sessions_of("nobody").await.unwrap().is_empty());
}

/// A user's devices are listed with their labels, newest login first, the
/// asking session marked current, and a handle that is not the session id.
/// A device ended by its handle is gone; a handle of another owner's
/// session ends nothing; "log out the other sessions" keeps only the
/// current one and counts the rest.
pub async fn devices_are_listed_ended_by_handle_and_logged_out_but_the_current_one(
    factory: &dyn StoreFactory,
) {
    if !factory.indexes_owners() {
        let manager = manager(fresh_store(factory).await, None);
        let cookie = login(&manager, "ada", "laptop").await;
        let session = manager.start([cookie.as_bytes()]);
        match session.devices().await {
            Err(SessionError::Unavailable(err)) => assert_eq!(err.kind(), ErrorKind::Unsupported),
            other => panic!("devices on a store without an owner index answered {other:?}"),
        }
        return;
    }
    let manager = manager(fresh_store(factory).await, None);
    let laptop = login(&manager, "ada", "laptop").await;
    let phone = login(&manager, "ada", "phone").await;
    let tablet = login(&manager, "ada", "tablet").await;
    let bobs = login(&manager, "bob", "bob's phone").await;

    let listed = devices(&manager, &phone).await;
    assert_eq!(labels(&listed), ["tablet", "phone", "laptop"]);
    assert_eq!(
        listed.iter().map(|d| d.current).collect::<Vec<_>>(),
        [false, true, false]
    );
    let phone_id = phone.split_once('=').unwrap().1.split('.').next().unwrap();
    for device in &listed {
        assert!(device.created_at <= device.last_active);
        assert!(device.logged_in_at.is_some());
        assert!(!device.handle.as_str().contains(phone_id));
        assert!(!phone.contains(device.handle.as_str()));
    }

    // Bob's phone's handle does nothing to ada's sessions, nor to bob's.
    let bob_handle = devices(&manager, &bobs).await[0].handle.clone();
    let session = manager.start([phone.as_bytes()]);
    assert!(!session.end_device(&bob_handle).await.unwrap());
    let unknown = DeviceHandle::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap();
    assert!(!session.end_device(&unknown).await.unwrap());
    // The laptop's ends the laptop.
    assert!(session.end_device(&listed[2].handle).await.unwrap());
    let _ = session.finish().await;
    assert!(!is_live(&manager, &laptop).await);
    assert!(is_live(&manager, &bobs).await);
    assert_eq!(
        labels(&devices(&manager, &phone).await),
        ["tablet", "phone"]
    );

    // Log out the others: the tablet goes, the phone stays.
    let session = manager.start([phone.as_bytes()]);
    assert_eq!(session.log_out_other_sessions().await.unwrap(), 1);
    let _ = session.finish().await;
    assert!(!is_live(&manager, &tablet).await);
    assert!(is_live(&manager, &phone).await);
    assert_eq!(labels(&devices(&manager, &phone).await), ["phone"]);
    assert_eq!(manager.devices_of("bob").await.unwrap().len(), 1);
    // A label is bounded and the last one set wins.
    let session = manager.start([phone.as_bytes()]);
    session.set_label("x".repeat(10_000)).await.unwrap();
    let _ = session.finish().await;
    let listed = devices(&manager, &phone).await;
    assert_eq!(
        listed[0].label.as_deref().map(str::len),
        Some(session_core::devices::MAX_LABEL_LEN)
    );
}

/// With a cap of 2, every login past it ends the oldest logins, never the
/// one that just logged in, and the owner's other sessions and other
/// owners' are untouched.
pub async fn the_owner_cap_ends_the_oldest_logins_never_the_new_one(factory: &dyn StoreFactory) {
    if !factory.indexes_owners() {
        return;
    }
    let manager = manager(fresh_store(factory).await, Some(2));
    let bob = login(&manager, "bob", "bob").await;
    let mut cookies = Vec::new();
    for label in ["first", "second", "third", "fourth"] {
        let cookie = login(&manager, "ada", label).await;
        assert!(is_live(&manager, &cookie).await, "the new login was ended");
        cookies.push(cookie);
        // Logins a microsecond apart at least, so they rank by time.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        labels(&manager.devices_of("ada").await.unwrap()),
        ["fourth", "third"]
    );
    assert!(!is_live(&manager, &cookies[0]).await);
    assert!(!is_live(&manager, &cookies[1]).await);
    assert!(is_live(&manager, &bob).await);
    // A request of a kept session that is no login leaves the cap alone.
    let session = manager.start([cookies[2].as_bytes()]);
    session.insert("k", 1).await.unwrap();
    let _ = session.finish().await;
    assert_eq!(manager.devices_of("ada").await.unwrap().len(), 2);
}

/// Concurrent logins past the cap: the first login's cap pass is held
/// before it lists the owner's sessions while the others log in and
/// finish, then released. Once every login has finished, no more than the
/// cap remain, those are the newest logins, and the history checker finds
/// no session that ended other than by a login's cap.
pub async fn concurrent_logins_past_the_cap_leave_only_the_newest(factory: &dyn StoreFactory) {
    const CAP: usize = 2;
    const LOGINS: usize = 5;
    if !factory.indexes_owners() {
        return;
    }
    let recorded = Arc::new(LoginRecorder::new(fresh_store(factory).await));
    let gated = Arc::new(GatedStore::new(recorded.clone()));
    let manager = manager(gated.clone(), Some(CAP));
    let history = History::new();
    let mut first = Client::new(0, LOGINS, history.clone());
    let mut gate = gated.hold(Op::SessionsOf.before());
    let held = {
        let manager = manager.clone();
        tokio::spawn(async move {
            first.login(0, &manager, "ada").await;
            first
        })
    };
    gate.reached().await;
    let others = join_all((1..LOGINS).map(|index| {
        let manager = manager.clone();
        let history = history.clone();
        tokio::spawn(async move {
            let mut client = Client::new(index, LOGINS, history);
            client.login(index % 2, &manager, "ada").await;
            client
        })
    }))
    .await;
    gate.release();
    let first = held.await.unwrap();
    let mut clients: Vec<Client> = others.into_iter().map(Result::unwrap).collect();
    clients.insert(0, first);
    for client in &mut clients {
        assert!(client.session().is_some(), "a login failed: {history:#?}");
        client.read(0, &manager).await;
    }
    let violations = history.check();
    assert!(violations.is_empty(), "{violations:?}\n{history:#?}");

    // Every login, newest first as the cap ranks them, and whether it lives.
    let mut logins = recorded.logins();
    assert_eq!(logins.len(), LOGINS);
    logins.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.encode().cmp(&a.0.encode())));
    let mut live = Vec::new();
    for (id, _) in &logins {
        live.push(gated.load(id).await.unwrap().is_some());
    }
    let mut expected = vec![true; CAP];
    expected.resize(LOGINS, false);
    assert_eq!(
        live, expected,
        "the live sessions are not the {CAP} newest logins"
    );
    assert_eq!(manager.devices_of("ada").await.unwrap().len(), CAP);
}

/// A store that remembers the login time of every session created with
/// one, so a test can rank logins after their sessions are gone.
#[derive(Debug)]
struct LoginRecorder {
    inner: Arc<dyn SessionStore>,
    logins: std::sync::Mutex<Vec<(SessionId, u64)>>,
}

impl LoginRecorder {
    fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            logins: std::sync::Mutex::default(),
        }
    }

    fn logins(&self) -> Vec<(SessionId, u64)> {
        self.logins.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl SessionStore for LoginRecorder {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.inner.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let created = self.inner.create(record).await?;
        if let (Created::Created, Some(stamp)) = (created, record.data.get(LOGIN_KEY)) {
            let stamp = stamp.parse().expect("a login time is a number");
            self.logins.lock().unwrap().push((record.id, stamp));
        }
        Ok(created)
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.inner.commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.inner.touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.inner.delete_if_version(id, version).await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.inner.delete_by_owner(owner).await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.inner.sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        self.inner.indexes_owners()
    }
}

/// "Log out the other sessions" racing a login on another device, in both
/// orders that matter. A login whose write is held until the call has
/// finished is kept: it began after the user asked, and the call counts
/// only the old session. A login that lands while the call is between
/// listing the owner's sessions and ending them is found by its next look
/// and ended, and counted: it is never ended silently. The history
/// checker finds nothing ended that came back and no acknowledged login
/// ended other than by the call.
pub async fn log_out_other_sessions_racing_a_login_keeps_it_or_counts_it(
    factory: &dyn StoreFactory,
) {
    if !factory.indexes_owners() {
        return;
    }
    for login_lands_mid_call in [false, true] {
        let gated = Arc::new(GatedStore::new(fresh_store(factory).await));
        let manager = manager(gated.clone(), None);
        let history = History::new();
        let mut keeper = Client::new(0, 3, history.clone());
        let mut old = Client::new(1, 3, history.clone());
        let mut newcomer = Client::new(2, 3, history.clone());
        keeper.login(0, &manager, "ada").await;
        old.login(1, &manager, "ada").await;

        let ended = if login_lands_mid_call {
            // The call has listed ada's sessions and not yet ended any.
            let mut gate = gated.hold(Op::SessionsOf.after());
            let call = {
                let manager = manager.clone();
                tokio::spawn(async move {
                    let ended = keeper.log_out_other_sessions(0, &manager).await;
                    (keeper, ended)
                })
            };
            gate.reached().await;
            newcomer.login(1, &manager, "ada").await;
            gate.release();
            let (back, ended) = call.await.unwrap();
            keeper = back;
            ended
        } else {
            // The login's write is held until the call has finished.
            let mut gate = gated.hold(Op::Create.before());
            let login = {
                let manager = manager.clone();
                tokio::spawn(async move {
                    newcomer.login(1, &manager, "ada").await;
                    newcomer
                })
            };
            gate.reached().await;
            let ended = keeper.log_out_other_sessions(0, &manager).await;
            gate.release();
            newcomer = login.await.unwrap();
            ended
        };
        for client in [&mut keeper, &mut old, &mut newcomer] {
            client.read(0, &manager).await;
        }
        let violations = history.check();
        assert!(violations.is_empty(), "{violations:?}\n{history}");
        let newcomer_live = newcomer.device_handle(&manager).await.is_some();
        assert!(
            keeper.device_handle(&manager).await.is_some(),
            "the current session was ended"
        );
        assert!(
            old.device_handle(&manager).await.is_none(),
            "the old session survived"
        );
        if login_lands_mid_call {
            assert_eq!(
                ended,
                Some(2),
                "the login that landed mid-call was not counted\n{history}"
            );
            assert!(!newcomer_live, "a counted login survived");
        } else {
            assert_eq!(ended, Some(1), "{history}");
            assert!(newcomer_live, "a login after the call was ended");
        }
    }
}

/// A device ended by its handle while its own request commits never comes
/// back, in every order: the commit held before the store (it then finds
/// the session gone and the response drops the cookie), and the end held
/// between listing the session and deleting it while a commit lands (the
/// end reads the session again and ends the committed version).
pub async fn a_device_ended_while_it_commits_never_comes_back(factory: &dyn StoreFactory) {
    if !factory.indexes_owners() {
        return;
    }
    for hold_the_end in [false, true] {
        let gated = Arc::new(GatedStore::new(fresh_store(factory).await));
        let manager = manager(gated.clone(), None);
        let history = History::new();
        let mut victim = Client::new(0, 2, history.clone());
        let mut admin = Client::new(1, 2, history.clone());
        victim.login(0, &manager, "ada").await;
        let id = victim.session().expect("the victim logged in");
        let handle = victim.device_handle(&manager).await.expect("listed");

        if hold_the_end {
            let mut gate = gated.hold(Op::DeleteIfVersion.before().on(id));
            let end = {
                let manager = manager.clone();
                let handle = handle.clone();
                tokio::spawn(async move {
                    admin.end_device(1, &manager, "ada", &handle, id).await;
                    admin
                })
            };
            gate.reached().await;
            victim.write(0, &manager).await;
            gate.release();
            admin = end.await.unwrap();
        } else {
            let mut gate = gated.hold(Op::Commit.before().on(id));
            let write = {
                let manager = manager.clone();
                tokio::spawn(async move {
                    victim.write(0, &manager).await;
                    victim
                })
            };
            gate.reached().await;
            admin.end_device(1, &manager, "ada", &handle, id).await;
            gate.release();
            victim = write.await.unwrap();
        }
        for _ in 0..2 {
            victim.read(0, &manager).await;
        }
        let _ = &admin;
        let violations = history.check();
        assert!(violations.is_empty(), "{violations:?}\n{history}");
        assert_eq!(
            gated.load(&id).await.unwrap(),
            None,
            "the ended session came back\n{history}"
        );
        let ends: Vec<_> = history
            .ops()
            .into_iter()
            .filter(|op| matches!(op.action, crate::race::Action::EndDevice { .. }))
            .map(|op| op.outcome)
            .collect();
        assert_eq!(
            ends,
            [Some(crate::race::Outcome::Ended(1))],
            "the end did not say it ended the session\n{history}"
        );
        // A late commit finds it gone.
        assert_eq!(
            gated
                .commit(&id, &super::set("k", "1"), SystemTime::now() + LONG)
                .await
                .unwrap(),
            Committed::Missing
        );
    }
}
