//! The [`Session`] side of a user's devices: the label, the list, ending
//! one, and ending the others. See [`crate::devices`].

use super::{Access, Session, SessionError};
use crate::devices::{self, Device, DeviceHandle, LABEL_KEY};

impl Session {
    /// Sets this session's label, shown on the owner's "your devices" page
    /// ([`Device::label`]): a user agent, "Firefox on Linux", a device
    /// name. Cut to [`MAX_LABEL_LEN`](devices::MAX_LABEL_LEN) bytes. It is
    /// stored with the session's data (under [`LABEL_KEY`]), so setting the
    /// label it already has costs nothing, and [`clear`](Self::clear)
    /// removes it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// # let session = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap().start(std::iter::empty());
    /// session.set_label("Firefox on Linux").await.unwrap();
    /// assert_eq!(session.label().await.unwrap().as_deref(), Some("Firefox on Linux"));
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub async fn set_label(&self, label: impl AsRef<str>) -> Result<(), SessionError> {
        self.insert(LABEL_KEY, devices::bounded_label(label.as_ref()))
            .await
    }

    /// This session's label, if the app set one.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn label(&self) -> Result<Option<String>, SessionError> {
        self.get(LABEL_KEY).await
    }

    /// The live sessions of this session's owner ("your devices"), newest
    /// login first, this one marked [`current`](Device::current). Empty for
    /// a session with no owner. A session that gains its owner in this
    /// request is not listed until it is written.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`] when the store fails, or cannot list an
    /// owner's sessions ([`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported),
    /// Memcached).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, manager::Finish, memory::MemoryStore};
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// let mut cookie = String::new();
    /// for device in ["laptop", "phone"] {
    ///     let session = manager.start(std::iter::empty());
    ///     session.set_owner("user-42").await.unwrap();
    ///     session.set_label(device).await.unwrap();
    ///     let Finish::Respond { set_cookie: Some(set) } = session.finish().await else { panic!() };
    ///     cookie = set.split(';').next().unwrap().to_owned();
    /// }
    /// // The phone's next request lists both devices.
    /// let phone = manager.start([cookie.as_bytes()]);
    /// let devices = phone.devices().await.unwrap();
    /// assert_eq!(devices.len(), 2);
    /// assert_eq!((devices[0].label.as_deref(), devices[0].current), (Some("phone"), true));
    /// assert_eq!((devices[1].label.as_deref(), devices[1].current), (Some("laptop"), false));
    /// # }
    /// ```
    pub async fn devices(&self) -> Result<Vec<Device>, SessionError> {
        let (owner, current) = {
            let state = self.loaded_state(Access::Read).await?;
            (state.owner.clone(), state.base.map(|base| base.id))
        };
        let Some(owner) = owner else {
            return Ok(Vec::new());
        };
        self.inner
            .shared
            .devices_of(&owner, current.as_ref())
            .await
            .map_err(SessionError::Unavailable)
    }

    /// Ends the session of this session's owner that `handle` names (a
    /// "log out this device" button); `false` when none of the owner's live
    /// sessions has that handle. A handle of another owner's session ends
    /// nothing. The handle of this session [destroys](Self::destroy) it.
    ///
    /// An ended session never comes back: a request of that device that
    /// commits at the same moment either lands first and is ended with the
    /// session, or finds the session gone.
    ///
    /// # Errors
    /// As [`devices`](Self::devices); nothing was ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, memory::MemoryStore};
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// let laptop = manager.start(std::iter::empty());
    /// laptop.set_owner("user-42").await.unwrap();
    /// let _ = laptop.finish().await;
    ///
    /// let handle = manager.devices_of("user-42").await.unwrap()[0].handle.clone();
    /// let phone = manager.start(std::iter::empty());
    /// phone.set_owner("user-42").await.unwrap();
    /// assert!(phone.end_device(&handle).await.unwrap());
    /// assert!(!phone.end_device(&handle).await.unwrap());
    /// # }
    /// ```
    pub async fn end_device(&self, handle: &DeviceHandle) -> Result<bool, SessionError> {
        let (owner, current) = {
            let state = self.loaded_state(Access::Change).await?;
            state.ensure_open()?;
            (state.owner.clone(), state.base.map(|base| base.id))
        };
        let Some(owner) = owner else {
            return Ok(false);
        };
        let shared = &self.inner.shared;
        if current.is_some_and(|id| shared.handles.names(handle, &id)) {
            self.destroy().await?;
            return Ok(true);
        }
        let found = shared
            .find_device(&owner, handle)
            .await
            .map_err(SessionError::Unavailable)?;
        let Some(record) = found else {
            return Ok(false);
        };
        let ended = shared
            .end_owned(&owner, &record)
            .await
            .map_err(SessionError::Unavailable)?;
        if ended {
            crate::telemetry::sessions_ended(crate::telemetry::Ended::Logout, 1);
        }
        Ok(ended)
    }

    /// "Log out the other sessions": ends every other session of this
    /// session's owner and keeps this one; returns how many it ended. A
    /// session with no owner ends nothing and answers 0.
    ///
    /// When it returns `Ok`, every other session the owner had when it was
    /// called is ended, under its old id or a new one
    /// ([`cycle_id`](Self::cycle_id)). A login on another device that lands
    /// while it runs is either ended and counted, or, when it lands after
    /// the last look at the owner's sessions, kept: it began after the
    /// user asked.
    ///
    /// # Errors
    /// As [`devices`](Self::devices). Sessions ended before the error stay
    /// ended, and calling again is safe.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use session_core::{Key, SessionManager, manager::Finish, memory::MemoryStore};
    /// let manager = SessionManager::builder(MemoryStore::new(), Key::generate()).build().unwrap();
    /// let mut cookie = String::new();
    /// for _ in 0..3 {
    ///     let session = manager.start(std::iter::empty());
    ///     session.set_owner("user-42").await.unwrap();
    ///     let Finish::Respond { set_cookie: Some(set) } = session.finish().await else { panic!() };
    ///     cookie = set.split(';').next().unwrap().to_owned();
    /// }
    /// let this = manager.start([cookie.as_bytes()]);
    /// assert_eq!(this.log_out_other_sessions().await.unwrap(), 2);
    /// assert_eq!(this.devices().await.unwrap().len(), 1);
    /// # }
    /// ```
    pub async fn log_out_other_sessions(&self) -> Result<u64, SessionError> {
        let (owner, current) = {
            let state = self.loaded_state(Access::Change).await?;
            state.ensure_open()?;
            (state.owner.clone(), state.base.map(|base| base.id))
        };
        let Some(owner) = owner else {
            return Ok(0);
        };
        self.inner
            .shared
            .end_others(&owner, current.as_ref())
            .await
            .map_err(SessionError::Unavailable)
    }
}
