//! Gates: hold one chosen store call until the test lets it go, so a test
//! can force one exact interleaving of concurrent requests.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore, Stamp,
    },
    SessionId, StoreError,
};
use tokio::sync::oneshot;

/// A [`SessionStore`] operation, as gates and histories name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`SessionStore::load`].
    Load,
    /// [`SessionStore::stamp`].
    Stamp,
    /// [`SessionStore::create`].
    Create,
    /// [`SessionStore::commit`].
    Commit,
    /// [`SessionStore::touch`].
    Touch,
    /// [`SessionStore::delete`].
    Delete,
    /// [`SessionStore::delete_by_owner`].
    DeleteByOwner,
    /// [`SessionStore::delete_if_version`].
    DeleteIfVersion,
    /// [`SessionStore::sessions_of`].
    SessionsOf,
}

impl Op {
    /// Catches this operation before it reaches the wrapped store.
    pub fn before(self) -> Catch {
        Catch {
            op: self,
            id: None,
            point: Point::Before,
            skip: 0,
        }
    }

    /// Catches this operation after the wrapped store answered, before its
    /// caller sees the answer.
    pub fn after(self) -> Catch {
        Catch {
            point: Point::After,
            ..self.before()
        }
    }
}

/// Where a gate holds a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Before the call reaches the wrapped store: the store has not seen it.
    Before,
    /// After the wrapped store answered: the store has applied it, and the
    /// caller has not seen the answer.
    After,
}

/// Which call a gate holds: an operation, a point, and optionally one id
/// and a number of matching calls to let through first.
///
/// ```
/// use session_conformance::race::Op;
/// use session_core::SessionId;
///
/// let id = SessionId::generate();
/// // The second load of `id`, once the store has answered it.
/// let catch = Op::Load.after().on(id).skip(1);
/// # let _ = catch;
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Catch {
    op: Op,
    id: Option<SessionId>,
    point: Point,
    skip: usize,
}

impl Catch {
    /// Only calls for `id` (never matches `delete_by_owner`, which has none).
    pub fn on(mut self, id: SessionId) -> Self {
        self.id = Some(id);
        self
    }

    /// Lets the first `calls` matching calls through, and holds the next.
    pub fn skip(mut self, calls: usize) -> Self {
        self.skip = calls;
        self
    }

    fn matches(&self, op: Op, id: Option<&SessionId>, point: Point) -> bool {
        self.op == op && self.point == point && self.id.as_ref().is_none_or(|want| id == Some(want))
    }
}

/// A held call, from the test's side. [`reached`](Self::reached) waits until
/// the call arrives; [`release`](Self::release), or dropping the gate, lets
/// it go on. A gate holds one call, once.
#[derive(Debug)]
#[must_use = "a gate that is never awaited forces no interleaving"]
pub struct Gate {
    catch: Catch,
    reached: Option<oneshot::Receiver<()>>,
    release: Option<oneshot::Sender<()>>,
}

impl Gate {
    /// How long [`reached`](Self::reached) waits before it fails the test:
    /// long past any loopback call, short enough that a gate nothing ever
    /// reaches fails instead of hanging the suite.
    pub const REACH_TIMEOUT: Duration = Duration::from_secs(20);

    /// Waits until the call is held.
    ///
    /// # Panics
    /// When no matching call arrives within [`REACH_TIMEOUT`](Self::REACH_TIMEOUT),
    /// or `reached` is called twice.
    pub async fn reached(&mut self) {
        let reached = self
            .reached
            .take()
            .expect("Gate::reached is awaited once per gate");
        match tokio::time::timeout(Self::REACH_TIMEOUT, reached).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the store holding {:?} was dropped", self.catch),
            Err(_) => panic!(
                "no call matching {:?} arrived within {:?}",
                self.catch,
                Self::REACH_TIMEOUT
            ),
        }
    }

    /// Whether the call is held now, without waiting.
    pub fn is_reached(&mut self) -> bool {
        match self.reached.as_mut().map(oneshot::Receiver::try_recv) {
            Some(Ok(())) => {
                self.reached = None;
                true
            }
            Some(Err(_)) => false,
            // Already seen by `reached` or an earlier `is_reached`.
            None => true,
        }
    }

    /// Lets the held call go on (or, if it has not arrived yet, lets it
    /// through when it does).
    pub fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

