//! CPU time per request: what the servers spent, read from `/proc`, so a
//! variant's cost shows even when other work on the machine takes part of
//! core 0 and its throughput with it.
//!
//! Throughput on a shared core depends on the scheduler as much as on the
//! code: a variant whose work runs in two processes (an app and its
//! `redis-server`) gets two shares of a busy core, one that runs in a
//! single thread (the in-process cluster) gets one. CPU per request does
//! not depend on the share, and on an idle machine, where core 0 is the
//! limit, it is what throughput is the inverse of.

use std::path::PathBuf;

/// Microseconds per clock tick of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICK_MICROS: f64 = 10_000.0;

/// Reads the CPU time of everything that serves requests: this process's
/// threads but the calling one (the load generator), and the store servers'
/// processes.
pub(crate) struct CpuClock {
    /// The `stat` files of the store servers' processes.
    stores: Vec<PathBuf>,
    /// The pids of PostgreSQL postmasters, whose work is spread over child
    /// processes that come and go.
    postmasters: Vec<u32>,
}

impl CpuClock {
    /// A clock over this process and the store servers listening on
    /// `ports` (those it cannot find are left out).
    pub(crate) fn new(ports: &[u16]) -> Self {
        Self {
            stores: ports.iter().filter_map(|&port| store_stat(port)).collect(),
            postmasters: ports.iter().filter_map(|&port| postmaster(port)).collect(),
        }
    }

    /// Ticks spent so far by the servers. Call it from the load generator's
    /// thread, which it leaves out.
    pub(crate) fn now(&self) -> u64 {
        let stores: u64 = self.stores.iter().map(ticks).sum();
        let postgres: u64 = self
            .postmasters
            .iter()
            .map(|&pid| postgres_ticks(pid))
            .sum();
        let process = ticks(&PathBuf::from("/proc/self/stat"));
        let generator = ticks(&PathBuf::from("/proc/thread-self/stat"));
        process.saturating_sub(generator) + stores + postgres
    }
}

/// The CPU clock of one `redis-server` or `memcached` process, found by the
/// port it listens on.
pub(crate) struct StoreClock(PathBuf);

impl StoreClock {
    /// The clock of the store server listening on `port`, if there is one.
    pub(crate) fn new(port: u16) -> Option<Self> {
        store_stat(port).map(Self)
    }

    /// Ticks the process has spent so far, user and system.
    pub(crate) fn now(&self) -> u64 {
        ticks(&self.0)
    }
}

/// Ticks spent by a PostgreSQL server: its postmaster, every child alive
/// now (a backend per connection, the background workers), and the
/// children that have exited, which the postmaster has reaped and whose
/// time the kernel has added to its own (`cutime` and `cstime`). Without the
/// backends a Postgres variant would look nearly free, as the database's
/// work runs there.
fn postgres_ticks(postmaster: u32) -> u64 {
    let stat = PathBuf::from(format!("/proc/{postmaster}/stat"));
    let own = ticks(&stat) + reaped_children_ticks(&stat);
    let children: u64 = children_of(postmaster, "postgres")
        .iter()
        .map(|pid| ticks(&PathBuf::from(format!("/proc/{pid}/stat"))))
        .sum();
    own + children
}

/// The pids of the processes named `comm` whose parent is `parent`
/// (field 4 of `/proc/<pid>/stat`).
fn children_of(parent: u32, comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            stat_comm_and_parent(&stat) == Some((comm, parent))
        })
        .collect()
}

/// The command name and the parent pid of a `/proc/<pid>/stat` line.
fn stat_comm_and_parent(stat: &str) -> Option<(&str, u32)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    // After the name: the state, then the parent's pid.
    let parent = rest.split_whitespace().nth(1)?.parse().ok()?;
    Some((comm, parent))
}

/// Microseconds of CPU per request, from the ticks spent over `requests`.
pub(crate) fn micros_per_request(ticks: u64, requests: u64) -> f64 {
    ticks as f64 * TICK_MICROS / requests.max(1) as f64
}

