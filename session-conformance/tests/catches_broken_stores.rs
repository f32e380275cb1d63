//! The suite must be able to fail: each deliberately broken store below
//! breaks one rule of the contract, and the test for that rule must catch it.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use futures_util::FutureExt as _;
use session_conformance::{async_trait, block_on, store, StoreFactory};
use session_core::{
    memory::MemoryStore,
    store::{Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore},
    SessionId, StoreError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// `commit` reads, yields, then writes the whole record back.
    LostUpdates,
    /// `create` replaces whatever is there.
    Overwrites,
    /// `create` stores every record for ten minutes, whatever it asked for.
    NeverExpires,
    /// `commit` to a missing id creates it.
    Resurrects,
    /// The factory ignores the prefix.
    IgnoresPrefix,
    /// `delete_by_owner` checks each session's owner, then deletes it in a
    /// separate step, so a session that moved to another owner in between
    /// is ended with the old owner's.
    ChecksThenEnds,
    /// `delete_if_version` checks the version, then deletes in a separate
    /// step, so a commit acknowledged in between is deleted with it.
    ChecksVersionThenDeletes,
}

#[derive(Debug)]
struct BrokenStore {
    inner: MemoryStore,
    flaw: Flaw,
    /// Every id created, for `delete_by_owner` to go through.
    created: Mutex<Vec<SessionId>>,
    /// Told after every applied commit, so the flawed `delete_if_version`
    /// can wait for one inside its window: the flaw then shows on every
    /// run, not only when the scheduler happens to interleave them.
    committed: tokio::sync::Notify,
}

#[async_trait]
impl SessionStore for BrokenStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.inner.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record.id);
        match self.flaw {
            Flaw::Overwrites => {
                self.inner.delete(&record.id).await?;
                self.inner.create(record).await
            }
            Flaw::NeverExpires => {
                let mut record = record.clone();
                record.expires_at = SystemTime::now() + std::time::Duration::from_secs(600);
                self.inner.create(&record).await
            }
            _ => self.inner.create(record).await,
        }
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        match self.flaw {
            Flaw::LostUpdates => {
                let Some(mut record) = self.inner.load(id).await? else {
                    return Ok(Committed::Missing);
                };
                tokio::task::yield_now().await;
                changes.apply_to(&mut record.data);
                record.expires_at = expires_at;
                record.version += 1;
                self.inner.delete(id).await?;
                let _ = self.inner.create(&record).await?;
                Ok(Committed::Applied {
                    version: record.version,
                })
            }
            Flaw::Resurrects if self.inner.load(id).await?.is_none() => {
                let mut data = Default::default();
                changes.apply_to(&mut data);
                let _ = self
                    .inner
                    .create(&Record::new(*id, data, SystemTime::now(), expires_at))
                    .await?;
                Ok(Committed::Applied { version: 1 })
            }
            _ => {
                let committed = self.inner.commit(id, changes, expires_at).await;
                self.committed.notify_waiters();
                committed
            }
        }
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
        if self.flaw != Flaw::ChecksVersionThenDeletes {
            return self.inner.delete_if_version(id, version).await;
        }
        match self.inner.load(id).await? {
            None => Ok(ConditionalDelete::Missing),
            Some(record) if record.version != version => Ok(ConditionalDelete::Changed),
            Some(_) => {
                // The window between the check and the delete, held until a
                // commit lands in it: one that moves the version past the
                // one checked, not the tail of a commit applied before the
                // check (bounded, for a test with no writers).
                let window = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
                loop {
                    let next = self.committed.notified();
                    let past = self
                        .inner
                        .load(id)
                        .await?
                        .is_some_and(|record| record.version > version);
                    if past || tokio::time::timeout_at(window, next).await.is_err() {
                        break;
                    }
                }
                self.inner.delete(id).await?;
                Ok(ConditionalDelete::Deleted)
            }
        }
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        if self.flaw != Flaw::ChecksThenEnds {
            return self.inner.delete_by_owner(owner).await;
        }
        let ids = self
            .created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut pass = OwnerPass::default();
        for id in ids {
            let owned = self
                .inner
                .load(&id)
                .await?
                .and_then(|record| record.owner)
                .is_some_and(|o| o.name == owner);
            if owned {
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                self.inner.delete(&id).await?;
                pass.ended += 1;
            }
            pass.indexed.push(id);
        }
        Ok(pass)
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.inner.sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        true
    }
}

struct BrokenFactory {
    base: MemoryStore,
    flaw: Flaw,
}

#[async_trait]
impl StoreFactory for BrokenFactory {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        let inner = if self.flaw == Flaw::IgnoresPrefix {
            self.base.clone()
        } else {
            self.base.prefixed(prefix)
        };
        Arc::new(BrokenStore {
            inner,
            flaw: self.flaw,
            created: Mutex::default(),
            committed: tokio::sync::Notify::new(),
        })
    }
}

fn caught(flaw: Flaw, test: &str) -> bool {
    let factory = BrokenFactory {
        base: MemoryStore::new(),
        flaw,
    };
    block_on(AssertUnwindSafe(store::run_one(test, &factory)).catch_unwind()).is_err()
}

#[test]
fn lost_updates_fail_the_concurrent_disjoint_commit_test() {
    assert!(caught(
        Flaw::LostUpdates,
        "concurrent_disjoint_commits_all_survive"
    ));
}

#[test]
fn an_overwriting_create_fails_the_create_test() {
    assert!(caught(Flaw::Overwrites, "create_never_overwrites"));
}

#[test]
fn a_store_that_ignores_expiry_fails_the_expiry_test() {
    assert!(caught(Flaw::NeverExpires, "load_of_expired_record_is_none"));
}

#[test]
fn a_resurrecting_commit_fails_the_missing_commit_test() {
    assert!(caught(
        Flaw::Resurrects,
        "commit_to_missing_session_is_missing_and_does_not_resurrect"
    ));
}

#[test]
fn a_store_that_ignores_its_prefix_fails_the_prefix_test() {
    assert!(caught(
        Flaw::IgnoresPrefix,
        "prefixes_do_not_see_each_other"
    ));
}

#[test]
fn a_check_then_end_delete_by_owner_fails_the_owner_change_race_test() {
    assert!(caught(
        Flaw::ChecksThenEnds,
        "owner_changes_racing_delete_by_owner_leave_no_session_of_that_owner"
    ));
    // The same store passes the tests without a race: only the race shows it.
    assert!(!caught(
        Flaw::ChecksThenEnds,
        "delete_by_owner_follows_owner_changes"
    ));
}

#[test]
fn a_check_then_delete_delete_if_version_fails_the_commit_race_test() {
    assert!(caught(
        Flaw::ChecksVersionThenDeletes,
        "commits_racing_delete_if_version_are_kept_or_refused"
    ));
    // The same store passes the test without a race: only the race shows it.
    assert!(!caught(
        Flaw::ChecksVersionThenDeletes,
        "delete_if_version_deletes_only_at_the_version_given"
    ));
}

#[test]
#[should_panic(expected = "no store test is called")]
fn run_one_refuses_an_unknown_name() {
    block_on(store::run_one(
        "no_such_test",
        &session_conformance::MemoryFactory::new(),
    ));
}
