//! Any bytes as a peer request or reply body: decoding never panics, and
//! what decodes re-encodes to bytes that decode and encode to the very same
//! bytes again (decode → encode → decode → encode), so nothing is lost or
//! changed on a second trip. `codec::decode_*` also compare the decoded
//! values (debug assertions; `scripts/fuzz` builds with `-a`). A reply's
//! type depends on its request: the first byte picks the operation, the
//! rest is the reply body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_cluster::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(once) = codec::reencode_request(data) {
        let twice = codec::reencode_request(&once).expect("a re-encoded request decodes");
        assert_eq!(once, twice);
        let name = codec::decode_request(data).unwrap();
        assert_eq!(codec::decode_request(&once).unwrap(), name);
    } else {
        assert!(codec::decode_request(data).is_err());
    }
    let Some((pick, reply)) = data.split_first() else {
        return;
    };
    let operation = codec::OPERATIONS[usize::from(*pick) % codec::OPERATIONS.len()];
    if let Ok(once) = codec::reencode_reply(operation, reply) {
        let twice = codec::reencode_reply(operation, &once).expect("a re-encoded reply decodes");
        assert_eq!(once, twice);
        codec::decode_reply(operation, reply).unwrap();
        codec::decode_reply(operation, &once).unwrap();
    } else {
        assert!(codec::decode_reply(operation, reply).is_err());
    }
});
