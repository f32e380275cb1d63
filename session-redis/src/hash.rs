//! How a [`Record`] lives in one Redis hash.
//!
//! | field | value |
//! |---|---|
//! | `version` | decimal integer, starts at 1 |
//! | `created_at` | milliseconds since the Unix epoch |
//! | `expires_at` | milliseconds since the Unix epoch; the key's `PEXPIREAT` is one less, because Redis keeps a key through its `PEXPIREAT` millisecond while a record has expired from its `expires_at` on |
//! | `owner` | the [`Owner`]'s name (only when the session has one) |
//! | `owner_until` | the owner's `until`, milliseconds since the Unix epoch (with `owner`) |
//! | `lifetime` | the session's own [`Lifetime`], as [`Lifetime::encode`] writes it (only when it has one) |
//! | `d:<key>` | the JSON text of the session value `<key>` |
//!
//! Data fields carry the `d:` prefix so that no session key can collide with
//! a metadata field, `owner` included. Values stay JSON, so other services
//! can `HGET` them. `owner` and `owner_until` come together or not at all.
//! Fields this version does not know are ignored, so a newer writer can add
//! metadata without breaking an older reader during a rolling upgrade.

use std::{
    borrow::Cow,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use session_core::{
    store::{Data, Owner, Record, Stamp},
    Lifetime, SessionId,
};

/// The prefix of every data field. `commit.lua` relies on it for `clear`.
pub(crate) const DATA_PREFIX: &str = "d:";
const VERSION: &str = "version";
const CREATED_AT: &str = "created_at";
const EXPIRES_AT: &str = "expires_at";
/// The owner's name. `end_owned.lua` names it too.
const OWNER: &str = "owner";
const OWNER_UNTIL: &str = "owner_until";
/// The session's own lifetime; absent (the manager's timeouts) on records
/// written before lifetimes existed.
pub(crate) const LIFETIME: &str = "lifetime";

/// The `lifetime` field/value pair, as `create` writes it and as a commit
/// that sets one does.
pub(crate) fn lifetime_fields(lifetime: &Lifetime) -> [Cow<'static, str>; 2] {
    [Cow::Borrowed(LIFETIME), Cow::Owned(lifetime.encode())]
}

/// Milliseconds since the Unix epoch; times before it count as the epoch,
/// which is long expired.
pub(crate) fn millis(time: SystemTime) -> u64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// The hash field that holds session value `key`.
pub(crate) fn data_field(key: &str) -> String {
    format!("{DATA_PREFIX}{key}")
}

/// The field/value pairs of a whole record, as `create.lua` takes them.
pub(crate) fn record_fields(record: &Record) -> Vec<Cow<'_, str>> {
    let mut fields = Vec::with_capacity(10 + 2 * record.data.len());
    for (field, value) in [
        (VERSION, record.version),
        (CREATED_AT, millis(record.created_at)),
        (EXPIRES_AT, millis(record.expires_at)),
    ] {
        fields.push(Cow::Borrowed(field));
        fields.push(Cow::Owned(value.to_string()));
    }
    if let Some(owner) = &record.owner {
        fields.extend(owner_fields(owner));
    }
    if let Some(lifetime) = &record.lifetime {
        fields.extend(lifetime_fields(lifetime));
    }
    for (key, value) in &record.data {
        fields.push(Cow::Owned(data_field(key)));
        fields.push(Cow::Borrowed(value.as_str()));
    }
    fields
}

/// The fields that hold the owner, which a commit that removes the owner
/// deletes.
pub(crate) const OWNER_FIELDS: [&str; 2] = [OWNER, OWNER_UNTIL];

/// The `owner` and `owner_until` field/value pairs of `owner`, as `create`
/// writes them and as a commit that sets a new owner does.
pub(crate) fn owner_fields(owner: &Owner) -> [Cow<'_, str>; 4] {
    [
        Cow::Borrowed(OWNER),
        Cow::Borrowed(owner.name.as_str()),
        Cow::Borrowed(OWNER_UNTIL),
        Cow::Owned(millis(owner.until).to_string()),
    ]
}

