//! The peers' session cookies: the `cookie` crate's plain, signed and
//! private forms, as tower-cookies (tower-sessions) and actix-web
//! (actix-session) write them.

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use cookie::{Cookie, CookieJar, Key};
use session_core::migrate::LegacyCookie;

use super::{CookieSecurity, PeerLibrary};

/// Verifies (and in private mode decrypts) one peer's session cookie.
pub(super) struct PeerCookie {
    name: String,
    security: CookieSecurity,
    library: PeerLibrary,
    /// `None` only in plain mode, where there is nothing to check.
    key: Option<Key>,
}

impl PeerCookie {
    pub(super) fn new(
        name: String,
        security: CookieSecurity,
        library: PeerLibrary,
        key: Option<Key>,
    ) -> Self {
        Self {
            name,
            security,
            library,
            key,
        }
    }

    /// The old session id in `raw` (the value as the browser sent it), if
    /// the peer would have accepted it.
    pub(super) fn open(&self, raw: &str) -> Option<LegacyCookie> {
        // The peers percent-encode what they set; a value without `%` is
        // its own decoding. Parsed as a whole pair, so the decoding is the
        // cookie crate's own.
        let pair = Cookie::parse_encoded(format!("{}={raw}", self.name)).ok()?;
        let cookie = Cookie::new(self.name.clone(), pair.value().to_owned());
        let jar = CookieJar::new();
        let opened = match (self.security, &self.key) {
            (CookieSecurity::Plain, _) => cookie,
            (CookieSecurity::Signed, Some(key)) => jar.signed(key).verify(cookie)?,
            (CookieSecurity::Private, Some(key)) => jar.private(key).decrypt(cookie)?,
            // `LegacyConfig::validate` refuses a signed or private mode
            // without a key.
            (_, None) => return None,
        };
        let id = opened.value();
        self.library.accepts_id(id).then(|| LegacyCookie::new(id))
    }
}

impl PeerLibrary {
    /// Whether `id` has the form the library's ids have, so a value that
    /// verifies but was never an id (another cookie under the same key)
    /// makes no Redis call.
    fn accepts_id(self, id: &str) -> bool {
        match self {
            // `tower_sessions::session::Id`: an i128, 22 characters of
            // unpadded base64url.
            Self::TowerSessions => {
                let mut bytes = [0u8; 16];
                id.len() == 22 && matches!(URL_SAFE_NO_PAD.decode_slice(id, &mut bytes), Ok(16))
            }
            // `actix_session::storage::SessionKey`: at most 4064 bytes;
            // RedisSessionStore makes 64 alphanumerics.
            Self::ActixSession => {
                !id.is_empty() && id.len() <= 4064 && id.bytes().all(|b| b.is_ascii_graphic())
            }
        }
    }
}

/// The peer's master key from its base64 text: the bytes the app gave to
/// `cookie::Key::from` (at least 64).
pub(super) fn key_from_base64(text: &str) -> Option<Key> {
    let bytes = STANDARD
        .decode(text.trim())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim()))
        .ok()?;
    Key::try_from(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from(&[7u8; 64])
    }

    fn sealed(security: CookieSecurity, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        let cookie = Cookie::new(name.to_owned(), value.to_owned());
        match security {
            CookieSecurity::Plain => jar.add(cookie),
            CookieSecurity::Signed => jar.signed_mut(&key()).add(cookie),
            CookieSecurity::Private => jar.private_mut(&key()).add(cookie),
        }
        jar.get(name)
            .unwrap()
            .encoded()
            .to_string()
            .split_once('=')
            .unwrap()
            .1
            .to_owned()
    }

    const TOWER_ID: &str = "AAECAwQFBgcICQoLDA0ODw";

    #[test]
    fn each_mode_opens_what_it_sealed_and_nothing_else() {
        for security in [
            CookieSecurity::Plain,
            CookieSecurity::Signed,
            CookieSecurity::Private,
        ] {
            let peer = PeerCookie::new(
                "id".into(),
                security,
                PeerLibrary::TowerSessions,
                Some(key()),
            );
            let raw = sealed(security, "id", TOWER_ID);
            assert_eq!(peer.open(&raw).unwrap().id(), TOWER_ID, "{security:?}");
        }
        let signed = PeerCookie::new(
            "id".into(),
            CookieSecurity::Signed,
            PeerLibrary::TowerSessions,
            Some(key()),
        );
        // Plain text, another key, another cookie name: refused.
        assert!(signed.open(TOWER_ID).is_none());
        let other = PeerCookie::new(
            "id".into(),
            CookieSecurity::Signed,
            PeerLibrary::TowerSessions,
            Some(Key::from(&[8u8; 64])),
        );
        assert!(other
            .open(&sealed(CookieSecurity::Signed, "id", TOWER_ID))
            .is_none());
        let private = PeerCookie::new(
            "id".into(),
            CookieSecurity::Private,
            PeerLibrary::TowerSessions,
            Some(key()),
        );
        assert!(private
            .open(&sealed(CookieSecurity::Private, "sid", TOWER_ID))
            .is_none());
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let peer = PeerCookie::new(
            "id".into(),
            CookieSecurity::Signed,
            PeerLibrary::TowerSessions,
            Some(key()),
        );
        let raw = sealed(CookieSecurity::Signed, "id", TOWER_ID);
        let tampered = raw.replace(TOWER_ID, "AAECAwQFBgcICQoLDA0OEA");
        assert!(peer.open(&tampered).is_none());
    }

    #[test]
    fn ids_of_the_wrong_form_are_refused() {
        let tower = PeerCookie::new(
            "id".into(),
            CookieSecurity::Plain,
            PeerLibrary::TowerSessions,
            None,
        );
        assert!(tower.open("too-short").is_none());
        let actix = PeerCookie::new(
            "id".into(),
            CookieSecurity::Plain,
            PeerLibrary::ActixSession,
            None,
        );
        assert!(actix.open("abcDEF123").is_some());
        assert!(actix.open("").is_none());
    }

    #[test]
    fn keys_need_64_bytes_of_base64() {
        assert!(key_from_base64(&STANDARD.encode([1u8; 64])).is_some());
        assert!(key_from_base64(&STANDARD.encode([1u8; 32])).is_none());
        assert!(key_from_base64("not base64!").is_none());
    }
}
