//! What the [`Session`](super::Session) handle's calls fail with.

use crate::{LifetimeError, OwnerError, StoreError};

/// An error from the [`Session`](crate::Session) handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed while loading the session and the
    /// [`ErrorPolicy`](crate::ErrorPolicy) is [`Reject`](crate::ErrorPolicy::Reject), or it is
    /// [`TreatAsEmpty`](crate::ErrorPolicy::TreatAsEmpty) and the handler tried to
    /// change the session it was served empty. The response will be a 503
    /// whatever the handler returns.
    #[error("session store unavailable")]
    Unavailable(#[source] StoreError),
    /// A value could not be encoded as JSON.
    #[error("session value `{key}` could not be encoded as JSON")]
    Encode {
        /// The key being written.
        key: String,
        /// Why serde_json refused it.
        #[source]
        source: serde_json::Error,
    },
    /// A stored value does not decode as the requested type.
    #[error("session value `{key}` is not of the requested type")]
    Decode {
        /// The key being read.
        key: String,
        /// Why serde_json refused it.
        #[source]
        source: serde_json::Error,
    },
    /// The handle was used after the response was sent (say, from a task the
    /// handler spawned); the change would be lost, so it is refused.
    #[error("session used after its response was sent; the change is not saved")]
    Finished,
    /// [`Session::set_owner`](crate::Session::set_owner) was given a name that cannot be an owner.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// [`Session::set_lifetime`](crate::Session::set_lifetime) was given a lifetime over the manager's
    /// maximums.
    #[error(transparent)]
    Lifetime(#[from] LifetimeError),
}

impl SessionError {
    /// True when the request should be answered with 503 (the store is
    /// unavailable); anything else is a bug in the handler, worth a 500.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The HTTP status for a request that failed with this error: 503 when
    /// the store is unavailable, 500 otherwise. Every adapter answers with
    /// it, and with an empty body, so a failure looks the same whichever
    /// framework served it.
    ///
    /// ```
    /// # use session_core::SessionError;
    /// assert_eq!(SessionError::Finished.status_code(), 500);
    /// ```
    #[must_use]
    pub fn status_code(&self) -> u16 {
        if self.is_unavailable() {
            503
        } else {
            500
        }
    }
}
