//! Any `HGETALL` reply as a session hash: decoding never panics, a record
//! that decodes encodes back to fields that decode to it again, and the
//! near-cache's stamp check (`HMGET version expires_at`) on the same hash
//! agrees with the full read.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use session_core::{SessionId, store::Stamp};
use session_redis::codec;

fuzz_target!(|data: &[u8]| {
    // Length-prefixed chunks: [len][bytes] [len][bytes] …, paired up as
    // field and value.
    let mut chunks = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        chunks.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    let mut fields = Vec::new();
    let mut chunks = chunks.into_iter();
    while let (Some(field), Some(value)) = (chunks.next(), chunks.next()) {
        fields.push((field, value));
    }
    // What `HMGET key version expires_at` answers for this hash; the last
    // of repeated fields wins, as in `decode`.
    let field = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(field, _)| field == name.as_bytes())
            .map(|(_, value)| value.clone())
    };
    let stamp_reply = [field("version"), field("expires_at")];

    let id = SessionId::decode("c2Vzc2lvbi1raXQtZnV6eg").unwrap();
    let now = UNIX_EPOCH + Duration::from_millis(1_000);
    let stamp = codec::decode_stamp(stamp_reply, now);
    match codec::decode(id, fields, now) {
        Ok(Some(record)) => {
            assert_eq!(stamp.unwrap(), Some(Stamp::from(&record)));
            let again: Vec<(Vec<u8>, Vec<u8>)> = codec::encode(&record)
                .chunks(2)
                .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
                .collect();
            assert_eq!(codec::decode(id, again, now).unwrap(), Some(record));
        }
        // Absent or expired: the stamp check sees no session either.
        Ok(None) => assert_eq!(stamp.unwrap(), None),
        Err(_) => {}
    }
});
