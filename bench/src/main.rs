//! `session-bench`: every variant in one run, side by side, and a table of
//! ratios.
//!
//! ```text
//! cargo run --release -p session-bench -- --quick     # about 4 minutes
//! cargo run --release -p session-bench                # about 18 minutes
//! cargo run --release -p session-bench -- --redis-cost # Redis's own cost per request
//! ```
//!
//! Each variant is one app server (axum or actix-web, one worker thread)
//! answering the same four routes, with no session layer, with
//! session-kit on each store, or with the peer crate. An in-process hyper
//! client drives each with a fixed number of keep-alive connections, one
//! user and one session per connection, for three workloads: a handler
//! that never touches the session, one that reads it, one that writes it.
//! Rounds alternate over the variants (and run them in reverse order every
//! other round), so machine drift spreads over all of them; every figure is
//! a median over the rounds, and every ratio the median of the ratios taken
//! within each round.
//!
//! On a machine with two cores or more, the app servers and the store
//! servers run on core 0 and the load generator on core 1, so the client
//! never takes the server's CPU.
#![forbid(unsafe_code)]

mod apps;
mod backends;
mod ceiling;
mod cpu;
mod footprint;
mod load;
mod redis_cost;
mod report;
mod soak;
mod variants;

use std::{path::PathBuf, time::Duration};

use backends::Backends;
use load::{Load, Spread};
use report::{Results, Sample, Workload};
use variants::{Running, Store, Variant};

/// Requests per variant and workload in the pass that counts Redis round
/// trips.
const COUNTED: u64 = 200;

/// The same for a variant on PostgreSQL, whose count includes the login
/// that makes the pass's session (`pg_stat_database` cannot be read between
/// the two without waiting for it to settle): one create in this many
/// requests is below the table's two decimals.
const POSTGRES_COUNTED: u64 = 1_000;

/// The run's settings, from the command line.
#[derive(Debug)]
struct Options {
    rounds: usize,
    warmup: Duration,
    duration: Duration,
    connections: usize,
    only: Vec<String>,
    workloads: Vec<Workload>,
    /// Whether `workloads` is the default (no `--workload`): then each
    /// variant runs only those it runs by default.
    default_workloads: bool,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    pin: bool,
    /// Whether the store servers sit on the load generator's core instead
    /// of the app's, as a separate store host would.
    stores_apart: bool,
    /// How the load spreads one user's requests over the cluster's nodes.
    spread: Spread,
}

const USAGE: &str = "\
usage: session-bench [--quick] [--rounds N] [--seconds S] [--warmup S] [--connections C]
                     [--only TEXT]... [--workload NAME]... [--markdown FILE]
                     [--svg FILE] [--no-pin] [--stores-apart] [--spread-requests]

  --quick          3 rounds of 1 s per variant and workload (a few minutes)
  (default)        5 rounds of 3 s, each after 1 s of warm-up
  --only TEXT      only variants whose name contains TEXT (repeatable); the
                   bare frameworks and the peers they are compared with
                   always run
  --workload NAME  only this workload: untouched, read or write (repeatable;
                   default all three, but read and write only for the
                   Postgres variants)
  --markdown FILE  also write the tables there
  --svg FILE       write the throughput chart there
  --no-pin         do not pin the servers and the load generator to cores
  --stores-apart   pin redis-server, memcached and PostgreSQL to the load
                   generator's core instead of the app's (as a store host
                   of its own would be); by default they share the app's
  --spread-requests send each of a user's requests to the next cluster node,
                   as a balancer that picks a node per request; by default
                   a user's connection stays on the node it logged in on

usage: session-bench --soak [--seconds S] [--warm-up W] [--users N]
                            [--store memory|redis]...

  the soak test: against each store (default both), W seconds (default
  S/2, from 6 to 30) of warm-up load whose sessions all expire, a
  quiescent RSS baseline, then S seconds (default 60) of N users (default
  200), each driving a session from two tasks and abandoning it every 3 s,
  then RSS again once every session expired; fails on any error or lost
  update, any session the store still holds after expiry, or RSS above the
  baseline by more than max(15 %, 8 MiB)

