//! Memcached's expiry times, and its two traps.
//!
//! Memcached reads an item's exptime in one of three ways:
//! - `0` means the item **never** expires;
//! - up to 30 days (2,592,000 s), seconds from now, by the server's clock;
//! - above that, an absolute Unix time.
//!
//! So a session whose expiry has already passed must be deleted, never
//! stored with a lifetime of zero seconds, which would keep it forever; and
//! a lifetime over 30 days must go as an absolute time, or the server reads
//! it as a date in 1970 and drops the item at once. Lifetimes up to 30 days
//! go relative, so they do not depend on the app and cache clocks agreeing.
//!
//! Memcached counts in whole seconds. Lifetimes round up, so an item lives
//! at least as long as its session, and at most a second or two longer; the
//! store reports the expiry it reads back from the item, so that extra
//! second is what callers see.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::envelope::CorruptItem;

/// The longest lifetime Memcached takes as relative seconds.
pub(crate) const MAX_RELATIVE_SECS: u64 = 30 * 24 * 60 * 60;

/// What to tell Memcached for a session that expires at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exptime {
    /// The expiry is now or past: delete the item, do not store it.
    Past,
    /// The wire value of the `T` flag: never `0`.
    Wire(u32),
}

/// The exptime that makes an item written at `now` live until `expires_at`.
pub(crate) fn exptime(expires_at: SystemTime, now: SystemTime) -> Exptime {
    let left = match expires_at.duration_since(now) {
        Ok(left) if !left.is_zero() => left,
        _ => return Exptime::Past,
    };
    let relative = ceil_secs(left);
    if relative <= MAX_RELATIVE_SECS {
        // At least 1: a positive lifetime rounds up.
        return Exptime::Wire(u32::try_from(relative).unwrap_or(u32::MAX));
    }
    // Past 30 days the server wants a Unix time. Any such time is itself far
    // above 30 days, so it cannot be mistaken for a relative one. Beyond
    // 2106 the 32-bit field saturates, which still expires, late.
    let absolute = ceil_secs(
        expires_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO),
    );
    Exptime::Wire(u32::try_from(absolute).unwrap_or(u32::MAX))
}

/// When an item read at `now` with `remaining` seconds left (Memcached's `t`
/// flag) expires.
///
/// # Errors
/// [`CorruptItem::NoExpiry`] for an item that never expires (`t` is `-1`),
/// which no store wrote, and [`CorruptItem::ExpiryOutOfRange`] for any other
/// value no server can send: a negative one, or one past the 32-bit exptime
/// the item could have been stored with. The reply comes from the network,
/// so a bad value must be an error, never a panic in the time arithmetic.
pub(crate) fn expires_at(remaining: i64, now: SystemTime) -> Result<SystemTime, CorruptItem> {
    if remaining == -1 {
        return Err(CorruptItem::NoExpiry);
    }
    let remaining = u64::try_from(remaining)
        .ok()
        .filter(|&secs| secs <= u64::from(u32::MAX))
        .ok_or(CorruptItem::ExpiryOutOfRange)?;
    now.checked_add(Duration::from_secs(remaining))
        .ok_or(CorruptItem::ExpiryOutOfRange)
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_764_000_000;

    #[test]
    fn an_expiry_at_or_before_now_is_past_never_zero() {
        assert_eq!(exptime(at(NOW), at(NOW)), Exptime::Past);
        assert_eq!(exptime(at(NOW - 1), at(NOW)), Exptime::Past);
        assert_eq!(exptime(UNIX_EPOCH, at(NOW)), Exptime::Past);
    }

    #[test]
    fn a_short_lifetime_is_relative_and_rounds_up() {
        let now = at(NOW);
        assert_eq!(
            exptime(now + Duration::from_millis(1), now),
            Exptime::Wire(1)
        );
        assert_eq!(
            exptime(now + Duration::from_millis(1500), now),
            Exptime::Wire(2)
        );
        assert_eq!(
            exptime(now + Duration::from_secs(1800), now),
            Exptime::Wire(1800)
        );
    }

    #[test]
    fn thirty_days_is_the_last_relative_lifetime() {
        let now = at(NOW);
        let thirty_days = Duration::from_secs(MAX_RELATIVE_SECS);
        assert_eq!(exptime(now + thirty_days, now), Exptime::Wire(2_592_000));
        // One second more and the server would read 2,592,001 as a date in
        // January 1970: it must go as the Unix time instead.
        let later = now + thirty_days + Duration::from_secs(1);
        assert_eq!(
            exptime(later, now),
            Exptime::Wire(u32::try_from(NOW + MAX_RELATIVE_SECS + 1).unwrap())
        );
        let fraction = now + thirty_days + Duration::from_millis(1);
        assert_eq!(
            exptime(fraction, now),
            Exptime::Wire(u32::try_from(NOW + MAX_RELATIVE_SECS + 1).unwrap())
        );
    }

    #[test]
    fn absolute_times_past_2106_saturate() {
        let now = at(NOW);
        assert_eq!(
            exptime(at(u64::from(u32::MAX) + 10), now),
            Exptime::Wire(u32::MAX)
        );
    }

    #[test]
    fn the_remaining_ttl_gives_the_expiry() {
        let now = at(NOW);
        assert_eq!(expires_at(60, now), Ok(at(NOW + 60)));
        assert_eq!(
            expires_at(i64::from(u32::MAX), now),
            Ok(at(NOW + u64::from(u32::MAX)))
        );
        assert_eq!(expires_at(-1, now), Err(CorruptItem::NoExpiry));
    }

    #[test]
    fn a_ttl_no_server_can_send_is_corrupt_not_a_panic() {
        let now = at(NOW);
        for remaining in [
            i64::MAX,
            i64::MAX - 1,
            i64::from(u32::MAX) + 1,
            -2,
            i64::MIN,
        ] {
            assert_eq!(
                expires_at(remaining, now),
                Err(CorruptItem::ExpiryOutOfRange),
                "t = {remaining}"
            );
        }
    }
}
