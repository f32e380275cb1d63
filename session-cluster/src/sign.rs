//! Signing of peer traffic: keys derived from the cluster secret, HMAC-SHA256
//! tags, the link's signed parts (a request's head, its body, its reply),
//! and the hex and clock helpers.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks peer traffic with keys derived from the cluster secret:
/// one for the link, one for membership datagrams, so a tag from one can
/// never be replayed as the other.
#[derive(Clone)]
pub(crate) struct Signer {
    /// HMAC state with the key already absorbed: each tag starts from a
    /// copy of it, so the key's two hash blocks are not recomputed per tag.
    keyed: HmacSha256,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

/// The length of an HMAC-SHA256 tag.
pub(crate) const TAG_LEN: usize = 32;

impl Signer {
    pub(crate) fn derive(secret: &[u8], purpose: &str) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"session-cluster key derivation\0");
        mac.update(purpose.as_bytes());
        let key: [u8; 32] = mac.finalize().into_bytes().into();
        Self {
            keyed: HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length"),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        for part in parts {
            // Length-prefixed, so moving bytes between parts changes the tag.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        self.mac(parts).finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` over `parts`.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(parts).verify_slice(tag).is_ok()
    }
}

impl Signer {
    /// The tag of a request's head (sender, time, budget, body length,
    /// nonce and request id, as the frame encodes them), under the link
    /// protocol's `version`. It is signed apart from the body so a receiver
    /// can refuse a stranger before it reads one byte of the body. Each part
    /// is labelled (`head`, `body`, `reply`) so no tag of one kind passes
    /// for another.
    pub(crate) fn head_tag(&self, version: &[u8], head: &[u8]) -> [u8; TAG_LEN] {
        self.tag(&[b"head", version, head])
    }

    /// Constant-time check of a request head's tag.
    pub(crate) fn verify_head(&self, version: &[u8], head: &[u8], tag: &[u8]) -> bool {
        self.verify(&[b"head", version, head], tag)
    }

    /// The tag of a request's body, chained to its head's tag: a body moved
    /// under another signed head fails.
    pub(crate) fn body_tag(&self, head_tag: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
        self.tag(&[b"body", head_tag, body])
    }

    /// Constant-time check of a request body's tag.
    pub(crate) fn verify_body(&self, head_tag: &[u8], body: &[u8], tag: &[u8]) -> bool {
        self.verify(&[b"body", head_tag, body], tag)
    }

    /// The tag of a reply, bound to its request's nonce and body tag, so a
    /// reply recorded earlier cannot answer another request.
    pub(crate) fn reply_tag(&self, nonce: &[u8], body_tag: &[u8], reply: &[u8]) -> [u8; TAG_LEN] {
        self.tag(&[b"reply", nonce, body_tag, reply])
    }

    /// Constant-time check of a reply's tag.
    pub(crate) fn verify_reply(
        &self,
        nonce: &[u8],
        body_tag: &[u8],
        reply: &[u8],
        tag: &[u8],
    ) -> bool {
        self.verify(&[b"reply", nonce, body_tag, reply], tag)
    }
}

/// Lowercase hex, as owner index keys carry digests. By table: a
/// formatter call per byte cost a microsecond per tag, more than the HMAC.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Milliseconds since the Unix epoch, as signed in a link request's head.
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_depend_on_the_key_the_purpose_and_the_split() {
        let link = Signer::derive(&[1; 32], "link");
        let tag = link.tag(&[b"ab", b"c"]);
        assert!(link.verify(&[b"ab", b"c"], &tag));
        assert!(!link.verify(&[b"a", b"bc"], &tag));
        assert!(!Signer::derive(&[1; 32], "gossip").verify(&[b"ab", b"c"], &tag));
        assert!(!Signer::derive(&[2; 32], "link").verify(&[b"ab", b"c"], &tag));
    }

    #[test]
    fn a_head_tag_covers_every_field_and_a_body_tag_its_head() {
        let link = Signer::derive(&[1; 32], "link");
        let tag = link.head_tag(b"v4", b"head-1");
        assert!(link.verify_head(b"v4", b"head-1", &tag));
        assert!(!link.verify_head(b"v4", b"head-2", &tag));
        assert!(!link.verify_head(b"v5", b"head-1", &tag));
        let body = link.body_tag(&tag, b"abc");
        assert!(link.verify_body(&tag, b"abc", &body));
        assert!(!link.verify_body(&tag, b"abd", &body));
        let other = link.head_tag(b"v4", b"head-2");
        assert!(!link.verify_body(&other, b"abc", &body));
        // Labelled: a body tag is no head tag.
        assert!(!link.verify_head(b"v4", b"head-1", &body));
    }

    #[test]
    fn a_reply_tag_is_bound_to_its_request() {
        let link = Signer::derive(&[1; 32], "link");
        let tag = link.reply_tag(b"n1", &[7; 32], b"reply");
        assert!(link.verify_reply(b"n1", &[7; 32], b"reply", &tag));
        assert!(!link.verify_reply(b"n2", &[7; 32], b"reply", &tag));
        assert!(!link.verify_reply(b"n1", &[8; 32], b"reply", &tag));
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(to_hex(&[0x0f, 0xa0, 0, 0xff]), "0fa000ff");
    }
}
