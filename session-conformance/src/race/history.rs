//! A history: every client-visible operation of a scenario, across all app
//! servers, with when it began and ended and what it saw and got.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use session_core::SessionId;

/// The place of one operation in a [`History`], in the order operations
/// began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpIndex(pub usize);

impl fmt::Display for OpIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A reading of a history's logical clock. Every begin and every end takes
/// the next tick, so `a.ended < b.began` says exactly that `a` was over
/// before `b` started, whatever runtime or clock the scenario ran on.
pub type Tick = u64;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Log in: a new session (the cookie sent, if any, is ignored) owned by
    /// `owner`, holding `key = value`.
    Login {
        /// The owner set with `Session::set_owner`.
        owner: String,
        /// The key written.
        key: String,
        /// Its value: the client's next sequence number.
        value: u64,
    },
    /// Read the session.
    Read,
    /// Read the session, then set `key` to `value` (a new session if the
    /// cookie named none).
    Write {
        /// The key written: each client writes its own.
        key: String,
        /// Its value: the client's next sequence number, so every write is
        /// told apart and a later one is larger.
        value: u64,
    },
    /// Read the session, then move it to a new id (`Session::cycle_id`).
    CycleId,
    /// Log out (`Session::destroy`).
    Destroy,
    /// End every session of `owner` (`SessionManager::end_all_for`).
    EndAll {
        /// The owner.
        owner: String,
    },
    /// Log in under a per-owner cap: a [`Login`](Self::Login) whose
    /// manager then ends the oldest logins of `owner` past the cap
    /// (`SessionManagerBuilder::with_max_sessions_per_owner`), so it may
    /// end any session of that owner.
    CappedLogin {
        /// The owner set with `Session::set_owner`.
        owner: String,
        /// The key written.
        key: String,
        /// Its value: the client's next sequence number.
        value: u64,
    },
    /// End every other session of the cookie's owner and keep this one
    /// (`Session::log_out_other_sessions`).
    LogOutOthers,
    /// End one session of `owner` by its device handle
    /// (`SessionManager::end_device_of`); the client's cookie is neither
    /// sent nor changed.
    EndDevice {
        /// The owner.
        owner: String,
        /// The session the handle names.
        session: SessionId,
    },
}

impl Action {
    /// The key and value this action writes, if it writes one.
    #[must_use]
    pub fn written(&self) -> Option<(&str, u64)> {
        match self {
            Self::Login { key, value, .. }
            | Self::CappedLogin { key, value, .. }
            | Self::Write { key, value } => Some((key.as_str(), *value)),
            _ => None,
        }
    }
}

/// What the operation's load of the session showed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observed {
    /// The operation does not load the session (login, logout, end-all),
    /// or has not yet.
    NotLoaded,
    /// The request carried no cookie.
    NoCookie,
    /// The load failed: the response is a 503.
    Failed,
    /// The cookie named no live session.
    Absent,
    /// The session's values, key to sequence number.
    Values(BTreeMap<String, u64>),
}

/// What the cookie of a response did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieChange {
    /// No `Set-Cookie`: the client keeps the cookie it has.
    Kept,
    /// A cookie naming this session id.
    Set(SessionId),
    /// A removal cookie.
    Removed,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The response went out with this cookie change: what the operation
    /// did is acknowledged.
    Responded(CookieChange),
    /// `end_all_for` or `end_device_of` returned this count.
    Ended(u64),
    /// A 503 or another error: the operation may or may not have taken
    /// effect.
    Failed(String),
}

/// One operation, as the history holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Operation {
    /// The client that ran it (one client runs one operation at a time).
    pub client: usize,
    /// The app server that served it.
    pub server: usize,
    /// The session the request's cookie named.
    pub cookie: Option<SessionId>,
    /// What was asked.
    pub action: Action,
    /// When it began.
    pub began: Tick,
    /// When it ended; `None` while it runs (or if it never finished).
    pub ended: Option<Tick>,
    /// What its load showed.
    pub observed: Observed,
    /// How it ended; `None` while it runs.
    pub outcome: Option<Outcome>,
}

impl Operation {
    /// Whether this operation was over before `other` began.
    #[must_use]
    pub fn precedes(&self, other: &Operation) -> bool {
        self.ended.is_some_and(|ended| ended < other.began)
    }

    /// Whether the response acknowledged the operation: sent, and, but for
    /// a logout, not with a removal cookie (which is how the manager drops
    /// a commit that found its session gone).
    #[must_use]
    pub fn acknowledged(&self) -> bool {
        match &self.outcome {
            Some(Outcome::Responded(change)) => {
                self.action == Action::Destroy || *change != CookieChange::Removed
            }
            Some(Outcome::Ended(_)) => true,
            Some(Outcome::Failed(_)) | None => false,
        }
    }

