//! `session-bench --redis-cost`: what a request costs Redis itself, for
//! session-kit and for the peers on the same server, read and write.
//!
//! ```text
//! cargo run --release -p session-bench -- --redis-cost [--rounds N] [--seconds S] [--only TEXT]...
//! ```
//!
//! Each variant answers the bench's `/read` and `/incr` under the bench's
//! load (keep-alive connections, one session each) for the given seconds,
//! after `CONFIG RESETSTAT`. Per request answered, it reports:
//! - the commands clients sent (a separate pass under `MONITOR`, which
//!   slows Redis down and so stays out of the timed one);
//! - the commands Redis ran (`INFO commandstats`, those a script runs
//!   included);
//! - **command µs**: the `usec` of `INFO commandstats` summed over the
//!   commands clients sent. A script's own figure (`EVALSHA`) already holds
//!   the commands it runs, so they are not added again; this is Redis's
//!   time executing commands, without reading requests or writing replies;
//! - **CPU µs**: the `redis-server` process's user and system time (from
//!   `/proc`, 10 ms ticks), which adds the network side: reading,
//!   parsing, replying, waiting in `epoll`.
//!
//! Each figure is the median over the rounds. The app servers and Redis
//! share core 0 and the load generator has core 1, as in the main run.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use crate::{
    backends::{self, Backends, CommandStat},
    cpu::{self, StoreClock},
    load::{self, Load, Spread},
    number,
    report::Workload,
    seconds, start_servers,
    variants::Variant,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Session-kit on Redis and the peer each is compared with.
const DEFAULT_VARIANTS: [Variant; 4] = [
    Variant::AxumKitRedis,
    Variant::AxumTowerSessionsRedis,
    Variant::ActixKitRedis,
    Variant::ActixActixSessionRedis,
];

/// Requests in the pass that counts the commands clients send.
const COUNTED: u64 = 200;

const USAGE: &str = "\
usage: session-bench --redis-cost [--rounds N] [--seconds S] [--connections C]
                                  [--only TEXT]... [--no-pin]

  --rounds N       rounds per variant and workload (default 3); medians are shown
  --seconds S      measured seconds per round (default 2)
  --connections C  keep-alive connections, one session each (default 16)
  --only TEXT      only the Redis variants whose name contains TEXT (repeatable;
                   default: session-kit on Redis and the two peers)
  --no-pin         do not pin the servers and the load generator to cores";

/// The settings of a `--redis-cost` run.
#[derive(Debug)]
pub(crate) struct Options {
    rounds: usize,
    seconds: Duration,
    connections: usize,
    only: Vec<String>,
    pin: bool,
}

/// Reads the arguments after `--redis-cost`.
pub(crate) fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        rounds: 3,
        seconds: Duration::from_secs(2),
        connections: 16,
        only: Vec::new(),
        pin: true,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--rounds" => {
                options.rounds = number("--rounds", &value("--rounds")?)?;
            }
            "--seconds" => {
                options.seconds = seconds("--seconds", &value("--seconds")?)?;
            }
            "--connections" => {
                options.connections = number("--connections", &value("--connections")?)?;
            }
            "--only" => options.only.push(value("--only")?),
            "--no-pin" => options.pin = false,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if options.rounds == 0 || options.seconds.is_zero() || options.connections == 0 {
        return Err("--rounds, --seconds and --connections must be above 0".to_owned());
    }
    Ok(options)
}

/// The variants `only` names among those on the shared Redis server, or
/// the default four.
fn selected(only: &[String]) -> Vec<Variant> {
    if only.is_empty() {
        return DEFAULT_VARIANTS.to_vec();
    }
    Variant::ALL
        .iter()
        .copied()
        .filter(|v| v.redis_db().is_some())
        .filter(|v| only.iter().any(|text| v.label().contains(text.as_str())))
        .collect()
}

/// What one round of one variant and workload read off Redis.
struct Round {
    stats: BTreeMap<String, CommandStat>,
    ticks: u64,
    requests: u64,
}

/// What one round measured of one variant and workload, per request.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    run: f64,
    command_micros: f64,
    cpu_micros: f64,
}

