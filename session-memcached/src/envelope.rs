//! How a session lives in one Memcached item: a small, versioned binary
//! envelope.
//!
//! ```text
//! offset  size  field
//! 0       2     magic "SK"
//! 2       1     envelope format, 1
//! 3       8     session version, u64 big-endian
//! 11      8     created_at, ms since the Unix epoch, u64 big-endian
//! 19      4     number of entries, u32 big-endian
//! 23      …     per entry: key length (u32 BE), key (UTF-8),
//!               value length (u32 BE), value (UTF-8 JSON text)
//! ```
//!
//! A session with an [`Owner`] is written in format 2, which puts the owner
//! between `created_at` and the entry count: the name's length (u32 BE),
//! the name (UTF-8), and `until` (ms since the Unix epoch, u64 BE). A
//! session without one stays in format 1, byte for byte, so owners cost
//! nothing to those who do not use them.
//!
//! A session with its own [`Lifetime`] is written in format 3: after
//! `created_at`, one byte (1 when an owner follows, else 0), the owner as
//! in format 2 when there is one, then the lifetime as
//! [`Lifetime::encode`]'s text (length u32 BE, then UTF-8). A session
//! without one stays in format 1 or 2, so records written before lifetimes
//! existed read as they always did and read as having none.
//!
//! There is no `expires_at` inside: the item's own Memcached expiry is the
//! only copy, so a meta touch can move it without rewriting the envelope
//! (see [`crate::exptime`]). The format byte lets a later release change the
//! layout; this reader refuses formats it does not know instead of
//! misreading them.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use session_core::store::{Changes, Data, Lifetime, Owner};

const MAGIC: &[u8; 2] = b"SK";
const FORMAT: u8 = 1;
const FORMAT_OWNED: u8 = 2;
const FORMAT_LIFETIME: u8 = 3;
const HEADER_LEN: usize = 2 + 1 + 8 + 8 + 4;
/// The smallest an entry can be: two lengths and nothing else.
const MIN_ENTRY_LEN: usize = 8;

/// A session as the envelope holds it: everything but the id and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) version: u64,
    pub(crate) created_at: SystemTime,
    pub(crate) owner: Option<Owner>,
    pub(crate) data: Data,
    pub(crate) lifetime: Option<Lifetime>,
}

