//! Any item value as a session envelope: decoding never panics, and an
//! envelope that decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_memcached::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = codec::decode(data) {
        let again = codec::encode(
            decoded.version,
            decoded.created_at,
            decoded.owner.as_ref(),
            &decoded.data,
        );
        assert_eq!(codec::decode(&again).unwrap(), decoded);
    }
});
