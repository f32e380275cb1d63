//! Signing of peer traffic: keys derived from the cluster secret, HMAC-SHA256
//! tags, the link's signed parts (a request's head, its body, its reply),
//! and the hex and clock helpers the signed headers use.

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

/// The head of a peer request, as the header texts it travels in: it is
/// signed apart from the body so a receiver can refuse a stranger before it
/// reads one byte of the body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head<'a> {
    /// The link's path, which carries the format's version.
    pub(crate) path: &'a [u8],
    pub(crate) node: &'a [u8],
    /// Milliseconds since the Unix epoch on the sender's clock.
    pub(crate) time: &'a [u8],
    /// The caller's remaining time, in milliseconds.
    pub(crate) budget: &'a [u8],
    /// The body's length in bytes.
    pub(crate) length: &'a [u8],
    /// Random per request: what a replay repeats, and what binds the reply.
    pub(crate) nonce: &'a [u8],
}

impl Signer {
    /// The tag of a request's head. Each part is labelled (`head`, `body`,
    /// `reply`) so no tag of one kind passes for another.
    pub(crate) fn head_tag(&self, head: &Head<'_>) -> [u8; TAG_LEN] {
        self.tag(&head_parts(head))
    }

    /// Constant-time check of a request head's tag.
    pub(crate) fn verify_head(&self, head: &Head<'_>, tag: &[u8]) -> bool {
        self.verify(&head_parts(head), tag)
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

fn head_parts<'a>(head: &Head<'a>) -> [&'a [u8]; 7] {
    [
        b"head",
        head.path,
        head.node,
        head.time,
        head.budget,
        head.length,
        head.nonce,
    ]
}

/// Lowercase hex, as tags and nonces travel in headers. By table: a
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

/// The bytes of hex text (either case), or `None` if it is not hex.
pub(crate) fn from_hex(text: &[u8]) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 2);
    for pair in text.chunks_exact(2) {
        out.push((digit(pair[0])? << 4) | digit(pair[1])?);
    }
    Some(out)
}

/// Milliseconds since the Unix epoch, as signed in the link's `x-sc-time` header.
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

    fn head<'a>(nonce: &'a [u8], length: &'a [u8]) -> Head<'a> {
        Head {
            path: b"/p",
            node: b"node-0",
            time: b"1000",
            budget: b"500",
            length,
            nonce,
        }
    }

    #[test]
    fn a_head_tag_covers_every_field_and_a_body_tag_its_head() {
        let link = Signer::derive(&[1; 32], "link");
        let tag = link.head_tag(&head(b"n1", b"3"));
        assert!(link.verify_head(&head(b"n1", b"3"), &tag));
        assert!(!link.verify_head(&head(b"n2", b"3"), &tag));
        assert!(!link.verify_head(&head(b"n1", b"4"), &tag));
        let body = link.body_tag(&tag, b"abc");
        assert!(link.verify_body(&tag, b"abc", &body));
        assert!(!link.verify_body(&tag, b"abd", &body));
        let other = link.head_tag(&head(b"n2", b"3"));
        assert!(!link.verify_body(&other, b"abc", &body));
        // Labelled: a body tag is no head tag.
        assert!(!link.verify_head(&head(b"n1", b"3"), &body));
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
    fn hex_round_trips_and_refuses_junk() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(to_hex(&bytes).as_bytes()).unwrap(), bytes);
        assert!(from_hex(b"abc").is_none());
        assert!(from_hex(b"zz").is_none());
        assert!(from_hex(b"0g").is_none());
        assert_eq!(from_hex(b"ABff").unwrap(), [0xab, 0xff]);
        assert_eq!(to_hex(&[0x0f, 0xa0]), "0fa0");
    }
}
