//! What one run measured, per strategy: the table, and the JSON a test
//! reads.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use serde::Serialize;

use crate::{
    schedule::{Action, Fault},
    strategy::{Footprint, Kind},
    workload::{EventKind, Tally},
};

/// How late a fault may take effect and still be shown at its planned
/// time: a restart's own work (starting a process, binding a port) takes a
/// few hundred milliseconds, which is not news; a cluster node waiting
/// seconds for its peers is.
pub(crate) const LATE_SECONDS: f64 = 0.5;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub(crate) struct LabFigures {
    pub(crate) nodes: usize,
    pub(crate) users: usize,
    pub(crate) load_seconds: f64,
    pub(crate) pause_ms: u64,
    /// The planned faults; when each took effect is per strategy
    /// ([`Measured::faults_applied`]).
    pub(crate) schedule: Vec<FaultFigure>,
    pub(crate) strategies: Vec<StrategyFigures>,
    /// The bytes of one session copy in an app server's memory, measured
    /// on the clustering baseline's copies (id, keys and values,
    /// timestamps): the app servers all run in this one process, so their
    /// resident memory cannot be told apart per strategy.
    pub(crate) copy_bytes: f64,
    /// Wall time of the whole run, set-up and read-out included.
    pub(crate) elapsed_seconds: f64,
}

/// One planned fault, as the report shows it.
#[derive(Debug, Serialize)]
pub(crate) struct FaultFigure {
    /// When it is planned, from the start of the load.
    pub(crate) at_seconds: f64,
    pub(crate) action: crate::schedule::Action,
    pub(crate) label: &'static str,
    pub(crate) description: &'static str,
    pub(crate) applies_to: &'static str,
}

impl From<&Fault> for FaultFigure {
    fn from(fault: &Fault) -> Self {
        Self {
            at_seconds: fault.at.as_secs_f64(),
            action: fault.action,
            label: fault.action.label(),
            description: fault.action.describe(),
            applies_to: fault.action.applies_to(),
        }
    }
}

/// One fault as a strategy's own timeline applied it.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct AppliedFault {
    pub(crate) action: Action,
    /// When it was planned, from the start of the load.
    pub(crate) planned_seconds: f64,
    /// When it took effect: the kill done, or the restarted server serving
    /// again. Later than planned when the strategy's previous fault, or
    /// this one's own work, took long (a cluster node waits for its peers
    /// before it serves).
    pub(crate) applied_seconds: f64,
}

impl AppliedFault {
    /// Whether it took effect more than [`LATE_SECONDS`] after its plan.
    pub(crate) fn is_late(&self) -> bool {
        self.applied_seconds - self.planned_seconds > LATE_SECONDS
    }
}

/// One strategy's figures; `measured` is absent for a skipped strategy.
#[derive(Debug, Serialize)]
pub(crate) struct StrategyFigures {
    pub(crate) letter: &'static str,
    pub(crate) key: &'static str,
    pub(crate) name: &'static str,
    /// The name on the timeline's strips.
    pub(crate) short_name: &'static str,
    pub(crate) setup: &'static str,
    pub(crate) expectation: &'static str,
    pub(crate) ran: bool,
    /// Whether it runs on Redis (so the Redis faults touch it).
    pub(crate) needs_redis: bool,
    /// Whether it promises to lose nothing through the faults (the
    /// session-kit cluster, the failover mirror).
    pub(crate) loses_nothing: bool,
    pub(crate) skipped_because: Option<String>,
    #[serde(flatten)]
    pub(crate) measured: Option<Measured>,
}

