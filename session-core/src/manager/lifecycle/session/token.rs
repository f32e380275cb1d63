//! The request's session token, verified on first use.

use std::sync::OnceLock;

use super::Session;
use crate::cookie::{Unverified, Verified};

/// The request's session token: parsed when the request starts, verified
/// only when first needed. The HMAC is most of what an untouched request
/// would cost, and nothing but the id's use needs it: a value that fails
/// verification is "no session" whenever that is found out, and nothing
/// reads the id before it is verified.
pub(super) struct Token {
    found: Unverified,
    pub(super) verified: OnceLock<Option<Verified>>,
}

impl Token {
    pub(super) fn unverified(found: Unverified) -> Self {
        Self {
            found,
            verified: OnceLock::new(),
        }
    }

    pub(super) fn verified(cookie: Option<Verified>) -> Self {
        Self {
            found: Unverified::default(),
            verified: OnceLock::from(cookie),
        }
    }
}

impl Session {
    /// The request's verified token, verifying it on first use.
    pub(super) fn cookie(&self) -> Option<Verified> {
        let token = &self.inner.token;
        *token
            .verified
            .get_or_init(|| self.inner.shared.settle(&token.found))
    }

    /// A handler that never touched the session still gets a cookie signed
    /// by an old key re-signed, without a store call.
    pub(super) fn resign_unloaded(&self) -> Option<String> {
        let shared = &self.inner.shared;
        if !shared.codec.rotates_keys() {
            // Only an older key's signature asks for a re-sign, so with one
            // key there is nothing to find out and the HMAC is skipped.
            return None;
        }
        let cookie = self.cookie().filter(|cookie| cookie.needs_resign)?;
        // Unloaded, the session's own lifetime is unknown: the manager's
        // is used, and the next request that loads the session sends its
        // own `Max-Age` again.
        Some(shared.issue(&cookie.id, shared.idle_timeout, shared.is_persistent(None)))
    }
}
