//! The link's frames, as bytes: pure encoders and decoders, so the parsing
//! that strangers' bytes reach is small, bounded and tested on its own.
//!
//! A connection opens with [`MAGIC`] from the caller. Then each request is
//! one frame:
//!
//! ```text
//! head length u32 | body length u32             the fixed header
//! head (head length bytes)                      what the head tag signs
//! head tag [32] | body tag [32]
//! body (body length bytes)                      read only once the head verified
//! ```
//!
//! and the head is `id u64 | time u64 | budget u64 | length u64 | nonce
//! u128 | node length u8 | node`, all big-endian. Each reply is
//! `id u64 | status u8 | length u32 | reply tag [32] | body`.

use bytes::{Buf, BufMut, BytesMut};

use crate::sign::TAG_LEN;

/// The first bytes of every connection, from the caller: the protocol and
/// its version, so a wrong protocol (an HTTP client, an older node) is
/// refused at once. v5: a lease request carries the asker's members; v4
/// was the first framed TCP; v3 was HTTP/2 at `/session-cluster/v3`.
pub(crate) const MAGIC: &[u8; 4] = b"SCL5";
/// The fixed header of a request: the head's length and the body's.
pub(crate) const HEADER_LEN: usize = 8;
/// The head's fields before the node's name.
const HEAD_FIXED: usize = 8 + 8 + 8 + 8 + 16 + 1;
/// The longest head: the fixed fields and a node name of 255 bytes.
pub(crate) const MAX_HEAD: usize = HEAD_FIXED + 255;
/// The fixed part of a reply frame, before its body.
pub(crate) const REPLY_HEADER_LEN: usize = 8 + 1 + 4 + TAG_LEN;

/// The fixed header of a request frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) head_len: usize,
    pub(crate) body_len: usize,
}

impl Header {
    /// Reads a fixed header; `None` if its head length is impossible, so
    /// the connection can be dropped before anything else is read.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN]) -> Option<Self> {
        let mut bytes = &bytes[..];
        let head_len = bytes.get_u32() as usize;
        let body_len = bytes.get_u32() as usize;
        (HEAD_FIXED..=MAX_HEAD)
            .contains(&head_len)
            .then_some(Self { head_len, body_len })
    }
}

/// A request's head: what its head tag signs. The caller writes one with
/// its node's name borrowed (`N = &str`), the server reads one owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead<N = String> {
    /// Chosen by the caller to match the reply to its request.
    pub(crate) id: u64,
    /// Milliseconds since the Unix epoch on the sender's clock.
    pub(crate) time: u64,
    /// The caller's remaining time, in milliseconds.
    pub(crate) budget: u64,
    /// The body's length in bytes.
    pub(crate) length: u64,
    /// Random per request: what a replay repeats, and what binds the reply.
    pub(crate) nonce: u128,
    /// The sender's node id, at most 255 bytes.
    pub(crate) node: N,
}

impl<N: AsRef<str>> RequestHead<N> {
    /// The node's name as it travels: its first 255 bytes.
    fn node_bytes(&self) -> &[u8] {
        let node = self.node.as_ref().as_bytes();
        &node[..node.len().min(255)]
    }

    /// The length of the head's bytes.
    fn encoded_len(&self) -> usize {
        HEAD_FIXED + self.node_bytes().len()
    }

    /// Appends the head's bytes, as they travel and as they are signed.
    fn put(&self, out: &mut impl BufMut) {
        let node = self.node_bytes();
        out.put_u64(self.id);
        out.put_u64(self.time);
        out.put_u64(self.budget);
        out.put_u64(self.length);
        out.put_u128(self.nonce);
        // At most 255 by `node_bytes`.
        #[allow(clippy::cast_possible_truncation)]
        out.put_u8(node.len() as u8);
        out.put_slice(node);
    }

    /// The head's bytes, as they travel and as they are signed.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.put(&mut out);
        out
    }
}

impl RequestHead {
    /// A head from its bytes; `None` unless they are exactly one head.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Self> {
        if bytes.len() < HEAD_FIXED {
            return None;
        }
        let id = bytes.get_u64();
        let time = bytes.get_u64();
        let budget = bytes.get_u64();
        let length = bytes.get_u64();
        let nonce = bytes.get_u128();
        let node_len = usize::from(bytes.get_u8());
        if bytes.len() != node_len {
            return None;
        }
        let node = std::str::from_utf8(bytes).ok()?.to_owned();
        Some(Self {
            id,
            time,
            budget,
            length,
            nonce,
            node,
        })
    }
}

/// One request frame, written in one buffer: `sign` is given the head's
/// bytes as they travel and returns the head's tag and the body's.
pub(crate) fn request<N: AsRef<str>>(
    head: &RequestHead<N>,
    body: &[u8],
    sign: impl FnOnce(&[u8]) -> ([u8; TAG_LEN], [u8; TAG_LEN]),
) -> BytesMut {
    let head_len = head.encoded_len();
    let mut out = BytesMut::with_capacity(HEADER_LEN + head_len + 2 * TAG_LEN + body.len());
    out.put_u32(u32::try_from(head_len).expect("a head is short"));
    out.put_u32(u32::try_from(body.len()).expect("bodies are capped at MAX_BODY"));
    head.put(&mut out);
    let (head_tag, body_tag) = sign(&out[HEADER_LEN..]);
    out.put_slice(&head_tag);
    out.put_slice(&body_tag);
    out.put_slice(body);
    out
}

