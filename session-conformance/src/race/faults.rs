//! The explorer's store wrapper: seeded delays around every store call,
//! and faults (down, paused, restarted empty) for in-process stores.

use std::{
    future::Future,
    ops::RangeInclusive,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use rand::{rngs::StdRng, Rng, SeedableRng};
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore, Stamp,
    },
    ErrorKind, SessionId, StoreError,
};
use tokio::sync::watch;

/// A fault a scenario injects into one shared store for a window of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFault {
    /// Every call fails at once with [`ErrorKind::Unavailable`], as a
    /// stopped server refuses connections. A call under way when it starts
    /// loses its answer, whether or not the store applied it.
    Down,
    /// Every call hangs until the window ends, as a server stopped with
    /// `SIGSTOP` or a network black hole: only the callers' timeouts end
    /// them. Calls held meanwhile go through when it ends.
    Pause,
    /// The store dies, losing everything, and comes back empty when the
    /// window ends (a restart without persistence); down in between.
    RestartEmpty,
}

/// Applies faults to a scenario's shared stores. The explorer's own
/// implementation works on the in-process wrapper ([`SimulatedFaults`]); a
/// backend over real servers supplies one that kills, stops and restarts
/// them (see [`Deployment::faults`](super::Deployment::faults)).
#[async_trait]
pub trait Faults: Send + Sync {
    /// `fault` starts on shared store number `store`.
    async fn begin(&self, store: usize, fault: StoreFault);

    /// `fault`, begun earlier on `store`, ends: the store is up again
    /// (empty, after [`StoreFault::RestartEmpty`]).
    async fn end(&self, store: usize, fault: StoreFault);
}

/// The seeded source of every choice in one run: delays, which server a
/// request goes to, which operation a client runs. Clones share one
/// generator, so on a current-thread runtime the sequence of draws, and
/// with it the whole run, follows from the seed.
#[derive(Debug, Clone)]
pub struct Schedule {
    rng: Arc<Mutex<StdRng>>,
    max_delay: Duration,
}

impl Schedule {
    /// A schedule for `seed`, delaying store calls by up to `max_delay`.
    #[must_use]
    pub fn new(seed: u64, max_delay: Duration) -> Self {
        Self {
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            max_delay,
        }
    }

    fn rng(&self) -> MutexGuard<'_, StdRng> {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A number in `range`.
    #[must_use]
    pub fn pick(&self, range: RangeInclusive<u64>) -> u64 {
        self.rng().random_range(range)
    }

    /// A duration in `range`, to the millisecond.
    #[must_use]
    pub fn duration(&self, range: RangeInclusive<Duration>) -> Duration {
        let (low, high) = (millis(*range.start()), millis(*range.end()));
        Duration::from_millis(self.pick(low..=high.max(low)))
    }

    /// One store call's delay: none a third of the time (calls that run
    /// back to back matter too), otherwise up to the maximum.
    #[must_use]
    pub fn delay(&self) -> Duration {
        let mut rng = self.rng();
        if rng.random_ratio(1, 3) {
            Duration::ZERO
        } else {
            Duration::from_millis(rng.random_range(1..=millis(self.max_delay).max(1)))
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Up,
    Down,
    Paused,
}

type Restart = Box<dyn Fn() -> Arc<dyn SessionStore> + Send + Sync>;

/// One shared store as the explorer runs it: every call waits a seeded
/// delay before it reaches the store and another before its caller sees
/// the answer, so concurrent requests interleave differently with every
/// seed; and faults are applied here for in-process stores.
///
/// A call that has left (its first delay is over) is served whatever
/// becomes of its caller, as a server runs a command whose client gave up:
/// a write held by a pause lands when the pause ends, after its request
/// has answered 503. Only a call still on its way is dropped with a
/// cancelled caller.
pub struct SimulatedStore {
    link: Arc<Link>,
}

/// What a call in flight needs, shared with the task that serves it.
struct Link {
    inner: Mutex<Arc<dyn SessionStore>>,
    restart: Restart,
    condition: watch::Sender<Condition>,
    schedule: Schedule,
}

impl std::fmt::Debug for SimulatedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedStore")
            .field("condition", &*self.link.condition.borrow())
            .finish_non_exhaustive()
    }
}

