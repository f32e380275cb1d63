//! Stored records and the changes one request makes to them.

use std::{
    collections::{HashMap, HashSet},
    time::SystemTime,
};

use crate::{Lifetime, SessionId};

/// The data of a session: each key maps to its value encoded on its own as
/// JSON text, so a store can keep values as separate fields (one Redis hash
/// field per key) and other services can read them without session-kit.
pub type Data = HashMap<String, String>;

/// Who a session belongs to, so that every session of one user can be ended
/// at once ([`SessionStore::delete_by_owner`](crate::store::SessionStore::delete_by_owner)).
///
/// `name` is opaque to session-kit: a user id, an account number, an email.
/// `until` is the latest the session can live: its absolute deadline, which
/// no commit moves. A store that indexes owners keeps an entry until then and
/// never needs to touch the index when a commit slides `expires_at`; the
/// manager caps `expires_at` at `until`, so a session cannot outlive its
/// index entry.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use session_core::store::Owner;
///
/// let owner = Owner::new("user-42", SystemTime::now() + Duration::from_secs(3600)).unwrap();
/// assert_eq!(owner.name, "user-42");
/// assert!(Owner::new("", SystemTime::now()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The owner's name, 1 to [`MAX_LEN`](Self::MAX_LEN) bytes.
    pub name: String,
    /// The latest the session can live; index entries are kept until then.
    pub until: SystemTime,
}

/// An owner name that cannot be indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// The name is empty.
    #[error("a session owner must not be empty")]
    Empty,
    /// The name is longer than [`Owner::MAX_LEN`] bytes.
    #[error("a session owner must be at most {max} bytes, not {len}", max = Owner::MAX_LEN)]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
}

impl Owner {
    /// The longest owner name, in bytes. Owner names become part of store
    /// keys (Redis) and travel in every record, so they are kept short; a
    /// user id is a few dozen bytes.
    pub const MAX_LEN: usize = 256;

    /// An owner called `name` whose index entry lasts until `until`.
    ///
    /// # Errors
    /// When `name` is empty or longer than [`MAX_LEN`](Self::MAX_LEN).
    pub fn new(name: impl Into<String>, until: SystemTime) -> Result<Self, OwnerError> {
        let name = name.into();
        Self::check_name(&name)?;
        Ok(Self { name, until })
    }

    /// Whether `name` can be an owner's name.
    ///
    /// # Errors
    /// When `name` is empty or longer than [`MAX_LEN`](Self::MAX_LEN).
    pub fn check_name(name: &str) -> Result<(), OwnerError> {
        match name.len() {
            0 => Err(OwnerError::Empty),
            len if len > Self::MAX_LEN => Err(OwnerError::TooLong { len }),
            _ => Ok(()),
        }
    }
}

/// A session as a store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// The session's id.
    pub id: SessionId,
    /// Key → JSON text of the value.
    pub data: Data,
    /// When the session was first created; the absolute timeout counts from
    /// here and survives [`cycle_id`](crate::Session::cycle_id).
    pub created_at: SystemTime,
    /// When the store may forget the session (the idle deadline, capped by the
    /// absolute one).
    pub expires_at: SystemTime,
    /// Grows by exactly one with every successful commit. A new record starts
    /// at [`Record::FIRST_VERSION`].
    pub version: u64,
    /// Who the session belongs to, if anyone; see [`Owner`].
    pub owner: Option<Owner>,
    /// The session's own lifetime, or `None` for the manager's timeouts.
    /// Records written before lifetimes existed read as `None`.
    pub lifetime: Option<Lifetime>,
}

impl Record {
    /// The version of a freshly created record.
    pub const FIRST_VERSION: u64 = 1;

    /// A new record at [`FIRST_VERSION`](Self::FIRST_VERSION).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use session_core::{SessionId, store::Record};
    ///
    /// let now = SystemTime::now();
    /// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
    /// assert_eq!(record.version, 1);
    /// assert_eq!(record.owner, None);
    /// ```
    #[must_use]
    pub fn new(id: SessionId, data: Data, created_at: SystemTime, expires_at: SystemTime) -> Self {
        Self {
            id,
            data,
            created_at,
            expires_at,
            version: Self::FIRST_VERSION,
            owner: None,
            lifetime: None,
        }
    }
}

/// What one request did to a session: an optional clear-all, then removals,
/// then sets, and perhaps a new [`Owner`]. A store applies it as one atomic
/// step.
///
/// A key is never both set and removed: the last call wins as it is
/// recorded. Because only touched keys travel, two requests that change
/// different keys of one session at the same time both survive.
///
/// ```
/// use session_core::store::Changes;
///
/// let mut changes = Changes::default();
/// changes.set("a", "1");
/// changes.remove("b");
/// let mut data = [("b".to_owned(), "2".to_owned()), ("c".to_owned(), "3".to_owned())].into();
/// changes.apply_to(&mut data);
/// assert_eq!(data.len(), 2);
/// assert_eq!(data["a"], "1");
/// assert_eq!(data["c"], "3");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    clear: bool,
    set: HashMap<String, String>,
    removed: HashSet<String>,
    owner: Option<Option<Owner>>,
    lifetime: Option<Option<Lifetime>>,
}