    /// The session id the response set, if it set one.
    #[must_use]
    pub fn set_cookie(&self) -> Option<SessionId> {
        match self.outcome {
            Some(Outcome::Responded(CookieChange::Set(id))) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Log {
    ops: Vec<Operation>,
    clock: Tick,
}

/// Every operation of one scenario run, shared by its clients (clones
/// share one log). Record with [`begin`](Self::begin) and
/// [`end`](Self::end), or let a [`Client`](super::Client) do it; check with
/// [`check`](Self::check).
///
/// ```
/// use session_conformance::race::{Action, CookieChange, History, Observed, Outcome};
/// use session_core::SessionId;
///
/// let history = History::new();
/// let id = SessionId::generate();
/// let login = history.begin(0, 0, None, Action::Login { owner: "ada".into(), key: "c0".into(), value: 1 });
/// history.end(login, Observed::NotLoaded, Outcome::Responded(CookieChange::Set(id)));
/// let read = history.begin(1, 1, Some(id), Action::Read);
/// history.end(read, Observed::Values([("c0".to_owned(), 1)].into()), Outcome::Responded(CookieChange::Kept));
/// assert!(history.check().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct History {
    log: Arc<Mutex<Log>>,
}

impl History {
    /// An empty history.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `client` began `action` on `server`, sending a cookie
    /// for `cookie`.
    #[must_use]
    pub fn begin(
        &self,
        client: usize,
        server: usize,
        cookie: Option<SessionId>,
        action: Action,
    ) -> OpIndex {
        let mut log = self.lock();
        log.clock += 1;
        let began = log.clock;
        log.ops.push(Operation {
            client,
            server,
            cookie,
            action,
            began,
            ended: None,
            observed: Observed::NotLoaded,
            outcome: None,
        });
        OpIndex(log.ops.len() - 1)
    }

    /// Records that `op` ended, having seen `observed`, with `outcome`.
    ///
    /// # Panics
    /// When `op` is not from this history or has ended already.
    pub fn end(&self, op: OpIndex, observed: Observed, outcome: Outcome) {
        let mut log = self.lock();
        log.clock += 1;
        let ended = log.clock;
        let entry = &mut log.ops[op.0];
        assert!(entry.ended.is_none(), "{op} ended twice");
        entry.ended = Some(ended);
        entry.observed = observed;
        entry.outcome = Some(outcome);
    }

    /// A copy of every operation so far, in the order they began.
    #[must_use]
    pub fn ops(&self) -> Vec<Operation> {
        self.lock().ops.clone()
    }

    /// How many operations were recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().ops.len()
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One line per operation. Session ids are shown as `S1`, `S2`, ... in the
/// order they first appear, not as their random bytes, so two runs of one
/// seed print the same text.
impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops = self.ops();
        let mut labels = Labels::default();
        for (index, op) in ops.iter().enumerate() {
            let cookie = op.cookie.map_or_else(|| "-".to_owned(), |id| labels.of(id));
            let action = match &op.action {
                Action::Login { owner, key, value } => format!("login {owner} {key}={value}"),
                Action::Read => "read".to_owned(),
                Action::Write { key, value } => format!("write {key}={value}"),
                Action::CycleId => "cycle_id".to_owned(),
                Action::Destroy => "destroy".to_owned(),
                Action::EndAll { owner } => format!("end_all_for {owner}"),
                Action::CappedLogin { owner, key, value } => {
                    format!("login {owner} {key}={value} (capped)")
                }
                Action::LogOutOthers => "log_out_other_sessions".to_owned(),
                Action::EndDevice { owner, session } => {
                    format!("end_device_of {owner} {}", labels.of(*session))
                }
            };
            let ended = op
                .ended
                .map_or_else(|| "…".to_owned(), |tick| tick.to_string());
            let observed = match &op.observed {
                Observed::NotLoaded => String::new(),
                Observed::NoCookie => " saw no cookie".to_owned(),
                Observed::Failed => " load failed".to_owned(),
                Observed::Absent => " saw no session".to_owned(),
                Observed::Values(values) => format!(" saw {values:?}"),
            };
            let outcome = match &op.outcome {
                None => "never ended".to_owned(),
                Some(Outcome::Responded(CookieChange::Kept)) => "ok".to_owned(),
                Some(Outcome::Responded(CookieChange::Set(id))) => {
                    format!("ok, cookie {}", labels.of(*id))
                }
                Some(Outcome::Responded(CookieChange::Removed)) => "ok, cookie removed".to_owned(),
                Some(Outcome::Ended(count)) => format!("ended {count}"),
                Some(Outcome::Failed(why)) => format!("failed: {why}"),
            };
            writeln!(
                f,
                "{:>4} t{}..{ended} client {} server {} cookie {cookie}: {action}{observed} -> {outcome}",
                OpIndex(index),
                op.began,
                op.client,
                op.server,
            )?;
        }
        Ok(())
    }
}

/// Short stable names for session ids.
#[derive(Default)]
struct Labels(HashMap<SessionId, usize>);

impl Labels {
    fn of(&mut self, id: SessionId) -> String {
        let next = self.0.len() + 1;
        format!("S{}", self.0.entry(id).or_insert(next))
    }
}
