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
}

impl CpuClock {
    /// A clock over this process and the store servers listening on
    /// `ports` (those it cannot find are left out).
    pub(crate) fn new(ports: &[u16]) -> Self {
        Self {
            stores: ports.iter().filter_map(|&port| store_stat(port)).collect(),
        }
    }

    /// Ticks spent so far by the servers. Call it from the load generator's
    /// thread, which it leaves out.
    pub(crate) fn now(&self) -> u64 {
        let stores: u64 = self.stores.iter().map(ticks).sum();
        let process = ticks(&PathBuf::from("/proc/self/stat"));
        let generator = ticks(&PathBuf::from("/proc/thread-self/stat"));
        process.saturating_sub(generator) + stores
    }
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
}