/// The figures of a strategy that ran.
#[derive(Debug, Serialize)]
pub(crate) struct Measured {
    pub(crate) requests: u64,
    pub(crate) logins: u64,
    pub(crate) acknowledged_increments: u64,
    pub(crate) lost_sessions: u64,
    pub(crate) stale_reads: u64,
    pub(crate) lost_increments: u64,
    pub(crate) failed_requests: u64,
    /// Failed requests by cause: a status code, `timeout` or `connection`.
    pub(crate) failures: BTreeMap<String, u64>,
    pub(crate) phantom_counts: u64,
    pub(crate) short_final_reads: u64,
    pub(crate) unread_counters: u64,
    /// Requests each node answered over the whole run, from the balancer.
    pub(crate) requests_per_node: Vec<u64>,
    /// Busiest node's requests over the mean per node (1.0 is even),
    /// counted only while every node was up: before the kill and from the
    /// return on. The whole run's counts would charge the dead node's
    /// missing share to every balancer, even a perfectly even one.
    pub(crate) load_skew_all_up: f64,
    /// The same, over the requests from when the killed node came back:
    /// whether the balancer gives it its share again.
    pub(crate) load_skew_after_return: Option<f64>,
    pub(crate) sessions_per_node: Vec<u64>,
    /// Keys in the shared Redis (d), or in the primary and the secondary
    /// (e): `DBSIZE`, so the failover's ahead marks and tombstones count.
    pub(crate) shared_store_keys: Option<Vec<u64>>,
    /// Bytes the cluster nodes wrote to their peer links (replication and
    /// forwarding; SWIM's membership datagrams are not counted), or bytes
    /// in and out of the Redis servers; since the load started.
    pub(crate) store_bytes: u64,
    /// [`store_bytes`](Self::store_bytes) over the requests the nodes
    /// answered.
    pub(crate) store_bytes_per_request: f64,
    /// [`store_bytes`](Self::store_bytes) over the writes the users had
    /// acknowledged (logins and increments): what one write costs in
    /// copies, forwarding or store traffic.
    pub(crate) store_bytes_per_write: f64,
    /// App servers the strategy ran.
    pub(crate) nodes: usize,
    /// Copies the clustering baseline never sent (a peer down or cut off).
    pub(crate) copies_dropped: u64,
    /// Rows of PostgreSQL's sessions table at the end (h).
    pub(crate) postgres_rows: Option<u64>,
    /// Processes it needs: its app servers and its store servers.
    pub(crate) processes: usize,
    /// Session copies in the app servers' memory at the end, summed.
    pub(crate) app_copies: u64,
    /// Keys (Redis) and rows (PostgreSQL) in the store servers at the end.
    pub(crate) store_copies: u64,
    /// The memory every copy takes, in bytes: the app servers' copies
    /// (their bytes where the store counts them, else copies times
    /// [`LabFigures::copy_bytes`]) plus the stores' own figure (Redis's
    /// `MEMORY USAGE` per key, PostgreSQL's table size).
    pub(crate) memory_bytes: u64,
    /// Median latency of the answers that succeeded (2xx) only, through
    /// the balancer. The requests that failed (a store down, a timeout)
    /// are in `failed_requests`, not here, so an outage does not show in
    /// the latency.
    pub(crate) p50_ok_ms: f64,
    /// The 99th percentile of the same successful answers.
    pub(crate) p99_ok_ms: f64,
    /// The faults as this strategy applied them, in order.
    pub(crate) faults_applied: Vec<AppliedFault>,
    pub(crate) timeline: Vec<Bucket>,
}

/// The trouble events of one slice of the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bucket {
    pub(crate) start_seconds: f64,
    pub(crate) failed: u64,
    pub(crate) lost_sessions: u64,
    pub(crate) stale_reads: u64,
}

impl StrategyFigures {
    /// A strategy that did not run, and why.
    pub(crate) fn skipped(kind: Kind, because: String) -> Self {
        Self::new(kind, None, Some(because))
    }

