//! # session-lab
//!
//! The three ways sessions break when an app runs on several servers,
//! reproduced on this machine and measured, next to session-kit's answers:
//!
//! ```text
//! cargo run --release -p session-lab            # about two minutes
//! cargo run --release -p session-lab -- --quick # under a minute
//! ```
//!
//! The strategies run side by side, each with its own app servers (axum
//! behind session-kit's tower layer), load balancer and store: local
//! memory behind a sticky balancer (a), session clustering as Tomcat's
//! `DeltaManager` does it (b, every server copies every session to every
//! other; b5 on 5 servers), the session-kit cluster (c; c5 on 5 servers),
//! one Redis (d), a Redis failover mirror (e), a Redis standby pair (f),
//! Redis with a near-cache (g) and Redis with a standby PostgreSQL (h).
//! Users log in and increment a counter in their session while an app
//! server is killed and restarted, the clusters' peer links are cut and
//! healed, and Redis is killed and restarted. Every strategy follows
//! the same plan of faults, each on its own clock, so one strategy's slow
//! restart delays no other's faults; the lab records when each fault took
//! effect, per strategy. It counts what each user saw (lost sessions,
//! stale reads, lost increments, failed requests) and what each strategy
//! cost (load skew, memory, store traffic, latency), prints a table, a
//! cost table with the answer to "how do I keep the backup cheap?", and
//! writes an HTML report with charts. `session-lab --help` explains each
//! strategy and figure.
//!
//! Everything listens on 127.0.0.1 only, and every loop is bounded by the
//! run's length: the users' and the faults' by the load's end, the
//! servers' by the run's shutdown signal (`shutdown.rs`).
#![forbid(unsafe_code)]

mod app;
mod args;
mod balancer;
mod cost;
mod error;
mod figures;
mod kind;
mod postgres;
mod redis;
mod replicated;
mod report;
mod schedule;
mod shutdown;
mod strategy;
mod workload;

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::Parser;
use futures_util::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use crate::{
    args::{Args, Settings, Wanted},
    error::LabError,
    figures::{AppliedFault, FaultFigure, LabFigures, StrategyFigures},
    schedule::{Action, Fault, CUT_OFF, VICTIM},
    strategy::{Deployment, Kind},
    workload::{Tally, User},
};

