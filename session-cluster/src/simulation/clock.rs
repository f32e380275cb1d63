//! A wall clock that follows tokio's (virtual) time, with an offset.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A wall clock for a simulation: a fixed epoch plus the time tokio's clock
/// has moved since the clock was made, plus an offset (ahead or behind).
/// On a paused runtime it moves only as virtual time does, so a seeded run
/// sees the same times on every replay. Clones share the epoch.
///
/// It is also a [`session_core::clock::Clock`], so a simulated app
/// server's `SessionManager` can run on the same clock as its node.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::time::{Duration, SystemTime};
/// use session_cluster::simulation::SimulatedClock;
///
/// let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let clock = SimulatedClock::starting_at(epoch);
/// let ahead = clock.offset_by_millis(250);
/// tokio::time::sleep(Duration::from_secs(2)).await;
/// assert_eq!(clock.now(), epoch + Duration::from_secs(2));
/// assert_eq!(ahead.now(), epoch + Duration::from_millis(2250));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SimulatedClock {
    epoch: SystemTime,
    start: Instant,
    offset_millis: i64,
}

impl SimulatedClock {
    /// A clock that reads `epoch` now and moves with tokio's clock. Call it
    /// inside the runtime whose clock it should follow.
    #[must_use]
    pub fn starting_at(epoch: SystemTime) -> Self {
        Self {
            epoch,
            start: Instant::now(),
            offset_millis: 0,
        }
    }

    /// The same clock, `offset` milliseconds ahead (negative: behind).
    #[must_use]
    pub fn offset_by_millis(&self, offset: i64) -> Self {
        Self {
            offset_millis: offset,
            ..*self
        }
    }

    /// How far ahead (negative: behind) this clock runs, in milliseconds.
    #[must_use]
    pub fn offset_millis(&self) -> i64 {
        self.offset_millis
    }

    /// The current time on this clock.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        let base = self.epoch + Instant::now().saturating_duration_since(self.start);
        let offset = Duration::from_millis(self.offset_millis.unsigned_abs());
        if self.offset_millis >= 0 {
            base + offset
        } else {
            base.checked_sub(offset).unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }
}

impl session_core::clock::Clock for SimulatedClock {
    fn now(&self) -> SystemTime {
        SimulatedClock::now(self)
    }
}
