//! [`LazyStore`]: a store that connects in the background, so an app can
//! start while its session store is unreachable.

use std::{
    fmt,
    future::Future,
    sync::{Arc, OnceLock, Weak},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::{
    error::cause_chain, Changes, Committed, ConditionalDelete, ConfigError, Created, ErrorKind,
    OwnerPass, Record, SessionId, SessionStore, Stamp, StoreError,
};

/// A store that is connected in the background, for apps that must start
/// ("start degraded") even when Redis or Memcached is unreachable at
/// start-up.
///
/// [`connect_in_background`](Self::connect_in_background) returns at once
/// and spawns a task that calls your connect function until it succeeds,
/// backing off between attempts. Until then every call fails at once with
/// [`ErrorKind::Unavailable`], never waiting for the connect: the
/// [`SessionManager`](crate::SessionManager) answers it by its
/// [`ErrorPolicy`](crate::ErrorPolicy) and a
/// [`FailoverStore`](crate::failover::FailoverStore) counts it as an outage, so a
/// `LazyStore` as the primary of a failover store serves sessions from the
/// secondary until the primary is reached. From then on every call,
/// `stamp` and `health` included, goes to the connected store unchanged.
///
/// The connection is made once. What happens when the store goes down
/// later is the connected store's business (Redis and Memcached stores
/// reconnect by themselves).
///
/// Clones share one connection and one background task. The task holds no
/// strong reference to the store: once every clone is dropped it ends at
/// its next wake-up, after the attempt in flight, if any.
///
/// Each failed attempt is a `warn` event (target `session_kit::lazy`, with
/// the label, the attempt number, the next delay and the error's kind,
/// message and cause chain) and the success an `info` event. The error is
/// logged as the connect function returned it: session-kit's stores never
/// put a password in theirs.
///
/// # Example
/// ```
/// # #[cfg(feature = "memory")]
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), session_core::StoreError> {
/// use std::time::Duration;
/// use session_core::{SessionId, lazy::LazyStore, memory::MemoryStore, store::SessionStore};
///
/// // In production: `move || RedisStore::connect(config.clone())`.
/// let store = LazyStore::connect_in_background("sessions", || async { Ok(MemoryStore::new()) })?;
/// // Optional: give the store a moment before serving the first request.
/// assert!(store.wait_connected(Duration::from_secs(1)).await);
/// assert_eq!(store.load(&SessionId::generate()).await?, None);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "memory"))] fn main() {}
/// ```
#[derive(Clone)]
pub struct LazyStore {
    shared: Arc<Shared>,
}

struct Shared {
    label: Arc<str>,
    store: OnceLock<Arc<dyn SessionStore>>,
    connected: Notify,
    /// What `indexes_owners` answers until the store is connected.
    assumed_indexes_owners: bool,
    /// What `kind` answers, connected or not.
    kind: &'static str,
}

impl fmt::Debug for LazyStore {
    // The connected store's own Debug belongs to its own dump; what a reader
    // of this one needs is whether the connect has happened yet.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyStore")
            .field("label", &self.shared.label)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// The cause of the [`ErrorKind::Unavailable`] errors a [`LazyStore`]
/// returns before it is connected.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not connected yet; retrying in the background")]
struct NotConnected(Arc<str>);

/// Configures a [`LazyStore`] before its background connect starts: the
/// retry delays and what it says about owner indexes until connected.
/// [`LazyStore::connect_in_background`] is this builder with every default.
///
/// ```
/// # #[cfg(feature = "memory")]
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::{error::Error, time::Duration};
/// use session_core::{ConfigError, ErrorKind, lazy::LazyStore, memory::MemoryStore};
///
/// let err = LazyStore::builder("sessions")
///     .with_first_retry(Duration::from_secs(1))
///     .with_max_retry(Duration::from_millis(100))
///     .connect_in_background(|| async { Ok(MemoryStore::new()) })
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Config);
/// let config = err.source().unwrap().downcast_ref::<ConfigError>().unwrap();
/// assert_eq!(config.key(), "lazy.max_retry");
/// # }
/// # #[cfg(not(feature = "memory"))] fn main() {}
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct LazyStoreBuilder {
    label: String,
    first_retry: Duration,
    max_retry: Duration,
    indexes_owners: bool,
    kind: &'static str,
}

impl LazyStoreBuilder {
    /// The default [`with_first_retry`](Self::with_first_retry): 100 ms,
    /// short enough that a store that was only restarting is picked up
    /// before many requests are turned away.
    pub const DEFAULT_FIRST_RETRY: Duration = Duration::from_millis(100);
    /// The default [`with_max_retry`](Self::with_max_retry): the delay
    /// doubles after each failure up to 5 s, so that a store that is really
    /// down is not hammered by every app server at once, yet is picked up
    /// within 5 s of coming back.
    pub const DEFAULT_MAX_RETRY: Duration = Duration::from_secs(5);

    /// The delay after the first failed attempt; it doubles after each
    /// further failure.
    pub fn with_first_retry(mut self, delay: Duration) -> Self {
        self.first_retry = delay;
        self
    }

    /// The longest delay between attempts.
    pub fn with_max_retry(mut self, delay: Duration) -> Self {
        self.max_retry = delay;
        self
    }

    /// What [`indexes_owners`](SessionStore::indexes_owners) answers until
    /// the store is connected (default `true`); once connected, the store's
    /// own answer. Say `false` when the store being connected cannot index
    /// owners (a `MemcachedStore`): a [`FailoverStore`](crate::failover::FailoverStore)
    /// over it then refuses `delete_by_owner` up front, as it will once
    /// connected, instead of ending the other store's share and then failing
    /// on this one.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{ErrorKind, StoreError, lazy::LazyStore, memory::MemoryStore, store::SessionStore};
    ///
    /// let store = LazyStore::builder("memcached")
    ///     .with_indexes_owners(false)
    ///     .connect_in_background(|| async {
    ///         Err::<MemoryStore, _>(StoreError::new(ErrorKind::Unavailable, "connect"))
    ///     })
    ///     .unwrap();
    /// assert!(!store.indexes_owners());
    /// # }
    /// # #[cfg(not(feature = "memory"))] fn main() {}
    /// ```
    pub fn with_indexes_owners(mut self, indexes: bool) -> Self {
        self.indexes_owners = indexes;
        self
    }

    /// The store's [`kind`](SessionStore::kind), for metrics and spans:
    /// the kind of the store being connected (`"redis"`), so that its
    /// calls are labelled the same before and after the connect. Default
    /// `"lazy"`.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{lazy::LazyStore, memory::MemoryStore, store::SessionStore};
    ///
    /// let store = LazyStore::builder("sessions")
    ///     .with_kind("memory")
    ///     .connect_in_background(|| async { Ok(MemoryStore::new()) })
    ///     .unwrap();
    /// assert_eq!(store.kind(), "memory");
    /// # }
    /// # #[cfg(not(feature = "memory"))] fn main() {}
    /// ```
    pub fn with_kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    /// Returns the store at once and spawns the task that calls `connect`
    /// until it succeeds. The first attempt starts at once.
    ///
    /// `connect` should bound its own attempt, as `RedisStore::connect` and
    /// `MemcachedStore::connect` do by their connect timeout: the next
    /// attempt starts only after this one has failed.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when called outside a tokio runtime, which the
    /// background task needs, or when a delay is zero or the max retry is
    /// shorter than the first; then the source is a [`ConfigError`] naming
    /// the key (`lazy.first_retry` or `lazy.max_retry`).
    pub fn connect_in_background<F, Fut, S>(self, connect: F) -> Result<LazyStore, StoreError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, StoreError>> + Send + 'static,
        S: SessionStore,
    {
        const OPERATION: &str = "connect_in_background";
        let config_error =
            |err: ConfigError| StoreError::new(ErrorKind::Config, OPERATION).with_source(err);
        for (key, value) in [
            ("lazy.first_retry", self.first_retry),
            ("lazy.max_retry", self.max_retry),
        ] {
            if value.is_zero() {
                return Err(config_error(ConfigError::new(
                    key,
                    "must be longer than zero",
                )));
            }
        }
        if self.max_retry < self.first_retry {
            return Err(config_error(ConfigError::new(
                "lazy.max_retry",
                "must be at least lazy.first_retry",
            )));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|err| StoreError::new(ErrorKind::Config, OPERATION).with_source(err))?;
        let shared = Arc::new(Shared {
            label: self.label.into(),
            store: OnceLock::new(),
            connected: Notify::new(),
            assumed_indexes_owners: self.indexes_owners,
            kind: self.kind,
        });
        runtime.spawn(keep_connecting(
            Arc::downgrade(&shared),
            Arc::clone(&shared.label),
            connect,
            self.first_retry,
            self.max_retry,
        ));
        Ok(LazyStore { shared })
    }
}

impl LazyStore {
    /// Starts configuring a store; `label` names it in log events and
    /// errors ("redis", "sessions"): never put a URL in it, since URLs
    /// carry passwords.
    pub fn builder(label: impl Into<String>) -> LazyStoreBuilder {
        LazyStoreBuilder {
            label: label.into(),
            kind: "lazy",
            first_retry: LazyStoreBuilder::DEFAULT_FIRST_RETRY,
            max_retry: LazyStoreBuilder::DEFAULT_MAX_RETRY,
            indexes_owners: true,
        }
    }

    /// A store that calls `connect` in a background task until it succeeds,
    /// with the [default](LazyStoreBuilder) delays: 100 ms after the first
    /// failure, doubling up to 5 s. The first attempt starts at once. See
    /// [`LazyStoreBuilder::connect_in_background`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when called outside a tokio runtime, which the
    /// background task needs.
    ///
    /// ```
    /// # #[cfg(feature = "memory")] {
    /// use session_core::{ErrorKind, lazy::LazyStore, memory::MemoryStore};
    ///
    /// // No runtime here: nothing could run the connect.
    /// let err = LazyStore::connect_in_background("sessions", || async { Ok(MemoryStore::new()) })
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// # }
    /// ```
    pub fn connect_in_background<F, Fut, S>(
        label: impl Into<String>,
        connect: F,
    ) -> Result<Self, StoreError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, StoreError>> + Send + 'static,
        S: SessionStore,
    {
        Self::builder(label).connect_in_background(connect)
    }

    /// Whether the background connect has succeeded. Once true, it stays
    /// true.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use session_core::{ErrorKind, SessionId, StoreError, lazy::LazyStore, memory::MemoryStore, store::SessionStore};
    ///
    /// let store = LazyStore::connect_in_background("sessions", || async {
    ///     Err::<MemoryStore, _>(StoreError::new(ErrorKind::Unavailable, "connect"))
    /// })
    /// .unwrap();
    /// assert!(!store.is_connected());
    /// let err = store.load(&SessionId::generate()).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// # }
    /// # #[cfg(not(feature = "memory"))] fn main() {}
    /// ```
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.shared.store.get().is_some()
    }

    /// Waits until the store is connected or `timeout` has passed, and
    /// returns [`is_connected`](Self::is_connected): for apps that would
    /// rather wait a little at start-up than turn the first requests away,
    /// and for tests.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use session_core::{lazy::LazyStore, memory::MemoryStore};
    ///
    /// let store = LazyStore::connect_in_background("sessions", || async { Ok(MemoryStore::new()) })
    ///     .unwrap();
    /// assert!(store.wait_connected(Duration::from_secs(1)).await);
    /// # }
    /// # #[cfg(not(feature = "memory"))] fn main() {}
    /// ```
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let connected = self.shared.connected.notified();
        let mut connected = std::pin::pin!(connected);
        // Registered before the check, so a connect that lands between the
        // check and the wait still wakes this waiter.
        connected.as_mut().enable();
        if !self.is_connected() {
            let _ = tokio::time::timeout(timeout, connected).await;
        }
        self.is_connected()
    }

    /// The connected store, or the error every call gets before there is
    /// one.
    fn connected(&self, operation: &'static str) -> Result<&dyn SessionStore, StoreError> {
        self.shared
            .store
            .get()
            .map(|store| &**store)
            .ok_or_else(|| {
                StoreError::new(ErrorKind::Unavailable, operation)
                    .with_source(NotConnected(Arc::clone(&self.shared.label)))
            })
    }
}