/// How a server answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Served: the body is the handler's reply, signed.
    Served,
    /// Not signed with the cluster secret, off the clock, or a replay.
    Refused,
    /// Over one of the server's bounds: try again later.
    Busy,
    /// Signed, but malformed: the two ends disagree on the protocol.
    Malformed,
    /// The handler could not encode its reply.
    Failed,
}

impl Status {
    fn to_byte(self) -> u8 {
        match self {
            Self::Served => 0,
            Self::Refused => 1,
            Self::Busy => 2,
            Self::Malformed => 3,
            Self::Failed => 4,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Served,
            1 => Self::Refused,
            2 => Self::Busy,
            3 => Self::Malformed,
            4 => Self::Failed,
            _ => return None,
        })
    }
}

/// The fixed part of a reply frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyHeader {
    pub(crate) id: u64,
    pub(crate) status: Status,
    pub(crate) len: usize,
    /// The reply tag; zeros unless `status` is [`Status::Served`].
    pub(crate) tag: [u8; TAG_LEN],
}

impl ReplyHeader {
    /// Reads a reply's fixed part; `None` for an unknown status.
    pub(crate) fn decode(bytes: &[u8; REPLY_HEADER_LEN]) -> Option<Self> {
        let mut bytes = &bytes[..];
        let id = bytes.get_u64();
        let status = Status::from_byte(bytes.get_u8())?;
        let len = bytes.get_u32() as usize;
        let mut tag = [0; TAG_LEN];
        bytes.copy_to_slice(&mut tag);
        Some(Self {
            id,
            status,
            len,
            tag,
        })
    }
}

/// One reply frame: served with `body` and its tag, or a bodiless status.
pub(crate) fn reply(id: u64, status: Status, tag: &[u8; TAG_LEN], body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(REPLY_HEADER_LEN + body.len());
    out.put_u64(id);
    out.put_u8(status.to_byte());
    out.put_u32(u32::try_from(body.len()).expect("replies are capped at MAX_BODY"));
    out.put_slice(tag);
    out.put_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn head(node: String) -> RequestHead {
        RequestHead {
            id: 7,
            time: 1_700_000_000_000,
            budget: 2_000,
            length: 3,
            nonce: 0xdead_beef,
            node,
        }
    }

    #[test]
    fn a_request_frame_reads_back_field_by_field() {
        let head = head("node-0".to_owned());
        let encoded = head.encode();
        let out = request(&head, b"abc", |signed| {
            assert_eq!(signed, &encoded[..], "the tags sign the head as it travels");
            ([1; TAG_LEN], [2; TAG_LEN])
        });
        let fixed: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        let header = Header::decode(&fixed).unwrap();
        assert_eq!(header.body_len, 3);
        let rest = &out[HEADER_LEN..];
        assert_eq!(
            RequestHead::decode(&rest[..header.head_len]).as_ref(),
            Some(&head)
        );
        let tags = &rest[header.head_len..];
        assert_eq!(&tags[..TAG_LEN], &[1; TAG_LEN]);
        assert_eq!(&tags[TAG_LEN..2 * TAG_LEN], &[2; TAG_LEN]);
        assert_eq!(&tags[2 * TAG_LEN..], b"abc");
    }

    #[test]
    fn an_impossible_head_length_is_refused_from_the_fixed_header() {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..4].copy_from_slice(&(MAX_HEAD as u32 + 1).to_be_bytes());
        assert_eq!(Header::decode(&bytes), None);
        bytes[..4].copy_from_slice(&(HEAD_FIXED as u32 - 1).to_be_bytes());
        assert_eq!(Header::decode(&bytes), None);
    }

    #[test]
    fn a_head_with_trailing_or_missing_bytes_does_not_decode() {
        let mut encoded = head("n".to_owned()).encode();
        encoded.push(0);
        assert_eq!(RequestHead::decode(&encoded), None);
        encoded.truncate(encoded.len() - 2);
        assert_eq!(RequestHead::decode(&encoded), None);
    }

    proptest! {
        #[test]
        fn heads_round_trip(
            id: u64, time: u64, budget: u64, length: u64, nonce: u128,
            node in "[a-z0-9-]{0,64}",
        ) {
            let head = RequestHead { id, time, budget, length, nonce, node };
            prop_assert_eq!(RequestHead::decode(&head.encode()), Some(head));
        }

        #[test]
        fn replies_round_trip(id: u64, status in 0u8..5, tag: [u8; TAG_LEN], body: Vec<u8>) {
            let status = Status::from_byte(status).unwrap();
            let frame = reply(id, status, &tag, &body);
            let fixed: [u8; REPLY_HEADER_LEN] = frame[..REPLY_HEADER_LEN].try_into().unwrap();
            let header = ReplyHeader::decode(&fixed).unwrap();
            prop_assert_eq!(header, ReplyHeader { id, status, len: body.len(), tag });
            prop_assert_eq!(&frame[REPLY_HEADER_LEN..], &body[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes: Vec<u8>,
            fixed: [u8; HEADER_LEN],
            reply in prop::collection::vec(any::<u8>(), REPLY_HEADER_LEN),
        ) {
            let _ = RequestHead::decode(&bytes);
            if let Some(header) = Header::decode(&fixed) {
                prop_assert!(header.head_len <= MAX_HEAD);
            }
            let reply: [u8; REPLY_HEADER_LEN] = reply.try_into().unwrap();
            let _ = ReplyHeader::decode(&reply);
        }
    }
}