impl Envelope {
    /// Applies one commit: the changes, and one more version.
    pub(crate) fn apply(&mut self, changes: &Changes) {
        changes.apply_to(&mut self.data);
        if let Some(owner) = changes.owner() {
            self.owner = owner.cloned();
        }
        if let Some(lifetime) = changes.lifetime() {
            self.lifetime = lifetime;
        }
        self.version += 1;
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_with(
            self.version,
            self.created_at,
            self.owner.as_ref(),
            self.lifetime.as_ref(),
            &self.data,
        )
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, CorruptItem> {
        let mut reader = Reader(bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(CorruptItem::NotAnEnvelope);
        }
        let format = reader.take(1)?[0];
        if ![FORMAT, FORMAT_OWNED, FORMAT_LIFETIME].contains(&format) {
            return Err(CorruptItem::UnknownFormat(format));
        }
        let version = reader.u64()?;
        let created_at = reader.time()?;
        let owned = match format {
            FORMAT_OWNED => true,
            FORMAT_LIFETIME => match reader.take(1)?[0] {
                0 => false,
                1 => true,
                _ => return Err(CorruptItem::NotAnEnvelope),
            },
            _ => false,
        };
        let owner = if owned {
            let name = reader.text()?;
            let until = reader.time()?;
            Some(Owner::new(name, until).map_err(|_| CorruptItem::BadOwner)?)
        } else {
            None
        };
        let lifetime = if format == FORMAT_LIFETIME {
            Some(Lifetime::decode(&reader.text()?).ok_or(CorruptItem::BadLifetime)?)
        } else {
            None
        };
        let count = reader.u32()? as usize;
        // A forged count must not make us reserve gigabytes: each entry
        // needs at least its two lengths.
        if count > reader.0.len() / MIN_ENTRY_LEN {
            return Err(CorruptItem::Truncated);
        }
        let mut data = Data::with_capacity(count);
        for _ in 0..count {
            let key = reader.text()?;
            let value = reader.text()?;
            if data.insert(key, value).is_some() {
                return Err(CorruptItem::DuplicateKey);
            }
        }
        if !reader.0.is_empty() {
            return Err(CorruptItem::TrailingBytes);
        }
        Ok(Self {
            version,
            created_at,
            owner,
            data,
            lifetime,
        })
    }
}

/// The envelope of a session with these parts (a lifetime only if it has
/// its own), from borrowed data, so that `create` need not copy a record's
/// data to store it.
pub(crate) fn encode_with(
    version: u64,
    created_at: SystemTime,
    owner: Option<&Owner>,
    lifetime: Option<&Lifetime>,
    data: &Data,
) -> Vec<u8> {
    let lifetime = lifetime.map(Lifetime::encode);
    let body: usize = data
        .iter()
        .map(|(key, value)| MIN_ENTRY_LEN + key.len() + value.len())
        .sum();
    let owner_len = owner.map_or(0, |owner| 4 + owner.name.len() + 8);
    let lifetime_len = lifetime.as_ref().map_or(0, |text| 1 + 4 + text.len());
    let mut out = Vec::with_capacity(HEADER_LEN + owner_len + lifetime_len + body);
    out.extend_from_slice(MAGIC);
    out.push(match (&lifetime, owner) {
        (Some(_), _) => FORMAT_LIFETIME,
        (None, Some(_)) => FORMAT_OWNED,
        (None, None) => FORMAT,
    });
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&millis(created_at).to_be_bytes());
    if lifetime.is_some() {
        out.push(u8::from(owner.is_some()));
    }
    if let Some(owner) = owner {
        out.extend_from_slice(&length(owner.name.len()).to_be_bytes());
        out.extend_from_slice(owner.name.as_bytes());
        out.extend_from_slice(&millis(owner.until).to_be_bytes());
    }
    if let Some(text) = &lifetime {
        out.extend_from_slice(&length(text.len()).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(&length(data.len()).to_be_bytes());
    for (key, value) in data {
        for part in [key, value] {
            out.extend_from_slice(&length(part.len()).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

/// Milliseconds since the Unix epoch; times before it count as the epoch.
fn millis(time: SystemTime) -> u64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// A length as the envelope writes it. Memcached items are at most 1 GiB
/// (`-I` tops out there), so a `u32` never overflows for anything storable;
/// the size check refuses the item long before this could saturate.
fn length(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptItem> {
        if self.0.len() < n {
            return Err(CorruptItem::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, CorruptItem> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, CorruptItem> {
        let (high, low) = (u64::from(self.u32()?), u64::from(self.u32()?));
        Ok(high << 32 | low)
    }

    /// A time written as [`millis`]. `SystemTime`'s range depends on the
    /// platform (Windows' ends before `u64::MAX` milliseconds), so a forged
    /// value is refused instead of overflowing the addition.
    fn time(&mut self) -> Result<SystemTime, CorruptItem> {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(self.u64()?))
            .ok_or(CorruptItem::TimeOutOfRange)
    }

    fn text(&mut self) -> Result<String, CorruptItem> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CorruptItem::NotUtf8)
    }
}

/// Why an item is not a session envelope this reader can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CorruptItem {
    NotAnEnvelope,
    UnknownFormat(u8),
    Truncated,
    NotUtf8,
    DuplicateKey,
    TrailingBytes,
    NoExpiry,
    ExpiryOutOfRange,
    TimeOutOfRange,
    BadOwner,
    BadLifetime,
}

impl fmt::Display for CorruptItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnEnvelope => f.write_str("the item is not a session envelope"),
            Self::UnknownFormat(format) => write!(
                f,
                "the session envelope has format {format}; this release reads formats {FORMAT} to {FORMAT_LIFETIME}"
            ),
            Self::Truncated => f.write_str("the session envelope is truncated"),
            Self::NotUtf8 => f.write_str("the session envelope holds text that is not UTF-8"),
            Self::DuplicateKey => f.write_str("the session envelope repeats a key"),
            Self::TrailingBytes => f.write_str("the session envelope has bytes after its end"),
            Self::NoExpiry => f.write_str("the session item never expires, so no store wrote it"),
            Self::ExpiryOutOfRange => {
                f.write_str("the server gave the session item a lifetime no exptime can hold")
            }
            Self::TimeOutOfRange => {
                f.write_str("the session envelope holds a time this platform cannot represent")
            }
            Self::BadOwner => f.write_str("the session envelope names an empty or oversized owner"),
            Self::BadLifetime => f.write_str("the session envelope holds a lifetime that does not decode"),
        }
    }
}

impl std::error::Error for CorruptItem {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            version: 7,
            created_at: UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
            owner: None,
            data: [
                ("user".to_owned(), "\"ada\"".to_owned()),
                ("cart".to_owned(), r#"{"items":[1,2]}"#.to_owned()),
                ("empty".to_owned(), String::new()),
                ("é".to_owned(), "\"ü\"".to_owned()),
            ]
            .into(),
            lifetime: None,
        }
    }

    #[test]
    fn an_envelope_round_trips() {
        let envelope = sample();
        assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        let empty = Envelope {
            data: Data::new(),
            ..sample()
        };
        assert_eq!(empty.encode().len(), HEADER_LEN);
        assert_eq!(Envelope::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn the_header_is_laid_out_as_documented() {
        let bytes = Envelope {
            data: [("k".to_owned(), "1".to_owned())].into(),
            ..sample()
        }
        .encode();
        assert_eq!(&bytes[..3], b"SK\x01");
        assert_eq!(bytes[3..11], 7u64.to_be_bytes());
        assert_eq!(bytes[11..19], 1_764_000_000_123u64.to_be_bytes());
        assert_eq!(bytes[19..23], 1u32.to_be_bytes());
        assert_eq!(&bytes[23..], b"\0\0\0\x01k\0\0\0\x011");
    }

    #[test]
    fn an_owned_envelope_round_trips_in_format_2() {
        let until = UNIX_EPOCH + Duration::from_millis(1_764_086_400_123);
        let owned = Envelope {
            owner: Some(Owner::new("user-42", until).unwrap()),
            ..sample()
        };
        let bytes = owned.encode();
        assert_eq!(&bytes[..3], b"SK\x02");
        assert_eq!(bytes[19..23], 7u32.to_be_bytes());
        assert_eq!(&bytes[23..30], b"user-42");
        assert_eq!(bytes[30..38], 1_764_086_400_123u64.to_be_bytes());
        assert_eq!(Envelope::decode(&bytes).unwrap(), owned);
        for end in 0..bytes.len() {
            assert!(Envelope::decode(&bytes[..end]).is_err());
        }
        let mut nameless = bytes.clone();
        nameless.splice(19..30, 0u32.to_be_bytes());
        assert_eq!(
            Envelope::decode(&nameless).unwrap_err(),
            CorruptItem::BadOwner
        );
    }

    #[test]
    fn an_envelope_with_a_lifetime_round_trips_in_format_3() {
        let lifetime = Lifetime::new(Duration::from_secs(60), Duration::from_secs(600))
            .unwrap()
            .with_persistent(true);
        let until = UNIX_EPOCH + Duration::from_millis(1_764_086_400_123);
        for owner in [None, Some(Owner::new("user-42", until).unwrap())] {
            let envelope = Envelope {
                owner,
                lifetime: Some(lifetime),
                ..sample()
            };
            let bytes = envelope.encode();
            assert_eq!(&bytes[..3], b"SK\x03");
            assert_eq!(Envelope::decode(&bytes).unwrap(), envelope);
            for end in 0..bytes.len() {
                assert!(Envelope::decode(&bytes[..end]).is_err());
            }
        }
        let mut changes = Changes::default();
        changes.set_lifetime(None);
        let mut envelope = Envelope {
            lifetime: Some(lifetime),
            ..sample()
        };
        envelope.apply(&changes);
        assert_eq!(
            &envelope.encode()[..3],
            b"SK\x01",
            "no lifetime, format 1 again"
        );
    }

    #[test]
    fn apply_changes_the_data_and_bumps_the_version() {
        let mut envelope = sample();
        let mut changes = Changes::default();
        changes.remove("user");
        changes.set("n", "1");
        envelope.apply(&changes);
        assert_eq!(envelope.version, 8);
        assert!(!envelope.data.contains_key("user"));
        assert_eq!(envelope.data["n"], "1");
    }

    #[test]
    fn every_prefix_of_an_envelope_is_refused_not_misread() {
        let bytes = sample().encode();
        for end in 0..bytes.len() {
            assert!(
                Envelope::decode(&bytes[..end]).is_err(),
                "a prefix of {end} bytes was accepted"
            );
        }
    }

    #[test]
    fn foreign_and_damaged_items_are_corrupt() {
        let good = sample().encode();
        let with = |at: usize, byte: u8| {
            let mut bytes = good.clone();
            bytes[at] = byte;
            Envelope::decode(&bytes).unwrap_err()
        };
        assert_eq!(
            Envelope::decode(b"{\"user\":1}").unwrap_err(),
            CorruptItem::NotAnEnvelope
        );
        assert_eq!(with(2, 9), CorruptItem::UnknownFormat(9));
        assert_eq!(with(22, 200), CorruptItem::Truncated);

        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            Envelope::decode(&trailing).unwrap_err(),
            CorruptItem::TrailingBytes
        );

        let one = |key: &[u8]| {
            let mut bytes = Envelope {
                data: Data::new(),
                ..sample()
            }
            .encode();
            bytes[19..23].copy_from_slice(&2u32.to_be_bytes());
            for _ in 0..2 {
                bytes.extend_from_slice(&u32::try_from(key.len()).unwrap().to_be_bytes());
                bytes.extend_from_slice(key);
                bytes.extend_from_slice(&1u32.to_be_bytes());
                bytes.push(b'1');
            }
            Envelope::decode(&bytes).unwrap_err()
        };
        assert_eq!(one(b"k"), CorruptItem::DuplicateKey);
        assert_eq!(one(&[0xff, 0xfe]), CorruptItem::NotUtf8);
    }

    #[test]
    fn a_forged_entry_count_reserves_nothing() {
        let mut bytes = Envelope {
            data: Data::new(),
            ..sample()
        }
        .encode();
        bytes[19..23].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Envelope::decode(&bytes).unwrap_err(),
            CorruptItem::Truncated
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::{collection, prelude::*};

    use super::*;

    fn envelope() -> impl Strategy<Value = Envelope> {
        let data = collection::hash_map(".{0,12}", ".{0,40}", 0..12);
        let owner = prop::option::of(("[^\u{0}]{1,40}", 0..u64::from(u32::MAX)));
        (any::<u64>(), 0..u64::from(u32::MAX), owner, data).prop_map(
            |(version, created, owner, data)| Envelope {
                version,
                created_at: UNIX_EPOCH + Duration::from_millis(created),
                owner: owner.map(|(name, until)| {
                    Owner::new(name, UNIX_EPOCH + Duration::from_millis(until)).unwrap()
                }),
                data,
                lifetime: None,
            },
        )
    }

    proptest! {
        #[test]
        fn every_envelope_round_trips(envelope in envelope()) {
            prop_assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }

        #[test]
        fn no_bytes_panic_the_decoder(bytes in collection::vec(any::<u8>(), 0..256), header in any::<bool>()) {
            let mut bytes = bytes;
            if header {
                // Past the magic and format check, where the lengths are read.
                bytes.splice(0..0, *b"SK\x02");
            }
            let _ = Envelope::decode(&bytes);
        }
    }
}
