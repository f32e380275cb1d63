//! Session ids.

use std::fmt;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rand::RngCore as _;

/// Bytes of entropy in a [`SessionId`].
const ID_BYTES: usize = 16;

/// Length of a [`SessionId`] in its text form (unpadded base64url of 16 bytes).
pub(crate) const ENCODED_LEN: usize = 22;

/// How many leading characters `Debug` shows: enough to correlate log lines,
/// far too few to hijack a session.
const DEBUG_PREFIX: usize = 4;

/// A session id: 128 bits from a CSPRNG.
///
/// Its text form is 22 characters of unpadded base64url ([`SessionId::encode`]).
/// That text is a bearer credential, so the type deliberately has no
/// `Display` impl and its `Debug` output shows only a short prefix: a stray
/// `{:?}` in a log line cannot leak a usable id.
///
/// ```
/// use session_core::SessionId;
///
/// let id = SessionId::generate();
/// let text = id.encode();
/// assert_eq!(text.len(), 22);
/// assert_eq!(SessionId::decode(&text), Some(id));
/// assert!(!format!("{id:?}").contains(&text));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// A fresh id from the thread-local CSPRNG (ChaCha, seeded and
    /// periodically reseeded from the operating system).
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The 22-character unpadded base64url text form, as used in cookies and
    /// store keys.
    #[must_use]
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the text form. Anything other than exactly 22 characters of
    /// canonical unpadded base64url is `None`.
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() != ENCODED_LEN {
            return None;
        }
        let mut bytes = [0u8; ID_BYTES];
        // `decode_slice` rejects non-canonical trailing bits, so every id has
        // exactly one text form and a cookie cannot alias another id.
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(ID_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    /// Another id that only `self` maps to, derived with SHA-256 under
    /// `domain`: where a composite store keeps a marker about `self` (a
    /// failover tombstone) in a store that only speaks in session ids.
    /// Nobody holds a cookie for it, and finding the id it came from would
    /// take inverting SHA-256.
    pub(crate) fn derive(&self, domain: &str) -> Self {
        Self::derive_from(domain, &self.0)
    }

    /// The id derived with SHA-256 from `bytes` under `domain`: where a
    /// composite store keeps a marker about something that is not a session
    /// (an owner's fence). Domains keep it apart from [`derive`](Self::derive)'s.
    pub(crate) fn derive_from(domain: &str, bytes: &[u8]) -> Self {
        use sha2::{Digest as _, Sha256};

        let digest = Sha256::new()
            .chain_update(domain.as_bytes())
            .chain_update([0])
            .chain_update(bytes)
            .finalize();
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&digest[..ID_BYTES]);
        Self(id)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.encode();
        write!(f, "SessionId({}…)", &text[..DEBUG_PREFIX])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_and_differ() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::decode(&a.encode()), Some(a));
    }

    #[test]
    fn decode_refuses_wrong_length_alphabet_and_padding() {
        let good = SessionId::generate().encode();
        assert_eq!(SessionId::decode(&good[..21]), None);
        assert_eq!(SessionId::decode(&format!("{good}A")), None);
        assert_eq!(SessionId::decode("++++++++++++++++++++++"), None);
        assert_eq!(SessionId::decode("AAAAAAAAAAAAAAAAAAAA=="), None);
        assert_eq!(SessionId::decode(""), None);
    }

    #[test]
    fn decode_refuses_non_canonical_trailing_bits() {
        // 16 bytes leave 4 spare bits in the last character; "B" sets one.
        let canonical = "AAAAAAAAAAAAAAAAAAAAAA";
        let aliased = "AAAAAAAAAAAAAAAAAAAAAB";
        assert!(SessionId::decode(canonical).is_some());
        assert_eq!(SessionId::decode(aliased), None);
    }

    #[test]
    fn derived_ids_are_stable_and_differ_by_domain() {
        let id = SessionId::generate();
        assert_eq!(id.derive("a"), id.derive("a"));
        assert_ne!(id.derive("a"), id.derive("b"));
        assert_ne!(id.derive("a"), id);
        assert_ne!(id.derive("a"), SessionId::generate().derive("a"));
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let id = SessionId::generate();
        let shown = format!("{id:?}");
        assert!(!shown.contains(&id.encode()));
        assert!(shown.contains(&id.encode()[..4]));
    }
}