/// The background task: calls `connect` until it succeeds, then hands the
/// store over. It holds `shared` weakly, so that dropping the last
/// [`LazyStore`] is what ends it.
async fn keep_connecting<F, Fut, S>(
    shared: Weak<Shared>,
    label: Arc<str>,
    connect: F,
    first_retry: Duration,
    max_retry: Duration,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<S, StoreError>>,
    S: SessionStore,
{
    let mut delay = first_retry;
    let mut attempt: u32 = 0;
    loop {
        if shared.strong_count() == 0 {
            return;
        }
        attempt = attempt.saturating_add(1);
        match connect().await {
            Ok(store) => {
                // Nobody is left to use it: dropping it closes its
                // connections.
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                if shared.store.set(Arc::new(store)).is_ok() {
                    shared.connected.notify_waiters();
                }
                tracing::info!(
                    target: "session_kit::lazy",
                    label = %label,
                    attempt,
                    "session store connected"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(
                    target: "session_kit::lazy",
                    label = %label,
                    attempt,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error.kind = ?err.kind(),
                    error.message = %err,
                    error.cause_chain = %cause_chain(&err),
                    "could not connect the session store; retrying in the background"
                );
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(max_retry);
            }
        }
    }
}

#[async_trait]
impl SessionStore for LazyStore {
    fn kind(&self) -> &'static str {
        self.shared.kind
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.connected("load")?.load(id).await
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        self.connected("stamp")?.stamp(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.connected("create")?.create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.connected("commit")?
            .commit(id, changes, expires_at)
            .await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.connected("touch")?.touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.connected("delete")?.delete(id).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.connected("delete_if_version")?
            .delete_if_version(id, version)
            .await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.connected("delete_by_owner")?
            .delete_by_owner(owner)
            .await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.connected("sessions_of")?.sessions_of(owner).await
    }

    /// The connected store's answer; until then, what
    /// [`with_indexes_owners`](LazyStoreBuilder::with_indexes_owners) said
    /// (`true` by default), while every call fails as `Unavailable`.
    fn indexes_owners(&self) -> bool {
        self.shared.store.get().map_or_else(
            || self.shared.assumed_indexes_owners,
            SessionStore::indexes_owners,
        )
    }

    /// The connected store's; until then, [`SessionId::generate`].
    fn generate_id(&self) -> SessionId {
        self.shared
            .store
            .get()
            .map_or_else(SessionId::generate, SessionStore::generate_id)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.connected("health")?.health().await
    }
}
