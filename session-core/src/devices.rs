//! A user's devices: the sessions of one [owner](crate::Session::set_owner),
//! listed for a "your devices" page, ended one by one, and capped per user.
//!
//! | | |
//! |---|---|
//! | list | [`Session::devices`](crate::Session::devices), [`SessionManager::devices_of`](crate::SessionManager::devices_of) |
//! | end one | [`Session::end_device`](crate::Session::end_device), [`SessionManager::end_device_of`](crate::SessionManager::end_device_of) |
//! | end the others | [`Session::log_out_other_sessions`](crate::Session::log_out_other_sessions) |
//! | cap per user | [`SessionManagerBuilder::with_max_sessions_per_owner`](crate::manager::SessionManagerBuilder::with_max_sessions_per_owner) |
//! | label | [`Session::set_label`](crate::Session::set_label) |
//!
//! A [`Device`] names its session by a [`DeviceHandle`], never by its id: the
//! id is the session's bearer secret, and a page that listed ids would hand
//! every session of a user to anyone who can read that page (a shared
//! screen, a cached response, an XSS). A handle is a keyed MAC of the id
//! under a key derived from the cookie keys, so it is stable across servers
//! that share those keys, says nothing about the id, and cannot be turned
//! into a cookie.
//!
//! # What is stored where
//! Each device's label and login time travel with the session's own data,
//! under two reserved keys ([`LABEL_KEY`], [`LOGIN_KEY`]), so every store
//! that keeps data keeps them, across servers and failover, with no change
//! to any backend's record format. "Last active" is not stored: it is read
//! off the session's expiry (every commit and every touch moves
//! `expires_at` to "now + idle timeout"), so it costs no write. It is
//! exact after a commit, and up to half the idle timeout early for a
//! session that only reads, since the manager touches such a session only
//! once less than half of its idle timeout is left.
//!
//! # Stores
//! Listing needs [`SessionStore::sessions_of`](crate::store::SessionStore::sessions_of):
//! the memory store, Redis (every topology), the cluster, PostgreSQL, and
//! failover and tiered pairs over them. Memcached answers
//! [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported): it cannot
//! enumerate keys, so it keeps no owner index.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{store::Record, KeyRing, SessionId};

/// The data key of a session's [label](crate::Session::set_label), as JSON
/// text. Reserved: an app that writes it itself changes the label.
pub const LABEL_KEY: &str = "session-kit.label";

/// The data key of the moment a session gained its owner, as JSON
/// microseconds since the Unix epoch: the order in which the
/// [per-owner cap](crate::manager::SessionManagerBuilder::with_max_sessions_per_owner)
/// keeps the newest logins. Reserved.
pub const LOGIN_KEY: &str = "session-kit.login";

/// The longest label, in bytes. A longer one is cut at a character
/// boundary: a label is for display, and a user agent can be kilobytes.
pub const MAX_LABEL_LEN: usize = 256;

/// What the key of handles is derived with, so a handle's MAC can never be
/// a cookie's tag (those are over `name=id`, and a cookie name has no NUL).
const HANDLE_KEY_LABEL: &[u8] = b"session-kit\0device-handle\0v1";

/// How many bytes of the MAC a handle keeps: 128 bits, as many as the id,
/// so guessing a handle is no easier than guessing a session.
const HANDLE_BYTES: usize = 16;

/// The opaque name of one of a user's sessions on a "your devices" page.
///
/// 22 characters of unpadded base64url, safe in a URL or a form field.
/// It is not the session id and does not let its holder act as that
/// session; it only lets the session's owner end it
/// ([`Session::end_device`](crate::Session::end_device)). A handle of
/// another owner's session ends nothing.
///
/// ```
/// use session_core::devices::DeviceHandle;
///
/// let handle = DeviceHandle::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap();
/// assert_eq!(handle.as_str(), "AAAAAAAAAAAAAAAAAAAAAA");
/// assert!(DeviceHandle::parse("not a handle").is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceHandle(String);

