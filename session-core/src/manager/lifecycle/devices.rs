//! The manager's side of a user's devices: listing an owner's sessions,
//! ending one, ending all but one, and the per-owner cap. See
//! [`crate::devices`] for the model.

use std::{collections::HashSet, num::NonZeroUsize};

use super::{SessionManager, Shared};
use crate::{
    devices::{self, Device, DeviceHandle},
    store::{ConditionalDelete, Record},
    telemetry::{self, Ended, Operation},
    ErrorKind, Owner, SessionId, StoreError,
};

/// How many times ending one session tries to delete it at the version it
/// was read at before it deletes it outright. Each retry follows a commit
/// of that session that landed in between, so only a session committing
/// without pause runs out of them.
const END_ATTEMPTS: usize = 4;

impl Shared {
    /// The live sessions of `owner`, as the store lists them, without those
    /// the manager's own timeouts have ended.
    pub(crate) async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        if Owner::check_name(owner).is_err() {
            // No session can have been given this name.
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let mut records = self
            .call(Operation::SessionsOf, self.store.sessions_of(owner))
            .await?;
        records.retain(|record| {
            self.is_live(
                now,
                record.created_at,
                record.expires_at,
                record.lifetime.as_ref(),
            ) && record.owner.as_ref().is_some_and(|held| held.name == owner)
        });
        Ok(records)
    }

    /// `owner`'s devices, newest login first; `current` is marked.
    pub(crate) async fn devices_of(
        &self,
        owner: &str,
        current: Option<&SessionId>,
    ) -> Result<Vec<Device>, StoreError> {
        let mut records = self.sessions_of(owner).await?;
        devices::newest_login_first(&mut records);
        let now = self.clock.now();
        Ok(records
            .iter()
            .map(|record| {
                // "Last active" is read off the expiry, which the session's
                // own idle timeout set.
                let (idle, _) = self.timeouts(record.lifetime.as_ref());
                devices::device(&self.handles, record, idle, now, current)
            })
            .collect())
    }

    /// The session of `owner` that `handle` names, if any.
    pub(crate) async fn find_device(
        &self,
        owner: &str,
        handle: &DeviceHandle,
    ) -> Result<Option<Record>, StoreError> {
        Ok(self
            .sessions_of(owner)
            .await?
            .into_iter()
            .find(|record| self.handles.names(handle, &record.id)))
    }

    /// Ends `record`'s session if it still belongs to `owner`: true when
    /// this call ended it.
    ///
    /// It deletes at the version it read, so a commit racing the end either
    /// lands first (then the session is read again, and ended if it still
    /// has the owner) or finds the session gone: an ended session never
    /// comes back, and a session that meanwhile moved to another owner is
    /// left alone.
    pub(crate) async fn end_owned(&self, owner: &str, record: &Record) -> Result<bool, StoreError> {
        let id = record.id;
        let mut version = record.version;
        for _ in 1..END_ATTEMPTS {
            match self
                .call(
                    Operation::DeleteIfVersion,
                    self.store.delete_if_version(&id, version),
                )
                .await?
            {
                ConditionalDelete::Deleted => return Ok(true),
                ConditionalDelete::Missing => return Ok(false),
                ConditionalDelete::Changed => {
                    match self.call(Operation::Load, self.store.load(&id)).await? {
                        Some(now) if now.owner.as_ref().is_some_and(|o| o.name == owner) => {
                            version = now.version;
                        }
                        _ => return Ok(false),
                    }
                }
            }
        }
        // Commits kept landing between read and delete: the session was
        // just seen with this owner, so end it whatever its version. A
        // commit after this finds it missing.
        self.call(Operation::Delete, self.store.delete(&id)).await?;
        Ok(true)
    }

    /// Ends every session of `owner` but `keep`; how many it ended.
    ///
    /// Like [`end_all_for`](super::end_all_for) it lists again until a
    /// pass ends nothing and finds no session an earlier pass had not
    /// found: a session that changes id ([`cycle_id`](crate::Session::cycle_id))
    /// while a pass runs is live under its new id after the pass read the
    /// list. So every other session the owner had when the call began is
    /// ended, under its old id or a new one; a login that lands while the
    /// call runs is either ended (and counted) or, when it lands after the
    /// last pass read the list, kept.
    pub(crate) async fn end_others(
        &self,
        owner: &str,
        keep: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let mut ended = 0;
        let mut found = HashSet::new();
        for _ in 0..SessionManager::END_ALL_PASSES {
            let mut new = false;
            let mut pass = 0;
            for record in self.sessions_of(owner).await? {
                if Some(&record.id) == keep {
                    continue;
                }
                new |= found.insert(record.id);
                if self.end_owned(owner, &record).await? {
                    pass += 1;
                }
            }
            ended += pass;
            if pass == 0 && !new {
                telemetry::sessions_ended(Ended::EndAll, ended);
                return Ok(ended);
            }
        }
        telemetry::sessions_ended(Ended::EndAll, ended);
        Err(still_changing("log_out_other_sessions"))
    }

