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
    /// Simulated users per strategy [default: 24, or 16 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u16).range(3..=1000))]
    pub(crate) users: Option<u16>,
    /// Seconds of load; the faults happen at fixed fractions of it
    /// [default: 100, or 20 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(8..=3600))]
    pub(crate) seconds: Option<u64>,
    /// Milliseconds each user waits between two requests [default: 100].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub(crate) pause_ms: Option<u64>,
    /// A short run (20 s of load, 16 users): under a minute in all.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Require the Redis strategies (d to h): a missing redis-server is an
    /// error. Without it they run when redis-server is on the PATH.
    #[arg(long, conflicts_with = "no_redis")]
    pub(crate) redis: bool,
    /// Skip the Redis strategies (d to h) even when redis-server is installed.
    #[arg(long)]
    pub(crate) no_redis: bool,
    /// Require the PostgreSQL strategy (h): a missing PostgreSQL is an
    /// error. Without it h runs when PostgreSQL (and Redis) is installed.
    #[arg(long, conflicts_with = "no_postgres")]
    pub(crate) postgres: bool,
    /// Skip the PostgreSQL strategy (h) even when PostgreSQL is installed.
    #[arg(long)]
    pub(crate) no_postgres: bool,
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

/// Whether to run the strategies that need a server the lab does not
/// bring (redis-server, PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// `--redis`, `--postgres`: run them, or fail.
    Required,
    /// The default: run them when the server is installed.
    IfInstalled,
    /// `--no-redis`, `--no-postgres`.
    No,
}

impl Wanted {
    fn from_flags(required: bool, no: bool) -> Self {
        if required {
            Wanted::Required
        } else if no {
            Wanted::No
        } else {
            Wanted::IfInstalled
        }
    }
}

/// The settings of one run, defaults resolved.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) nodes: usize,
    pub(crate) users: usize,
    pub(crate) load: Duration,
    pub(crate) pause: Duration,
    pub(crate) redis: Wanted,
    pub(crate) postgres: Wanted,
    pub(crate) report: PathBuf,
    pub(crate) json: Option<PathBuf>,
}

impl Args {
    /// The run's settings, with `--quick`'s defaults where nothing was given.
    pub(crate) fn settings(&self) -> Settings {
        // Ten strategies share the machine: 24 users each (16 quick) keep
        // the whole load near what five strategies of 40 (24) made, so a
        // 2-core machine measures the stores, not its own queueing. Every
        // strategy has the same users, so the same sessions: memory per
        // server compares across N.
        let (users, seconds, pause_ms) = if self.quick {
            (16, 20, 100)
        } else {
            (24, 100, 100)
        };
        Settings {
            nodes: usize::from(self.nodes),
            users: self.users.map_or(users, usize::from),
            load: Duration::from_secs(self.seconds.unwrap_or(seconds)),
            pause: Duration::from_millis(self.pause_ms.unwrap_or(pause_ms)),
            redis: Wanted::from_flags(self.redis, self.no_redis),
            postgres: Wanted::from_flags(self.postgres, self.no_postgres),
            report: self.report.clone(),
            json: self.json.clone(),
        }
    }
}
