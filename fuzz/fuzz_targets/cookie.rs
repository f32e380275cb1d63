//! Any bytes as `Cookie` headers: reading never panics, and nothing
//! verifies but a cookie these keys signed for this name.
//!
//! The id is fixed and the server is mid-rotation: it signs with a new key
//! and still accepts the old one, so the seeds (`fuzz/seeds/cookie/`,
//! cookies signed with either key) reach both a plain verify and the
//! re-sign path.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use session_core::{CookieConfig, Key, KeyRing, SessionId, cookie::CookieCodec};

/// The seeds' id, `session-kit-fuzz` in base64url.
const ID: &str = "c2Vzc2lvbi1raXQtZnV6eg";
const OLD: [u8; 32] = [7; 32];
const NEW: [u8; 32] = [9; 32];

struct Fixture {
    /// Signs with the new key, verifies with the new and the old.
    server: CookieCodec,
    /// Knows neither key: must never verify anything.
    stranger: CookieCodec,
    /// Same keys, another cookie name: must never verify our cookies.
    other_name: CookieCodec,
    id: SessionId,
    signed_old: String,
    signed_new: String,
}

fn key(secret: [u8; 32]) -> Key {
    Key::from_secret(secret).unwrap()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = CookieConfig::default();
        let ring = KeyRing::new(key(NEW)).with_fallback(key(OLD));
        let server = CookieCodec::new(config.clone(), ring.clone()).unwrap();
        let before_rotation = CookieCodec::new(config.clone(), KeyRing::new(key(OLD))).unwrap();
        let stranger = CookieCodec::new(config.clone(), KeyRing::new(key([1; 32]))).unwrap();
        let other_name = CookieCodec::new(config.with_name("other"), ring).unwrap();
        let id = SessionId::decode(ID).unwrap();
        let signed_old = before_rotation.sign(&id);
        let signed_new = server.sign(&id);
        assert_ne!(signed_old, signed_new);
        Fixture {
            server,
            stranger,
            other_name,
            id,
            signed_old,
            signed_new,
        }
    })
}

fn contains(data: &[u8], needle: &str) -> bool {
    data.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // The input as one header, and split at a 0xFF byte into several.
    let headers: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    if let Some(verified) = f.server.read(headers.iter().copied()) {
        // Only a cookie we signed can verify: the input must carry it, and
        // only the old key's asks to be re-signed.
        assert_eq!(verified.id, f.id);
        if verified.needs_resign {
            assert!(contains(data, &f.signed_old));
            // The re-sign path: the new cookie verifies without asking again.
            let resigned = f.server.sign(&verified.id);
            assert_eq!(resigned, f.signed_new);
            let again = f.server.verify(&resigned).unwrap();
            assert!(!again.needs_resign);
            assert!(f
                .server
                .set_cookie(&verified.id, std::time::Duration::from_secs(60))
                .contains(&resigned));
        } else {
            assert!(contains(data, &f.signed_new));
        }
    }
    assert!(f.stranger.read(headers.iter().copied()).is_none());
    if let Some(verified) = f.other_name.read(headers.iter().copied()) {
        // Our value under another name carries the wrong tag; only a value
        // signed for that name could verify, and the input holds none.
        panic!("a cookie verified under another name: {verified:?}");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(verified) = f.server.verify(text) {
            assert_eq!(verified.id, f.id);
            if verified.needs_resign {
                assert_eq!(text, f.signed_old);
            } else {
                assert_eq!(text, f.signed_new);
            }
        }
        assert!(f.stranger.verify(text).is_none());
        assert!(f.other_name.verify(text).is_none());
    }
});
