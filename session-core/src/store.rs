//! For store authors: the [`SessionStore`] trait every backend implements,
//! the [`Record`] it keeps and the [`Changes`] a request makes to it, and the
//! answers its methods give. `session-conformance` runs the contract's tests
//! against any implementation.
//!
//! An app needs none of this to use a store: it passes one to
//! [`SessionManager::builder`](crate::SessionManager::builder).

use std::time::SystemTime;

use async_trait::async_trait;

use crate::{SessionId, StoreError};

pub use crate::{
    error::BoxError,
    lifetime::{Lifetime, LifetimeError},
    record::{Changes, Data, Owner, OwnerError, Record},
};

/// The key prefix every backend uses unless told otherwise, so sessions
/// written by one backend's defaults are found under the same keys by
/// tools that know the convention.
pub const DEFAULT_KEY_PREFIX: &str = "session:";

/// The answer of [`SessionStore::create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Created {
    /// The record was stored.
    Created,
    /// A live record already has this id; nothing was written.
    IdTaken,
}

/// The answer of [`SessionStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Committed {
    /// The changes were applied; the record now has this version.
    Applied {
        /// The record's version after this commit.
        version: u64,
    },
    /// No live record has this id (never created, expired or deleted).
    /// Nothing was written: a commit never resurrects a session.
    Missing,
}

/// The answer of [`SessionStore::delete_if_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ConditionalDelete {
    /// The live record had the version given and is deleted.
    Deleted,
    /// The live record has another version: a commit landed since the
    /// caller read it. Nothing was deleted.
    Changed,
    /// No live record has this id (never created, expired or deleted).
    Missing,
}

/// The version and expiry of a live record, without its data: what a
/// near-cache needs to tell whether its copy is still the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The record's [`version`](Record::version).
    pub version: u64,
    /// The record's [`expires_at`](Record::expires_at).
    pub expires_at: SystemTime,
}

impl From<&Record> for Stamp {
    fn from(record: &Record) -> Self {
        Self {
            version: record.version,
            expires_at: record.expires_at,
        }
    }
}

/// What one [`SessionStore::delete_by_owner`] pass did: how many sessions it
/// ended, and which sessions it found in the owner's index.
///
/// [`SessionManager::end_all_for`](crate::SessionManager::end_all_for) asks
/// the store again until a pass ends nothing and finds no session that an
/// earlier pass had not found. The count alone cannot tell it when to stop:
/// a session that changes id ([`Session::cycle_id`](crate::Session::cycle_id))
/// while a pass runs is indexed under its new id after the pass read the
/// index and deletes its old id before the pass reaches it, so that pass
/// ends nothing, yet the new id is live.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::{Duration, SystemTime};
/// use session_core::{SessionId, memory::MemoryStore, store::{Owner, Record, SessionStore}};
///
/// let store = MemoryStore::new();
/// let now = SystemTime::now();
/// let mut record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
/// record.owner = Some(Owner::new("user-42", record.expires_at).unwrap());
/// let _ = store.create(&record).await.unwrap();
///
/// let pass = store.delete_by_owner("user-42").await.unwrap();
/// assert_eq!((pass.ended, pass.indexed), (1, vec![record.id]));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct OwnerPass {
    /// How many sessions this pass ended.
    pub ended: u64,
    /// Every session the pass found in the owner's index, whatever it did
    /// with it: those it ended, those already gone, and those that belong
    /// to someone else now. In no particular order.
    pub indexed: Vec<SessionId>,
}

