//! The node's wall clock: what expiry, tombstone lifetimes and owner-index
//! deadlines are measured against.
//!
//! A production build reads the operating system's clock and nothing else
//! (the type is empty, so the seam costs nothing). With the `simulation`
//! feature a node can instead read a simulated wall clock, the tokio clock's
//! (virtual) time since a fixed epoch plus a per-node offset, so that a
//! simulated run's expiries follow virtual time, replay from the seed, and
//! can disagree between nodes as skewed clocks do.

use std::time::SystemTime;

/// The source of "now" for one node; the default is the operating
/// system's clock. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clock {
    #[cfg(feature = "simulation")]
    simulated: Option<crate::simulation::SimulatedClock>,
}

impl Clock {
    /// A simulated clock (see [`SimulatedClock`](crate::simulation::SimulatedClock)).
    #[cfg(feature = "simulation")]
    pub(crate) fn simulated(clock: crate::simulation::SimulatedClock) -> Self {
        Self {
            simulated: Some(clock),
        }
    }

    /// The current wall-clock time as this node sees it.
    #[inline]
    pub(crate) fn now(&self) -> SystemTime {
        #[cfg(feature = "simulation")]
        if let Some(simulated) = &self.simulated {
            return simulated.now();
        }
        SystemTime::now()
    }
}
