//! A client: one browser (or one stolen cookie) that runs requests through
//! an app server's [`SessionManager`] and records each in a [`History`].

use std::collections::BTreeMap;

use session_core::{devices::DeviceHandle, manager::Finish, Session, SessionId, SessionManager};

use super::history::{Action, CookieChange, History, Observed, Outcome};

/// One client of a scenario: a cookie jar, the key it writes, and the next
/// sequence number it writes there. Each method is one request, recorded
/// in the history from before the request starts to after its response.
///
/// Requests go through [`SessionManager::start`] and
/// [`Session::finish`], exactly as an adapter drives them, so the cookie a
/// response sets is the cookie a browser would keep.
///
/// ```
/// # session_conformance::block_on(async {
/// use session_conformance::race::{Client, History};
/// use session_core::{Key, SessionManager, memory::MemoryStore};
///
/// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
/// let history = History::new();
/// let mut ada = Client::new(0, 2, history.clone());
/// ada.login(0, &manager, "ada").await;
/// let mut thief = Client::new(1, 2, history.clone());
/// thief.adopt_cookie(&ada);
/// thief.write(0, &manager).await;
/// ada.read(0, &manager).await;
/// assert!(history.check().is_empty());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    index: usize,
    clients: usize,
    history: History,
    /// The session cookie as the browser would send it (`name=value`), and
    /// the id it names.
    cookie: Option<(SessionId, String)>,
    next_value: u64,
    /// Sends the same cookie whatever responses set: a stolen cookie.
    keeps_cookie: bool,
}

impl Client {
    /// Client number `index` of `clients`, recording into `history`. It
    /// writes the key `c<index>` and reads all `clients` keys.
    #[must_use]
    pub fn new(index: usize, clients: usize, history: History) -> Self {
        Self {
            index,
            clients,
            history,
            cookie: None,
            next_value: 1,
            keeps_cookie: false,
        }
    }

    /// From now on, sends the cookie it holds whatever responses set, as a
    /// stolen cookie replayed by an attacker does. What responses set is
    /// still recorded.
    pub fn keep_cookie(&mut self) {
        self.keeps_cookie = true;
    }

    /// The key this client writes.
    #[must_use]
    pub fn key(&self) -> String {
        key(self.index)
    }

    /// The session this client's cookie names.
    #[must_use]
    pub fn session(&self) -> Option<SessionId> {
        self.cookie.as_ref().map(|(id, _)| *id)
    }

    /// Takes `other`'s cookie: another tab, or a stolen cookie.
    pub fn adopt_cookie(&mut self, other: &Client) {
        self.cookie.clone_from(&other.cookie);
    }

    /// Logs in on `server`: a new session owned by `owner`, holding this
    /// client's next value.
    pub async fn login(&mut self, server: usize, manager: &SessionManager, owner: &str) {
        let value = self.take_value();
        let action = if manager.max_sessions_per_owner().is_some() {
            Action::CappedLogin {
                owner: owner.to_owned(),
                key: self.key(),
                value,
            }
        } else {
            Action::Login {
                owner: owner.to_owned(),
                key: self.key(),
                value,
            }
        };
        let op = self.history.begin(self.index, server, None, action);
        let session = manager.start(std::iter::empty());
        let done = async {
            session.set_owner(owner).await?;
            session.insert(&self.key(), value).await
        }
        .await;
        let outcome = self
            .finish(manager, &session, done.err().map(|err| err.to_string()))
            .await;
        self.history.end(op, Observed::NotLoaded, outcome);
    }

    /// Reads the session on `server`.
    pub async fn read(&mut self, server: usize, manager: &SessionManager) {
        self.request(server, manager, Action::Read, |_| async { Ok(()) })
            .await;
    }

    /// Reads the session on `server` and writes this client's next value.
    pub async fn write(&mut self, server: usize, manager: &SessionManager) {
        let (key, value) = (self.key(), self.take_value());
        let action = Action::Write {
            key: key.clone(),
            value,
        };
        self.request(server, manager, action, |session| async move {
            session.insert(&key, value).await
        })
        .await;
    }

    /// Reads the session on `server` and moves it to a new id.
    pub async fn cycle_id(&mut self, server: usize, manager: &SessionManager) {
        self.request(server, manager, Action::CycleId, |session| async move {
            session.cycle_id().await
        })
        .await;
    }

    /// Logs out on `server` (`destroy`, which loads nothing).
    pub async fn destroy(&mut self, server: usize, manager: &SessionManager) {
        let op = self
            .history
            .begin(self.index, server, self.session(), Action::Destroy);
        let session = manager.start(self.cookie_header());
        let done = session.destroy().await;
        let outcome = self
            .finish(manager, &session, done.err().map(|err| err.to_string()))
            .await;
        self.history.end(op, Observed::NotLoaded, outcome);
    }

    /// Ends every session of `owner` from `server`. The client's own cookie
    /// is neither sent nor changed.
    pub async fn end_all_for(&mut self, server: usize, manager: &SessionManager, owner: &str) {
        let action = Action::EndAll {
            owner: owner.to_owned(),
        };
        let op = self.history.begin(self.index, server, None, action);
        let outcome = match manager.end_all_for(owner).await {
            Ok(ended) => Outcome::Ended(ended),
            Err(err) => Outcome::Failed(format!("end_all_for: {err}")),
        };
        self.history.end(op, Observed::NotLoaded, outcome);
    }

