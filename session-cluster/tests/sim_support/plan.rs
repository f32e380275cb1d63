//! What a seed fixes: the cluster's size, the network's faults, the
//! clocks' offsets and the faults one after another.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use session_cluster::simulation::LinkFaults;

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// How a partition splits the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// A minority cut off from the majority, both ways.
    Minority(Vec<usize>),
    /// Groups none of which holds a majority, each cut off from the others.
    NoMajority(Vec<Vec<usize>>),
    /// Messages from `from` to every other node are lost; the other way
    /// works.
    OneWay { from: Vec<usize> },
}

/// One fault of a run's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Cut the network as `split` says, for `lasts`.
    Partition { split: Split, lasts: Duration },
    /// Crash `nodes` at once; restart them empty after `down_for`.
    Crash {
        nodes: Vec<usize>,
        down_for: Duration,
    },
}

/// The requests clients make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Reads and writes, now and then a `cycle_id`, a logout or an end-all.
    Everything,
    /// Reads and writes only, so every session lives through the run, as
    /// the lab's users' do.
    ReadsAndWrites,
}

/// The cluster's timings: SWIM's probe period and suspect timeout, and
/// the settle time after a membership change.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub probe_period: Duration,
    pub suspect_timeout: Duration,
    pub settle_time: Duration,
}

impl Timings {
    /// Fast timings, so a run's faults come and go in a few virtual
    /// seconds.
    pub const FAST: Self = Self {
        probe_period: ms(100),
        suspect_timeout: ms(300),
        settle_time: Duration::from_secs(2),
    };
    /// `ClusterConfig`'s defaults, which the lab runs with.
    pub const DEFAULT: Self = Self {
        probe_period: ms(250),
        suspect_timeout: ms(750),
        settle_time: Duration::from_secs(10),
    };
}

/// What a seed fixes: everything a run does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub nodes: usize,
    pub copies: usize,
    pub clients: usize,
    pub sessions: usize,
    pub requests: usize,
    pub link: LinkFaults,
    /// Each node's clock offset, in milliseconds.
    pub offsets: Vec<i64>,
    /// Faults one after another: (pause before it, fault).
    pub faults: Vec<(Duration, Fault)>,
    pub timings: Timings,
    /// How long the cluster gets, once every node sees all the others
    /// again, before the pause of the next fault begins.
    pub recovery: Duration,
    pub mix: Mix,
    /// The pause before each of a client's requests, in milliseconds.
    pub think_ms: (u64, u64),
}

impl Plan {
    /// The plan of `seed`: 3 to 5 nodes, `R` = 2 or 3, some loss,
    /// duplication and reordering, skewed clocks, and two or three faults.
    pub fn of(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x005e_ed51_u64);
        let nodes = rng.random_range(3..=5);
        let copies = rng.random_range(2..=3usize.min(nodes - 1));
        let link = LinkFaults::default()
            .with_delay(ms(1), ms(rng.random_range(2..=30)))
            .with_loss(rng.random_range(0.0..0.05))
            .with_duplication(rng.random_range(0.0..0.05));
        let offsets = (0..nodes).map(|_| rng.random_range(-200..=200)).collect();
        let faults = (0..rng.random_range(2..=3))
            .map(|_| {
                (
                    ms(rng.random_range(100..=800)),
                    fault(&mut rng, nodes, copies),
                )
            })
            .collect();
        Self {
            seed,
            nodes,
            copies,
            clients: 3,
            sessions: 2,
            requests: 12,
            link,
            offsets,
            faults,
            timings: Timings::FAST,
            recovery: Duration::from_secs(1),
            mix: Mix::Everything,
            think_ms: (0, 150),
        }
    }

    /// The lab's quick run of strategy c5 (`session-lab --quick`), where
    /// `seed` fixes only the messages' delays and the clients' choices:
    /// five nodes, two copies, the defaults' timings, sixteen users on a
    /// session each, reading and writing for twenty seconds. Node 0
    /// crashes at 5 s and comes back empty at 10 s; node 1 is cut off
    /// from the others, both ways, about 2.4 s later (before the cluster
    /// has settled from node 0's return), for 3.2 s.
    pub fn lab_order(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x01ab_00c5_u64);
        // Loopback: no loss, no duplication, a fraction of a millisecond
        // to a few.
        let link = LinkFaults::default().with_delay(ms(0), ms(rng.random_range(1..=4)));
        Self {
            seed,
            nodes: 5,
            copies: 2,
            clients: 16,
            sessions: 16,
            requests: 190,
            link,
            offsets: vec![0; 5],
            faults: vec![
                (
                    Duration::from_secs(5),
                    Fault::Crash {
                        nodes: vec![0],
                        down_for: Duration::from_secs(5),
                    },
                ),
                (
                    // After node 0 sees all the others again, which takes
                    // a probe period or few.
                    ms(rng.random_range(1500..=2400)),
                    Fault::Partition {
                        split: Split::Minority(vec![1]),
                        lasts: ms(3200),
                    },
                ),
            ],
            timings: Timings::DEFAULT,
            recovery: Duration::ZERO,
            mix: Mix::ReadsAndWrites,
            think_ms: (90, 110),
        }
    }

    fn quorum(&self) -> usize {
        self.nodes / 2 + 1
    }
}

fn fault(rng: &mut StdRng, nodes: usize, copies: usize) -> Fault {
    let mut order: Vec<usize> = (0..nodes).collect();
    // A seeded shuffle, bounded by the node count.
    for i in (1..nodes).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    // Within what the cluster promises to survive: at most `R - 1` nodes
    // cut off or down at once (a partition that cuts off `R` nodes takes
    // every copy of some sessions out of the majority's reach, as losing
    // `R` nodes would). Splits without a majority stay in: nobody may
    // serve there, so they test refusing, not surviving.
    let minority = ((nodes - 1) / 2).min(copies - 1);
    let lasts = ms(rng.random_range(150..=2500));
    match rng.random_range(0..4) {
        0 => Fault::Partition {
            split: Split::Minority(order[..rng.random_range(1..=minority)].to_vec()),
            lasts,
        },
        1 => Fault::Partition {
            // Groups one short of a majority each (1+1+1 of three, 2+2 of
            // four, 2+2+1 of five): nobody can serve.
            split: Split::NoMajority(order.chunks(nodes / 2).map(<[usize]>::to_vec).collect()),
            lasts,
        },
        2 => Fault::Partition {
            split: Split::OneWay {
                from: order[..rng.random_range(1..=minority)].to_vec(),
            },
            lasts,
        },
        _ => Fault::Crash {
            // At most R - 1 at once: what the cluster promises to survive.
            nodes: order[..rng.random_range(1..copies)].to_vec(),
            down_for: ms(rng.random_range(100..=3000)),
        },
    }
}
