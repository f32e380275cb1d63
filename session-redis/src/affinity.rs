//! A connection per worker thread, so a call never crosses threads.
//!
//! The redis crate's connections are driven by a task on the runtime that
//! opened them: a call from another thread hands its command to that task
//! and waits to be woken with the reply, two cross-thread wake-ups per
//! call. An app whose workers each run a current-thread runtime (actix-web
//! does, one per worker) and share one store pays them on every call when
//! the store was opened elsewhere, as it must be to be shared. Measured
//! with `session-bench` on actix-web (`--only "actix + session-kit (Redis)"`,
//! two runs each way, alternating, on a loaded 2-core machine), this took
//! the server CPU of a write from 57.8 and 49.3 µs to 45.0 and 38.3, and of
//! a read from 26.6 and 24.9 µs to 26.4 and 21.2.
//!
//! So a call made on a current-thread runtime, on a thread other than the
//! one the store was opened on, goes through a connection of that thread's
//! own. The first such call starts opening it in the background and is
//! itself served by the store's first connection, as are the calls until
//! the new one is ready, so no call waits for a connect. A multi-thread
//! runtime (axum's usual) keeps using the first connection: its driver
//! task runs on the same runtime as the calls.
//!
//! A connection is kept in a thread-local slot, together with a token held
//! by a task on the runtime that opened it: when that runtime shuts down
//! (its tasks, the connection's driver among them, are dropped), the token
//! goes, and the next call on that thread opens a new one instead of
//! using a connection nobody drives. A slot is dropped once its store is.

use std::{
    borrow::Cow,
    cell::RefCell,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    thread::{self, ThreadId},
    time::{Duration, Instant},
};

use redis::{Cmd, FromRedisValue, RedisResult};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::{script::Script, topology::Link, RedisConfig};

/// How long after a failed open a thread uses the first connection before
/// trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Distinguishes stores in the thread-local slots.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's connections, one per store that was used here.
    static LINKS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

struct Slot {
    store: u64,
    /// Gone once every handle on the store is.
    owner: Weak<Shared>,
    state: State,
}

enum State {
    Opening { since: Instant },
    Ready { link: Link, driven: Weak<()> },
    Failed { until: Instant },
}

struct Shared {
    id: u64,
    /// The connection opened with the store, on `home`.
    first: Link,
    home: ThreadId,
    config: RedisConfig,
}

/// The store's connection: the first one, or the calling thread's own (see
/// the module docs). Cheap to clone; clones share every connection.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.first.fmt(f)
    }
}

impl Connection {
    /// Connects as `config` says, failing if the first connection fails.
    pub(crate) async fn open(config: &RedisConfig) -> RedisResult<Self> {
        // Boxed: the redis crate's connect futures nest deep enough that one
        // more layer of ours would pass the compiler's depth limit (128)
        // when an app lays out a future that connects (an `async_trait`
        // factory, say). Connecting happens once, so the box costs nothing.
        let first = Box::pin(Link::open(config)).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                first,
                home: thread::current().id(),
                config: config.clone(),
            }),
        })
    }

    /// Sends `cmd` and decodes the reply. Not an `async fn`: it returns
    /// the link's own future rather than one more layer around it (see
    /// [`Link::query`]).
    pub(crate) fn query<'a, T: FromRedisValue + 'a>(
        &self,
        cmd: &'a Cmd,
    ) -> impl Future<Output = RedisResult<T>> + 'a {
        self.link().query(cmd)
    }

    /// Runs `script` on `keys` (see [`Link::run_script`]).
    pub(crate) fn run_script<'a, T: FromRedisValue + 'a>(
        &self,
        script: &'a Script,
        keys: &'a [&'a str],
        args: &'a [Cow<'a, str>],
    ) -> impl Future<Output = RedisResult<T>> + 'a {
        self.link().run_script(script, keys, args)
    }

    /// Whether keys in different hash slots may sit on different servers
    /// (see [`Link::splits_slots`]).
    pub(crate) fn splits_slots(&self) -> bool {
        self.shared.first.splits_slots()
    }

    /// The connection this call should use.
    fn link(&self) -> Link {
        self.local().unwrap_or_else(|| self.shared.first.clone())
    }

    /// This thread's own connection, when the call runs on a current-thread
    /// runtime away from the store's home thread and one is ready; starts
    /// opening one when there is none.
    fn local(&self) -> Option<Link> {
        if thread::current().id() == self.shared.home {
            return None;
        }
        let runtime = Handle::try_current().ok()?;
        if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return None;
        }
        let now = Instant::now();
        let open = LINKS.with(|links| {
            let mut links = links.borrow_mut();
            links.retain(|slot| slot.owner.strong_count() > 0);
            let slot = match links.iter().position(|slot| slot.store == self.shared.id) {
                Some(index) => &mut links[index],
                None => {
                    links.push(Slot {
                        store: self.shared.id,
                        owner: Arc::downgrade(&self.shared),
                        state: State::Failed { until: now },
                    });
                    links.last_mut().expect("just pushed")
                }
            };
            match &slot.state {
                State::Ready { link, driven } if driven.strong_count() > 0 => {
                    return Err(link.clone());
                }
                // An open that never reported back (its runtime was shut
                // down first) is given up after a while.
                State::Opening { since } if now < *since + self.open_bound() => return Ok(false),
                State::Failed { until } if now < *until => return Ok(false),
                _ => {}
            }
            slot.state = State::Opening { since: now };
            Ok(true)
        });
        match open {
            Err(link) => Some(link),
            Ok(start) => {
                if start {
                    self.open_in_background(&runtime);
                }
                None
            }
        }
    }

    /// How long an open may take: the connect timeout, with room for a
    /// Sentinel lookup before it.
    fn open_bound(&self) -> Duration {
        self.shared.config.connect_timeout() * 3
    }

    fn open_in_background(&self, runtime: &Handle) {
        let owner = Arc::downgrade(&self.shared);
        let store = self.shared.id;
        let config = self.shared.config.clone();
        let bound = self.open_bound();
        let spawner = runtime.clone();
        runtime.spawn(async move {
            let opened = tokio::time::timeout(bound, Box::pin(Link::open(&config))).await;
            let state = match opened {
                Ok(Ok(link)) => {
                    // Lives as long as this runtime's tasks do, the new
                    // connection's driver among them.
                    let token = Arc::new(());
                    let driven = Arc::downgrade(&token);
                    spawner.spawn(async move {
                        let _token = token;
                        std::future::pending::<()>().await;
                    });
                    tracing::debug!(
                        target: "session_kit::store",
                        "opened a Redis connection for this worker thread"
                    );
                    State::Ready { link, driven }
                }
                Ok(Err(err)) => {
                    tracing::debug!(
                        target: "session_kit::store",
                        error = %err,
                        "could not open a Redis connection for this worker thread; using the shared one"
                    );
                    State::Failed {
                        until: Instant::now() + RETRY_AFTER,
                    }
                }
                Err(_) => State::Failed {
                    until: Instant::now() + RETRY_AFTER,
                },
            };
            LINKS.with(|links| {
                let mut links = links.borrow_mut();
                if let Some(slot) = links.iter_mut().find(|slot| slot.store == store) {
                    slot.state = state;
                } else if owner.strong_count() > 0 {
                    // Opened on another thread than the one that asked (a
                    // current-thread runtime driven from several threads
                    // in turn): keep it for calls made here.
                    links.push(Slot {
                        store,
                        owner,
                        state,
                    });
                }
            });
        });
    }
}