/// A hash that is not a session record.
#[derive(Debug)]
pub(crate) struct CorruptHash(&'static str);

impl fmt::Display for CorruptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the session hash {}", self.0)
    }
}

impl std::error::Error for CorruptHash {}

/// The record in `fields` (an `HGETALL` reply), or `None` when the hash is
/// absent (no fields) or past its `expires_at` at `now`.
pub(crate) fn decode(
    id: SessionId,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    now: SystemTime,
) -> Result<Option<Record>, CorruptHash> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut data = Data::with_capacity(fields.len().saturating_sub(3));
    let (mut version, mut created_at, mut expires_at) = (None, None, None);
    let (mut owner, mut owner_until, mut lifetime) = (None, None, None);
    for (field, value) in fields {
        let field = String::from_utf8(field).map_err(|_| CorruptHash("has a non-UTF-8 field"))?;
        if let Some(key) = field.strip_prefix(DATA_PREFIX) {
            data.insert(key.to_owned(), text(value)?);
            continue;
        }
        let slot = match field.as_str() {
            VERSION => &mut version,
            CREATED_AT => &mut created_at,
            EXPIRES_AT => &mut expires_at,
            OWNER_UNTIL => &mut owner_until,
            OWNER => {
                owner = Some(text(value)?);
                continue;
            }
            LIFETIME => {
                lifetime = Some(
                    Lifetime::decode(&text(value)?)
                        .ok_or(CorruptHash("has a lifetime that does not decode"))?,
                );
                continue;
            }
            _ => continue,
        };
        *slot = Some(integer(&value)?);
    }
    let (Some(version), Some(created_at), Some(expires_at)) = (version, created_at, expires_at)
    else {
        return Err(CorruptHash("lacks version, created_at or expires_at"));
    };
    let owner = match (owner, owner_until) {
        (None, None) => None,
        (Some(name), Some(until)) => Some(
            Owner::new(name, time(until)?)
                .map_err(|_| CorruptHash("has an owner name that no owner can have"))?,
        ),
        _ => return Err(CorruptHash("has only one of owner and owner_until")),
    };
    let expires_at = time(expires_at)?;
    if expires_at <= now {
        return Ok(None);
    }
    let mut record = Record::new(id, data, time(created_at)?, expires_at);
    record.version = version;
    record.owner = owner;
    record.lifetime = lifetime;
    Ok(Some(record))
}

/// The fields [`decode_stamp`] reads, in the order it expects them.
pub(crate) const STAMP_FIELDS: [&str; 2] = [VERSION, EXPIRES_AT];

/// The stamp in an `HMGET key version expires_at` reply, or `None` when the
/// hash is absent (both nil) or past its `expires_at` at `now`.
pub(crate) fn decode_stamp(
    reply: [Option<Vec<u8>>; 2],
    now: SystemTime,
) -> Result<Option<Stamp>, CorruptHash> {
    let [version, expires_at] = reply;
    let (version, expires_at) = match (version, expires_at) {
        (None, None) => return Ok(None),
        (Some(version), Some(expires_at)) => (integer(&version)?, integer(&expires_at)?),
        _ => return Err(CorruptHash("lacks version or expires_at")),
    };
    let expires_at = time(expires_at)?;
    Ok((expires_at > now).then_some(Stamp {
        version,
        expires_at,
    }))
}

/// A time stored as milliseconds since the Unix epoch. `SystemTime`'s range
/// depends on the platform (Windows' ends before `u64::MAX` milliseconds),
/// so a value no store wrote is refused instead of overflowing the addition.
fn time(millis: u64) -> Result<SystemTime, CorruptHash> {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .ok_or(CorruptHash("holds a time this platform cannot represent"))
}

