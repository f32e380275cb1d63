//! Where the session token travels: the cookie, or a header for API
//! clients.
//!
//! The token is the same signed value either way (`<id>.<tag>`, the tag
//! made over the cookie's name and the id), so the keys, their rotation
//! and every check on the value are shared.
//!
//! # Cookie or header?
//! - **Cookie** (the default): the browser sends it by itself, so a page
//!   of another site can make the browser send it too (CSRF; `SameSite`
//!   and your CSRF defence answer that), but `HttpOnly` keeps it out of
//!   reach of scripts, so an XSS bug cannot read it. Pick it for web
//!   pages.
//! - **Header**: nothing sends it unless the client's code does, so there
//!   is no CSRF. But a browser app must keep it where scripts can read it
//!   (memory, `localStorage`), so an XSS bug can steal it and use it from
//!   anywhere. Pick it for API, mobile, CLI and WebSocket clients, and for
//!   browser apps only with a strict Content-Security-Policy.
//!
//! # The header protocol
//! - **Request**: the client sends `<name>: [<scheme> ]<token>`, exactly
//!   one value. A missing, malformed, forged or oversized value, a wrong
//!   scheme, or more than one value is "no session" (a fresh one), never
//!   an error; more than one is refused outright because no rule can tell
//!   which of them the client meant.
//! - **Response**: whenever a token is issued (a new session, a new id
//!   after [`Session::cycle_id`](crate::Session::cycle_id), a token
//!   re-signed under a new key), the response carries
//!   `<name>: [<scheme> ]<token>`: exactly what the client sends back from
//!   then on. A client should always store the latest value it received.
//! - **End**: when the session is destroyed, or the token names no live
//!   session, the response carries the header with an *empty* value: the
//!   client forgets its token. (A cookie is removed by the browser; a
//!   header token only by the client's code.)
//! - There is no `Max-Age`: the client keeps the token until the server
//!   says otherwise, and an expired token simply gets a fresh session.
//!
//! Browsers let a script read a cross-origin response header only when
//! `Access-Control-Expose-Headers` names it: add the header's name there
//! (tower-http's `CorsLayer::expose_headers`, actix-cors's
//! `expose_headers`).

use crate::{
    cookie::Unverified,
    telemetry::{self, Refused},
    ConfigError, CookieCodec, Verified,
};

/// The longest header value read: a scheme, a space and the token, with
/// room to spare. Longer values are refused before any parsing, so a
/// hostile client cannot make the server work on megabytes.
const MAX_VALUE_LEN: usize = 256;

/// Where the session token travels. Both adapters read it from here, so
/// they never disagree.
///
/// ```
/// use session_core::{HeaderTransport, Key, SessionManager, Transport, memory::MemoryStore};
///
/// let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
///     .with_transport(Transport::Header(HeaderTransport::bearer()))
///     .build()
///     .unwrap();
/// assert_eq!(manager.request_header(), "authorization");
/// assert_eq!(manager.response_header(), "authorization");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// The `Cookie` request header and `Set-Cookie` responses, with the
    /// attributes of [`CookieConfig`](crate::CookieConfig). The default:
    /// the right choice for web pages.
    #[default]
    Cookie,
    /// A header of its own, for API clients; see the [module docs](self)
    /// for the protocol and the trade-offs.
    Header(HeaderTransport),
}

/// The header a [`Transport::Header`] token travels in, and its optional
/// scheme (`Bearer` for `Authorization: Bearer <token>`).
///
/// ```
/// use session_core::HeaderTransport;
///
/// let custom = HeaderTransport::new("X-Session-Token");
/// assert_eq!(custom.name(), "x-session-token");
/// assert_eq!(custom.scheme(), None);
/// let bearer = HeaderTransport::bearer();
/// assert_eq!((bearer.name(), bearer.scheme()), ("authorization", Some("Bearer")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTransport {
    name: String,
    scheme: Option<String>,
}