/// Where sessions live. One contract for every backend.
///
/// Implementations are shared as `Arc<dyn SessionStore>` across every request
/// of an app, so every method takes `&self` and must be safe to call
/// concurrently for the same id.
///
/// # Contract
/// The `session-conformance` crate checks every point below against a real
/// instance of the store; run it on yours.
/// - [`load`](Self::load) returns `None` for an id that was never created,
///   was deleted, or whose `expires_at` has passed, even if the backing store
///   has not evicted it yet.
/// - [`create`](Self::create) never overwrites a live record.
/// - [`commit`](Self::commit) applies a [`Changes`] atomically and bumps the
///   version by exactly one. Commits that touch disjoint keys of one session
///   concurrently all survive; on the same key the last one wins.
/// - [`touch`](Self::touch) moves `expires_at` without rewriting data or
///   bumping the version.
/// - [`stamp`](Self::stamp) agrees with [`load`](Self::load): the same
///   version and expiry, and `None` exactly when `load` is `None`.
/// - [`create`](Self::create) and [`commit`](Self::commit) keep
///   [`Record::owner`](crate::store::Record::owner): `load` returns the owner last
///   written, and [`Changes::owner`](crate::store::Changes::owner) changes it.
/// - [`delete_if_version`](Self::delete_if_version), where supported,
///   deletes a live record only at the version given, in one atomic step
///   with respect to `commit`: a commit it races is kept or finds the
///   record `Missing`, never acknowledged and then deleted.
/// - [`delete_by_owner`](Self::delete_by_owner), where supported, ends every
///   session of one owner and no other, no commit brings one back, and it
///   reports every session it found in the owner's index.
/// - [`sessions_of`](Self::sessions_of), where supported, lists every live
///   session of one owner and no other, each as `load` returns it.
/// - Every store carries a key prefix: two stores with different prefixes on
///   the same backing server never see each other's sessions.
/// - Errors are typed ([`StoreError`]), so failover and the error policy can
///   tell an outage from a corrupt record.
#[async_trait]
pub trait SessionStore: std::fmt::Debug + Send + Sync + 'static {
    /// The live record for `id`, or `None`.
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError>;

    /// The [`Stamp`] of the live record for `id`, or `None`: [`load`](Self::load)
    /// without the data.
    ///
    /// The default loads the whole record. Override it when the backend can
    /// read two small fields for less than the whole session (Redis: one
    /// `HMGET`); [`TieredStore`](crate::memory::TieredStore) calls it on every load.
    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        Ok(self.load(id).await?.as_ref().map(Stamp::from))
    }

    /// Stores `record` unless a live record already has its id.
    async fn create(&self, record: &Record) -> Result<Created, StoreError>;

    /// Applies `changes` to the live record for `id` as one atomic step, sets
    /// its expiry to `expires_at` and bumps its version by one.
    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError>;

    /// Moves the expiry of the live record for `id` to `expires_at` without
    /// rewriting data. `false` when there is no live record.
    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError>;

    /// Forgets `id`. Deleting an absent id is not an error.
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError>;

    /// Deletes the live record for `id` only if its version is still
    /// `version`, as one atomic step: a commit racing it either lands first
    /// (the answer is [`Changed`](ConditionalDelete::Changed), and the
    /// record keeps the commit) or finds the record
    /// [`Missing`](Committed::Missing).
    ///
    /// [`Session::cycle_id`](crate::Session::cycle_id) ends the old id with
    /// it once the new one exists, so that a commit acknowledged on the old
    /// id after the request loaded it is carried over instead of deleted
    /// with the old id.
    ///
    /// The default answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported):
    /// reading the version and then deleting would delete a commit
    /// acknowledged in between, so a store without an atomic way must say
    /// so. The manager then fails the cycle (the request gets a 503 and
    /// keeps its old id and data) rather than risk the write.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::{Duration, SystemTime};
    /// use session_core::{SessionId, memory::MemoryStore, store::{Changes, ConditionalDelete, Record, SessionStore}};
    ///
    /// let store = MemoryStore::new();
    /// let now = SystemTime::now();
    /// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
    /// let _ = store.create(&record).await.unwrap();
    /// let mut changes = Changes::default();
    /// changes.set("n", "2");
    /// let _ = store.commit(&record.id, &changes, record.expires_at).await.unwrap();
    ///
    /// // Read at version 1; the commit made it 2, so nothing is deleted.
    /// let answer = store.delete_if_version(&record.id, record.version).await.unwrap();
    /// assert_eq!(answer, ConditionalDelete::Changed);
    /// let answer = store.delete_if_version(&record.id, record.version + 1).await.unwrap();
    /// assert_eq!(answer, ConditionalDelete::Deleted);
    /// assert_eq!(store.load(&record.id).await.unwrap(), None);
    /// # }
    /// ```
    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let _ = (id, version);
        Err(StoreError::unsupported("delete_if_version"))
    }

    /// Ends every live session whose [`Owner`](crate::store::Owner) is named `owner`,
    /// and says how many it ended and which sessions it found in the
    /// owner's index: one pass of "log this user out everywhere", which
    /// [`SessionManager::end_all_for`](crate::SessionManager::end_all_for)
    /// repeats until a pass finds nothing new (see [`OwnerPass`]).
    ///
    /// When it returns, no session that had this owner when the call began
    /// is live, a commit racing it finds its session
    /// [`Missing`](Committed::Missing), and sessions of other owners,
    /// including sessions that moved to another owner, are untouched.
    /// [`OwnerPass::indexed`] lists every session whose index entry the
    /// pass read, ended or not; an entry leaves the index only once its
    /// session is gone or belongs to someone else, so a session of this
    /// owner that is live when a pass reads the index is in the list.
    /// Entries of sessions that expired leave the store's index by
    /// themselves, by the owner's [`until`](crate::store::Owner::until) at the
    /// latest.
    ///
    /// The default answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported):
    /// a store that cannot enumerate an owner's sessions correctly must say
    /// so rather than end some of them.
    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        let _ = owner;
        Err(StoreError::unsupported("delete_by_owner"))
    }

    /// Every live record whose [`Owner`] is named
    /// `owner`, in no particular order: what a "your devices" page lists
    /// ([`Session::devices`](crate::Session::devices)).
    ///
    /// Each record is as [`load`](Self::load) would return it at some
    /// moment during the call; a record that expired, was deleted or moved
    /// to another owner is left out. A session of this owner that is live
    /// for the whole call is in the answer.
    ///
    /// The default answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported):
    /// a store that cannot enumerate an owner's sessions must say so rather
    /// than list some of them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::{Duration, SystemTime};
    /// use session_core::{SessionId, memory::MemoryStore, store::{Owner, Record, SessionStore}};
    ///
    /// let store = MemoryStore::new();
    /// let now = SystemTime::now();
    /// let mut record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
    /// record.owner = Some(Owner::new("user-42", record.expires_at).unwrap());
    /// let _ = store.create(&record).await.unwrap();
    ///
    /// assert_eq!(store.sessions_of("user-42").await.unwrap(), vec![record]);
    /// assert!(store.sessions_of("user-7").await.unwrap().is_empty());
    /// # }
    /// ```
    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        let _ = owner;
        Err(StoreError::unsupported("sessions_of"))
    }

    /// Whether [`delete_by_owner`](Self::delete_by_owner) is implemented:
    /// `false` by default, as that method's default is "unsupported".
    /// Wrappers over several stores ask before they start, so that they
    /// never end an owner's sessions in one store and then learn that the
    /// other cannot.
    fn indexes_owners(&self) -> bool {
        false
    }

    /// The id for a session this process is about to create: every fresh
    /// session, every [`cycle_id`](crate::Session::cycle_id) and every
    /// migrated session takes its id from here.
    ///
    /// The default is [`SessionId::generate`]. A store may override it to
    /// pick, among random ids, one it serves cheaply from this process; it
    /// must still return an id drawn from the CSPRNG, since the id is the
    /// session's only secret. session-cluster's store returns an id whose
    /// owner is this node, so that the requests a load balancer keeps on
    /// the node that created the session (a kept-alive connection) need no
    /// round trip to another node.
    ///
    /// ```
    /// use session_core::{memory::MemoryStore, store::SessionStore};
    ///
    /// let store = MemoryStore::new();
    /// assert_ne!(store.generate_id(), store.generate_id());
    /// ```
    fn generate_id(&self) -> SessionId {
        SessionId::generate()
    }

    /// Whether the store can serve requests now. Stores that cannot tell
    /// answer [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    async fn health(&self) -> Result<(), StoreError> {
        Err(StoreError::unsupported("health"))
    }

    /// A short, fixed name for this kind of store: the `store` label of
    /// session-kit's metrics and the `store.kind` field of its store-call
    /// spans (see [`telemetry`](crate::telemetry)). session-kit's stores say
    /// `memory`, `redis`, `memcached`, `cluster`, `failover`, `tiered`; a
    /// [`LazyStore`](crate::lazy::LazyStore) says the kind it was built for.
    ///
    /// The default is the type's name without its path or generic
    /// arguments (`MyStore`), so a third-party store is told apart without
    /// a line of code. It is read once, when a manager or a composite store
    /// is built over the store, and must not change afterwards.
    ///
    /// ```
    /// use session_core::{memory::MemoryStore, store::SessionStore};
    ///
    /// assert_eq!(MemoryStore::new().kind(), "memory");
    /// ```
    fn kind(&self) -> &'static str {
        type_name_kind(std::any::type_name::<Self>())
    }
}

/// `path::to::MyStore<Generic>` as `MyStore`.
fn type_name_kind(name: &'static str) -> &'static str {
    let name = name.split('<').next().unwrap_or(name);
    name.rsplit("::").next().unwrap_or(name)
}

/// A shared store is a store, so `Arc<dyn SessionStore>` can be handed to
/// anything that takes `impl SessionStore`, including wrappers.
#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        (**self).load(id).await
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        (**self).stamp(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        (**self).create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        (**self).commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        (**self).touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        (**self).delete(id).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        (**self).delete_if_version(id, version).await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        (**self).delete_by_owner(owner).await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        (**self).sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        (**self).indexes_owners()
    }

    fn generate_id(&self) -> SessionId {
        (**self).generate_id()
    }

    async fn health(&self) -> Result<(), StoreError> {
        (**self).health().await
    }

    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_kind_is_the_bare_type_name() {
        assert_eq!(
            super::type_name_kind("my_crate::stores::MyStore<alloc::sync::Arc<dyn a::B>>"),
            "MyStore"
        );
        assert_eq!(super::type_name_kind("MyStore"), "MyStore");
    }
}
