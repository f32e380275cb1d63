//! The moka expiry policy shared by the in-process caches: an entry lives
//! until its record's `expires_at`.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use moka::Expiry;

/// A cached value that knows when it expires.
pub(crate) trait ExpiresAt {
    fn expires_at(&self) -> SystemTime;
}

impl<T: ExpiresAt> ExpiresAt for Arc<T> {
    fn expires_at(&self) -> SystemTime {
        (**self).expires_at()
    }
}

impl ExpiresAt for crate::Record {
    fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// Gives each entry the time to live its value asks for, re-read on every
/// update (a commit or touch moves it).
pub(crate) struct UntilExpiresAt;

impl UntilExpiresAt {
    fn remaining(value: &impl ExpiresAt) -> Option<Duration> {
        Some(
            value
                .expires_at()
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

impl<K, V: ExpiresAt> Expiry<K, V> for UntilExpiresAt {
    fn expire_after_create(&self, _: &K, value: &V, _: Instant) -> Option<Duration> {
        Self::remaining(value)
    }

    fn expire_after_update(
        &self,
        _: &K,
        value: &V,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::remaining(value)
    }
}
