//! What each strategy costs to run, from what the run measured: the cost
//! table, the answer to "how do I keep the backup cheap?", and the chart
//! of memory per server against the number of servers.

use std::fmt::Write as _;

use crate::figures::{LabFigures, Measured, StrategyFigures};

/// `1.4 KB`, `12 KB`, `3.1 MB`.
pub(crate) fn bytes(n: u64) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{n:.0} B")
    } else if n < 10.0 * 1024.0 {
        format!("{:.1} KB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 {
        format!("{:.0} KB", n / 1024.0)
    } else {
        format!("{:.1} MB", n / (1024.0 * 1024.0))
    }
}

/// `3 + 2`: app servers, then store servers.
pub(crate) fn processes_cell(m: &Measured) -> String {
    format!("{} + {}", m.nodes, m.processes - m.nodes)
}

/// `48 / 24`: session copies in the app servers, then in the stores.
pub(crate) fn copies_cell(m: &Measured) -> String {
    format!("{} / {}", m.app_copies, m.store_copies)
}

/// The mean session copies per app server.
pub(crate) fn copies_per_server(m: &Measured) -> f64 {
    if m.nodes == 0 {
        0.0
    } else {
        m.app_copies as f64 / m.nodes as f64
    }
}

/// What each column of the cost table counts, printed under it.
pub(crate) const COST_LEGEND: &str = "\
processes     app servers + store servers (Redis, PostgreSQL) the strategy runs
copies held   session copies at the end: in the app servers' memory / in the
              store servers (Redis keys, PostgreSQL rows)
memory        what every copy takes: Redis's MEMORY USAGE of each key, the
              PostgreSQL table's size, and the app servers' copies at the bytes
              of a session (id, keys, values, timestamps; the app servers share
              this one process, so their resident memory cannot be split)
B/req, B/write  bytes moved on the peer links or to and from the stores, per
              request answered and per write acknowledged (logins, increments);
              Redis's own count (INFO stats), so h's PostgreSQL traffic is not in it
";

/// The cost table, as plain text.
pub(crate) fn cost_table(figures: &LabFigures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>13} {:>9} {:>7} {:>8} {:>6} {:>6} {:>6}",
        "strategy", "processes", "copies held", "memory", "store", "store", "lost", "stale", "lost"
    );
    let _ = writeln!(
        out,
        "{:<40} {:>9} {:>13} {:>9} {:>7} {:>8} {:>6} {:>6} {:>6}",
        "", "app+store", "app / stores", "", "B/req", "B/write", "sess.", "reads", "incr."
    );
    let _ = writeln!(out, "{}", "-".repeat(40 + 10 + 14 + 10 + 8 + 9 + 7 * 3));
    for strategy in &figures.strategies {
        let label = format!("{}  {}", strategy.letter, strategy.name);
        match &strategy.measured {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "{label:<40} {:>9} {:>13} {:>9} {:>7.0} {:>8.0} {:>6} {:>6} {:>6}",
                    processes_cell(m),
                    copies_cell(m),
                    bytes(m.memory_bytes),
                    m.store_bytes_per_request,
                    m.store_bytes_per_write,
                    m.lost_sessions,
                    m.stale_reads,
                    m.lost_increments,
                );
            }
            None => {
                let _ = writeln!(out, "{label:<40} {}", strategy.skip_note());
            }
        }
    }
    out
}

fn measured<'a>(figures: &'a LabFigures, key: &str) -> Option<&'a Measured> {
    figures
        .strategies
        .iter()
        .find(|s| s.key == key)
        .and_then(|s| s.measured.as_ref())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}×", a / b)
    } else {
        "n/a".to_owned()
    }
}

