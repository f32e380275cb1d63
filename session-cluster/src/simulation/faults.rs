//! How the simulated network misbehaves, and what it counted.

use std::time::Duration;

/// How every message on the network may misbehave: its delay is drawn
/// uniformly between `min_delay` and `max_delay` (so messages overtake
/// each other), it is lost with probability `loss`, and a membership
/// datagram is delivered twice with probability `duplication`.
///
/// Peer requests are not duplicated unless `request_duplication` is set:
/// the link runs over TCP, which never delivers a request twice, so a
/// duplicated request stands for a replay (a retrying proxy, or someone
/// who captured a signed request), not for ordinary network behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LinkFaults {
    /// The shortest one-way delay.
    pub min_delay: Duration,
    /// The longest one-way delay.
    pub max_delay: Duration,
    /// The probability that a message (a datagram, a request or a reply)
    /// is lost.
    pub loss: f64,
    /// The probability that a datagram arrives twice.
    pub duplication: f64,
    /// The probability that a peer request is delivered twice (see above).
    pub request_duplication: f64,
}

impl Default for LinkFaults {
    /// A quiet LAN: 1 to 2 ms each way, nothing lost or duplicated.
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            loss: 0.0,
            duplication: 0.0,
            request_duplication: 0.0,
        }
    }
}

impl LinkFaults {
    /// One-way delays between `min` and `max`.
    #[must_use]
    pub fn with_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min.min(max);
        self.max_delay = max.max(min);
        self
    }

    /// The probability that a message is lost.
    #[must_use]
    pub fn with_loss(mut self, probability: f64) -> Self {
        self.loss = probability.clamp(0.0, 1.0);
        self
    }

    /// The probability that a datagram arrives twice.
    #[must_use]
    pub fn with_duplication(mut self, probability: f64) -> Self {
        self.duplication = probability.clamp(0.0, 1.0);
        self
    }

    /// The probability that a peer request is delivered twice.
    #[must_use]
    pub fn with_request_duplication(mut self, probability: f64) -> Self {
        self.request_duplication = probability.clamp(0.0, 1.0);
        self
    }
}

/// What the network did so far, for a run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Membership datagrams sent.
    pub datagrams: u64,
    /// Peer requests sent.
    pub requests: u64,
    /// Datagrams, requests and replies lost to the loss rate.
    pub lost: u64,
    /// Datagrams, requests and replies dropped by a cut link or a node
    /// that was down.
    pub cut: u64,
    /// Datagrams and requests delivered twice.
    pub duplicated: u64,
    /// Requests refused because their receiver was down.
    pub refused: u64,
}
