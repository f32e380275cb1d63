//! The faults: one plan for every strategy, which each strategy applies
//! to itself on its own clock (see `main.rs`).

use std::time::Duration;

use serde::Serialize;

use crate::strategy::Kind;

/// The app node every strategy loses.
pub(crate) const VICTIM: usize = 0;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Action {
    /// Kill app node [`VICTIM`]: its server, its connections, its store.
    KillNode,
    /// Start it again on its port, with a fresh store.
    RestartNode,
    /// Kill the redis-server (d) or the primary one (e).
    KillRedis,
    /// Start it again, empty.
    RestartRedis,
}

impl Action {
    /// When, as a fraction of the load's length.
    fn fraction(self) -> f64 {
        match self {
            Action::KillNode => 0.25,
            Action::RestartNode => 0.50,
            Action::KillRedis => 0.60,
            Action::RestartRedis => 0.80,
        }
    }

    /// What happens, in a few words.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Action::KillNode => "kill app node 0 (server and store, no hand-over)",
            Action::RestartNode => "restart app node 0 on its port with an empty store",
            Action::KillRedis => "kill the Redis server (d) / the primary Redis (e)",
            Action::RestartRedis => "restart it, empty (no persistence)",
        }
    }

    /// A short label for the charts.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Action::KillNode => "node killed",
            Action::RestartNode => "node back",
            Action::KillRedis => "Redis killed",
            Action::RestartRedis => "Redis back",
        }
    }

    /// Which strategies it touches.
    pub(crate) fn applies_to(self) -> &'static str {
        match self {
            Action::KillNode | Action::RestartNode => "all",
            Action::KillRedis | Action::RestartRedis => "d, e",
        }
    }

    /// Whether it touches strategy `kind`, as [`applies_to`](Self::applies_to)
    /// says.
    pub(crate) fn touches(self, kind: Kind) -> bool {
        match self {
            Action::KillNode | Action::RestartNode => true,
            Action::KillRedis | Action::RestartRedis => kind.needs_redis(),
        }
    }
}

/// A fault and its time from the start of the load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub(crate) at: Duration,
    pub(crate) action: Action,
}

/// The faults of a run whose load lasts `load`, in order; the Redis ones
/// only when a Redis strategy runs.
pub(crate) fn schedule(load: Duration, redis: bool) -> Vec<Fault> {
    [
        Action::KillNode,
        Action::RestartNode,
        Action::KillRedis,
        Action::RestartRedis,
    ]
    .into_iter()
    .filter(|action| redis || matches!(action, Action::KillNode | Action::RestartNode))
    .map(|action| Fault {
        at: load.mul_f64(action.fraction()),
        action,
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fall_at_fixed_fractions_of_the_load() {
        let faults = schedule(Duration::from_secs(20), true);
        let at: Vec<u64> = faults.iter().map(|f| f.at.as_secs()).collect();
        assert_eq!(at, [5, 10, 12, 16]);
        assert_eq!(schedule(Duration::from_secs(20), false).len(), 2);
    }

    #[test]
    fn the_redis_faults_touch_only_the_redis_strategies() {
        for kind in Kind::ALL {
            assert!(Action::KillNode.touches(kind));
            assert_eq!(Action::KillRedis.touches(kind), kind.needs_redis());
        }
    }
}
