//! The link's memory of the nonces it has served, so a signed request
//! recorded on the wire is not served a second time.
//!
//! A request is fresh for [`MAX_SKEW`](crate::link::MAX_SKEW) either side of
//! the time it was signed with, so its nonce must be remembered until that
//! time is stale, and no longer. Nonces are kept in one set per second of
//! their request's signed time: a replay carries the same signed time, so a
//! check looks in one set, and a second that went stale is dropped whole.
//! Only nonces of requests whose head tag verified are recorded, so a
//! stranger without the secret cannot fill the memory; it is bounded all
//! the same, and when full, new requests are turned away (a transient
//! "busy") rather than served unchecked.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use crate::ids::IdHash;

/// The most nonces remembered at once: room for 65k peer requests a second
/// sustained over the skew window, in 40 to 70 MiB when full (8 bytes and
/// the hash set's slack each).
pub(crate) const MAX_NONCES: usize = 1 << 22;

/// What [`Nonces::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// Never seen: now recorded.
    First,
    /// Seen before within its freshness window: a replay.
    Repeated,
    /// Too many nonces are fresh to remember one more.
    Full,
}

/// Nonces of served requests, by the second their request was signed in.
///
/// Each nonce is 128 random bits on the wire; 64 of them are kept. Two
/// honest requests signed in the same second that share those (odds about
/// 2^-48 per request at 65k requests a second) cost one refused request,
/// which its caller sees as a transient failure; a stranger cannot choose
/// nonces, since they are signed.
#[derive(Debug)]
pub(crate) struct Nonces {
    skew: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Random and only ever a verified head's, so a multiply hashes them.
    by_second: BTreeMap<u64, HashSet<u64, IdHash>>,
    len: usize,
}

impl Nonces {
    /// Remembers nonces for `skew` past their request's signed time, at
    /// most `capacity` at once.
    pub(crate) fn new(skew: Duration, capacity: usize) -> Self {
        Self {
            skew,
            capacity,
            seen: Mutex::default(),
        }
    }

    /// Records `nonce` of a request signed at `sent_ms` (Unix milliseconds)
    /// and received at `now_ms`, unless it was recorded before. The caller
    /// has checked that the request's head is signed and that `sent_ms` is
    /// within the skew of `now_ms`.
    pub(crate) fn first_use(&self, nonce: u128, sent_ms: u64, now_ms: u64) -> Use {
        // The low half: random, like the rest.
        #[allow(clippy::cast_possible_truncation)]
        let nonce = nonce as u64;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A second can go once every time in it is older than the skew:
        // a request signed then is refused as stale, replay or not. At most
        // one second per call goes stale, give or take clock jumps, and the
        // map holds only the seconds of the window.
        let stale_before = now_ms.saturating_sub(millis(self.skew)) / 1000;
        while let Some(entry) = seen.by_second.first_entry() {
            if *entry.key() >= stale_before {
                break;
            }
            let dropped = entry.remove().len();
            seen.len -= dropped;
        }
        let second = sent_ms / 1000;
        if seen
            .by_second
            .get(&second)
            .is_some_and(|set| set.contains(&nonce))
        {
            return Use::Repeated;
        }
        if seen.len >= self.capacity {
            return Use::Full;
        }
        seen.by_second.entry(second).or_default().insert(nonce);
        seen.len += 1;
        Use::First
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(60);

    #[test]
    fn a_nonce_is_served_once_within_its_window() {
        let nonces = Nonces::new(SKEW, 16);
        let sent = 1_000_000_000;
        assert_eq!(nonces.first_use(7, sent, sent), Use::First);
        assert_eq!(nonces.first_use(7, sent, sent + 1_000), Use::Repeated);
        // Until the request itself is stale, whichever side the clock is.
        assert_eq!(nonces.first_use(7, sent, sent + 60_000), Use::Repeated);
        assert_eq!(nonces.first_use(8, sent, sent - 59_000), Use::First);
        assert_eq!(nonces.first_use(8, sent, sent), Use::Repeated);
    }

    #[test]
    fn stale_seconds_are_forgotten_and_their_room_reused() {
        let nonces = Nonces::new(SKEW, 2);
        let sent = 1_000_000_000;
        assert_eq!(nonces.first_use(1, sent, sent), Use::First);
        assert_eq!(nonces.first_use(2, sent + 500, sent + 500), Use::First);
        assert_eq!(nonces.first_use(3, sent + 900, sent + 900), Use::Full);
        // Past the skew, the first second is stale: its nonces go, and a
        // request signed then is refused by its time before it gets here.
        let later = sent + 62_000;
        assert_eq!(nonces.first_use(3, later, later), Use::First);
        assert_eq!(nonces.first_use(4, later, later), Use::First);
        assert_eq!(nonces.first_use(5, later, later), Use::Full);
    }
}
