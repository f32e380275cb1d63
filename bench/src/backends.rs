//! The store servers the variants share, started by the test kit, and what
//! each measurement costs them: Redis commands from `INFO commandstats`,
//! Memcached commands from `stats`, PostgreSQL transactions from
//! `pg_stat_database`, and the cluster's peer-link bytes.

use std::{collections::BTreeMap, time::Duration};

use session_conformance::testkit::{MemcachedServer, PostgresServer, RedisServer};

use crate::variants::{Running, Store, Variant};

/// How long PostgreSQL may take to publish a backend's counters.
///
/// Since PostgreSQL 15 a backend keeps its statistics to itself and flushes
/// them into `pg_stat_database` at most once a second while busy, and at
/// the latest 10 s after it last went idle (`PGSTAT_IDLE_INTERVAL`); before
/// 15 the statistics collector lagged by half a second. A reading taken this
/// long after the last request counts every transaction up to it.
const POSTGRES_STATS_SETTLE: Duration = Duration::from_millis(10_500);

/// One `redis-server` for every Redis variant (each in its own logical
/// database), a second one as the failover secondary, one `memcached` (one
/// worker thread), and one PostgreSQL server (a database per variant).
pub(crate) struct Backends {
    redis: RedisServer,
    secondary: RedisServer,
    memcached: MemcachedServer,
    postgres: PostgresServer,
}

impl Backends {
    /// Starts the servers and creates each Postgres variant's database;
    /// panics with the install command when a binary is missing, as the
    /// test kit does.
    pub(crate) fn start() -> Self {
        let postgres = PostgresServer::start();
        for db in Variant::ALL.iter().filter_map(|v| v.postgres_db()) {
            let _ = postgres.psql(&format!("CREATE DATABASE {db}"));
        }
        Self {
            redis: RedisServer::start(),
            secondary: RedisServer::start(),
            // One worker thread, as a memcached given one core runs (the
            // default 4 suits a host of 4 cores): here the store servers
            // share one core, with the app or with the load generator, and
            // Redis serves commands on one thread too. With 4 threads on the
            // load generator's core (`--stores-apart`) the raw `mg` ceiling
            // read ran at 20k req/s, with 1 at 48k (one run each, shared
            // machine).
            memcached: MemcachedServer::start_with(&["-t", "1"]),
            postgres,
        }
    }

    /// The ports of the store servers, whose CPU counts as the servers'.
    pub(crate) fn ports(&self) -> [u16; 4] {
        [
            self.redis.port(),
            self.secondary.port(),
            self.memcached.port(),
            self.postgres.port(),
        ]
    }

    /// The URL of `variant`'s own database (the server's default one for
    /// a variant that keeps nothing in PostgreSQL).
    pub(crate) fn postgres_url(&self, variant: Variant) -> String {
        let url = self.postgres.url();
        match (variant.postgres_db(), url.rsplit_once('/')) {
            (Some(db), Some((server, _))) => format!("{server}/{db}"),
            _ => url,
        }
    }

    /// Transactions each database has committed or rolled back, by name,
    /// as PostgreSQL has published them (see [`POSTGRES_STATS_SETTLE`]).
    pub(crate) fn postgres_transactions(&self) -> BTreeMap<String, u64> {
        self.postgres
            .psql("SELECT datname, xact_commit + xact_rollback FROM pg_stat_database WHERE datname IS NOT NULL")
            .lines()
            .filter_map(|line| {
                let (db, count) = line.split_once('|')?;
                Some((db.to_owned(), count.parse().ok()?))
            })
            .collect()
    }

    /// Waits until PostgreSQL has published every transaction so far.
    pub(crate) fn settle_postgres() {
        std::thread::sleep(POSTGRES_STATS_SETTLE);
    }

    pub(crate) fn redis_url(&self, variant: Variant) -> String {
        format!("{}/{}", self.redis.url(), variant.redis_db().unwrap_or(0))
    }

    pub(crate) fn secondary_url(&self, variant: Variant) -> String {
        format!(
            "{}/{}",
            self.secondary.url(),
            variant.redis_db().unwrap_or(0)
        )
    }

    pub(crate) fn memcached_url(&self) -> String {
        format!("memcache://{}", self.memcached.addr())
    }