usage: session-bench --redis-cost [--rounds N] [--seconds S] [--only TEXT]...

  what a read and a write cost Redis itself, session-kit against the
  peers: commands sent and run, commandstats µs and redis-server CPU per
  request (--redis-cost --help for all options)";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        rounds: 5,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(3),
        connections: 16,
        only: Vec::new(),
        workloads: Vec::new(),
        default_workloads: false,
        markdown: None,
        svg: None,
        pin: true,
        stores_apart: false,
        spread: Spread::PerConnection,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" => {
                options.rounds = 3;
                options.warmup = Duration::from_millis(300);
                options.duration = Duration::from_secs(1);
            }
            "--rounds" => {
                options.rounds = number("--rounds", &value("--rounds")?)?;
            }
            "--warmup" => {
                options.warmup = seconds("--warmup", &value("--warmup")?)?;
            }
            "--seconds" => {
                options.duration = seconds("--seconds", &value("--seconds")?)?;
            }
            "--connections" => {
                options.connections = number("--connections", &value("--connections")?)?;
            }
            "--only" => options.only.push(value("--only")?),
            "--workload" => {
                let name = value("--workload")?;
                let workload = Workload::ALL
                    .into_iter()
                    .find(|w| w.label() == name)
                    .ok_or_else(|| {
                        format!("--workload takes untouched, read or write, not {name}")
                    })?;
                if !options.workloads.contains(&workload) {
                    options.workloads.push(workload);
                }
            }
            "--markdown" => options.markdown = Some(value("--markdown")?.into()),
            "--svg" => options.svg = Some(value("--svg")?.into()),
            "--no-pin" => options.pin = false,
            "--stores-apart" => options.stores_apart = true,
            "--spread-requests" => options.spread = Spread::PerRequest,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }
    if options.rounds == 0 || options.connections == 0 || options.duration.is_zero() {
        return Err("--rounds, --seconds and --connections must be above 0".to_owned());
    }
    if options.workloads.is_empty() {
        options.workloads = Workload::ALL.to_vec();
        options.default_workloads = true;
    }
    Ok(options)
}

/// The variants to run: those `--only` names, their bare frameworks and
/// their peers, in table order.
fn selected(only: &[String]) -> Vec<Variant> {
    let chosen: Vec<Variant> = Variant::ALL
        .iter()
        .copied()
        .filter(|v| only.is_empty() || only.iter().any(|text| v.label().contains(text.as_str())))
        .collect();
    Variant::ALL
        .iter()
        .copied()
        .filter(|v| {
            chosen
                .iter()
                .any(|c| c == v || c.bare() == *v || c.peer() == Some(*v))
        })
        .collect()
}

impl Options {
    /// The workloads `variant` runs, in the order given.
    fn workloads_of(&self, variant: Variant) -> impl Iterator<Item = Workload> + '_ {
        self.workloads
            .iter()
            .copied()
            .filter(move |&w| !self.default_workloads || variant.runs_by_default(w))
    }
}

/// The variants' running servers, and the load generator's runtime.
pub(crate) type Servers = (Vec<(Variant, Running)>, tokio::runtime::Runtime);

/// Starts every variant's server (each pins itself to the servers' core),
/// then pins this thread to `generator_core` and builds the load
/// generator's runtime on it.
pub(crate) fn start_servers(
    variants: &[Variant],
    backends: &Backends,
    generator_core: Option<core_affinity::CoreId>,
) -> Result<Servers, Box<dyn std::error::Error + Send + Sync>> {
    let mut servers = Vec::with_capacity(variants.len());
    for &variant in variants {
        eprintln!("starting {}", variant.label());
        servers.push((variant, variants::start(variant, backends)?));
    }
    if let Some(core) = generator_core {
        if !core_affinity::set_for_current(core) {
            return Err("could not pin to core 1 (run with --no-pin)".into());
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((servers, runtime))
}

/// `value` of the command-line option `option` as a number.
pub(crate) fn number<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{option} takes a number"))
}

/// `value` of the command-line option `option` as seconds (fractions
/// allowed); a negative or infinite count is an error, not a panic.
pub(crate) fn seconds(option: &str, value: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(number(option, value)?)
        .map_err(|_| format!("{option} takes a number of seconds"))
}

/// The glibc tunable that gives each thread of this process a malloc arena
/// of its own.
const OWN_ARENAS: &str = "glibc.malloc.arena_max=1024";

/// Runs this binary again with [`OWN_ARENAS`] unless `GLIBC_TUNABLES` is
/// already set, and returns how that run ended.
///
/// glibc's malloc keeps at most 8 arenas per core (16 here), and this
/// process runs every variant's server threads, their runtimes' helper
/// threads and the load generator side by side: past 16 threads, two
/// share an arena, and which two depends on the order they first
/// allocated. When the load generator (on its own core) shares one with an
/// app server, every allocation of both takes a lock the other core holds
/// half the time: in one run `actix + session-kit (memory)` cost 2 to 4 µs
/// more per request than alone, in the next it did not. An app server
/// with its own host has no such neighbour, so each thread gets an arena.
/// The tunable is read when the process starts, hence the second run. The
/// soak and the footprint measure memory with glibc's defaults, as an app
/// runs, so they are left alone.
fn rerun_with_own_arenas() -> Option<std::process::ExitCode> {
    let memory_run = matches!(
        std::env::args().nth(1).as_deref(),
        Some("--soak" | "--footprint")
    );
    if memory_run
        || !cfg!(all(target_os = "linux", target_env = "gnu"))
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return None;
    }
    let status = std::process::Command::new(std::env::current_exe().ok()?)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", OWN_ARENAS)
        .status()
        .ok()?;
    Some(match status.code() {
        Some(0) => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::FAILURE,
    })
}

