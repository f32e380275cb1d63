//! Any `HGETALL` reply as a session hash: decoding never panics, and a
//! record that decodes encodes back to fields that decode to it again.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use session_core::SessionId;
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
    let id = SessionId::generate();
    let now = UNIX_EPOCH + Duration::from_millis(1_000);
    if let Ok(Some(record)) = codec::decode(id, fields, now) {
        let again: Vec<(Vec<u8>, Vec<u8>)> = codec::encode(&record)
            .chunks(2)
            .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
            .collect();
        assert_eq!(codec::decode(id, again, now).unwrap(), Some(record));
    }
});