    /// A strategy that ran: what its users saw, what it held, and when its
    /// faults took effect.
    pub(crate) fn measured(
        kind: Kind,
        tally: Tally,
        footprint: Footprint,
        faults_applied: Vec<AppliedFault>,
        load: Duration,
        copy_bytes: f64,
    ) -> Self {
        let app_copies: u64 = footprint.sessions_per_node.iter().sum();
        let store_copies = footprint.shared_store_keys.iter().flatten().sum::<u64>()
            + footprint.postgres_rows.unwrap_or(0);
        let app_bytes = footprint
            .app_bytes_held
            .unwrap_or_else(|| (app_copies as f64 * copy_bytes).round() as u64);
        let served: u64 = footprint.requests_per_node.iter().sum();
        let millis = |quantile| tally.latency.value_at_quantile(quantile) as f64 / 1000.0;
        let measured = Measured {
            requests: tally.requests,
            logins: tally.logins,
            acknowledged_increments: tally.acknowledged_increments,
            lost_sessions: tally.lost_sessions,
            stale_reads: tally.stale_reads,
            lost_increments: tally.lost_increments,
            failed_requests: tally.failed_requests,
            failures: tally
                .failures
                .iter()
                .map(|(failure, count)| (failure.name(), *count))
                .collect(),
            phantom_counts: tally.phantom_counts,
            short_final_reads: tally.short_final_reads,
            unread_counters: tally.unread_counters,
            load_skew_all_up: skew(&footprint.requests_per_node_all_up),
            load_skew_after_return: footprint
                .requests_per_node_since_return
                .as_deref()
                .map(skew),
            store_bytes_per_request: if served > 0 {
                footprint.store_bytes as f64 / served as f64
            } else {
                0.0
            },
            store_bytes_per_write: {
                let writes = tally.logins + tally.acknowledged_increments;
                if writes > 0 {
                    footprint.store_bytes as f64 / writes as f64
                } else {
                    0.0
                }
            },
            nodes: footprint.requests_per_node.len(),
            copies_dropped: footprint.copies_dropped,
            postgres_rows: footprint.postgres_rows,
            processes: footprint.requests_per_node.len() + footprint.store_processes,
            app_copies,
            store_copies,
            memory_bytes: app_bytes + footprint.store_memory_bytes,
            p50_ok_ms: millis(0.50),
            p99_ok_ms: millis(0.99),
            faults_applied,
            timeline: timeline(&tally, load),
            requests_per_node: footprint.requests_per_node,
            sessions_per_node: footprint.sessions_per_node,
            shared_store_keys: footprint.shared_store_keys,
            store_bytes: footprint.store_bytes,
        };
        Self::new(kind, Some(measured), None)
    }

    fn new(kind: Kind, measured: Option<Measured>, skipped_because: Option<String>) -> Self {
        Self {
            letter: kind.letter(),
            key: kind.key(),
            name: kind.name(),
            short_name: kind.short_name(),
            setup: kind.setup(),
            expectation: kind.expectation(),
            ran: measured.is_some(),
            needs_redis: kind.needs_redis(),
            loses_nothing: kind.loses_nothing(),
            skipped_because,
            measured,
        }
    }

    /// `skipped: <why>`, for a strategy that did not run.
    pub(crate) fn skip_note(&self) -> String {
        format!(
            "skipped: {}",
            self.skipped_because.as_deref().unwrap_or("not run")
        )
    }
}

/// The bytes of one session copy in an app server's memory: the mean over
/// every copy whose bytes a store counted (the clustering baseline's).
/// 0 when none did.
pub(crate) fn copy_bytes(footprints: &[Footprint]) -> f64 {
    let (bytes, copies) = footprints
        .iter()
        .filter_map(|f| Some((f.app_bytes_held?, f.sessions_per_node.iter().sum::<u64>())))
        .fold((0, 0), |(b, c), (bytes, copies)| (b + bytes, c + copies));
    if copies == 0 {
        0.0
    } else {
        bytes as f64 / copies as f64
    }
}

/// The busiest node's requests over the mean per node; 0 with no requests.
fn skew(requests_per_node: &[u64]) -> f64 {
    let total: u64 = requests_per_node.iter().sum();
    let busiest = requests_per_node.iter().copied().max().unwrap_or(0);
    if total == 0 {
        0.0
    } else {
        busiest as f64 * requests_per_node.len() as f64 / total as f64
    }
}

/// The bucket width for a load of `load`: about 50 buckets, at least half
/// a second each.
pub(crate) fn bucket_width(load: Duration) -> Duration {
    (load / 50).max(Duration::from_millis(500))
}