    /// The per-owner cap after a login of `owner`: ends every session of
    /// the owner but the `cap` newest logins; how many it ended.
    ///
    /// Every login runs this after its own write, so the last pass to list
    /// the owner's sessions sees every login written before it, and all
    /// passes rank alike ([`devices::newest_login_first`]): once a set of
    /// concurrent logins has finished, at most `cap` sessions remain, and
    /// they are the newest logins. It lists again after ending, until the
    /// owner is within the cap: a session that changed id while it was
    /// being ended is live under its new id.
    pub(crate) async fn enforce_cap(
        &self,
        owner: &str,
        cap: NonZeroUsize,
    ) -> Result<u64, StoreError> {
        let mut ended = 0;
        for _ in 0..SessionManager::END_ALL_PASSES {
            let mut records = self.sessions_of(owner).await?;
            if records.len() <= cap.get() {
                if ended > 0 {
                    telemetry::sessions_ended(Ended::Cap, ended);
                    tracing::info!(
                        sessions.ended = ended,
                        cap = cap.get(),
                        "ended the oldest sessions of one owner past the cap"
                    );
                }
                return Ok(ended);
            }
            devices::newest_login_first(&mut records);
            for record in &records[cap.get()..] {
                if self.end_owned(owner, record).await? {
                    ended += 1;
                }
            }
        }
        telemetry::sessions_ended(Ended::Cap, ended);
        Err(still_changing("max_sessions_per_owner"))
    }
}

/// The error when an owner's sessions kept changing for every pass.
fn still_changing(operation: &'static str) -> StoreError {
    StoreError::new(ErrorKind::Other, operation).with_source(format!(
        "the owner's sessions were still changing after {} passes; call again",
        SessionManager::END_ALL_PASSES
    ))
}

impl SessionManager {
    /// The live sessions of `owner`, newest login first, as a "your
    /// devices" page or an admin tool lists them (none is marked current).
    ///
    /// # Errors
    /// The store's error: [`ErrorKind::Unsupported`]
    /// when it cannot list an owner's sessions (Memcached), or an outage.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{Key, SessionManager, memory::MemoryStore};
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// let session = manager.start(std::iter::empty());
    /// session.set_owner("user-42").await.unwrap();
    /// session.set_label("Firefox on Linux").await.unwrap();
    /// let _ = session.finish().await;
    ///
    /// let devices = manager.devices_of("user-42").await.unwrap();
    /// assert_eq!(devices.len(), 1);
    /// assert_eq!(devices[0].label.as_deref(), Some("Firefox on Linux"));
    /// assert!(manager.devices_of("user-7").await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn devices_of(&self, owner: &str) -> Result<Vec<Device>, StoreError> {
        self.shared.devices_of(owner, None).await
    }

    /// Ends the session of `owner` that `handle` names; `false` when no
    /// live session of `owner` has that handle (a handle of another owner's
    /// session ends nothing).
    ///
    /// # Errors
    /// As [`devices_of`](Self::devices_of).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{Key, SessionManager, memory::MemoryStore};
    ///
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// let session = manager.start(std::iter::empty());
    /// session.set_owner("user-42").await.unwrap();
    /// let _ = session.finish().await;
    ///
    /// let handle = manager.devices_of("user-42").await.unwrap()[0].handle.clone();
    /// assert!(!manager.end_device_of("user-7", &handle).await.unwrap());
    /// assert!(manager.end_device_of("user-42", &handle).await.unwrap());
    /// assert!(manager.devices_of("user-42").await.unwrap().is_empty());
    /// # }
    /// ```
    pub async fn end_device_of(
        &self,
        owner: &str,
        handle: &DeviceHandle,
    ) -> Result<bool, StoreError> {
        let Some(record) = self.shared.find_device(owner, handle).await? else {
            return Ok(false);
        };
        let ended = self.shared.end_owned(owner, &record).await?;
        if ended {
            telemetry::sessions_ended(Ended::Logout, 1);
        }
        Ok(ended)
    }

    /// The per-owner cap this manager enforces, if any: see
    /// [`with_max_sessions_per_owner`](crate::manager::SessionManagerBuilder::with_max_sessions_per_owner).
    #[must_use]
    pub fn max_sessions_per_owner(&self) -> Option<NonZeroUsize> {
        self.shared.max_sessions_per_owner
    }
}
