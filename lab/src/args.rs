//! The command line.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

use crate::HELP;

/// The command line, as clap parses it; [`Args::settings`] fills in what
/// `--quick` changes.
#[derive(Debug, Parser)]
#[command(
    name = "session-lab",
    version,
    about = "Reproduces and measures the three ways multi-server sessions break, next to session-kit's answers.",
    long_about = None,
    after_long_help = HELP
)]
pub(crate) struct Args {
    /// App servers per strategy. At least 3: the cluster must keep a
    /// majority when one is killed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(3..=9))]
    pub(crate) nodes: u16,
    /// Simulated users per strategy [default: 40, or 24 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u16).range(3..=1000))]
    pub(crate) users: Option<u16>,
    /// Seconds of load; the faults happen at fixed fractions of it
    /// [default: 100, or 20 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(8..=3600))]
    pub(crate) seconds: Option<u64>,
    /// Milliseconds each user waits between two requests [default: 100].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub(crate) pause_ms: Option<u64>,
    /// A short run (20 s of load, 24 users): under a minute in all.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Require the Redis strategies (d, e): a missing redis-server is an
    /// error. Without it they run when redis-server is on the PATH.
    #[arg(long, conflicts_with = "no_redis")]
    pub(crate) redis: bool,
    /// Skip the Redis strategies (d, e) even when redis-server is installed.
    #[arg(long)]
    pub(crate) no_redis: bool,
    /// Where to write the HTML report.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "target/session-lab/report.html"
    )]
    pub(crate) report: PathBuf,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "PATH")]
    pub(crate) json: Option<PathBuf>,
}

/// Whether to run the strategies that need a redis-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisWanted {
    /// `--redis`: run them, or fail.
    Required,
    /// The default: run them when redis-server is installed.
    IfInstalled,
    /// `--no-redis`.
    No,
}

/// The settings of one run, defaults resolved.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) nodes: usize,
    pub(crate) users: usize,
    pub(crate) load: Duration,
    pub(crate) pause: Duration,
    pub(crate) redis: RedisWanted,
    pub(crate) report: PathBuf,
    pub(crate) json: Option<PathBuf>,
}

impl Args {
    /// The run's settings, with `--quick`'s defaults where nothing was given.
    pub(crate) fn settings(&self) -> Settings {
        let (users, seconds, pause_ms) = if self.quick {
            (24, 20, 100)
        } else {
            (40, 100, 100)
        };
        Settings {
            nodes: usize::from(self.nodes),
            users: self.users.map_or(users, usize::from),
            load: Duration::from_secs(self.seconds.unwrap_or(seconds)),
            pause: Duration::from_millis(self.pause_ms.unwrap_or(pause_ms)),
            redis: if self.redis {
                RedisWanted::Required
            } else if self.no_redis {
                RedisWanted::No
            } else {
                RedisWanted::IfInstalled
            },
            report: self.report.clone(),
            json: self.json.clone(),
        }
    }
}