#[derive(Debug)]
struct Armed {
    catch: Catch,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// Wraps a store so that tests can hold chosen calls with [`Gate`]s.
/// Calls that no gate catches go straight through.
///
/// Wrap each app server's handle separately (the wrappers are cheap and
/// share the inner store) to hold one server's call and not another's.
///
/// ```
/// # session_conformance::block_on(async {
/// use std::{sync::Arc, time::{Duration, SystemTime}};
/// use session_conformance::race::{GatedStore, Op};
/// use session_core::{SessionId, memory::MemoryStore, store::{Record, SessionStore}};
///
/// let shared = Arc::new(MemoryStore::new());
/// let gated = Arc::new(GatedStore::new(shared.clone()));
/// let now = SystemTime::now();
/// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
///
/// // Hold the create after the store took it: the record is stored, and
/// // the caller has not heard back.
/// let mut gate = gated.hold(Op::Create.after().on(record.id));
/// let creating = tokio::spawn({
///     let (gated, record) = (gated.clone(), record.clone());
///     async move { gated.create(&record).await }
/// });
/// gate.reached().await;
/// assert!(shared.load(&record.id).await.unwrap().is_some());
/// assert!(!creating.is_finished());
/// gate.release();
/// creating.await.unwrap().unwrap();
/// # });
/// ```
#[derive(Debug)]
pub struct GatedStore {
    inner: Arc<dyn SessionStore>,
    armed: Mutex<Vec<Armed>>,
}

impl GatedStore {
    /// Wraps `inner` with no gate armed.
    #[must_use]
    pub fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            armed: Mutex::new(Vec::new()),
        }
    }

    /// Arms a gate for the first call that matches `catch` (after its
    /// [`skip`](Catch::skip)).
    pub fn hold(&self, catch: Catch) -> Gate {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.lock().push(Armed {
            catch,
            reached: reached_tx,
            release: release_rx,
        });
        Gate {
            catch,
            reached: Some(reached_rx),
            release: Some(release_tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Armed>> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds the call here if an armed gate catches it.
    async fn pass(&self, op: Op, id: Option<&SessionId>, point: Point) {
        let armed = {
            let mut armed = self.lock();
            let mut caught = None;
            for (index, gate) in armed.iter_mut().enumerate() {
                if gate.catch.matches(op, id, point) {
                    if gate.catch.skip == 0 {
                        caught = Some(index);
                        break;
                    }
                    gate.catch.skip -= 1;
                }
            }
            caught.map(|index| armed.remove(index))
        };
        if let Some(armed) = armed {
            // The test may have dropped its side; then nothing holds us.
            let _ = armed.reached.send(());
            let _ = armed.release.await;
        }
    }

    async fn around<T>(
        &self,
        op: Op,
        id: Option<&SessionId>,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        self.pass(op, id, Point::Before).await;
        let answer = call.await;
        self.pass(op, id, Point::After).await;
        answer
    }
}

#[async_trait]
impl SessionStore for GatedStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.around(Op::Load, Some(id), self.inner.load(id)).await
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        self.around(Op::Stamp, Some(id), self.inner.stamp(id)).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.around(Op::Create, Some(&record.id), self.inner.create(record))
            .await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.around(
            Op::Commit,
            Some(id),
            self.inner.commit(id, changes, expires_at),
        )
        .await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.around(Op::Touch, Some(id), self.inner.touch(id, expires_at))
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.around(Op::Delete, Some(id), self.inner.delete(id))
            .await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.around(
            Op::DeleteIfVersion,
            Some(id),
            self.inner.delete_if_version(id, version),
        )
        .await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.around(Op::DeleteByOwner, None, self.inner.delete_by_owner(owner))
            .await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.around(Op::SessionsOf, None, self.inner.sessions_of(owner))
            .await
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
