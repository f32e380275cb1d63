//! One session's own lifetime ("remember me"), stored with its record.

use std::time::Duration;

use crate::manager::ManagerConfig;

/// How long one session lives, in place of the manager's
/// `idle_timeout` and `absolute_timeout`, and whether its cookie outlives
/// the browser session. Set it with
/// [`Session::set_lifetime`](crate::Session::set_lifetime); it is stored
/// with the record ([`Record::lifetime`](crate::store::Record::lifetime)),
/// so every server applies it.
///
/// "Remember me" is the usual use: a long lifetime and a persistent cookie
/// for the sessions of users who ask for it, the manager's short defaults
/// and a browser-session cookie for everyone else.
///
/// ```
/// use std::time::Duration;
/// use session_core::Lifetime;
///
/// let days = |n: u64| Duration::from_secs(n * 24 * 60 * 60);
/// let remember_me = Lifetime::new(days(14), days(30))?.with_persistent(true);
/// assert_eq!(remember_me.idle(), days(14));
/// assert_eq!(remember_me.persistent(), Some(true));
/// assert_eq!(Lifetime::decode(&remember_me.encode()), Some(remember_me));
///
/// assert!(Lifetime::new(days(30), days(14)).is_err());
/// # Ok::<(), session_core::LifetimeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lifetime {
    idle: Duration,
    absolute: Duration,
    persistent: Option<bool>,
}

/// A [`Lifetime`] that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LifetimeError {
    /// The idle timeout is zero.
    #[error("a session's idle timeout must be greater than zero")]
    ZeroIdle,
    /// The absolute timeout is shorter than the idle one, which would make
    /// the idle one meaningless.
    #[error("a session's absolute timeout must be at least its idle timeout")]
    AbsoluteShorterThanIdle,
    /// The idle timeout is over the manager's `max_idle_timeout`.
    #[error(
        "a session's idle timeout must be at most {max:?} (max_idle_timeout), not {requested:?}"
    )]
    IdleAboveMax {
        /// What was asked for.
        requested: Duration,
        /// The manager's maximum.
        max: Duration,
    },
    /// The absolute timeout is over the manager's `max_absolute_timeout`.
    #[error(
        "a session's absolute timeout must be at most {max:?} (max_absolute_timeout), not {requested:?}"
    )]
    AbsoluteAboveMax {
        /// What was asked for.
        requested: Duration,
        /// The manager's maximum.
        max: Duration,
    },
}

impl Lifetime {
    /// A lifetime of `idle` without requests (sliding) and at most
    /// `absolute` after the session began; the cookie follows the
    /// manager's [`CookieConfig::with_persistent`](crate::CookieConfig::with_persistent)
    /// until [`with_persistent`](Self::with_persistent) says otherwise.
    ///
    /// # Errors
    /// When `idle` is zero, `absolute` is shorter than `idle`, or either is
    /// over [`ManagerConfig::MAX_TIMEOUT`] (400 days). The manager's own
    /// maximums are checked by
    /// [`Session::set_lifetime`](crate::Session::set_lifetime).
    pub fn new(idle: Duration, absolute: Duration) -> Result<Self, LifetimeError> {
        if idle.is_zero() {
            return Err(LifetimeError::ZeroIdle);
        }
        if absolute < idle {
            return Err(LifetimeError::AbsoluteShorterThanIdle);
        }
        let max = ManagerConfig::MAX_TIMEOUT;
        if idle > max {
            return Err(LifetimeError::IdleAboveMax {
                requested: idle,
                max,
            });
        }
        if absolute > max {
            return Err(LifetimeError::AbsoluteAboveMax {
                requested: absolute,
                max,
            });
        }
        Ok(Self {
            idle,
            absolute,
            persistent: None,
        })
    }

    /// Whether this session's cookie carries `Max-Age` (survives a browser
    /// restart), whatever the manager's cookie config says. `true` is
    /// "remember me"; `false` makes a browser-session cookie even when the
    /// config's cookies are persistent.
    #[must_use]
    pub fn with_persistent(mut self, persistent: bool) -> Self {
        self.persistent = Some(persistent);
        self
    }

    /// How long the session lives without requests.
    #[must_use]
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// How long the session lives after it began, however active.
    #[must_use]
    pub fn absolute(&self) -> Duration {
        self.absolute
    }

    /// Whether the cookie is persistent; `None` follows the cookie config.
    #[must_use]
    pub fn persistent(&self) -> Option<bool> {
        self.persistent
    }

    /// This lifetime within `max_idle` and `max_absolute`, for a manager
    /// reading a lifetime stored by another with higher maximums: the
    /// manager reading it enforces its own.
    #[must_use]
    pub(crate) fn clamped(self, max_idle: Duration, max_absolute: Duration) -> Self {
        let absolute = self.absolute.min(max_absolute);
        Self {
            idle: self.idle.min(max_idle).min(absolute),
            absolute,
            persistent: self.persistent,
        }
    }

    /// The lifetime as short text for stores that keep it in a field of
    /// their own: `<idle ms>,<absolute ms>,<c|p|s>` (`c` follows the
    /// cookie config, `p` persistent, `s` browser-session). Every backend
    /// writes this one form, so records stay readable across them.
    #[must_use]
    pub fn encode(&self) -> String {
        let persistent = match self.persistent {
            None => 'c',
            Some(true) => 'p',
            Some(false) => 's',
        };
        format!(
            "{},{},{persistent}",
            self.idle.as_millis(),
            self.absolute.as_millis()
        )
    }

    /// Reads [`encode`](Self::encode)'s text; `None` for anything else,
    /// which a store reports as [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt).
    #[must_use]
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(',');
        let idle = Duration::from_millis(parts.next()?.parse().ok()?);
        let absolute = Duration::from_millis(parts.next()?.parse().ok()?);
        let persistent = match parts.next()? {
            "c" => None,
            "p" => Some(true),
            "s" => Some(false),
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        let mut lifetime = Self::new(idle, absolute).ok()?;
        lifetime.persistent = persistent;
        Some(lifetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_and_decode_refuses_anything_else() {
        let lifetime = Lifetime::new(Duration::from_millis(1500), Duration::from_secs(90)).unwrap();
        for value in [
            lifetime,
            lifetime.with_persistent(true),
            lifetime.with_persistent(false),
        ] {
            assert_eq!(Lifetime::decode(&value.encode()), Some(value));
        }
        for bad in [
            "",
            "1,2",
            "1,2,x",
            "1,2,c,",
            "0,5,c",
            "5,1,c",
            "a,b,c",
            "-1,5,c",
            "99999999999999999999,1,c",
        ] {
            assert_eq!(Lifetime::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn clamping_keeps_absolute_at_least_idle() {
        let lifetime = Lifetime::new(Duration::from_secs(100), Duration::from_secs(200)).unwrap();
        let clamped = lifetime.clamped(Duration::from_secs(150), Duration::from_secs(50));
        assert_eq!(clamped.absolute(), Duration::from_secs(50));
        assert_eq!(clamped.idle(), Duration::from_secs(50));
    }
}
