//! A scenario: how many app servers and clients, what they do, and the
//! faults.

use std::{ops::RangeInclusive, time::Duration};

use session_core::manager::ManagerConfig;

use super::faults::StoreFault;

/// How often each client picks each request, by weight. A client without a
/// session logs in instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Mix {
    /// Read the session.
    pub read: u32,
    /// Read it and write the client's key.
    pub write: u32,
    /// Read it and move it to a new id.
    pub cycle_id: u32,
    /// Log out.
    pub destroy: u32,
    /// End every session of the scenario's owner.
    pub end_all: u32,
}

impl Default for Mix {
    /// Mostly reads and writes; now and then a logout, a `cycle_id` or an
    /// end-all.
    fn default() -> Self {
        Self {
            read: 4,
            write: 4,
            cycle_id: 1,
            destroy: 1,
            end_all: 1,
        }
    }
}

impl Mix {
    /// Reads and writes only.
    #[must_use]
    pub fn reads_and_writes() -> Self {
        Self {
            cycle_id: 0,
            destroy: 0,
            end_all: 0,
            ..Self::default()
        }
    }

    /// This mix with these weights for reads and writes.
    #[must_use]
    pub fn with_weights(self, read: u32, write: u32) -> Self {
        Self {
            read,
            write,
            ..self
        }
    }

    /// This mix with these weights for `cycle_id`, logout and end-all.
    #[must_use]
    pub fn with_endings(self, cycle_id: u32, destroy: u32, end_all: u32) -> Self {
        Self {
            cycle_id,
            destroy,
            end_all,
            ..self
        }
    }
}

/// A fault on one shared store, starting at a seeded moment in `starts`
/// (from the start of the clients' run) and lasting a seeded time in
/// `lasts`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultWindow {
    /// The shared store, by index.
    pub store: usize,
    /// The fault.
    pub fault: StoreFault,
    /// When it may start.
    pub starts: RangeInclusive<Duration>,
    /// How long it may last.
    pub lasts: RangeInclusive<Duration>,
}

impl FaultWindow {
    /// `fault` on `store`, starting within `starts` and lasting within `lasts`.
    #[must_use]
    pub fn new(
        store: usize,
        fault: StoreFault,
        starts: RangeInclusive<Duration>,
        lasts: RangeInclusive<Duration>,
    ) -> Self {
        Self {
            store,
            fault,
            starts,
            lasts,
        }
    }
}

/// A small scenario: a few app servers, a few clients sharing one or two
/// sessions, a few requests each, and the faults.
#[derive(Debug, Clone)]
#[must_use]
pub struct Scenario {
    pub(super) servers: usize,
    pub(super) clients: usize,
    pub(super) sessions: usize,
    pub(super) requests: usize,
    pub(super) mix: Mix,
    pub(super) faults: Vec<FaultWindow>,
    pub(super) think: Duration,
    pub(super) max_delay: Duration,
    pub(super) operation_timeout: Duration,
    pub(super) settle: Duration,
    pub(super) thief: bool,
}

/// The owner every scenario session is logged in as.
pub const OWNER: &str = "user-1";

impl Default for Scenario {
    /// Two servers; three clients on one session (the user's two tabs and
    /// a stolen cookie); six requests each with up to 20 ms between them;
    /// store calls delayed up to 4 ms each way; the default mix; no fault;
    /// the manager's default operation timeout.
    fn default() -> Self {
        Self {
            servers: 2,
            clients: 3,
            sessions: 1,
            requests: 6,
            mix: Mix::default(),
            faults: Vec::new(),
            think: Duration::from_millis(20),
            max_delay: Duration::from_millis(4),
            operation_timeout: ManagerConfig::DEFAULT_OPERATION_TIMEOUT,
            settle: Duration::from_secs(3),
            thief: false,
        }
    }
}

impl Scenario {
    /// The defaults; see [`Default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// How many app servers (each its own manager and server store).
    pub fn with_servers(mut self, servers: usize) -> Self {
        self.servers = servers.max(1);
        self
    }

    /// How many clients.
    pub fn with_clients(mut self, clients: usize) -> Self {
        self.clients = clients.max(1);
        self
    }

    /// How many sessions the clients share at the start (client `i` starts
    /// on session `i % sessions`).
    pub fn with_sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self
    }

    /// How many requests each client makes.
    pub fn with_requests(mut self, requests: usize) -> Self {
        self.requests = requests;
        self
    }

    /// The request mix.
    pub fn with_mix(mut self, mix: Mix) -> Self {
        self.mix = mix;
        self
    }

    /// Adds a fault window.
    pub fn with_fault(mut self, window: FaultWindow) -> Self {
        self.faults.push(window);
        self
    }

    /// Adds a thief: one more client holding a copy of the first
    /// session's cookie, which it keeps sending whatever responses set,
    /// and which only reads. It is what finds a logged-out session that
    /// comes back after every honest client has dropped its cookie.
    pub fn with_thief(mut self, thief: bool) -> Self {
        self.thief = thief;
        self
    }

    /// The longest pause a client takes before each request.
    pub fn with_think_time(mut self, max: Duration) -> Self {
        self.think = max;
        self
    }

    /// The longest delay before a store call reaches the store, and again
    /// before its answer reaches the caller.
    pub fn with_max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// How long the run waits, once the clients are done and every fault
    /// has ended, before the final reads (default 3 s): time for breakers
    /// to probe and replays to run. Virtual time on the explorer's own
    /// runtime, so free there; over real servers, keep it short.
    pub fn with_settle(mut self, wait: Duration) -> Self {
        self.settle = wait;
        self
    }

    /// The managers' operation timeout.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }
}