fn timeline(tally: &Tally, load: Duration) -> Vec<Bucket> {
    let width = bucket_width(load);
    // Final reads come after the load: one more bucket holds them.
    let count = usize::try_from(load.as_millis() / width.as_millis().max(1)).unwrap_or(0) + 2;
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| Bucket {
            start_seconds: width.as_secs_f64() * i as f64,
            failed: 0,
            lost_sessions: 0,
            stale_reads: 0,
        })
        .collect();
    for event in &tally.events {
        let index = usize::try_from(event.at.as_millis() / width.as_millis().max(1))
            .unwrap_or(usize::MAX)
            .min(count - 1);
        let bucket = &mut buckets[index];
        match event.kind {
            EventKind::Failed => bucket.failed += 1,
            EventKind::LostSession => bucket.lost_sessions += 1,
            EventKind::StaleRead => bucket.stale_reads += 1,
        }
    }
    buckets
}

/// `14 13 0`: the sessions each node holds; for the shared stores
/// `0 (Redis keys: 40)`, or `0 (Redis keys: 40 + 40)` for e's two servers,
/// `0 (Redis keys: 40, PG rows: 3)` for h; a near-cache's copies (g) show
/// per node, `40 40 40 (Redis keys: 40)`.
pub(crate) fn memory_cell(measured: &Measured) -> String {
    let held = if measured.sessions_per_node.iter().all(|&n| n == 0) {
        "0".to_owned()
    } else {
        let held: Vec<String> = measured
            .sessions_per_node
            .iter()
            .map(u64::to_string)
            .collect();
        held.join(" ")
    };
    match &measured.shared_store_keys {
        Some(keys) => {
            let keys: Vec<String> = keys.iter().map(u64::to_string).collect();
            let rows = measured
                .postgres_rows
                .map(|rows| format!(", PG rows: {rows}"))
                .unwrap_or_default();
            format!("{held} (Redis keys: {}{rows})", keys.join(" + "))
        }
        None => held,
    }
}

/// `1.37/1.50`: the load skew while every node was up, then after the
/// killed node came back.
pub(crate) fn skew_cell(measured: &Measured) -> String {
    match measured.load_skew_after_return {
        Some(after) => format!("{:.2}/{after:.2}", measured.load_skew_all_up),
        None => format!("{:.2}", measured.load_skew_all_up),
    }
}

/// The planned faults, one line each, `  5.0 s  kill app node 0 (...) [all]`;
/// with, when a strategy applied one more than [`LATE_SECONDS`] late, which
/// and when (`; took effect at c 12.3 s`).
pub(crate) fn fault_lines(figures: &LabFigures) -> Vec<String> {
    figures
        .schedule
        .iter()
        .map(|fault| {
            let late: Vec<String> = figures
                .strategies
                .iter()
                .filter_map(|s| {
                    let applied = s
                        .measured
                        .as_ref()?
                        .faults_applied
                        .iter()
                        .find(|applied| applied.action == fault.action)?;
                    applied
                        .is_late()
                        .then(|| format!("{} {:.1} s", s.letter, applied.applied_seconds))
                })
                .collect();
            let mut line = format!(
                "{:>5.1} s  {} [{}]",
                fault.at_seconds, fault.description, fault.applies_to
            );
            if !late.is_empty() {
                let _ = write!(line, "; took effect at {}", late.join(", "));
            }
            line
        })
        .collect()
}

/// What the table's less obvious columns count, printed under it.
pub(crate) const TABLE_LEGEND: &str = "\
load all-up/back  the busiest server's requests over the mean per server (1.00 is even),
                  while all servers were up (before the kill and after the return) /
                  after server 0 came back
p50, p99 ok ms    latency of the successful (2xx) answers only; failed ones are under
                  failed reqs (session-lab --help says more)
";