    /// Zeroes or reads the counters `variant` is judged by, just before its
    /// measurement starts.
    pub(crate) fn snapshot(&self, variant: Variant, running: &Running) -> Snapshot {
        match variant.store() {
            Store::Redis | Store::Tiered => {
                self.redis.cli(&["config", "resetstat"]);
                Snapshot::Redis
            }
            Store::Failover => {
                self.redis.cli(&["config", "resetstat"]);
                self.secondary.cli(&["config", "resetstat"]);
                Snapshot::Redis
            }
            // Redis's side only: PostgreSQL publishes its counters too late
            // for a round of seconds, so its side is counted apart (see
            // `round_trips`).
            Store::RedisPostgres => {
                self.redis.cli(&["config", "resetstat"]);
                Snapshot::Redis
            }
            Store::Memcached => Snapshot::Memcached(memcached_commands(&self.memcached)),
            Store::Cluster => {
                let (bytes, requests) = cluster_sent(running);
                Snapshot::Cluster { bytes, requests }
            }
            Store::None | Store::Memory | Store::Cookie | Store::Postgres => Snapshot::Nothing,
        }
    }

    /// What the store did since `snapshot`, per request answered.
    pub(crate) fn traffic(
        &self,
        variant: Variant,
        running: &Running,
        snapshot: Snapshot,
        requests: u64,
    ) -> Option<Traffic> {
        let per = |count: u64| count as f64 / requests.max(1) as f64;
        match snapshot {
            Snapshot::Nothing => None,
            Snapshot::Redis => {
                let mut commands = redis_commands(&self.redis);
                if variant.store() == Store::Failover {
                    for (name, calls) in redis_commands(&self.secondary) {
                        *commands.entry(format!("{name} (secondary)")).or_default() += calls;
                    }
                }
                Some(Traffic::commands(&commands, per))
            }
            Snapshot::Memcached(before) => {
                let after = memcached_commands(&self.memcached);
                let commands = after
                    .into_iter()
                    .map(|(name, calls)| {
                        let delta = calls - before.get(&name).copied().unwrap_or(0);
                        (name, delta)
                    })
                    .collect();
                Some(Traffic::commands(&commands, per))
            }
            Snapshot::Cluster {
                bytes,
                requests: sent,
            } => {
                let (bytes_now, sent_now) = cluster_sent(running);
                Some(Traffic {
                    per_request: per(sent_now - sent),
                    detail: format!("peer link {:.0} B", per(bytes_now - bytes)),
                })
            }
        }
    }

    /// Bytes Redis holds for one of `variant`'s sessions (`MEMORY USAGE`
    /// of one of its keys, exact), or `None` when it keeps none in Redis.
    pub(crate) fn redis_bytes_per_session(&self, variant: Variant) -> Option<u64> {
        let db = variant.redis_db()?.to_string();
        let key = self.redis.cli(&["-n", &db, "randomkey"]);
        let key = key.trim();
        if key.is_empty() {
            return None;
        }
        self.redis
            .cli(&["-n", &db, "memory", "usage", key, "samples", "0"])
            .trim()
            .parse()
            .ok()
    }

    /// Bytes memcached holds per item (its `bytes` over `curr_items`).
    pub(crate) fn memcached_bytes_per_session(&self) -> Option<u64> {
        let stats = self.memcached.stats();
        let number = |name: &str| stats.get(name)?.parse::<u64>().ok();
        Some(number("bytes")? / number("curr_items")?.max(1))
    }
}

/// Peer-link bytes and requests the cluster's nodes have sent, summed.
fn cluster_sent(running: &Running) -> (u64, u64) {
    running
        .cluster
        .iter()
        .fold((0, 0), |(bytes, requests), node| {
            let stats = node.stats();
            (bytes + stats.bytes_sent, requests + stats.requests_sent)
        })
}

/// Counters read before a measurement.
pub(crate) enum Snapshot {
    Nothing,
    /// `CONFIG RESETSTAT` zeroed the counters.
    Redis,
    Memcached(BTreeMap<String, u64>),
    Cluster {
        bytes: u64,
        requests: u64,
    },
}

/// Store commands (or peer-link requests) per request, and which.
#[derive(Debug, Clone)]
pub(crate) struct Traffic {
    pub(crate) per_request: f64,
    pub(crate) detail: String,
}

impl Traffic {
    fn commands(commands: &BTreeMap<String, u64>, per: impl Fn(u64) -> f64) -> Self {
        let total = commands.values().sum();
        let detail = commands
            .iter()
            .filter(|(_, &calls)| per(calls) >= 0.005)
            .map(|(name, &calls)| format!("{name} {:.2}", per(calls)))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            per_request: per(total),
            detail,
        }
    }
}

/// Calls per command from `INFO commandstats`, leaving out the bench's own
/// `INFO` and `CONFIG` (and anything a client sends to keep a connection
/// alive, which no request causes).
fn redis_commands(server: &RedisServer) -> BTreeMap<String, u64> {
    command_stats(server)
        .into_iter()
        .map(|(name, stat)| (name, stat.calls))
        .collect()
}