impl DeviceHandle {
    /// The handle written as `text`, if it is one: 22 characters of
    /// unpadded base64url. Any such text parses; whether it names a session
    /// is decided against the owner's sessions.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; HANDLE_BYTES];
        (text.len() == 22
            && URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) == Ok(HANDLE_BYTES)
            // Only the canonical text: no two texts name one handle.
            && URL_SAFE_NO_PAD.encode(bytes) == text)
            .then(|| Self(text.to_owned()))
    }

    /// The handle as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceHandle({})", self.0)
    }
}

/// One of a user's live sessions, as a "your devices" page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// Names the session to [`Session::end_device`](crate::Session::end_device).
    pub handle: DeviceHandle,
    /// When the session was first created (kept across
    /// [`cycle_id`](crate::Session::cycle_id)).
    pub created_at: SystemTime,
    /// When the session last got a request that wrote or extended it (see
    /// the [module docs](self) for its precision).
    pub last_active: SystemTime,
    /// When the session gained its current owner, if session-kit recorded
    /// it (sessions owned before this version did not).
    pub logged_in_at: Option<SystemTime>,
    /// The label the app set with [`Session::set_label`](crate::Session::set_label).
    pub label: Option<String>,
    /// Whether this is the session of the request that asked.
    pub current: bool,
}

/// The keys handles are made with: one per cookie key, the signing one
/// first, so a handle shown before a key rotation still ends its session.
#[derive(Clone)]
pub(crate) struct HandleKeys {
    keys: Vec<Hmac<Sha256>>,
}

impl fmt::Debug for HandleKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandleKeys(..)")
    }
}

impl HandleKeys {
    pub(crate) fn new(ring: &KeyRing) -> Self {
        let keys = ring
            .keys()
            .iter()
            .map(|key| {
                let derived = key.tag(&[HANDLE_KEY_LABEL]);
                Hmac::<Sha256>::new_from_slice(&derived).expect("HMAC accepts any key length")
            })
            .collect();
        Self { keys }
    }

    fn mac(key: &Hmac<Sha256>, id: &SessionId) -> [u8; HANDLE_BYTES] {
        let mut mac = key.clone();
        mac.update(id.encode().as_bytes());
        let full = mac.finalize().into_bytes();
        let mut short = [0u8; HANDLE_BYTES];
        short.copy_from_slice(&full[..HANDLE_BYTES]);
        short
    }

    /// The handle of `id` under the signing key.
    pub(crate) fn handle(&self, id: &SessionId) -> DeviceHandle {
        DeviceHandle(URL_SAFE_NO_PAD.encode(Self::mac(&self.keys[0], id)))
    }

    /// Whether `handle` names `id` under any key, compared in constant time
    /// so the comparison tells nothing about the right handle.
    pub(crate) fn names(&self, handle: &DeviceHandle, id: &SessionId) -> bool {
        let mut given = [0u8; HANDLE_BYTES];
        if URL_SAFE_NO_PAD.decode_slice(&handle.0, &mut given) != Ok(HANDLE_BYTES) {
            return false;
        }
        self.keys.iter().fold(false, |found, key| {
            let ours = Self::mac(key, id);
            let same = ours
                .iter()
                .zip(given)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
            found | same
        })
    }
}

/// A label cut to [`MAX_LABEL_LEN`] bytes at a character boundary.
pub(crate) fn bounded_label(label: &str) -> &str {
    if label.len() <= MAX_LABEL_LEN {
        return label;
    }
    let mut end = MAX_LABEL_LEN;
    while !label.is_char_boundary(end) {
        end -= 1;
    }
    &label[..end]
}

/// The login stamp of `record`, in microseconds since the Unix epoch; 0
/// (older than every login) when it has none.
pub(crate) fn login_micros(record: &Record) -> u64 {
    record
        .data
        .get(LOGIN_KEY)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(0)
}