impl HeaderTransport {
    /// A token in header `name` (case-insensitive, kept in lower case), with
    /// no scheme: `X-Session-Token: <token>`.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into().to_ascii_lowercase(),
            scheme: None,
        }
    }

    /// `Authorization: Bearer <token>` (RFC 6750).
    #[must_use]
    pub fn bearer() -> Self {
        Self::new("authorization").with_scheme("Bearer")
    }

    /// The scheme before the token, matched without regard to case on
    /// requests (as HTTP's authentication schemes are) and written as given
    /// on responses.
    #[must_use]
    pub fn with_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = Some(scheme.into());
        self
    }

    /// The header's name, in lower case.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scheme, if any.
    #[must_use]
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.as_deref()
    }

    /// Checks the name and scheme.
    ///
    /// # Errors
    /// A [`ConfigError`] for `header.name` when it is not an HTTP token or
    /// is a header HTTP or the cookie transport already gives a meaning,
    /// and for `header.scheme` when it is not a token.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_token(&self.name) {
            return Err(ConfigError::new(
                "header.name",
                "must be a non-empty HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
            ));
        }
        // A token in these would be mangled by HTTP itself or mixed up with
        // the cookie transport.
        const RESERVED: [&str; 8] = [
            "cookie",
            "set-cookie",
            "host",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "te",
        ];
        if RESERVED.contains(&self.name.as_str()) {
            return Err(ConfigError::new(
                "header.name",
                format!(
                    "`{}` already has a meaning in HTTP; pick `authorization` or a name of your own such as `x-session-token`",
                    self.name
                ),
            ));
        }
        if let Some(scheme) = &self.scheme {
            if !is_token(scheme) {
                return Err(ConfigError::new(
                    "header.scheme",
                    "must be a single word such as `Bearer` (an HTTP token), or unset",
                ));
            }
        }
        Ok(())
    }

    /// Finds the token among the values of the header, parsed but not yet
    /// verified ([`CookieCodec::settle`] verifies it, and counts and logs
    /// anything unusable as "no session", like a refused cookie).
    pub(crate) fn find<'a>(&self, values: impl IntoIterator<Item = &'a [u8]>) -> Unverified {
        let mut found = Unverified::default();
        let mut values = values.into_iter();
        let Some(first) = values.next() else {
            return found;
        };
        if values.next().is_some() {
            found.refuse(Refused::TooMany);
        } else {
            match self.token(first) {
                Some(token) => {
                    found.push(token.as_bytes());
                }
                None => found.refuse(Refused::Malformed),
            }
        }
        found
    }

    /// Verifies the token [`find`](Self::find) kept, and counts and logs a
    /// refusal like a refused cookie.
    pub(crate) fn settle(&self, codec: &CookieCodec, found: &Unverified) -> Option<Verified> {
        let refused = match codec.verify_found(found) {
            Ok(verified) => return Some(verified),
            Err(refused) => refused?,
        };
        telemetry::cookie_refused(refused);
        tracing::debug!(
            header.name = %self.name,
            "session header is missing its scheme, malformed, forged, repeated or signed by an unknown key; starting a fresh session"
        );
        None
    }

    /// The token in one header value, once the scheme (if any) matched.
    fn token<'v>(&self, value: &'v [u8]) -> Option<&'v str> {
        if value.len() > MAX_VALUE_LEN {
            return None;
        }
        let value = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
        let Some(scheme) = &self.scheme else {
            return Some(value);
        };
        let (given, token) = value.split_once([' ', '\t'])?;
        given
            .eq_ignore_ascii_case(scheme)
            .then(|| token.trim_start_matches([' ', '\t']))
    }

    /// The response header's value carrying `token`: what the client sends
    /// back.
    pub(crate) fn value(&self, token: &str) -> String {
        match &self.scheme {
            Some(scheme) => format!("{scheme} {token}"),
            None => token.to_owned(),
        }
    }
}

impl Transport {
    /// Checks a header transport's name and scheme; the cookie needs no
    /// more than [`CookieConfig::validate`](crate::CookieConfig::validate).
    ///
    /// # Errors
    /// As [`HeaderTransport::validate`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Cookie => Ok(()),
            Self::Header(header) => header.validate(),
        }
    }
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CookieConfig, Key, SessionId};

    fn codec() -> CookieCodec {
        CookieCodec::new(CookieConfig::default(), Key::generate().into()).unwrap()
    }

    /// What the manager does with a request's header values, found and
    /// verified at once.
    fn read<'a>(
        header: &HeaderTransport,
        codec: &CookieCodec,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Option<Verified> {
        header.settle(codec, &header.find(values))
    }

    #[test]
    fn reads_the_scheme_without_regard_to_case_and_refuses_anything_else() {
        let codec = codec();
        let id = SessionId::generate();
        let token = codec.sign(&id);
        let bearer = HeaderTransport::bearer();
        for good in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("  BEARER \t {token} "),
        ] {
            assert_eq!(
                read(&bearer, &codec, [good.as_bytes()]).map(|v| v.id),
                Some(id),
                "{good:?}"
            );
        }
        let oversized = format!("Bearer {token}{}", " ".repeat(MAX_VALUE_LEN));
        for bad in [
            token.clone(),
            format!("Basic {token}"),
            format!("Bearer{token}"),
            format!("Bearer {token}x"),
            format!("Bearer {token} {token}"),
            "Bearer ".to_owned(),
            String::new(),
            oversized,
        ] {
            assert_eq!(read(&bearer, &codec, [bad.as_bytes()]), None, "{bad:?}");
        }
        let good = format!("Bearer {token}");
        assert_eq!(
            read(&bearer, &codec, [good.as_bytes(), good.as_bytes()]),
            None,
            "two values are refused even when both verify"
        );
        assert_eq!(read(&bearer, &codec, [b"\xff\xfe".as_slice()]), None);
    }

    #[test]
    fn without_a_scheme_the_value_is_the_token() {
        let codec = codec();
        let id = SessionId::generate();
        let token = codec.sign(&id);
        let custom = HeaderTransport::new("X-Session-Token");
        assert_eq!(
            read(&custom, &codec, [token.as_bytes()]).map(|v| v.id),
            Some(id)
        );
        assert_eq!(custom.value(&token), token);
        assert_eq!(
            read(&custom, &codec, [format!("Bearer {token}").as_bytes()]),
            None
        );
    }

    #[test]
    fn names_and_schemes_are_checked() {
        assert!(HeaderTransport::bearer().validate().is_ok());
        for (bad, key) in [
            (HeaderTransport::new(""), "header.name"),
            (HeaderTransport::new("x session"), "header.name"),
            (HeaderTransport::new("Cookie"), "header.name"),
            (HeaderTransport::new("set-cookie"), "header.name"),
            (
                HeaderTransport::new("authorization").with_scheme("Bearer token"),
                "header.scheme",
            ),
            (
                HeaderTransport::new("authorization").with_scheme(""),
                "header.scheme",
            ),
        ] {
            assert_eq!(bad.validate().unwrap_err().key(), key, "{bad:?}");
        }
    }
}