/// What each strategy and figure means: `--help` and the report show it.
pub(crate) const HELP: &str = include_str!("help.txt");

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = args.settings();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("session-lab: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("session-lab: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Why the Redis strategies are skipped, if they are.
fn redis_skipped(wanted: Wanted) -> Result<Option<String>, LabError> {
    match (wanted, redis::installed()) {
        (Wanted::No, _) => Ok(Some("--no-redis".to_owned())),
        (_, Ok(())) => Ok(None),
        (Wanted::Required, Err(missing)) => Err(LabError::RedisMissing { missing }),
        (Wanted::IfInstalled, Err(missing)) => Ok(Some(format!(
            "{missing} is not installed (sudo apt-get install -y redis-server redis-tools)"
        ))),
    }
}

/// Why the PostgreSQL strategy is skipped, if it is.
fn postgres_skipped(wanted: Wanted) -> Result<Option<String>, LabError> {
    match (wanted, postgres::installed()) {
        (Wanted::No, _) => Ok(Some("--no-postgres".to_owned())),
        (_, Ok(())) => Ok(None),
        (Wanted::Required, Err(missing)) => Err(LabError::PostgresMissing { missing }),
        (Wanted::IfInstalled, Err(missing)) => Ok(Some(format!(
            "{missing} is not installed (sudo apt-get install -y postgresql)"
        ))),
    }
}

async fn run(settings: &Settings) -> Result<(), LabError> {
    let began = Instant::now();
    let redis_skipped = redis_skipped(settings.redis)?;
    let postgres_skipped = postgres_skipped(settings.postgres)?;
    // Fired once the users are done; dropped, should the run fail first.
    let (shutdown, servers_run_until) = shutdown::channel();
    let mut deployments = Vec::new();
    let mut skipped = Vec::new();
    for kind in Kind::ALL {
        let reason = match (&redis_skipped, &postgres_skipped) {
            (Some(reason), _) if kind.needs_redis() => Some(reason),
            (_, Some(reason)) if kind.needs_postgres() => Some(reason),
            _ => None,
        };
        if let Some(reason) = reason {
            skipped.push((kind, reason.clone()));
            continue;
        }
        let nodes = kind.nodes(settings.nodes);
        eprintln!(
            "session-lab: starting {} {} ({nodes} app servers)",
            kind.letter(),
            kind.name(),
        );
        deployments.push(Deployment::start(kind, nodes, servers_run_until.clone()).await?);
    }
    for deployment in &mut deployments {
        deployment.begin_counting().await?;
    }
    let any_redis = deployments.iter().any(|d| d.kind().needs_redis());
    let faults = schedule::schedule(settings.load, any_redis);
    eprintln!(
        "session-lab: {} users per strategy for {} s; faults: {}",
        settings.users,
        settings.load.as_secs(),
        faults
            .iter()
            .map(|f| format!("{:.1} s {}", f.at.as_secs_f64(), f.action.label()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let start = Instant::now();
    let end = start + settings.load;
    let mut crowds: Vec<JoinSet<User>> = Vec::with_capacity(deployments.len());
    for deployment in &deployments {
        let mut crowd = JoinSet::new();
        for n in 0..settings.users {
            let user = User::new(format!("user-{n}"), deployment.balancer_addr());
            // Spread the first requests over one pause, so the logins do
            // not all arrive at once.
            let offset = settings.pause.mul_f64(n as f64 / settings.users as f64);
            let pause = settings.pause;
            crowd.spawn(async move {
                tokio::time::sleep(offset).await;
                user.run(start, end, pause).await
            });
        }
        crowds.push(crowd);
    }

    let (bar, ticking) = progress_bar(settings.load, start, faults.clone());
    let timelines: Vec<_> = deployments
        .into_iter()
        .map(|deployment| {
            let own: Vec<Fault> = faults
                .iter()
                .copied()
                .filter(|fault| fault.action.touches(deployment.kind()))
                .collect();
            tokio::spawn(fault_timeline(deployment, own, start, bar.clone()))
        })
        .collect();
    tokio::time::sleep_until(end.into()).await;
    ticking.abort();
    bar.set_position(bar.length().unwrap_or(0));
    bar.set_message("last requests, then a final read per user");
    // Every fault is planned well before the end of the load, so the
    // timelines are done by now unless a restart took very long; then
    // this waits for it, which the late times in the table will show.
    let mut done = Vec::with_capacity(timelines.len());
    for timeline in timelines {
        done.push(match timeline.await {
            Ok(finished) => finished?,
            // A timeline is never aborted, so its join error is a panic:
            // pass it on.
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        });
    }
    let (mut deployments, applied): (Vec<Deployment>, Vec<Vec<AppliedFault>>) =
        done.into_iter().unzip();

    let mut finishing: Vec<JoinSet<Tally>> = Vec::with_capacity(crowds.len());
    for mut crowd in crowds {
        let mut finish = JoinSet::new();
        while let Some(user) = crowd.join_next().await {
            // A user task only ends by returning: it neither panics nor is
            // aborted.
            if let Ok(user) = user {
                finish.spawn(user.finish(start));
            }
        }
        finishing.push(finish);
    }
    let mut tallies = Vec::with_capacity(finishing.len());
    for mut finish in finishing {
        let mut tally = Tally::default();
        while let Some(user) = finish.join_next().await {
            if let Ok(user) = user {
                tally.add(user);
            }
        }
        tallies.push(tally);
    }
    bar.finish_and_clear();
    // No user is left: the balancers and app servers stop here. What the
    // footprint reads (the balancers' counts, the stores) outlives them.
    shutdown.fire();

    let footprints = join_all(deployments.iter_mut().map(Deployment::footprint))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let copy_bytes = figures::copy_bytes(&footprints);
    let mut strategies = Vec::with_capacity(Kind::ALL.len());
    let mut measured = deployments.iter().zip(applied).zip(tallies).zip(footprints);
    for kind in Kind::ALL {
        if let Some((_, reason)) = skipped.iter().find(|(k, _)| *k == kind) {
            strategies.push(StrategyFigures::skipped(kind, reason.clone()));
        } else if let Some((((deployment, applied), tally), footprint)) = measured.next() {
            strategies.push(StrategyFigures::measured(
                deployment.kind(),
                tally,
                footprint,
                applied,
                settings.load,
                copy_bytes,
            ));
        }
    }
    drop(deployments);

    let figures = LabFigures {
        nodes: settings.nodes,
        users: settings.users,
        load_seconds: settings.load.as_secs_f64(),
        pause_ms: u64::try_from(settings.pause.as_millis()).unwrap_or(u64::MAX),
        schedule: faults.iter().map(FaultFigure::from).collect(),
        copy_bytes,
        strategies,
        elapsed_seconds: began.elapsed().as_secs_f64(),
    };
    println!();
    print!("{}", figures::table(&figures));
    println!();
    print!("{}", figures::TABLE_LEGEND);
    println!();
    for line in figures::fault_lines(&figures) {
        println!("  {line}");
    }
    println!("\nWhat each strategy costs:\n");
    print!("{}", cost::cost_table(&figures));
    println!();
    print!("{}", cost::COST_LEGEND);
    let answer = cost::cheap_backup(&figures);
    if !answer.is_empty() {
        println!("\nHow do I keep the backup cheap?\n");
        for paragraph in answer {
            println!("- {paragraph}");
        }
    }
    let command: Vec<String> = std::env::args().skip(1).collect();
    let command = format!(
        "cargo run --release -p session-lab -- {}",
        command.join(" ")
    );
    write(
        &settings.report,
        report::html(&figures, command.trim_end()).as_bytes(),
    )?;
    println!(
        "\nreport: {} (run took {:.0} s)",
        settings.report.display(),
        figures.elapsed_seconds
    );
    if let Some(path) = &settings.json {
        write(path, &serde_json::to_vec_pretty(&figures)?)?;
        println!("figures as JSON: {}", path.display());
    }
    Ok(())
}

/// One strategy's faults: applies each of `faults` to `deployment` at its
/// planned instant from `start`, one after the other, and records when
/// each took effect. Each strategy runs its own, on its own task, so a
/// slow fault of one (a restarted cluster node waits up to 20 s for its
/// peers) delays no other strategy's faults, only this one's later ones.
async fn fault_timeline(
    mut deployment: Deployment,
    faults: Vec<Fault>,
    start: Instant,
    bar: ProgressBar,
) -> Result<(Deployment, Vec<AppliedFault>), LabError> {
    let letter = deployment.kind().letter();
    let mut applied = Vec::with_capacity(faults.len());
    for fault in faults {
        tokio::time::sleep_until((start + fault.at).into()).await;
        let note = apply(&mut deployment, fault.action).await?;
        let at = start.elapsed();
        if let Some(note) = note {
            say(&bar, &format!("{letter}: {note}"));
        }
        say(
            &bar,
            &format!(
                "[{:>5.1} s] {letter}: {}",
                at.as_secs_f64(),
                fault.action.label()
            ),
        );
        applied.push(AppliedFault {
            action: fault.action,
            planned_seconds: fault.at.as_secs_f64(),
            applied_seconds: at.as_secs_f64(),
        });
    }
    Ok((deployment, applied))
}

/// Applies one fault to one strategy; returns a note worth showing, if any.
async fn apply(deployment: &mut Deployment, action: Action) -> Result<Option<String>, LabError> {
    match action {
        Action::KillNode => deployment.kill_node(VICTIM),
        Action::RestartNode => return deployment.restart_node(VICTIM).await,
        Action::KillRedis => deployment.kill_redis().await?,
        Action::RestartRedis => deployment.restart_redis().await?,
        Action::PartitionNode => deployment.partition_node(CUT_OFF),
        Action::HealPartition => deployment.heal_partition(),
    }
    Ok(None)
}

/// The progress bar: the run's clock, and the next fault; and the task
/// that moves it, which ends with the load (or when aborted).
fn progress_bar(
    load: Duration,
    start: Instant,
    faults: Vec<Fault>,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let total = u64::try_from(load.as_millis()).unwrap_or(u64::MAX);
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30.cyan/blue}] {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let ticking = bar.clone();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        while start.elapsed() < load {
            every.tick().await;
            let elapsed = start.elapsed();
            ticking.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            let next = faults.iter().find(|f| f.at > elapsed);
            ticking.set_message(match next {
                Some(fault) => format!(
                    "next: {} in {:.0} s",
                    fault.action.label(),
                    (fault.at - elapsed).as_secs_f64().ceil()
                ),
                None => format!(
                    "no more faults; load ends in {:.0} s",
                    load.saturating_sub(elapsed).as_secs_f64().ceil()
                ),
            });
        }
    });
    (bar, task)
}

/// A line above the progress bar, or on stderr when there is no bar
/// (stderr is not a terminal).
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("session-lab: {line}");
    } else {
        bar.println(line);
    }
}

fn write(path: &Path, contents: &[u8]) -> Result<(), LabError> {
    let failed = |source| LabError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::write(path, contents).map_err(failed)
}