/// `at` as microseconds since the Unix epoch (0 before it).
pub(crate) fn micros(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Sorts `records` newest login first. Ties (the same microsecond, or two
/// sessions without a stamp) go by id, so every server that ranks the same
/// sessions ranks them alike, and two racing cap passes never keep
/// different sessions.
pub(crate) fn newest_login_first(records: &mut [Record]) {
    records.sort_by(|a, b| {
        login_micros(b)
            .cmp(&login_micros(a))
            .then_with(|| b.id.encode().cmp(&a.id.encode()))
    });
}

/// What a "your devices" page shows of `record`.
pub(crate) fn device(
    keys: &HandleKeys,
    record: &Record,
    idle_timeout: Duration,
    now: SystemTime,
    current: Option<&SessionId>,
) -> Device {
    // Every commit and touch sets expires_at to "then + idle" (capped by
    // the absolute deadline, which only makes this an underestimate).
    let last_active = record
        .expires_at
        .checked_sub(idle_timeout)
        .unwrap_or(record.created_at)
        .max(record.created_at)
        .min(now);
    let stamp = login_micros(record);
    Device {
        handle: keys.handle(&record.id),
        created_at: record.created_at,
        last_active,
        logged_in_at: (stamp > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_micros(stamp)),
        label: record
            .data
            .get(LABEL_KEY)
            .and_then(|text| serde_json::from_str(text).ok()),
        current: current == Some(&record.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    #[test]
    fn a_handle_is_stable_under_shared_keys_and_differs_under_others() {
        let id = SessionId::generate();
        let secret = [7u8; 32];
        let one = HandleKeys::new(&KeyRing::new(Key::from_secret(secret).unwrap()));
        let two = HandleKeys::new(&KeyRing::new(Key::from_secret(secret).unwrap()));
        let other = HandleKeys::new(&KeyRing::new(Key::from_secret([8u8; 32]).unwrap()));
        assert_eq!(one.handle(&id), two.handle(&id));
        assert_ne!(one.handle(&id), other.handle(&id));
        assert!(one.names(&two.handle(&id), &id));
        assert!(!one.names(&other.handle(&id), &id));
        assert!(!one.names(&one.handle(&SessionId::generate()), &id));
        assert!(!one.handle(&id).as_str().contains(&id.encode()));
        assert!(DeviceHandle::parse(one.handle(&id).as_str()).is_some());
    }

    #[test]
    fn a_handle_from_before_a_rotation_still_names_its_session() {
        let id = SessionId::generate();
        let old = Key::from_secret([1u8; 32]).unwrap();
        let new = Key::from_secret([2u8; 32]).unwrap();
        let before = HandleKeys::new(&KeyRing::new(old.clone()));
        let after = HandleKeys::new(&KeyRing::new(new).with_fallback(old));
        assert_ne!(before.handle(&id), after.handle(&id));
        assert!(after.names(&before.handle(&id), &id));
    }

    #[test]
    fn labels_are_cut_at_a_character_boundary() {
        assert_eq!(bounded_label("firefox"), "firefox");
        let long = "é".repeat(MAX_LABEL_LEN);
        let cut = bounded_label(&long);
        assert!(cut.len() <= MAX_LABEL_LEN && cut.len() >= MAX_LABEL_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn handles_parse_only_in_their_canonical_form() {
        assert!(DeviceHandle::parse("AAAAAAAAAAAAAAAAAAAAAA").is_some());
        // The last character carries 4 unused bits; only the canonical one parses.
        assert!(DeviceHandle::parse("AAAAAAAAAAAAAAAAAAAAAB").is_none());
        assert!(DeviceHandle::parse("AAAAAAAAAAAAAAAAAAAAA").is_none());
        assert!(DeviceHandle::parse("AAAAAAAAAAAAAAAAAAAA+A").is_none());
    }
}