/// User plus system ticks in a `/proc/.../stat` file (fields 14 and 15,
/// counted after the parenthesised command name, which may hold spaces).
fn ticks(path: &PathBuf) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    let Some(end) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

/// User plus system ticks of the exited children a process has waited for
/// (fields 16 and 17).
fn reaped_children_ticks(path: &PathBuf) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    let Some(end) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    field(13).unwrap_or(0) + field(14).unwrap_or(0)
}

/// The pid of the PostgreSQL postmaster listening on `port`: the `postgres`
/// process with `-p <port>` on its command line (its children show a
/// title there instead) whose parent is not a `postgres` process.
fn postmaster(port: u16) -> Option<u32> {
    let port = port.to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(("postgres", parent)) = stat_comm_and_parent(&stat) else {
                return false;
            };
            let parent_is_postgres = std::fs::read_to_string(format!("/proc/{parent}/stat"))
                .is_ok_and(|stat| {
                    stat_comm_and_parent(&stat).is_some_and(|(comm, _)| comm == "postgres")
                });
            !parent_is_postgres
                && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                    args.windows(2)
                        .any(|pair| pair[0] == b"-p" && pair[1] == port.as_bytes())
                })
        })
}

/// The `stat` file of the `redis-server` or `memcached` process listening on
/// `port`, found by its command line (`--port N` or `-p N`, or the
/// `host:port` title redis-server gives itself).
fn store_stat(port: u16) -> Option<PathBuf> {
    let port = port.to_string();
    let with_colon = format!(":{port}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            comm.starts_with("redis-server") || comm.starts_with("memcached")
        })
        .find(|path| {
            std::fs::read(path.join("cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|&b| b == 0 || b == b' ')
                    .map(String::from_utf8_lossy)
                    .any(|arg| arg == port || arg.ends_with(&with_colon))
            })
        })
        .map(|path| path.join("stat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_clock_that_moves_with_work_on_another_thread() {
        let clock = CpuClock::new(&[]);
        let before = clock.now();
        // Work on a thread other than this one, which the clock leaves out.
        let spent = std::thread::spawn(|| {
            let start = std::time::Instant::now();
            let mut x = 0u64;
            while start.elapsed() < std::time::Duration::from_millis(300) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            x
        });
        let _ = spent.join();
        // 300 ms of work is 30 ticks; allow for a busy machine's share.
        assert!(clock.now() - before >= 5, "the clock did not move");
        assert!((micros_per_request(3, 2) - 15_000.0).abs() < 1e-6);
    }

    #[test]
    fn stat_lines_give_the_name_and_the_parent_even_with_spaces_and_parentheses() {
        let backend = "4242 (postgres) S 4100 4100 4100 0 -1 4194560 120 0 0 0 7 3 0 0 20 0";
        assert_eq!(stat_comm_and_parent(backend), Some(("postgres", 4100)));
        let odd = "77 (a b) (c)) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0";
        assert_eq!(stat_comm_and_parent(odd), Some(("a b) (c)", 1)));
        assert_eq!(stat_comm_and_parent("garbage"), None);
    }

    #[test]
    fn a_postgres_server_counts_its_children_and_the_ones_it_reaped() {
        let server = session_conformance::testkit::PostgresServer::start();
        let pid = postmaster(server.port()).expect("the postmaster is found by its port");
        assert!(
            !children_of(pid, "postgres").is_empty(),
            "a postmaster has background workers"
        );
        let before = postgres_ticks(pid);
        // A backend that burns CPU and exits: its time moves from its own
        // stat to the postmaster's reaped-children fields, and must count.
        let _ = server.psql("SELECT count(*) FROM generate_series(1, 3000000)");
        let spent = postgres_ticks(pid).saturating_sub(before);
        assert!(spent >= 5, "{spent} ticks for a query of about a second");
    }
}