/// One command's line of `INFO commandstats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CommandStat {
    pub(crate) calls: u64,
    /// Microseconds Redis spent running the command. A script's command
    /// (`EVALSHA`) counts the commands the script runs too, which also
    /// count under their own names.
    pub(crate) usec: u64,
}

/// `INFO commandstats` of `server` by command, without the commands no
/// request causes (see [`redis_commands`]).
fn command_stats(server: &RedisServer) -> BTreeMap<String, CommandStat> {
    parse_command_stats(&server.cli(&["info", "commandstats"]))
}

fn parse_command_stats(info: &str) -> BTreeMap<String, CommandStat> {
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                rest.split(',')
                    .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))?
                    .parse()
                    .ok()
            };
            let stat = CommandStat {
                calls: field("calls")?,
                usec: field("usec")?,
            };
            Some((name.to_owned(), stat))
        })
        // Redis 7 names subcommands `config|resetstat`, `client|setname`.
        .filter(|(name, _)| {
            let command = name.split('|').next().unwrap_or(name);
            !matches!(command, "info" | "config" | "ping" | "client")
        })
        .collect()
}

/// The command counters of memcached's `stats` (meta commands count as
/// the classic ones: `mg` as a get, `ms` as a set, `md` as a delete).
fn memcached_commands(server: &MemcachedServer) -> BTreeMap<String, u64> {
    const COUNTERS: [&str; 5] = [
        "cmd_get",
        "cmd_set",
        "cmd_touch",
        "delete_hits",
        "delete_misses",
    ];
    let stats = server.stats();
    COUNTERS
        .iter()
        .map(|&name| {
            let value = stats.get(name).and_then(|v| v.parse().ok()).unwrap_or(0);
            (name.to_owned(), value)
        })
        .collect()
}

/// Counts the commands clients send to one Redis server, through
/// `redis-cli monitor`, which marks the commands a script runs (`[0 lua]`)
/// apart from those a client sent: `INFO commandstats` counts both, so it
/// says how much work Redis did, and this says how many round trips.
pub(crate) struct Monitor {
    child: std::process::Child,
    counts: std::sync::mpsc::Receiver<BTreeMap<String, u64>>,
    port: u16,
}

/// Marks the start and the end of what a [`Monitor`] counts.
const MARK: &str = "session-bench-monitor-mark";

impl Monitor {
    /// Starts monitoring and returns once the monitor sees its first mark.
    fn start(server: &RedisServer) -> Self {
        use std::io::BufRead;

        let mut child = std::process::Command::new("redis-cli")
            .args(["-p", &server.port().to_string(), "monitor"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-cli starts (the test kit found it)");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (counts_tx, counts) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut started = false;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(MARK) {
                    if started {
                        let _ = counts_tx.send(counts);
                        return;
                    }
                    started = true;
                    let _ = ready_tx.send(());
                    continue;
                }
                if let Some(name) = started.then(|| client_command(&line)).flatten() {
                    *counts.entry(name).or_default() += 1;
                }
            }
        });
        let monitor = Self {
            child,
            counts,
            port: server.port(),
        };
        // The monitor may attach after the first mark is sent; send it
        // until it is seen (bounded).
        for _ in 0..100 {
            monitor.mark();
            if ready_rx
                .recv_timeout(std::time::Duration::from_millis(50))
                .is_ok()
            {
                break;
            }
        }
        monitor
    }

    fn mark(&self) {
        let _ = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "echo", MARK])
            .output();
    }

    /// Stops monitoring; the commands clients sent since the start, by name.
    fn finish(mut self) -> BTreeMap<String, u64> {
        self.mark();
        let counts = self
            .counts
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_default();
        let _ = self.child.kill();
        let _ = self.child.wait();
        counts
    }
}

/// The command of one `MONITOR` line, lower-cased, if a client sent it:
/// `None` for a command a script ran and for anything else.
///
/// Lines read `<time> [<db> <client>] "<command>" <args>…`, where the client
/// is `lua` for a command a script ran.
fn client_command(line: &str) -> Option<String> {
    let (client, command) = line.split_once(" [")?.1.split_once("] \"")?;
    if client.ends_with(" lua") {
        return None;
    }
    Some(command.split('"').next()?.to_lowercase())
}

impl Backends {
    /// The port of the Redis server every Redis variant uses.
    pub(crate) fn redis_port(&self) -> u16 {
        self.redis.port()
    }

    /// Zeroes the counters of `INFO commandstats` on that server.
    pub(crate) fn reset_redis_stats(&self) {
        self.redis.cli(&["config", "resetstat"]);
    }

    /// `INFO commandstats` of that server, by command.
    pub(crate) fn redis_command_stats(&self) -> BTreeMap<String, CommandStat> {
        command_stats(&self.redis)
    }