    /// "Log out the other sessions" on `server`, keeping this client's;
    /// how many the call ended (`None` when it failed).
    pub async fn log_out_other_sessions(
        &mut self,
        server: usize,
        manager: &SessionManager,
    ) -> Option<u64> {
        let mut ended = None;
        self.request(server, manager, Action::LogOutOthers, |session| {
            let ended = &mut ended;
            async move {
                *ended = Some(session.log_out_other_sessions().await?);
                Ok(())
            }
        })
        .await;
        ended
    }

    /// The handle of this client's session on its owner's devices page, as
    /// the page shows it; `None` when the cookie names no listed session.
    /// Not recorded: it changes nothing.
    pub async fn device_handle(&self, manager: &SessionManager) -> Option<DeviceHandle> {
        let session = manager.start(self.cookie_header());
        let devices = session.devices().await.ok()?;
        let _ = session.finish().await;
        devices
            .into_iter()
            .find(|device| device.current)
            .map(|device| device.handle)
    }

    /// Ends the session `handle` names among `owner`'s from `server`
    /// ("log out that device"), where `handle` is `session`'s. The client's
    /// own cookie is neither sent nor changed.
    pub async fn end_device(
        &mut self,
        server: usize,
        manager: &SessionManager,
        owner: &str,
        handle: &DeviceHandle,
        session: SessionId,
    ) {
        let action = Action::EndDevice {
            owner: owner.to_owned(),
            session,
        };
        let op = self.history.begin(self.index, server, None, action);
        let outcome = match manager.end_device_of(owner, handle).await {
            Ok(ended) => Outcome::Ended(u64::from(ended)),
            Err(err) => Outcome::Failed(format!("end_device_of: {err}")),
        };
        self.history.end(op, Observed::NotLoaded, outcome);
    }

    fn take_value(&mut self) -> u64 {
        let value = self.next_value;
        self.next_value += 1;
        value
    }

    fn cookie_header(&self) -> Option<&[u8]> {
        self.cookie.as_ref().map(|(_, pair)| pair.as_bytes())
    }

    /// One request that loads the session (recording what it saw), then
    /// runs `act` on it.
    async fn request<F, Fut>(
        &mut self,
        server: usize,
        manager: &SessionManager,
        action: Action,
        act: F,
    ) where
        F: FnOnce(Session) -> Fut,
        Fut: std::future::Future<Output = Result<(), session_core::SessionError>>,
    {
        let op = self
            .history
            .begin(self.index, server, self.session(), action);
        let session = manager.start(self.cookie_header());
        let observed = self.observe(&session).await;
        let done = match observed {
            Observed::Failed => Err("the load failed".to_owned()),
            _ => act(session.clone()).await.map_err(|err| err.to_string()),
        };
        let outcome = self.finish(manager, &session, done.err()).await;
        self.history.end(op, observed, outcome);
    }

    /// Loads the session and reads every client's key.
    async fn observe(&self, session: &Session) -> Observed {
        if self.cookie.is_none() {
            return Observed::NoCookie;
        }
        let mut values = BTreeMap::new();
        for client in 0..self.clients {
            match session.get::<u64>(&key(client)).await {
                Ok(Some(value)) => {
                    values.insert(key(client), value);
                }
                Ok(None) => {}
                Err(_) => return Observed::Failed,
            }
        }
        match session.id().await {
            Ok(Some(_)) => Observed::Values(values),
            Ok(None) => Observed::Absent,
            Err(_) => Observed::Failed,
        }
    }

    /// Finishes the request as an adapter would, keeps the cookie the
    /// response sets, and says how it ended.
    async fn finish(
        &mut self,
        manager: &SessionManager,
        session: &Session,
        handler_error: Option<String>,
    ) -> Outcome {
        let finish = session.finish().await;
        if let Some(err) = handler_error {
            // The adapter answers the handler's error (a 503 when the store
            // failed); whatever finish wrote may or may not have happened.
            return Outcome::Failed(format!("handler: {err}"));
        }
        match finish {
            Finish::Unavailable => Outcome::Failed("503".to_owned()),
            Finish::Respond { set_cookie: None } => Outcome::Responded(CookieChange::Kept),
            Finish::Respond {
                set_cookie: Some(set_cookie),
            } => Outcome::Responded(self.keep(manager, &set_cookie)),
            _ => Outcome::Failed("unknown Finish".to_owned()),
        }
    }

    fn keep(&mut self, manager: &SessionManager, set_cookie: &str) -> CookieChange {
        let pair = set_cookie.split(';').next().unwrap_or_default().trim();
        let value = pair.split_once('=').map_or("", |(_, value)| value);
        if value.is_empty() {
            if !self.keeps_cookie {
                self.cookie = None;
            }
            return CookieChange::Removed;
        }
        let verified = manager
            .codec()
            .verify(value)
            .expect("the manager sets cookies it can verify");
        if !self.keeps_cookie {
            self.cookie = Some((verified.id, pair.to_owned()));
        }
        CookieChange::Set(verified.id)
    }
}

/// The key client `index` writes.
fn key(index: usize) -> String {
    format!("c{index}")
}
