//! The faults: one plan for every strategy, which each strategy applies
//! to itself on its own clock (see `main.rs`).

use std::time::Duration;

use serde::Serialize;

use crate::strategy::Kind;

/// The app node every strategy loses.
pub(crate) const VICTIM: usize = 0;
/// The app node the partition cuts off from the others: not the one that
/// was killed, so the partition tests a node that never restarted.
pub(crate) const CUT_OFF: usize = 1;

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
    /// Cut app node [`CUT_OFF`] off from the other app nodes (the strategies
    /// whose nodes talk to each other: the clustering baseline and the
    /// session-kit cluster). The balancer still reaches every node.
    PartitionNode,
    /// Heal that partition.
    HealPartition,
}

impl Action {
    /// When, as a fraction of the load's length.
    fn fraction(self) -> f64 {
        match self {
            Action::KillNode => 0.25,
            Action::RestartNode => 0.50,
            Action::KillRedis => 0.60,
            Action::RestartRedis => 0.80,
            Action::PartitionNode => 0.62,
            Action::HealPartition => 0.78,
        }
    }

    /// What happens, in a few words.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Action::KillNode => "kill app node 0 (server and store, no hand-over)",
            Action::RestartNode => "restart app node 0 on its port with an empty store",
            Action::KillRedis => "kill the Redis server (d, g, h) / the primary Redis (e, f)",
            Action::RestartRedis => "restart it, empty (no persistence)",
            Action::PartitionNode => {
                "cut app node 1 off from the other app nodes (the balancer still reaches it)"
            }
            Action::HealPartition => "heal the partition",
        }
    }

    /// A short label for the charts.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Action::KillNode => "node killed",
            Action::RestartNode => "node back",
            Action::KillRedis => "Redis killed",
            Action::RestartRedis => "Redis back",
            Action::PartitionNode => "node cut off",
            Action::HealPartition => "partition healed",
        }
    }

    /// Which strategies it touches.
    pub(crate) fn applies_to(self) -> &'static str {
        match self {
            Action::KillNode | Action::RestartNode => "all",
            Action::KillRedis | Action::RestartRedis => REDIS_STRATEGIES,
            Action::PartitionNode | Action::HealPartition => PEERED_STRATEGIES,
        }
    }

    /// Whether it touches strategy `kind`, as [`applies_to`](Self::applies_to)
    /// says.
    pub(crate) fn touches(self, kind: Kind) -> bool {
        match self {
            Action::KillNode | Action::RestartNode => true,
            Action::KillRedis | Action::RestartRedis => kind.needs_redis(),
            Action::PartitionNode | Action::HealPartition => kind.has_peers(),
        }
    }
}

/// The letters of the strategies the Redis faults touch.
const REDIS_STRATEGIES: &str = "d, e, f, g, h";
/// The letters of the strategies whose app nodes talk to each other.
const PEERED_STRATEGIES: &str = "b, b5, c, c5";

/// A fault and its time from the start of the load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub(crate) at: Duration,
    pub(crate) action: Action,
}

/// The faults of a run whose load lasts `load`, in order of time; the
/// Redis ones only when a Redis strategy runs.
pub(crate) fn schedule(load: Duration, redis: bool) -> Vec<Fault> {
    let mut faults: Vec<Fault> = [
        Action::KillNode,
        Action::RestartNode,
        Action::KillRedis,
        Action::PartitionNode,
        Action::HealPartition,
        Action::RestartRedis,
    ]
    .into_iter()
    .filter(|action| redis || !matches!(action, Action::KillRedis | Action::RestartRedis))
    .map(|action| Fault {
        at: load.mul_f64(action.fraction()),
        action,
    })
    .collect();
    faults.sort_by_key(|fault| fault.at);
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fall_at_fixed_fractions_of_the_load() {
        let faults = schedule(Duration::from_secs(20), true);
        let at: Vec<f64> = faults.iter().map(|f| f.at.as_secs_f64()).collect();
        assert_eq!(at, [5.0, 10.0, 12.0, 12.4, 15.6, 16.0]);
        assert_eq!(schedule(Duration::from_secs(20), false).len(), 4);
    }

    #[test]
    fn the_redis_faults_touch_only_the_redis_strategies() {
        for kind in Kind::ALL {
            assert!(Action::KillNode.touches(kind));
            assert_eq!(Action::KillRedis.touches(kind), kind.needs_redis());
            assert_eq!(Action::PartitionNode.touches(kind), kind.has_peers());
        }
    }
}
