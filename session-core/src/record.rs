//! Stored records and the changes one request makes to them.

use std::{
    collections::{HashMap, HashSet},
    time::SystemTime,
};

use crate::SessionId;

/// The data of a session: each key maps to its value encoded on its own as
/// JSON text, so a store can keep values as separate fields (one Redis hash
/// field per key) and other services can read them without session-kit.
pub type Data = HashMap<String, String>;

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
}

impl Record {
    /// The version of a freshly created record.
    pub const FIRST_VERSION: u64 = 1;

    /// A new record at [`FIRST_VERSION`](Self::FIRST_VERSION).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use session_core::{Record, SessionId};
    ///
    /// let now = SystemTime::now();
    /// let record = Record::new(SessionId::generate(), Default::default(), now, now + Duration::from_secs(60));
    /// assert_eq!(record.version, 1);
    /// ```
    #[must_use]
    pub fn new(id: SessionId, data: Data, created_at: SystemTime, expires_at: SystemTime) -> Self {
        Self {
            id,
            data,
            created_at,
            expires_at,
            version: Self::FIRST_VERSION,
        }
    }
}

/// What one request did to a session's data: an optional clear-all, then
/// removals, then sets. A store applies it as one atomic step.
///
/// A key is never both set and removed: the last call wins as it is
/// recorded. Because only touched keys travel, two requests that change
/// different keys of one session at the same time both survive.
///
/// ```
/// use session_core::Changes;
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

    /// Records a clear-all. Everything set or removed before is forgotten:
    /// after a clear only later calls matter.
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
        !self.clear && self.set.is_empty() && self.removed.is_empty()
    }

    /// Applies the changes to `data` in their defined order: clear, remove, set.
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
}