fn main() -> std::process::ExitCode {
    if let Some(code) = rerun_with_own_arenas() {
        return code;
    }
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--soak") {
        let run = soak::parse(args.skip(1)).and_then(|options| {
            soak::run(&options).map_err(|err| format!("session-bench --soak: {err}"))
        });
        return match run {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.peek().map(String::as_str) == Some("--redis-cost") {
        let run = redis_cost::parse(args.skip(1)).and_then(|options| {
            redis_cost::run(&options).map_err(|err| format!("session-bench --redis-cost: {err}"))
        });
        return match run {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if args.peek().map(String::as_str) == Some("--footprint") {
        let store = args.nth(1).unwrap_or_default();
        return match footprint::fill_and_print(&store) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{err}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let options = match parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("session-bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pinned = options.pin && cores.len() >= 2;
    let machine = machine(cores.len(), pinned, options.stores_apart, options.spread);
    eprintln!("{machine}");

    // The stores and every app server start from this thread and keep the
    // core it is on then (a child process inherits its parent's affinity,
    // a thread its creator's): the stores on core 0 with the apps, or with
    // `--stores-apart` on core 1; then this thread moves to core 1 and
    // becomes the load generator.
    let store_core = usize::from(options.stores_apart);
    if pinned && !core_affinity::set_for_current(cores[store_core]) {
        return Err(format!("could not pin to core {store_core} (run with --no-pin)").into());
    }
    let backends = Backends::start();
    if pinned && !core_affinity::set_for_current(cores[0]) {
        return Err("could not pin to core 0 (run with --no-pin)".into());
    }
    let clock = cpu::CpuClock::new(&backends.ports());
    let variants = selected(&options.only);
    let (servers, runtime) = start_servers(&variants, &backends, pinned.then(|| cores[1]))?;
    let mut results = Results::default();
    let total = options.rounds
        * servers
            .iter()
            .map(|(v, _)| options.workloads_of(*v).count())
            .sum::<usize>();
    let mut done = 0;
    for round in 0..options.rounds {
        // Every other round runs backwards, so no variant always runs
        // right after the same neighbour or at the same point of a round.
        let order: Vec<&(Variant, Running)> = if round % 2 == 0 {
            servers.iter().collect()
        } else {
            servers.iter().rev().collect()
        };
        for (variant, running) in order {
            for workload in options.workloads_of(*variant) {
                let load = Load {
                    addrs: running.addrs.clone(),
                    path: workload.path(),
                    connections: options.connections,
                    warmup: options.warmup,
                    duration: options.duration,
                    spread: options.spread,
                };
                let (outcome, (snapshot, started)) = runtime
                    .block_on(load::run(&load, || {
                        (backends.snapshot(*variant, running), clock.now())
                    }))
                    .map_err(|err| format!("{}: {err}", variant.label()))?;
                let cpu_micros = cpu::micros_per_request(
                    clock.now().saturating_sub(started),
                    outcome.all_requests,
                );
                let traffic = backends.traffic(*variant, running, snapshot, outcome.all_requests);
                done += 1;
                eprintln!(
                    "[{done}/{total}] round {} {} {}: {:.0} req/s, p99 {} µs, CPU {cpu_micros:.1} µs/req{}",
                    round + 1,
                    variant.label(),
                    workload.label(),
                    outcome.requests_per_second(),
                    outcome.p99_micros(),
                    if outcome.errors > 0 {
                        format!(", {} errors", outcome.errors)
                    } else {
                        String::new()
                    }
                );
                results.add(
                    *variant,
                    workload,
                    round,
                    Sample {
                        rps: outcome.requests_per_second(),
                        p50_micros: outcome.p50_micros(),
                        p99_micros: outcome.p99_micros(),
                        errors: outcome.errors,
                        cpu_micros,
                        traffic,
                    },
                );
            }
        }
    }

    // How many commands each Redis variant sends per request, and how many
    // transactions each Postgres variant makes, apart from the timed
    // rounds: the monitor this needs slows Redis down, and PostgreSQL
    // publishes its counters only once they settle. Each Postgres variant
    // has a database of its own, so one settled reading before and one
    // after a workload's passes count them all.
    let counted: Vec<&(Variant, Running)> = servers
        .iter()
        .filter(|(v, _)| v.redis_db().is_some() || v.postgres_db().is_some())
        .collect();
    // The timed rounds' transactions, published late, would count as the
    // first pass's.
    let mut postgres_settled = false;
    for &workload in &options.workloads {
        let passes: Vec<&(Variant, Running)> = counted
            .iter()
            .copied()
            .filter(|(v, _)| options.workloads_of(*v).any(|w| w == workload))
            .collect();
        let on_postgres = passes.iter().any(|(v, _)| v.postgres_db().is_some());
        if on_postgres && !postgres_settled {
            Backends::settle_postgres();
        }
        let before = on_postgres.then(|| backends.postgres_transactions());
        let mut counts = Vec::with_capacity(passes.len());
        for (variant, running) in passes {
            let requests = if variant.postgres_db().is_some() {
                POSTGRES_COUNTED
            } else {
                COUNTED
            };
            let (answered, monitors) = runtime
                .block_on(load::count(
                    running.addrs[0],
                    workload.path(),
                    requests,
                    || backends.monitor(*variant),
                ))
                .map_err(|err| format!("{}: {err}", variant.label()))?;
            counts.push((*variant, answered, monitors));
        }
        let after = before.as_ref().map(|_| {
            Backends::settle_postgres();
            postgres_settled = true;
            backends.postgres_transactions()
        });
        for (variant, answered, monitors) in counts {
            let transactions = variant.postgres_db().and_then(|db| {
                let count = |counts: &std::collections::BTreeMap<String, u64>| {
                    counts.get(db).copied().unwrap_or(0)
                };
                Some(count(after.as_ref()?).saturating_sub(count(before.as_ref()?)))
            });
            results.round_trips.push((
                variant,
                workload,
                backends::round_trips(monitors, transactions, answered),
            ));
        }
    }
    results.footprints = footprints(&backends, &variants);
    let tables = report::markdown(&results, &variants);
    let targets = report::targets(&results, &variants);
    let settings = format!(
        "{} rounds × {} s per variant and workload (after {} ms of warm-up), {} connections",
        options.rounds,
        options.duration.as_secs_f64(),
        options.warmup.as_millis(),
        options.connections
    );
    println!("{machine}\n{settings}\n{tables}\nTargets:\n{targets}");
    if let Some(path) = &options.markdown {
        std::fs::write(
            path,
            format!("{machine}\n\n{settings}\n{tables}\n{targets}"),
        )?;
    }
    if let Some(path) = &options.svg {
        std::fs::write(path, report::svg(&results, &variants))?;
    }
    Ok(())
}

/// Bytes each store keeps for one session of the bench's shape (a user id
/// and a count).
fn footprints(backends: &Backends, variants: &[Variant]) -> Vec<(String, String, Option<u64>)> {
    let mut rows = Vec::new();
    for &variant in variants {
        match variant.store() {
            Store::Redis => rows.push((
                variant.label().to_owned(),
                "Redis, MEMORY USAGE of its key".to_owned(),
                backends.redis_bytes_per_session(variant),
            )),
            Store::Memcached => rows.push((
                variant.label().to_owned(),
                "memcached, stats bytes / curr_items".to_owned(),
                backends.memcached_bytes_per_session(),
            )),
            _ => {}
        }
    }
    for store in footprint::STORES {
        let bytes = footprint::measure(store)
            .map_err(|err| eprintln!("{err}"))
            .ok();
        rows.push((
            format!("{store} in-process store"),
            "heap growth of a fresh process over 50,000 sessions".to_owned(),
            bytes,
        ));
    }
    rows
}

/// The machine, in one line.
fn machine(cores: usize, pinned: bool, stores_apart: bool, spread: Spread) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "Machine: {cpu}, {cores} cores visible; {}; {}",
        if pinned && stores_apart {
            "app servers pinned to core 0; store servers and load generator to core 1"
        } else if pinned {
            "app and store servers pinned to core 0, load generator to core 1"
        } else {
            "nothing pinned"
        },
        match spread {
            Spread::PerConnection => "the cluster's users each stay on the node they logged in on",
            Spread::PerRequest =>
                "each cluster user's requests go round the nodes, one per request",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> impl Iterator<Item = String> + '_ {
        line.split_whitespace().map(str::to_owned)
    }

    #[test]
    fn quick_and_explicit_settings_parse() {
        let options = parse(args("--quick --connections 4 --only cluster")).unwrap();
        assert_eq!(options.rounds, 3);
        assert_eq!(options.duration, Duration::from_secs(1));
        assert_eq!(options.connections, 4);
        assert_eq!(options.only, ["cluster"]);
        assert_eq!(options.workloads, Workload::ALL);
        assert_eq!(options.spread, Spread::PerConnection);
        let options = parse(args("--spread-requests")).unwrap();
        assert_eq!(options.spread, Spread::PerRequest);
        let options = parse(args("--workload write --workload read --workload write")).unwrap();
        assert_eq!(options.workloads, [Workload::Write, Workload::Read]);
        assert!(parse(args("--workload delete"))
            .unwrap_err()
            .contains("--workload takes untouched, read or write"));
        let options = parse(args("--seconds 0.2 --warmup 0.1 --no-pin")).unwrap();
        assert_eq!(options.duration, Duration::from_millis(200));
        assert_eq!(options.warmup, Duration::from_millis(100));
        assert!(!options.pin);
        assert!(parse(args("--rounds 0")).is_err());
        // A negative count of seconds is refused, not a panic in Duration.
        assert!(parse(args("--seconds -1"))
            .unwrap_err()
            .contains("--seconds takes a number of seconds"));
        assert!(parse(args("--warmup inf")).is_err());
        assert!(parse(args("--seconds"))
            .unwrap_err()
            .contains("--seconds needs a value"));
        assert!(parse(args("--bogus"))
            .unwrap_err()
            .contains("unknown argument --bogus"));
    }

    #[test]
    fn a_selection_brings_its_bare_framework_and_its_peer() {
        let variants = selected(&["actix + session-kit (Redis)".to_owned()]);
        assert_eq!(
            variants,
            [
                Variant::ActixBare,
                Variant::ActixKitRedis,
                Variant::ActixActixSessionRedis
            ]
        );
        assert_eq!(selected(&[]).len(), Variant::ALL.len());
    }

    #[test]
    fn postgres_selects_its_three_variants_and_redis_in_parentheses_only_redis_alone() {
        assert_eq!(
            selected(&["Postgres".to_owned()]),
            [
                Variant::AxumBare,
                Variant::AxumKitPostgres,
                Variant::AxumKitPostgresStandby,
                Variant::AxumKitPostgresMirror,
            ]
        );
        assert_eq!(
            selected(&["axum + session-kit (Redis)".to_owned()]),
            [
                Variant::AxumBare,
                Variant::AxumKitRedis,
                Variant::AxumTowerSessionsRedis
            ]
        );
    }

    #[test]
    fn postgres_variants_leave_out_untouched_unless_it_is_asked_for() {
        let by_default = parse(args("")).unwrap();
        let untouched = parse(args("--workload untouched --workload read")).unwrap();
        let of = |options: &Options, variant| options.workloads_of(variant).collect::<Vec<_>>();
        assert_eq!(
            of(&by_default, Variant::AxumKitPostgresMirror),
            [Workload::Read, Workload::Write]
        );
        assert_eq!(of(&by_default, Variant::AxumKitRedis), Workload::ALL);
        assert_eq!(
            of(&untouched, Variant::AxumKitPostgres),
            [Workload::Untouched, Workload::Read]
        );
    }
}