impl Changes {
    /// Records `key = value` (JSON text).
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.removed.remove(&key);
        self.set.insert(key, value.into());
    }

    /// Records the removal of `key`.
    pub fn remove(&mut self, key: impl Into<String>) {
        let key = key.into();
        self.set.remove(&key);
        self.removed.insert(key);
    }

    /// Records a new owner, or with `None` that the session no longer has
    /// one.
    pub fn set_owner(&mut self, owner: Option<Owner>) {
        self.owner = Some(owner);
    }

    /// The owner change: `None` when the owner stays as it is,
    /// `Some(None)` when the session loses its owner, `Some(Some(owner))`
    /// when it gets a new one.
    #[must_use]
    pub fn owner(&self) -> Option<Option<&Owner>> {
        self.owner.as_ref().map(Option::as_ref)
    }

    /// Records a new [`Lifetime`], or with `None` that the session goes
    /// back to the manager's timeouts.
    pub fn set_lifetime(&mut self, lifetime: Option<Lifetime>) {
        self.lifetime = Some(lifetime);
    }

    /// The lifetime change: `None` when it stays as it is, `Some(None)`
    /// back to the manager's timeouts, `Some(Some(lifetime))` a new one.
    #[must_use]
    pub fn lifetime(&self) -> Option<Option<Lifetime>> {
        self.lifetime
    }

    /// Records a clear-all of the data. Everything set or removed before is
    /// forgotten: after a clear only later calls matter. The owner is not
    /// data and is left as recorded, as is the lifetime.
    pub fn clear(&mut self) {
        self.clear = true;
        self.set.clear();
        self.removed.clear();
    }

    /// Whether the data is cleared before removals and sets apply.
    #[must_use]
    pub fn clears(&self) -> bool {
        self.clear
    }

    /// Keys set, with their JSON text.
    #[must_use]
    pub fn sets(&self) -> &HashMap<String, String> {
        &self.set
    }

    /// Keys removed.
    #[must_use]
    pub fn removals(&self) -> &HashSet<String> {
        &self.removed
    }

    /// True when the request changed nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.clear
            && self.set.is_empty()
            && self.removed.is_empty()
            && self.owner.is_none()
            && self.lifetime.is_none()
    }

    /// Applies the changes to `record`: the data as
    /// [`apply_to`](Self::apply_to) does, then the owner and the lifetime.
    pub fn apply_to_record(&self, record: &mut Record) {
        self.apply_to(&mut record.data);
        if let Some(owner) = &self.owner {
            record.owner.clone_from(owner);
        }
        if let Some(lifetime) = self.lifetime {
            record.lifetime = lifetime;
        }
    }

    /// Applies the changes to `data` in their defined order: clear, remove,
    /// set. The owner is not data; see [`apply_to_record`](Self::apply_to_record).
    pub fn apply_to(&self, data: &mut Data) {
        if self.clear {
            data.clear();
        }
        for key in &self.removed {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_call_on_a_key_wins() {
        let mut changes = Changes::default();
        changes.set("k", "1");
        changes.remove("k");
        assert!(changes.sets().is_empty());
        assert!(changes.removals().contains("k"));
        changes.set("k", "2");
        assert!(changes.removals().is_empty());
        assert_eq!(changes.sets()["k"], "2");
    }

    #[test]
    fn clear_forgets_earlier_calls_but_keeps_later_ones() {
        let mut changes = Changes::default();
        changes.set("a", "1");
        changes.clear();
        changes.set("b", "2");
        let mut data: Data = [("z".to_owned(), "0".to_owned())].into();
        changes.apply_to(&mut data);
        assert_eq!(data, [("b".to_owned(), "2".to_owned())].into());
        assert!(!changes.is_empty());
    }

    #[test]
    fn an_owner_change_is_a_change_and_survives_a_clear() {
        let now = SystemTime::now();
        let mut record = Record::new(SessionId::generate(), Data::new(), now, now);
        let mut changes = Changes::default();
        assert_eq!(changes.owner(), None);
        let ada = Owner::new("ada", now).unwrap();
        changes.set_owner(Some(ada.clone()));
        changes.clear();
        assert!(!changes.is_empty());
        changes.apply_to_record(&mut record);
        assert_eq!(record.owner.as_ref(), Some(&ada));
        let mut changes = Changes::default();
        changes.set_owner(None);
        assert_eq!(changes.owner(), Some(None));
        changes.apply_to_record(&mut record);
        assert_eq!(record.owner, None);
    }

    #[test]
    fn a_lifetime_change_is_a_change_and_survives_a_clear() {
        let now = SystemTime::now();
        let mut record = Record::new(SessionId::generate(), Data::new(), now, now);
        let lifetime = Lifetime::new(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(120),
        )
        .unwrap();
        let mut changes = Changes::default();
        changes.set_lifetime(Some(lifetime));
        changes.clear();
        assert!(!changes.is_empty());
        changes.apply_to_record(&mut record);
        assert_eq!(record.lifetime, Some(lifetime));
        let mut changes = Changes::default();
        changes.set_lifetime(None);
        assert_eq!(changes.lifetime(), Some(None));
        changes.apply_to_record(&mut record);
        assert_eq!(record.lifetime, None);
    }

    #[test]
    fn owner_names_are_bounded() {
        let now = SystemTime::now();
        assert_eq!(Owner::new("", now), Err(OwnerError::Empty));
        assert!(Owner::new("x".repeat(Owner::MAX_LEN), now).is_ok());
        assert_eq!(
            Owner::new("x".repeat(Owner::MAX_LEN + 1), now),
            Err(OwnerError::TooLong {
                len: Owner::MAX_LEN + 1
            })
        );
    }
}
