//! The `transport` key and the `[header]` block: where the session token
//! travels.

use serde::Deserialize;
use session_core::{HeaderTransport, Transport};

use crate::ConfigError;

/// Where the session token travels: the `transport` key.
///
/// | value | meaning |
/// |---|---|
/// | `"cookie"` | the default: the `Cookie` and `Set-Cookie` headers, with the `[cookie]` attributes |
/// | `"header"` | a header of its own, set in `[header]` (default `Authorization: Bearer <token>`), for API clients |
///
/// See [`session_core::Transport`] for the protocol and the CSRF and XSS
/// trade-offs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransportKind {
    /// The session cookie.
    #[default]
    Cookie,
    /// The header of `[header]`.
    Header,
}

/// The `[header]` block, read with `transport = "header"`.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `name` | `"authorization"` | the request and response header carrying the token |
/// | `scheme` | `"Bearer"` for `authorization`, none for other headers | the word before the token |
///
/// The token is signed as the cookie would be, under `cookie.name` and the
/// `[cookie]` secrets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HeaderSection {
    /// The header's name.
    pub name: String,
    /// The scheme before the token.
    pub scheme: Option<String>,
}

impl Default for HeaderSection {
    fn default() -> Self {
        Self {
            name: "authorization".to_owned(),
            scheme: None,
        }
    }
}

impl HeaderSection {
    /// The header transport this block describes.
    #[must_use]
    pub fn transport(&self) -> HeaderTransport {
        let header = HeaderTransport::new(self.name.clone());
        match (&self.scheme, header.name()) {
            (Some(scheme), _) => header.with_scheme(scheme.clone()),
            (None, "authorization") => header.with_scheme("Bearer"),
            (None, _) => header,
        }
    }
}

/// The [`Transport`] of `kind` and `header`, refusing a `[header]` block
/// that would be ignored.
pub(super) fn transport(
    kind: TransportKind,
    header: Option<&HeaderSection>,
) -> Result<Transport, ConfigError> {
    match (kind, header) {
        (TransportKind::Cookie, None) => Ok(Transport::Cookie),
        (TransportKind::Cookie, Some(_)) => Err(ConfigError::new(
            "header",
            "is read only with transport = \"header\"; set it, or remove [header]",
        )),
        (TransportKind::Header, header) => Ok(Transport::Header(
            header.cloned().unwrap_or_default().transport(),
        )),
    }
}
