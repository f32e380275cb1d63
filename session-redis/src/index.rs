//! How the sessions of one [`Owner`] are found: one sorted set per owner.
//!
//! | | |
//! |---|---|
//! | key | `<prefix>owner:<name>` |
//! | member | a session id, as its 22 characters |
//! | score | the owner's `until`, milliseconds since the Unix epoch |
//!
//! A session id has no `:`, so no index key can be a session key of the
//! same prefix. `until` is the latest a session can live and no commit moves
//! it, so an entry is written when a session gets its owner and never again:
//! commits that keep the owner, and `touch`, leave the index alone.
//!
//! Entries leave three ways: `delete_by_owner` removes those it settled;
//! adding an entry drops the ones whose `until` has passed; and the key
//! itself expires at its highest score, when every session it names must be
//! gone. An entry can outlive its session (a logout, an idle expiry, a move
//! to another owner, a failed create on Cluster); `delete_by_owner` checks
//! each session's `owner` field before it ends anything, so such an entry
//! costs one script call and ends nothing.

use std::{borrow::Cow, fmt, time::SystemTime};

use session_core::{store::Owner, SessionId};

use crate::hash::millis;

/// The key of the index of the owner called `name`.
pub(crate) fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}owner:{name}")
}

/// One entry to add to an owner's index, as the scripts take it.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The owner's index key.
    pub(crate) key: String,
    /// The session id (the member), the owner's `until` (the score) and
    /// now (what to prune before), in the order every script takes them.
    pub(crate) args: [Cow<'static, str>; 3],
}

impl Entry {
    /// The entry for session `id` owned by `owner`, added at `now`.
    pub(crate) fn new(prefix: &str, id: &SessionId, owner: &Owner, now: SystemTime) -> Self {
        Self {
            key: key(prefix, &owner.name),
            args: [
                Cow::Owned(id.encode()),
                Cow::Owned(millis(owner.until).to_string()),
                Cow::Owned(millis(now).to_string()),
            ],
        }
    }
}

/// The session an index member names.
pub(crate) fn member_id(member: &[u8]) -> Result<SessionId, CorruptIndex> {
    std::str::from_utf8(member)
        .ok()
        .and_then(SessionId::decode)
        .ok_or(CorruptIndex("names something that is not a session id"))
}

/// What `end_owned.lua` did with one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It had the owner and is gone now.
    Ended,
    /// There was no session: it expired, was deleted, or (on Cluster) is
    /// still being created.
    Absent,
    /// It belongs to another owner or to none, and was left alone.
    Kept,
}

impl TryFrom<i64> for Outcome {
    type Error = CorruptIndex;

    fn try_from(answer: i64) -> Result<Self, Self::Error> {
        match answer {
            1 => Ok(Self::Ended),
            0 => Ok(Self::Absent),
            -1 => Ok(Self::Kept),
            _ => Err(CorruptIndex(
                "check answered something other than 1, 0 or -1",
            )),
        }
    }
}

/// An owner index that is not one: a member that is no session id.
#[derive(Debug)]
pub(crate) struct CorruptIndex(&'static str);

impl fmt::Display for CorruptIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the owner index {}", self.0)
    }
}

impl std::error::Error for CorruptIndex {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_entry_names_its_owners_key_the_session_and_the_until() {
        let id = SessionId::generate();
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000);
        let owner = Owner::new("user:42", now + Duration::from_secs(60)).unwrap();
        let entry = Entry::new("app:", &id, &owner, now);
        assert_eq!(entry.key, "app:owner:user:42");
        assert_eq!(entry.args[0], id.encode());
        assert_eq!(entry.args[1], "61000");
        assert_eq!(entry.args[2], "1000");
    }

    #[test]
    fn members_must_be_session_ids() {
        let id = SessionId::generate();
        assert_eq!(member_id(id.encode().as_bytes()).unwrap(), id);
        for member in [&b"not-an-id"[..], &[0xff; 22], b""] {
            assert!(member_id(member).is_err());
        }
    }

    #[test]
    fn only_three_answers_are_outcomes() {
        assert_eq!(Outcome::try_from(1).unwrap(), Outcome::Ended);
        assert_eq!(Outcome::try_from(0).unwrap(), Outcome::Absent);
        assert_eq!(Outcome::try_from(-1).unwrap(), Outcome::Kept);
        assert!(Outcome::try_from(2).is_err());
    }
}