/// The answer to "how do I keep the backup cheap?", one paragraph per
/// comparison, each from the measured rows; a comparison whose
/// strategies did not run is left out.
pub(crate) fn cheap_backup(figures: &LabFigures) -> Vec<String> {
    let mut answer = Vec::new();
    let one = measured(figures, "redis");
    if let (Some(d), Some(e)) = (one, measured(figures, "redis-failover")) {
        answer.push(format!(
            "A mirror (e) is the backup that loses nothing: {} lost sessions and {} lost \
             increments through the Redis kill, where one Redis (d) lost {} and {}. It pays \
             for it on every request: {} one Redis's traffic ({:.0} against {:.0} B/request), \
             {} its memory ({} against {}), and one more server.",
            e.lost_sessions,
            e.lost_increments,
            d.lost_sessions,
            d.lost_increments,
            ratio(e.store_bytes_per_request, d.store_bytes_per_request),
            e.store_bytes_per_request,
            d.store_bytes_per_request,
            ratio(e.memory_bytes as f64, d.memory_bytes as f64),
            bytes(e.memory_bytes),
            bytes(d.memory_bytes),
        ));
    }
    let standby = measured(figures, "redis-standby");
    let postgres = measured(figures, "redis-postgres-standby");
    if let (Some(d), Some(f)) = (one, standby.or(postgres)) {
        let mut line = format!(
            "A standby costs about what one Redis costs while the primary is up: {:.0} \
             B/request for a standby Redis (f, {} Redis alone)",
            f.store_bytes_per_request,
            ratio(f.store_bytes_per_request, d.store_bytes_per_request),
        );
        if let (Some(_), Some(h)) = (standby, postgres) {
            let _ = write!(
                line,
                " and {:.0} to Redis for a standby PostgreSQL (h, whose PostgreSQL traffic \
                 is not counted: it takes writes only while Redis is down)",
                h.store_bytes_per_request
            );
        }
        let _ = write!(
            line,
            ", against {:.0} for Redis alone. But it is not a copy: {} users were logged \
             out when the primary died, as many as with one Redis (d: {}). It keeps logins \
             working through the outage, not the sessions.",
            d.store_bytes_per_request, f.lost_sessions, d.lost_sessions
        );
        answer.push(line);
    }
    if let (Some(d), Some(g)) = (one, measured(figures, "redis-near-cache")) {
        answer.push(format!(
            "A near-cache (g) does not make the store cheaper here: {:.0} B/request against \
             {:.0}, since every request of this workload writes and each read still checks \
             Redis's version; it saves traffic on read-heavy pages only, and it is one Redis \
             all the same ({} users logged out by its empty restart).",
            g.store_bytes_per_request, d.store_bytes_per_request, g.lost_sessions
        ));
    }
    if let (Some(c), Some(e)) = (
        measured(figures, "cluster"),
        measured(figures, "redis-failover"),
    ) {
        answer.push(format!(
            "The session-kit cluster (c) keeps the backup in the app servers themselves: {} \
             processes where the mirror needs {}, {} for every copy of the sessions against \
             {}, {} lost sessions, {} stale reads and {} lost increments through a node kill \
             and a partition; it pays {:.0} B/request on its peer links, against the mirror's \
             {:.0} to and from Redis.",
            c.processes,
            e.processes,
            bytes(c.memory_bytes),
            bytes(e.memory_bytes),
            c.lost_sessions,
            c.stale_reads,
            c.lost_increments,
            c.store_bytes_per_request,
            e.store_bytes_per_request,
        ));
    }
    if let (Some(b), Some(b5)) = (
        measured(figures, "clustering"),
        measured(figures, "clustering-5"),
    ) {
        let mut line = format!(
            "Clustering is the backup that grows with the servers: each holds every session \
             ({:.0} per server at N = {}, {:.0} at N = {}), every write sends N-1 copies ({:.0} \
             then {:.0} B/write), and a request that beats a copy reads an old session ({} and \
             {} stale reads).",
            copies_per_server(b),
            b.nodes,
            copies_per_server(b5),
            b5.nodes,
            b.store_bytes_per_write,
            b5.store_bytes_per_write,
            b.stale_reads,
            b5.stale_reads,
        );
        if let (Some(c), Some(c5)) = (measured(figures, "cluster"), measured(figures, "cluster-5"))
        {
            let _ = write!(
                line,
                " The cluster keeps 2 copies whatever N: {:.0} per server at N = {}, {:.0} at \
                 N = {}; its peer traffic grows with N too ({:.0} then {:.0} B/request: more \
                 requests land on a server that forwards to the owner), with no stale read.",
                copies_per_server(c),
                c.nodes,
                copies_per_server(c5),
                c5.nodes,
                c.store_bytes_per_request,
                c5.store_bytes_per_request,
            );
        }
        answer.push(line);
    }
    answer
}

/// The families drawn against N: the strategies whose servers hold the
/// sessions, at each size the run had.
const FAMILIES: [(&str, [&str; 2]); 2] = [
    ("session clustering", ["clustering", "clustering-5"]),
    ("session-kit cluster R=2", ["cluster", "cluster-5"]),
];

/// One line of the chart against N.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    /// The key of its first strategy, whose colour the line takes.
    pub(crate) key: &'static str,
    /// `(N, copies per server)`, one per size that ran.
    pub(crate) points: Vec<(usize, f64)>,
}

/// The families drawn against N, with the points that ran.
pub(crate) fn memory_against_n(strategies: &[StrategyFigures]) -> Vec<Family> {
    FAMILIES
        .iter()
        .map(|(name, keys)| {
            let points = keys
                .iter()
                .filter_map(|key| {
                    strategies
                        .iter()
                        .find(|s| s.key == *key)
                        .and_then(|s| s.measured.as_ref())
                        .map(|m| (m.nodes, copies_per_server(m)))
                })
                .collect();
            Family {
                name,
                key: keys[0],
                points,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(800), "800 B");
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(50 * 1024), "50 KB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MB");
    }

    #[test]
    fn the_cost_table_lists_every_strategy_and_the_answer_skips_what_did_not_run() {
        let figures = crate::figures::figures_with(Vec::new());
        let table = cost_table(&figures);
        assert!(table.contains("c  session-kit cluster"), "{table}");
        assert!(table.contains("skipped: --no-redis"), "{table}");
        // Only c ran: no comparison has both its sides.
        assert!(cheap_backup(&figures).is_empty());
    }
}
