//! Signing keys and key rotation.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted: 32 bytes, the output size of SHA-256, so
/// the secret is never the weakest link of the HMAC.
pub const MIN_SECRET_LEN: usize = 32;

/// Separates the cookie-signing key from any other use of the same secret.
const COOKIE_KEY_LABEL: &[u8] = b"session-kit cookie signing key v1";

/// A secret refused as a signing key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than [`MIN_SECRET_LEN`].
    #[error("session secret is {len} bytes long; at least {MIN_SECRET_LEN} bytes are required (generate one with `openssl rand -base64 48`)")]
    TooShort {
        /// The length that was given.
        len: usize,
    },
    /// A [`KeyRing`] needs at least one key.
    #[error("no session secret was given; at least one key is required")]
    NoKeys,
}

/// One cookie-signing key, derived from a secret of at least 32 bytes.
///
/// Its `Debug` output never shows key material.
///
/// ```
/// use session_core::Key;
///
/// assert!(Key::from_secret(b"too short").is_err());
/// let key = Key::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
/// assert_eq!(format!("{key:?}"), "Key(..)");
/// ```
#[derive(Clone)]
pub struct Key {
    mac: HmacSha256,
}

impl Key {
    /// Derives a key from `secret`, which must be at least [`MIN_SECRET_LEN`]
    /// bytes. The secret is used as-is (not decoded), so a long random
    /// string from a config file or the environment works directly.
    pub fn from_secret(secret: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        // Derive rather than use the secret directly, so one configured secret
        // can safely key other things later (the cluster's peer link).
        let mut kdf = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
        kdf.update(COOKIE_KEY_LABEL);
        let derived = kdf.finalize().into_bytes();
        let mac = HmacSha256::new_from_slice(&derived).expect("HMAC accepts any key length");
        Ok(Self { mac })
    }

    /// A random key. Sessions signed with it do not survive a restart and are
    /// not accepted by other servers: for tests and single-process demos.
    #[must_use]
    pub fn generate() -> Self {
        let mut secret = [0u8; MIN_SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        Self::from_secret(secret).expect("generated secret has the minimum length")
    }

    /// HMAC-SHA256 over the parts, in order.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` over the parts.
    pub(crate) fn verifies(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The keys a server accepts: the first signs, every one verifies.
///
/// To rotate, put the new key first and keep the old one after it until every
/// cookie signed with it has expired or been re-signed (the manager re-signs a
/// cookie verified by an older key on its next response).
///
/// ```
/// use session_core::{Key, KeyRing};
///
/// let new = Key::from_secret([1u8; 32]).unwrap();
/// let old = Key::from_secret([2u8; 32]).unwrap();
/// let ring = KeyRing::new(new).with_fallback(old);
/// assert_eq!(ring.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring whose only key is `signing`.
    #[must_use]
    pub fn new(signing: Key) -> Self {
        Self {
            keys: vec![signing],
        }
    }

    /// Adds a key that verifies but no longer signs.
    #[must_use]
    pub fn with_fallback(mut self, key: Key) -> Self {
        self.keys.push(key);
        self
    }

    /// A ring from secrets, the signing one first.
    ///
    /// ```
    /// use session_core::{KeyError, KeyRing};
    ///
    /// let ring = KeyRing::from_secrets(["a".repeat(32), "b".repeat(40)]).unwrap();
    /// assert_eq!(ring.len(), 2);
    /// assert_eq!(KeyRing::from_secrets(["short"]).unwrap_err(), KeyError::TooShort { len: 5 });
    /// assert_eq!(KeyRing::from_secrets(Vec::<String>::new()).unwrap_err(), KeyError::NoKeys);
    /// ```
    pub fn from_secrets<S: AsRef<[u8]>>(
        secrets: impl IntoIterator<Item = S>,
    ) -> Result<Self, KeyError> {
        let keys = secrets
            .into_iter()
            .map(Key::from_secret)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(Self { keys })
    }

    /// How many keys verify.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring has a signing key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, the signing one first.
    pub(crate) fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub(crate) fn signing(&self) -> &Key {
        &self.keys[0]
    }

    /// The index of the first key whose tag over `parts` matches, if any.
    ///
    /// Each key's check is constant-time, so timing never helps forge a
    /// tag. The ring stops at the first match: the time then tells at most
    /// which key signed a valid cookie, which its holder knows already (it
    /// is re-signed under the first key on its next response), and a cookie
    /// under the current key, nearly every one, costs one HMAC, not one per
    /// key.
    pub(crate) fn verifying_index(&self, parts: &[&[u8]], tag: &[u8]) -> Option<usize> {
        self.keys.iter().position(|key| key.verifies(parts, tag))
    }
}

impl From<Key> for KeyRing {
    fn from(key: Key) -> Self {
        Self::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_of_the_ring_verifies_and_the_first_match_wins() {
        let keys: Vec<Key> = (1..=3u8)
            .map(|byte| Key::from_secret([byte; MIN_SECRET_LEN]).unwrap())
            .collect();
        let ring = KeyRing::new(keys[0].clone())
            .with_fallback(keys[1].clone())
            .with_fallback(keys[1].clone())
            .with_fallback(keys[2].clone());
        let parts: &[&[u8]] = &[b"session", b"=", b"an id"];
        for (signer, expected) in [(0, 0), (1, 1), (2, 3)] {
            let tag = keys[signer].tag(parts);
            assert_eq!(ring.verifying_index(parts, &tag), Some(expected));
        }
        assert_eq!(ring.verifying_index(parts, &[0; 32]), None);
    }
}