/// The table printed at the end of a run, as plain text.
pub(crate) fn table(figures: &LabFigures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<42} {:>8} {:>6} {:>6} {:>6} {:>7} {:>11} {:<24} {:>8} {:>7} {:>7}",
        "strategy",
        "requests",
        "lost",
        "stale",
        "lost",
        "failed",
        "load",
        "sessions held",
        "store",
        "p50 ok",
        "p99 ok"
    );
    let _ = writeln!(
        out,
        "{:<42} {:>8} {:>6} {:>6} {:>6} {:>7} {:>11} {:<24} {:>8} {:>7} {:>7}",
        "", "", "sess.", "reads", "incr.", "reqs", "all-up/back", "per node", "B/req", "ms", "ms"
    );
    // The columns' widths above, each with its separating space.
    let _ = writeln!(
        out,
        "{}",
        "-".repeat(42 + 9 + 7 * 3 + 8 + 12 + 25 + 9 + 8 * 2)
    );
    for strategy in &figures.strategies {
        let label = format!("{}  {}", strategy.letter, strategy.name);
        match &strategy.measured {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "{label:<42} {:>8} {:>6} {:>6} {:>6} {:>7} {:>11} {:<24} {:>8.0} {:>7.1} {:>7.1}",
                    m.requests,
                    m.lost_sessions,
                    m.stale_reads,
                    m.lost_increments,
                    m.failed_requests,
                    skew_cell(m),
                    memory_cell(m),
                    m.store_bytes_per_request,
                    m.p50_ok_ms,
                    m.p99_ok_ms,
                );
            }
            None => {
                let _ = writeln!(out, "{label:<42} {}", strategy.skip_note());
            }
        }
    }
    out
}

/// A run of one measured strategy (c, with `faults_applied`) and one
/// skipped (d, `--no-redis`), for the tests of what is shown.
#[cfg(test)]
pub(crate) fn figures_with(faults_applied: Vec<AppliedFault>) -> LabFigures {
    let plan = [
        Fault {
            at: Duration::from_secs(5),
            action: Action::KillNode,
        },
        Fault {
            at: Duration::from_secs(10),
            action: Action::RestartNode,
        },
    ];
    let footprint = Footprint {
        requests_per_node: vec![1, 1, 1],
        requests_per_node_all_up: vec![1, 1, 1],
        requests_per_node_since_return: None,
        sessions_per_node: vec![0, 0, 0],
        shared_store_keys: None,
        postgres_rows: None,
        store_processes: 0,
        app_bytes_held: None,
        store_memory_bytes: 0,
        store_bytes: 0,
        copies_dropped: 0,
    };
    LabFigures {
        nodes: 3,
        users: 3,
        load_seconds: 20.0,
        pause_ms: 100,
        schedule: plan.iter().map(FaultFigure::from).collect(),
        copy_bytes: 60.0,
        strategies: vec![
            StrategyFigures::measured(
                Kind::Cluster,
                Tally::default(),
                footprint,
                faults_applied,
                Duration::from_secs(20),
                60.0,
            ),
            StrategyFigures::skipped(Kind::Redis, "--no-redis".to_owned()),
        ],
        elapsed_seconds: 30.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Event;

    #[test]
    fn events_land_in_their_slice_and_late_ones_in_the_last() {
        let mut tally = Tally::default();
        for (ms, kind) in [
            (100, EventKind::Failed),
            (600, EventKind::LostSession),
            (900, EventKind::StaleRead),
            (99_000, EventKind::Failed),
        ] {
            tally.events.push(Event {
                at: Duration::from_millis(ms),
                kind,
            });
        }
        let buckets = timeline(&tally, Duration::from_secs(10));
        assert_eq!(buckets.len(), 22);
        assert_eq!(buckets[0].failed, 1);
        assert_eq!(buckets[1].lost_sessions, 1);
        assert_eq!(buckets[1].stale_reads, 1);
        assert_eq!(buckets[21].failed, 1);
    }

    #[test]
    fn a_fault_that_took_effect_late_is_shown_with_its_actual_time() {
        let figures = figures_with(vec![
            AppliedFault {
                action: Action::KillNode,
                planned_seconds: 5.0,
                applied_seconds: 5.2,
            },
            AppliedFault {
                action: Action::RestartNode,
                planned_seconds: 10.0,
                applied_seconds: 12.34,
            },
        ]);
        let lines = fault_lines(&figures);
        assert_eq!(lines.len(), 2);
        assert!(!lines[0].contains("took effect"), "{}", lines[0]);
        assert!(
            lines[1].ends_with("; took effect at c 12.3 s"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn the_table_labels_latency_as_successful_answers_only_and_gives_the_skip_reason() {
        let table = table(&figures_with(Vec::new()));
        assert!(table.contains("p50 ok"), "{table}");
        assert!(table.contains("all-up/back"), "{table}");
        assert!(table.contains("skipped: --no-redis"), "{table}");
    }
}
