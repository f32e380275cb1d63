//! The MemoryStore's own tests; the store contract is tested in
//! session-conformance (`tests/memory.rs`).

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::*;
use crate::{Finish, Key, SessionManager};

fn record(lifetime: Duration) -> Record {
    let now = SystemTime::now();
    Record::new(SessionId::generate(), Data::new(), now, now + lifetime)
}

#[tokio::test]
async fn capacity_bounds_the_number_of_sessions() {
    let store = MemoryStore::builder().with_max_capacity(10).build();
    for _ in 0..100 {
        let _ = store
            .create(&record(Duration::from_secs(600)))
            .await
            .unwrap();
    }
    store.run_pending_tasks().await;
    assert!(store.approximate_len() <= 10, "{}", store.approximate_len());
}

#[tokio::test]
async fn expired_sessions_leave_the_cache_not_just_the_answers() {
    let store = MemoryStore::new();
    let _ = store
        .create(&record(Duration::from_millis(100)))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        store.run_pending_tasks().await;
        if store.approximate_len() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep never freed the expired entry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn indexed(store: &MemoryStore, owner: &str) -> usize {
    store
        .owners
        .with(|owners| owners.get(owner).map_or(0, HashMap::len))
}

fn owned(name: &str, lifetime: Duration) -> Record {
    let mut record = record(lifetime);
    record.owner = Some(Owner::new(name, record.expires_at).unwrap());
    record
}

#[tokio::test]
async fn the_owner_index_follows_deletes_expiry_and_owner_changes() {
    let store = MemoryStore::new();
    let deleted = owned("ada", Duration::from_secs(60));
    let moved = owned("ada", Duration::from_secs(60));
    let expiring = owned("ada", Duration::from_millis(100));
    for record in [&deleted, &moved, &expiring] {
        let _ = store.create(record).await.unwrap();
    }
    assert_eq!(indexed(&store, "ada"), 3);

    store.delete(&deleted.id).await.unwrap();
    let mut changes = Changes::default();
    changes.set_owner(Some(Owner::new("bob", moved.expires_at).unwrap()));
    let _ = store
        .commit(&moved.id, &changes, moved.expires_at)
        .await
        .unwrap();
    store.run_pending_tasks().await;
    assert_eq!(indexed(&store, "bob"), 1);

    let deadline = Instant::now() + Duration::from_secs(10);
    while indexed(&store, "ada") > 0 {
        assert!(
            Instant::now() < deadline,
            "ada's index still holds {} entries",
            indexed(&store, "ada")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.run_pending_tasks().await;
    }
    assert!(store.owners.with(|owners| !owners.contains_key("ada")));
}

#[tokio::test]
async fn an_evicted_session_leaves_its_owners_index() {
    let store = MemoryStore::builder().with_max_capacity(10).build();
    let mut ids = Vec::new();
    for _ in 0..100 {
        let record = owned("ada", Duration::from_secs(600));
        ids.push(record.id);
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    }
    let held = usize::try_from(store.approximate_len()).unwrap();
    assert!(held <= 10, "{held}");
    assert_eq!(indexed(&store, "ada"), held);
    let indexed_ids: Vec<SessionId> = store
        .owners
        .keys("ada", &store.prefix)
        .into_iter()
        .map(|key| key.id)
        .collect();
    for id in &indexed_ids {
        assert!(store.load(id).await.unwrap().is_some());
    }
    for id in ids.iter().filter(|id| !indexed_ids.contains(id)) {
        assert_eq!(store.load(id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_write_after_the_sweep_interval_frees_expired_sessions() {
    let store = MemoryStore::builder()
        .with_sweep_interval(Duration::from_millis(50))
        .build();
    let expiring = owned("ada", Duration::from_millis(50));
    let _ = store.create(&expiring).await.unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Neither `run_pending_tasks` nor a read: one write of another session.
    let other = record(Duration::from_secs(60));
    let _ = store.create(&other).await.unwrap();
    assert_eq!(store.approximate_len(), 1);
    assert_eq!(indexed(&store, "ada"), 0);
    assert!(store.cache.get(&store.key(&expiring.id)).is_none());
}

#[tokio::test]
async fn writes_within_the_sweep_interval_do_not_sweep() {
    let store = MemoryStore::builder()
        .with_sweep_interval(Duration::from_secs(3600))
        .build();
    let _ = store
        .create(&record(Duration::from_millis(20)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    let _ = store
        .create(&record(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(store.approximate_len(), 2);
    store.run_pending_tasks().await;
    assert_eq!(store.approximate_len(), 1);
}

#[tokio::test]
async fn touch_shares_the_data_instead_of_copying_it() {
    let store = MemoryStore::new();
    let record = record(Duration::from_secs(60));
    let _ = store.create(&record).await.unwrap();
    let before = store.cache.get(&store.key(&record.id)).unwrap();
    assert!(store
        .touch(&record.id, record.expires_at + Duration::from_secs(60))
        .await
        .unwrap());
    let after = store.cache.get(&store.key(&record.id)).unwrap();
    assert!(Arc::ptr_eq(&before.data, &after.data));
}

/// A [`MemoryStore`] whose first `delete_by_owner` pass is held between
/// reading the owner's index and ending the sessions it found, until
/// the test lets it go: the window in which a request can move a
/// session to a new id behind the pass's back.
#[derive(Debug)]
struct HeldPass {
    store: MemoryStore,
    hold: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

#[async_trait]
impl SessionStore for HeldPass {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.store.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.store.create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.store.commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.store.touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.store.delete(id).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.store.delete_if_version(id, version).await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        let keys = self.store.owners.keys(owner, &self.store.prefix);
        let held = self
            .hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((reached, release)) = held {
            let _ = reached.send(());
            let _ = release.await;
        }
        Ok(self.store.end_owned(owner, keys))
    }

    fn indexes_owners(&self) -> bool {
        true
    }
}

/// Race 6 of issue 21: "log out everywhere" reads ada's index (the old
/// id) while a request is moving her session to a new id; the request
/// creates and indexes the new id and deletes the old one before the
/// pass reaches it, so the pass ends nothing. The new id must not live
/// on as a way back in.
#[tokio::test]
async fn an_id_cycled_while_a_pass_reads_the_index_is_ended_under_its_new_id() {
    let (reached_tx, reached) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    let store = Arc::new(HeldPass {
        store: MemoryStore::new(),
        hold: Mutex::new(Some((reached_tx, release_rx))),
    });
    let manager = SessionManager::builder(Arc::clone(&store), Key::generate())
        .build()
        .unwrap();
    let login = manager.start(std::iter::empty());
    login.set_owner("ada").await.unwrap();
    let old_id = login.id().await.unwrap().unwrap();
    let Finish::Respond {
        set_cookie: Some(set_cookie),
    } = login.finish().await
    else {
        panic!("the login got no cookie");
    };
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let cycling = manager.start([cookie.as_bytes()]);
    cycling.cycle_id().await.unwrap();
    let new_id = cycling.id().await.unwrap().unwrap();
    let ending = tokio::spawn({
        let manager = manager.clone();
        async move { manager.end_all_for("ada").await }
    });
    reached.await.unwrap();
    assert!(matches!(
        cycling.finish().await,
        Finish::Respond {
            set_cookie: Some(_)
        }
    ));
    assert!(store.store.load(&new_id).await.unwrap().is_some());
    assert_eq!(store.store.load(&old_id).await.unwrap(), None);
    release.send(()).unwrap();

    ending.await.unwrap().unwrap();
    assert_eq!(
        store.store.load(&new_id).await.unwrap(),
        None,
        "the session outlived log out everywhere under its new id"
    );
}