impl SimulatedStore {
    /// Wraps `store`; `restart` makes the empty store it is replaced with
    /// when restarted empty.
    #[must_use]
    pub fn new(
        store: Arc<dyn SessionStore>,
        restart: impl Fn() -> Arc<dyn SessionStore> + Send + Sync + 'static,
        schedule: Schedule,
    ) -> Self {
        Self {
            link: Arc::new(Link {
                inner: Mutex::new(store),
                restart: Box::new(restart),
                condition: watch::Sender::new(Condition::Up),
                schedule,
            }),
        }
    }

    fn set(&self, condition: Condition) {
        self.link.condition.send_replace(condition);
    }

    fn restart_empty(&self) {
        let empty = (self.link.restart)();
        *self
            .link
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = empty;
    }

    /// Runs `call` on the store: the delay there, the call, the delay
    /// back, and the faults on either side.
    async fn call<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn SessionStore>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        // Still on its way: a cancelled caller sends nothing.
        tokio::time::sleep(self.link.schedule.delay()).await;
        let link = Arc::clone(&self.link);
        let served = tokio::spawn(async move {
            link.reachable(operation).await?;
            let store = Arc::clone(&link.inner.lock().unwrap_or_else(PoisonError::into_inner));
            let answer = call(store).await;
            tokio::time::sleep(link.schedule.delay()).await;
            // The answer is lost if the store went down meanwhile.
            link.reachable(operation).await?;
            answer
        });
        match served.await {
            Ok(answer) => answer,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => Err(StoreError::new(ErrorKind::Unavailable, operation).with_source(err)),
        }
    }
}

impl Link {
    /// Waits out a pause, then fails if the store is down.
    async fn reachable(&self, operation: &'static str) -> Result<(), StoreError> {
        let mut condition = self.condition.subscribe();
        let now = *condition
            .wait_for(|condition| *condition != Condition::Paused)
            .await
            .expect("the store owns its sender");
        if now == Condition::Down {
            return Err(StoreError::new(ErrorKind::Unavailable, operation)
                .with_source("store down (fault injected by the race explorer)"));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SimulatedStore {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let id = *id;
        self.call("load", move |store| async move { store.load(&id).await })
            .await
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        let id = *id;
        self.call("stamp", move |store| async move { store.stamp(&id).await })
            .await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let record = record.clone();
        self.call(
            "create",
            move |store| async move { store.create(&record).await },
        )
        .await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let (id, changes) = (*id, changes.clone());
        self.call("commit", move |store| async move {
            store.commit(&id, &changes, expires_at).await
        })
        .await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let id = *id;
        self.call("touch", move |store| async move {
            store.touch(&id, expires_at).await
        })
        .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let id = *id;
        self.call(
            "delete",
            move |store| async move { store.delete(&id).await },
        )
        .await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let id = *id;
        self.call("delete_if_version", move |store| async move {
            store.delete_if_version(&id, version).await
        })
        .await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        let owner = owner.to_owned();
        self.call("delete_by_owner", move |store| async move {
            store.delete_by_owner(&owner).await
        })
        .await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        let owner = owner.to_owned();
        self.call("sessions_of", move |store| async move {
            store.sessions_of(&owner).await
        })
        .await
    }

    fn indexes_owners(&self) -> bool {
        self.link
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .indexes_owners()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.call("health", |store| async move { store.health().await })
            .await
    }
}

/// [`Faults`] applied by the explorer's own wrapper ([`SimulatedStore`]):
/// what in-process stores use.
#[derive(Debug, Clone)]
pub struct SimulatedFaults {
    stores: Vec<Arc<SimulatedStore>>,
}

impl SimulatedFaults {
    /// Faults on these stores, numbered in order.
    #[must_use]
    pub fn new(stores: Vec<Arc<SimulatedStore>>) -> Self {
        Self { stores }
    }
}

#[async_trait]
impl Faults for SimulatedFaults {
    async fn begin(&self, store: usize, fault: StoreFault) {
        let store = &self.stores[store];
        match fault {
            StoreFault::Down => store.set(Condition::Down),
            StoreFault::Pause => store.set(Condition::Paused),
            StoreFault::RestartEmpty => {
                store.set(Condition::Down);
                store.restart_empty();
            }
        }
    }

    async fn end(&self, store: usize, _fault: StoreFault) {
        self.stores[store].set(Condition::Up);
    }
}
