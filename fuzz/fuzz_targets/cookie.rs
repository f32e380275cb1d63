//! Any bytes as `Cookie` headers: reading never panics, and nothing
//! verifies but a cookie this codec signed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use session_core::{CookieCodec, CookieConfig, Key, KeyRing, SessionId};

fn codec() -> &'static (CookieCodec, SessionId, String) {
    static CODEC: OnceLock<(CookieCodec, SessionId, String)> = OnceLock::new();
    CODEC.get_or_init(|| {
        let codec = CookieCodec::new(
            CookieConfig::default(),
            KeyRing::new(Key::from_secret([7u8; 32]).unwrap()),
        )
        .unwrap();
        let id = SessionId::generate();
        let signed = codec.sign(&id);
        (codec, id, signed)
    })
}

fuzz_target!(|data: &[u8]| {
    let (codec, id, signed) = codec();
    // The input as one header, and split at a 0xFF byte into several.
    let headers: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    if let Some(verified) = codec.read(headers.iter().copied()) {
        // Only a cookie we signed can verify: the input must carry it.
        assert_eq!(verified.id, *id);
        assert!(data.windows(signed.len()).any(|w| w == signed.as_bytes()));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(verified) = codec.verify(text) {
            assert_eq!(text, signed);
            assert_eq!(verified.id, *id);
        }
    }
});