/// What Redis did over `requests`, given the commands clients sent.
fn cost(
    stats: &BTreeMap<String, CommandStat>,
    sent: &BTreeMap<String, u64>,
    ticks: u64,
    requests: u64,
) -> Cost {
    let per = |count: u64| count as f64 / requests.max(1) as f64;
    let run = stats.values().map(|stat| stat.calls).sum();
    let command_usec = stats
        .iter()
        .filter(|(name, _)| sent.contains_key(name.as_str()))
        .map(|(_, stat)| stat.usec)
        .sum();
    Cost {
        run: per(run),
        command_micros: per(command_usec),
        cpu_micros: cpu::micros_per_request(ticks, requests),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the measurement and prints its table.
pub(crate) fn run(options: &Options) -> Result<(), BoxError> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let pinned = options.pin && cores.len() >= 2;
    // As in the main run: stores and app servers on core 0, then this
    // thread on core 1 as the load generator.
    if pinned && !core_affinity::set_for_current(cores[0]) {
        return Err("could not pin to core 0 (run with --no-pin)".into());
    }
    let backends = Backends::start();
    let clock = StoreClock::new(backends.redis_port()).ok_or("no redis-server process found")?;
    let variants = selected(&options.only);
    if variants.is_empty() {
        return Err("--only names no Redis variant".into());
    }
    let (servers, runtime) = start_servers(&variants, &backends, pinned.then(|| cores[1]))?;

    let workloads = [Workload::Read, Workload::Write];
    let mut rounds: BTreeMap<(usize, usize), Vec<Round>> = BTreeMap::new();
    for round in 0..options.rounds {
        for (i, (variant, running)) in servers.iter().enumerate() {
            for (w, &workload) in workloads.iter().enumerate() {
                let load = Load {
                    addrs: running.addrs.clone(),
                    path: workload.path(),
                    connections: options.connections,
                    warmup: Duration::ZERO,
                    duration: options.seconds,
                    spread: Spread::PerConnection,
                };
                let (outcome, started) = runtime
                    .block_on(load::run(&load, || {
                        backends.reset_redis_stats();
                        clock.now()
                    }))
                    .map_err(|err| format!("{}: {err}", variant.label()))?;
                let ticks = clock.now().saturating_sub(started);
                eprintln!(
                    "round {} {} {}: {:.0} req/s",
                    round + 1,
                    variant.label(),
                    workload.label(),
                    outcome.requests_per_second(),
                );
                rounds.entry((i, w)).or_default().push(Round {
                    stats: backends.redis_command_stats(),
                    ticks,
                    requests: outcome.all_requests,
                });
            }
        }
    }
    // After the timed rounds, so that the script loads (one `EVAL` on a
    // server that has not seen it) fall in neither.
    let mut sent: BTreeMap<(usize, usize), (BTreeMap<String, u64>, u64)> = BTreeMap::new();
    for (i, (variant, running)) in servers.iter().enumerate() {
        for (w, &workload) in workloads.iter().enumerate() {
            let (answered, monitors) = runtime
                .block_on(load::count(
                    running.addrs[0],
                    workload.path(),
                    COUNTED,
                    || backends.monitor(*variant),
                ))
                .map_err(|err| format!("{}: {err}", variant.label()))?;
            sent.insert((i, w), (backends::sent_commands(monitors), answered));
        }
    }
    let costs: BTreeMap<(usize, usize), Vec<Cost>> = rounds
        .iter()
        .map(|(key, rounds)| {
            let sent = &sent[key].0;
            let costs = rounds
                .iter()
                .map(|round| cost(&round.stats, sent, round.ticks, round.requests))
                .collect();
            (*key, costs)
        })
        .collect();

    let mut table = String::from(
        "| variant | workload | commands sent/req | commands run/req | Redis command µs/req | redis-server CPU µs/req |\n|---|---|---|---:|---:|---:|\n",
    );
    let median_of = |key: &(usize, usize), field: fn(&Cost) -> f64| {
        median(costs[key].iter().map(field).collect())
    };
    for (i, (variant, _)) in servers.iter().enumerate() {
        for (w, &workload) in workloads.iter().enumerate() {
            let key = (i, w);
            let (commands, answered) = &sent[&key];
            let per = |count: u64| count as f64 / (*answered).max(1) as f64;
            let total: u64 = commands.values().sum();
            let detail = commands
                .iter()
                .map(|(name, &calls)| format!("{name} {:.2}", per(calls)))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                table,
                "| {} | {} | {:.2} ({detail}) | {:.2} | {:.2} | {:.1} |",
                variant.label(),
                workload.label(),
                per(total),
                median_of(&key, |c| c.run),
                median_of(&key, |c| c.command_micros),
                median_of(&key, |c| c.cpu_micros),
            );
        }
    }
    let mut ratios = String::new();
    for (i, (variant, _)) in servers.iter().enumerate() {
        let Some(j) = variant
            .peer()
            .and_then(|peer| servers.iter().position(|(v, _)| *v == peer))
        else {
            continue;
        };
        for (w, &workload) in workloads.iter().enumerate() {
            let ratio =
                |field: fn(&Cost) -> f64| median_of(&(i, w), field) / median_of(&(j, w), field);
            let _ = writeln!(
                ratios,
                "{} / {}, {}: Redis command µs × {:.2}, redis-server CPU × {:.2}",
                variant.label(),
                servers[j].0.label(),
                workload.label(),
                ratio(|c| c.command_micros),
                ratio(|c| c.cpu_micros),
            );
        }
    }
    println!(
        "{} rounds × {} s per variant and workload, {} connections{}\n\n{table}\n{ratios}",
        options.rounds,
        options.seconds.as_secs_f64(),
        options.connections,
        if pinned {
            ", servers on core 0, load generator on core 1"
        } else {
            ", unpinned"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_time_counts_what_clients_sent_and_not_what_their_scripts_ran_again() {
        let stat = |calls, usec| CommandStat { calls, usec };
        let stats = BTreeMap::from([
            ("hgetall".to_owned(), stat(100, 70)),
            ("evalsha".to_owned(), stat(100, 400)),
            ("hget".to_owned(), stat(100, 20)),
            ("hset".to_owned(), stat(100, 35)),
        ]);
        let sent = BTreeMap::from([("hgetall".to_owned(), 200), ("evalsha".to_owned(), 200)]);
        let cost = cost(&stats, &sent, 3, 100);
        assert!((cost.run - 4.0).abs() < 1e-9);
        assert!((cost.command_micros - 4.7).abs() < 1e-9);
        assert!((cost.cpu_micros - 300.0).abs() < 1e-9);
    }

    #[test]
    fn options_parse_and_select_redis_variants_only() {
        let args = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
                .into_iter()
        };
        let options = parse(args(
            "--rounds 5 --seconds 0.5 --only Memcached --only actix",
        ))
        .unwrap();
        assert_eq!(options.rounds, 5);
        assert_eq!(options.seconds, Duration::from_millis(500));
        let chosen = selected(&options.only);
        assert!(chosen.contains(&Variant::ActixActixSessionRedis));
        assert!(chosen.iter().all(|v| v.redis_db().is_some()), "{chosen:?}");
        assert_eq!(selected(&[]), DEFAULT_VARIANTS.to_vec());
        assert!(parse(args("--rounds 0")).is_err());
        assert!(parse(args("--bogus")).is_err());
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
    }
}