    /// Starts monitoring the Redis servers `variant` uses, if any.
    pub(crate) fn monitor(&self, variant: Variant) -> Vec<Monitor> {
        match variant.store() {
            Store::Redis | Store::Tiered | Store::RedisPostgres => {
                vec![Monitor::start(&self.redis)]
            }
            Store::Failover => vec![Monitor::start(&self.redis), Monitor::start(&self.secondary)],
            _ => Vec::new(),
        }
    }
}

/// The commands clients sent while `monitors` ran, by name, all servers
/// together.
pub(crate) fn sent_commands(monitors: Vec<Monitor>) -> BTreeMap<String, u64> {
    let mut commands = BTreeMap::new();
    for monitor in monitors {
        for (name, calls) in monitor.finish() {
            *commands.entry(name).or_default() += calls;
        }
    }
    commands
}

/// Round trips to the stores per request, from one counting pass: the
/// Redis commands its monitors saw, and the PostgreSQL transactions it
/// made, if it counted them (each statement the store sends is a
/// transaction of its own, in one round trip).
pub(crate) fn round_trips(
    monitors: Vec<Monitor>,
    postgres_transactions: Option<u64>,
    requests: u64,
) -> Traffic {
    let mut commands = BTreeMap::new();
    if let Some(transactions) = postgres_transactions {
        commands.insert("Postgres transactions".to_owned(), transactions);
    }
    for (i, monitor) in monitors.into_iter().enumerate() {
        for (name, calls) in monitor.finish() {
            let name = if i == 0 {
                name
            } else {
                format!("{name} (secondary)")
            };
            *commands.entry(name).or_default() += calls;
        }
    }
    let per = |count: u64| count as f64 / requests.max(1) as f64;
    let mut traffic = Traffic::commands(&commands, per);
    // A standby that sends PostgreSQL nothing is what it promises: show the
    // zero rather than leave it out as a count that rounds to nothing.
    if postgres_transactions.is_some_and(|count| per(count) < 0.005) {
        traffic.detail = if traffic.detail.is_empty() {
            "Postgres transactions 0.00".to_owned()
        } else {
            format!("Postgres transactions 0.00, {}", traffic.detail)
        };
    }
    traffic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_count_what_clients_send_not_what_scripts_run() {
        let client = r#"1764000000.123456 [1 127.0.0.1:50412] "EVALSHA" "ab12" "1" "session:x""#;
        let script = r#"1764000000.123470 [1 lua] "HINCRBY" "session:x" "version" "1""#;
        assert_eq!(client_command(client).as_deref(), Some("evalsha"));
        assert_eq!(client_command(script), None);
        assert_eq!(client_command("OK"), None);
    }

    #[test]
    fn commandstats_lines_give_calls_and_microseconds_and_skip_the_bench_own() {
        let info = "# Commandstats\r\n\
            cmdstat_evalsha:calls=100,usec=480,usec_per_call=4.80,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_hset:calls=100,usec=35,usec_per_call=0.35,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_config|resetstat:calls=1,usec=94,usec_per_call=94.00\r\n\
            cmdstat_info:calls=3,usec=9,usec_per_call=3.00\r\n";
        let stats = parse_command_stats(info);
        assert_eq!(stats.len(), 2, "{stats:?}");
        assert_eq!(
            stats["evalsha"],
            CommandStat {
                calls: 100,
                usec: 480
            }
        );
        assert_eq!(
            stats["hset"],
            CommandStat {
                calls: 100,
                usec: 35
            }
        );
    }

    #[test]
    fn postgres_transactions_count_as_round_trips_and_show_even_when_none() {
        let mirror = round_trips(Vec::new(), Some(2_000), 1_000);
        assert!((mirror.per_request - 2.0).abs() < 1e-9);
        assert_eq!(mirror.detail, "Postgres transactions 2.00");
        let standby = round_trips(Vec::new(), Some(1), 1_000);
        assert_eq!(standby.detail, "Postgres transactions 0.00");
        assert_eq!(round_trips(Vec::new(), None, 1_000).detail, "");
    }

    #[test]
    fn traffic_is_per_request_and_leaves_out_what_rounds_to_nothing() {
        let commands = BTreeMap::from([
            ("hgetall".to_owned(), 200),
            ("evalsha".to_owned(), 100),
            ("ping".to_owned(), 0),
        ]);
        let traffic = Traffic::commands(&commands, |count| count as f64 / 100.0);
        assert!((traffic.per_request - 3.0).abs() < 1e-9);
        assert_eq!(traffic.detail, "evalsha 1.00, hgetall 2.00");
    }
}