fn text(value: Vec<u8>) -> Result<String, CorruptHash> {
    String::from_utf8(value).map_err(|_| CorruptHash("has a non-UTF-8 value"))
}

fn integer(value: &[u8]) -> Result<u64, CorruptHash> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(CorruptHash("has a metadata field that is not an integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(f, v)| (f.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn far_future() -> String {
        millis(SystemTime::now() + Duration::from_secs(600)).to_string()
    }

    #[test]
    fn a_stamp_decodes_from_hmget_and_respects_expiry() {
        let now = SystemTime::now();
        let later = far_future();
        let stamp = decode_stamp([Some(b"7".to_vec()), Some(later.clone().into_bytes())], now)
            .unwrap()
            .unwrap();
        assert_eq!(stamp.version, 7);
        assert_eq!(millis(stamp.expires_at).to_string(), later);
        assert_eq!(decode_stamp([None, None], now).unwrap(), None);
        let past = millis(now - Duration::from_secs(1))
            .to_string()
            .into_bytes();
        assert_eq!(
            decode_stamp([Some(b"7".to_vec()), Some(past)], now).unwrap(),
            None
        );
        assert!(decode_stamp([Some(b"7".to_vec()), None], now).is_err());
        assert!(decode_stamp([Some(b"x".to_vec()), Some(later.into_bytes())], now).is_err());
    }

    #[test]
    fn a_record_round_trips_through_its_fields() {
        let now = UNIX_EPOCH + Duration::from_millis(millis(SystemTime::now()));
        let data: Data = [("user".to_owned(), "\"ada\"".to_owned())].into();
        let mut record = Record::new(
            SessionId::generate(),
            data,
            now,
            now + Duration::from_secs(60),
        );
        record.version = 7;
        let fields: Vec<(Vec<u8>, Vec<u8>)> = record_fields(&record)
            .chunks(2)
            .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
            .collect();
        assert_eq!(decode(record.id, fields, now).unwrap(), Some(record));
    }

    #[test]
    fn a_record_with_a_lifetime_round_trips_and_a_bad_one_is_corrupt() {
        let now = UNIX_EPOCH + Duration::from_millis(millis(SystemTime::now()));
        let mut record = Record::new(
            SessionId::generate(),
            Data::new(),
            now,
            now + Duration::from_secs(60),
        );
        record.lifetime = Some(
            Lifetime::new(Duration::from_secs(60), Duration::from_secs(600))
                .unwrap()
                .with_persistent(true),
        );
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = record_fields(&record)
            .chunks(2)
            .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
            .collect();
        assert_eq!(
            decode(record.id, fields.clone(), now).unwrap(),
            Some(record.clone())
        );
        fields.push((LIFETIME.as_bytes().to_vec(), b"soon".to_vec()));
        assert!(decode(record.id, fields, now).is_err());
    }

    #[test]
    fn an_owned_record_round_trips_through_its_fields() {
        let now = UNIX_EPOCH + Duration::from_millis(millis(SystemTime::now()));
        let mut record = Record::new(
            SessionId::generate(),
            [("owner".to_owned(), "\"not the owner\"".to_owned())].into(),
            now,
            now + Duration::from_secs(60),
        );
        record.owner = Some(Owner::new("user-42", now + Duration::from_secs(3600)).unwrap());
        let fields: Vec<(Vec<u8>, Vec<u8>)> = record_fields(&record)
            .chunks(2)
            .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
            .collect();
        assert!(fields.contains(&(b"owner".to_vec(), b"user-42".to_vec())));
        assert_eq!(decode(record.id, fields, now).unwrap(), Some(record));
    }

    #[test]
    fn an_owner_needs_both_fields_and_a_valid_name() {
        let expires = far_future();
        let base = [
            ("version", "1"),
            ("created_at", "1"),
            ("expires_at", expires.as_str()),
        ];
        for owner in [
            &[("owner", "ada")][..],
            &[("owner_until", expires.as_str())],
            &[("owner", "ada"), ("owner_until", "soon")],
            &[("owner", ""), ("owner_until", expires.as_str())],
        ] {
            let fields = pairs(&[&base[..], owner].concat());
            assert!(
                decode(SessionId::generate(), fields, SystemTime::now()).is_err(),
                "{owner:?}"
            );
        }
        let fields = pairs(&base);
        let record = decode(SessionId::generate(), fields, SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(record.owner, None);
    }

    #[test]
    fn data_keys_cannot_collide_with_metadata() {
        let expires = far_future();
        let fields = pairs(&[
            ("version", "3"),
            ("created_at", "1"),
            ("expires_at", &expires),
            ("d:version", "\"mine\""),
            ("future_field", "ignored"),
        ]);
        let record = decode(SessionId::generate(), fields, SystemTime::now())
            .unwrap()
            .unwrap();
        assert_eq!(record.version, 3);
        assert_eq!(record.data.len(), 1);
        assert_eq!(record.data["version"], "\"mine\"");
    }

    #[test]
    fn a_past_expiry_reads_as_absent() {
        let fields = pairs(&[("version", "1"), ("created_at", "1"), ("expires_at", "2")]);
        assert_eq!(
            decode(SessionId::generate(), fields, SystemTime::now()).unwrap(),
            None
        );
    }

    #[test]
    fn broken_hashes_are_corrupt() {
        let expires = far_future();
        for fields in [
            pairs(&[
                ("version", "x"),
                ("created_at", "1"),
                ("expires_at", &expires),
            ]),
            pairs(&[("created_at", "1"), ("expires_at", &expires)]),
            pairs(&[("d:k", "v")]),
            vec![(b"d:k".to_vec(), vec![0xff, 0xfe])],
        ] {
            assert!(decode(SessionId::generate(), fields, SystemTime::now()).is_err());
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::{collection, prelude::*};
    use session_core::store::Owner;

    use super::*;

    /// Any record a store could be asked to keep, to the millisecond.
    fn record() -> impl Strategy<Value = Record> {
        let data = collection::hash_map(".{0,12}", ".{0,40}", 0..12);
        let owner = prop::option::of(("[^\u{0}]{1,40}", 0..u64::from(u32::MAX)));
        (
            data,
            0..u64::from(u32::MAX),
            1..u64::from(u32::MAX),
            1..u64::MAX / 2,
            owner,
        )
            .prop_map(|(data, created, lifetime, version, owner)| {
                let created_at = UNIX_EPOCH + Duration::from_millis(created);
                let expires_at = created_at + Duration::from_millis(lifetime);
                let mut record = Record::new(SessionId::generate(), data, created_at, expires_at);
                record.version = version;
                record.owner = owner.map(|(name, until)| {
                    Owner::new(name, UNIX_EPOCH + Duration::from_millis(until)).unwrap()
                });
                record
            })
    }

    fn as_reply(record: &Record) -> Vec<(Vec<u8>, Vec<u8>)> {
        record_fields(record)
            .chunks(2)
            .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
            .collect()
    }

    proptest! {
        #[test]
        fn every_record_round_trips_through_its_hash(record in record()) {
            let before_expiry = record.expires_at - Duration::from_millis(1);
            prop_assert_eq!(decode(record.id, as_reply(&record), before_expiry).unwrap(), Some(record));
        }

        #[test]
        fn no_hash_panics_the_decoder(
            fields in collection::vec((collection::vec(any::<u8>(), 0..16), collection::vec(any::<u8>(), 0..24)), 0..10),
            known in collection::vec(prop::sample::select(vec!["version", "created_at", "expires_at", "owner", "owner_until", "d:k"]), 0..6),
        ) {
            let mut fields = fields;
            for (i, name) in known.into_iter().enumerate() {
                fields.push((name.as_bytes().to_vec(), i.to_string().into_bytes()));
            }
            let _ = decode(SessionId::generate(), fields, SystemTime::now());
        }
    }
}
