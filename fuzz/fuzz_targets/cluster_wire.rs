//! Any bytes as a peer request or reply body: decoding never panics, and
//! what decodes re-encodes to bytes that decode and encode to the very same
//! bytes again (decode → encode → decode → encode), so nothing is lost or
//! changed on a second trip. `codec::decode_*` also compare the decoded
//! values (debug assertions; `scripts/fuzz` builds with `-a`).
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
    if let Ok(once) = codec::reencode_reply(data) {
        let twice = codec::reencode_reply(&once).expect("a re-encoded reply decodes");
        assert_eq!(once, twice);
        codec::decode_reply(data).unwrap();
        codec::decode_reply(&once).unwrap();
    } else {
        assert!(codec::decode_reply(data).is_err());
    }
});
