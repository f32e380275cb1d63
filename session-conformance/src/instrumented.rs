//! A store wrapper that counts calls and can be told to fail.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::SystemTime,
};

use async_trait::async_trait;
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore, Stamp,
    },
    ErrorKind, SessionId, StoreError,
};

/// How many times each store operation was called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// `load` calls.
    pub load: usize,
    /// `stamp` calls.
    pub stamp: usize,
    /// `create` calls.
    pub create: usize,
    /// `commit` calls.
    pub commit: usize,
    /// `touch` calls.
    pub touch: usize,
    /// `delete` calls.
    pub delete: usize,
    /// `delete_by_owner` calls.
    pub delete_by_owner: usize,
    /// `delete_if_version` calls.
    pub delete_if_version: usize,
}

impl Calls {
    /// One `load` and nothing else: what a request that reads a session
    /// should cost.
    ///
    /// ```
    /// use session_conformance::Calls;
    ///
    /// assert_eq!(Calls::ONE_LOAD, Calls { load: 1, ..Calls::default() });
    /// ```
    pub const ONE_LOAD: Self = Self {
        load: 1,
        stamp: 0,
        create: 0,
        commit: 0,
        touch: 0,
        delete: 0,
        delete_by_owner: 0,
        delete_if_version: 0,
    };

    /// Calls that write.
    #[must_use]
    pub fn writes(&self) -> usize {
        self.create
            + self.commit
            + self.touch
            + self.delete
            + self.delete_by_owner
            + self.delete_if_version
    }
}

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Every call fails at once with this kind.
    Fail(ErrorKind),
    /// Loads and stamps work; every write (`create`, `commit`, `touch`,
    /// `delete`, `delete_if_version`, `delete_by_owner`) fails at once with
    /// this kind.
    FailWrites(ErrorKind),
    /// Every read (`load`, `stamp`) fails at once with this kind; writes
    /// work. A store that timed out one request's load and took its write a
    /// moment later, which is how a failed load and a working write meet in
    /// one request.
    FailReads(ErrorKind),
    /// Every call waits forever, so only the manager's operation timeout
    /// ends it.
    Hang,
}

/// Wraps a real store, counting every call by operation and, on demand,
/// failing or hanging every call.
///
/// It stands in for nothing: calls go to the wrapped store. The HTTP scenarios
/// use it to check "no store call", "exactly one commit" and the error policy
/// without depending on how a particular backend fails. Backends' own fault
/// tests kill real servers instead.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn SessionStore>,
    load: AtomicUsize,
    stamp: AtomicUsize,
    create: AtomicUsize,
    commit: AtomicUsize,
    touch: AtomicUsize,
    delete: AtomicUsize,
    delete_by_owner: AtomicUsize,
    delete_if_version: AtomicUsize,
    fault: Mutex<Option<Fault>>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            load: AtomicUsize::new(0),
            stamp: AtomicUsize::new(0),
            create: AtomicUsize::new(0),
            commit: AtomicUsize::new(0),
            touch: AtomicUsize::new(0),
            delete: AtomicUsize::new(0),
            delete_by_owner: AtomicUsize::new(0),
            delete_if_version: AtomicUsize::new(0),
            fault: Mutex::new(None),
        }
    }

    /// The calls so far.
    #[must_use]
    pub fn calls(&self) -> Calls {
        Calls {
            load: self.load.load(Ordering::SeqCst),
            stamp: self.stamp.load(Ordering::SeqCst),
            create: self.create.load(Ordering::SeqCst),
            commit: self.commit.load(Ordering::SeqCst),
            touch: self.touch.load(Ordering::SeqCst),
            delete: self.delete.load(Ordering::SeqCst),
            delete_by_owner: self.delete_by_owner.load(Ordering::SeqCst),
            delete_if_version: self.delete_if_version.load(Ordering::SeqCst),
        }
    }

    /// The calls so far, and starts counting from zero.
    pub fn take_calls(&self) -> Calls {
        Calls {
            load: self.load.swap(0, Ordering::SeqCst),
            stamp: self.stamp.swap(0, Ordering::SeqCst),
            create: self.create.swap(0, Ordering::SeqCst),
            commit: self.commit.swap(0, Ordering::SeqCst),
            touch: self.touch.swap(0, Ordering::SeqCst),
            delete: self.delete.swap(0, Ordering::SeqCst),
            delete_by_owner: self.delete_by_owner.swap(0, Ordering::SeqCst),
            delete_if_version: self.delete_if_version.swap(0, Ordering::SeqCst),
        }
    }

    /// Makes every later call fail or hang (`Some`), or work again (`None`).
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = fault;
    }

    async fn enter(
        &self,
        counter: &AtomicUsize,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        counter.fetch_add(1, Ordering::SeqCst);
        let fault = *self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        let injected = |kind| {
            Err(StoreError::new(kind, operation)
                .with_source("fault injected by session-conformance"))
        };
        match fault {
            None => Ok(()),
            Some(Fault::FailWrites(_)) if matches!(operation, "load" | "stamp") => Ok(()),
            Some(Fault::FailReads(_)) if !matches!(operation, "load" | "stamp") => Ok(()),
            Some(Fault::Fail(kind) | Fault::FailWrites(kind) | Fault::FailReads(kind)) => {
                injected(kind)
            }
            Some(Fault::Hang) => std::future::pending().await,
        }
    }
}

#[async_trait]
impl SessionStore for InstrumentedStore {
    /// The wrapped store's: the wrapper stands in for nothing, so metrics
    /// and spans name the store that answers.
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.enter(&self.load, "load").await?;
        self.inner.load(id).await
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        self.enter(&self.stamp, "stamp").await?;
        self.inner.stamp(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.enter(&self.create, "create").await?;
        self.inner.create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.enter(&self.commit, "commit").await?;
        self.inner.commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.enter(&self.touch, "touch").await?;
        self.inner.touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.enter(&self.delete, "delete").await?;
        self.inner.delete(id).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.enter(&self.delete_if_version, "delete_if_version")
            .await?;
        self.inner.delete_if_version(id, version).await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.enter(&self.delete_by_owner, "delete_by_owner").await?;
        self.inner.delete_by_owner(owner).await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.inner.sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        self.inner.indexes_owners()
    }

    fn generate_id(&self) -> SessionId {
        self.inner.generate_id()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
}
