//! [`MemcachedServer`], one real `memcached` process, and the raw TCP
//! questions the kit asks it.

use std::{
    collections::HashMap,
    io::{self, Write},
    path::Path,
    thread,
    time::{Duration, Instant},
};

use super::{
    ports::free_port,
    process::require_binary,
    server::{ServerKind, ServerProcess},
    tcp::{connect, is_timeout, read_line},
};

/// How long the readiness probe waits for its `stats` reply.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long [`MemcachedServer::stats`] waits, so that asking a paused
/// server fails the test instead of hanging it.
const STATS_TIMEOUT: Duration = Duration::from_secs(10);

/// One real `memcached` process on a free loopback port, in its own
/// temporary folder, killed on drop and when the test process dies.
///
/// Started with the kit's settings: bound to `127.0.0.1`, TCP only (UDP
/// off), `-u root` so that it also runs as root, and `-v` so that errors
/// land in its log. Everything else is memcached's default (64 MB of
/// memory, 1 MB items), unless [`start_with`](Self::start_with) says
/// otherwise. Memcached keeps nothing on disk: a restarted server comes
/// back empty.
///
/// ```
/// use std::time::Duration;
///
/// use session_conformance::testkit::MemcachedServer;
///
/// let mut server = MemcachedServer::start_with(&["-I", "2m"]);
/// assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
/// assert_eq!(server.stats_settings()["item_size_max"], "2097152");
/// assert_eq!(server.stats()["cmd_set"], "0");
///
/// server.pause(); // hung, as far as any client can tell
/// assert!(!server.answers(Duration::from_millis(100)));
/// server.resume();
/// assert!(server.answers(Duration::from_secs(1)));
///
/// server.kill(); // as a crash would
/// assert!(!server.answers(Duration::from_secs(1)));
/// server.restart(); // the same port, and empty
/// assert_eq!(server.stats()["curr_items"], "0");
/// ```
#[derive(Debug)]
pub struct MemcachedServer {
    server: ServerProcess,
}

impl MemcachedServer {
    /// Starts a server and returns once it answers on its port, and the pid
    /// it reports in `stats` is the one the kit started.
    ///
    /// # Panics
    /// When `memcached` is not installed (the message names the package),
    /// or the server does not answer within 10 s; the message quotes the
    /// end of its log.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with `extra_args` after the kit's own, for instance
    /// `["-I", "2m"]` for 2 MB items or `["-m", "8"]` for 8 MB of memory, and
    /// returns once it answers.
    ///
    /// # Panics
    /// As [`start`](Self::start) does, also when `extra_args` stop the server
    /// from starting.
    #[must_use]
    pub fn start_with(extra_args: &[&str]) -> Self {
        let kind = ServerKind {
            name: "memcached",
            family: "memcached",
            program: require_binary("memcached", "memcached"),
            probe: "stats",
            serving_pid: |port, _| serving_pid(port),
        };
        let server = ServerProcess::launch(kind, free_port, |port, _folder| {
            command_line(port, extra_args)
        });
        Self { server }
    }

    /// Starts `count` servers at once, each on a port of its own, for tests
    /// of a client that spreads keys over several.
    ///
    /// ```
    /// use session_conformance::testkit::MemcachedServer;
    ///
    /// let servers = MemcachedServer::start_many(3);
    /// let addrs: Vec<String> = servers.iter().map(MemcachedServer::addr).collect();
    /// assert_eq!(addrs.len(), 3);
    /// ```
    ///
    /// # Panics
    /// As [`start`](Self::start) does, when any of them fails to start.
    #[must_use]
    pub fn start_many(count: usize) -> Vec<Self> {
        thread::scope(|scope| {
            let starts: Vec<_> = (0..count).map(|_| scope.spawn(Self::start)).collect();
            starts
                .into_iter()
                // The start's own panic, with the log it quotes.
                .map(|start| {
                    start
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    /// The port the server listens on, on `127.0.0.1`.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `127.0.0.1:{port}`, the form Memcached clients take a server in.
    #[must_use]
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// The server's temporary folder: its working directory, with its log
    /// (`memcached.log`). Removed on drop.
    #[must_use]
    pub fn folder(&self) -> &Path {
        self.server.folder()
    }

    /// Kills the server with SIGKILL, as a crash would, and returns once the
    /// process is gone. Does nothing if it is not running.
    ///
    /// # Panics
    /// When the process is still there 10 s after the signal.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts the server again on the same port, with the same arguments,
    /// and returns once it answers. It comes back empty. A running server is
    /// killed first, as if it had crashed.
    ///
    /// # Panics
    /// When the port was taken while the server was down, or the server
    /// does not answer within 10 s.
    pub fn restart(&mut self) {
        self.server.restart();
    }

    /// Stops the server with SIGSTOP: connections are still accepted, but
    /// nothing is answered, as with a hung server. For timeout tests.
    ///
    /// # Panics
    /// When the server is not running, or not stopped 10 s after the signal.
    pub fn pause(&mut self) {
        self.server.pause();
    }

    /// Lets a paused server go on with SIGCONT.
    ///
    /// # Panics
    /// When the server is not running, or still stopped 10 s after the signal.
    pub fn resume(&mut self) {
        self.server.resume();
    }

    /// Whether the process is alive: not killed, not exited. A paused
    /// server is running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Whether the server answers `version` within `timeout`, over a raw TCP
    /// connection; false for a killed or paused server.
    #[must_use]
    pub fn answers(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        connect(self.port(), deadline).is_ok_and(|mut connection| {
            connection.get_mut().write_all(b"version\r\n").is_ok()
                && read_line(&mut connection, deadline)
                    .is_ok_and(|line| line.starts_with("VERSION "))
        })
    }

    /// The server's counters from `stats`, by name: `cmd_get`, `cmd_set`,
    /// `cmd_touch`, `get_hits`, `get_misses`, `delete_hits`, `curr_items`,
    /// `pid`, …, each value as memcached wrote it. Asked over a new
    /// connection, which `curr_connections` and `total_connections` count.
    ///
    /// # Panics
    /// When the server does not answer within 10 s, or answers something
    /// else; the message quotes the end of its log.
    #[must_use]
    pub fn stats(&self) -> HashMap<String, String> {
        self.ask_stats("stats")
    }

    /// The server's settings from `stats settings`, by name:
    /// `item_size_max` (in bytes, from `-I`), `maxbytes` (from `-m`),
    /// `tcpport`, `udpport`, ….
    ///
    /// # Panics
    /// As [`stats`](Self::stats) does.
    #[must_use]
    pub fn stats_settings(&self) -> HashMap<String, String> {
        self.ask_stats("stats settings")
    }

    fn ask_stats(&self, command: &str) -> HashMap<String, String> {
        stats(self.port(), command, STATS_TIMEOUT)
            .unwrap_or_else(|problem| self.server.fail(&problem))
    }
}

/// The command line for a run on `port`.
fn command_line(port: u16, extra_args: &[&str]) -> Vec<String> {
    let port = port.to_string();
    #[rustfmt::skip]
    let args = [
        "-l", "127.0.0.1",
        "-p", &port,
        // Older memcached listened on UDP 11211 by default, which two
        // servers cannot share; no client here speaks UDP.
        "-U", "0",
        // As root memcached refuses to start without -u; otherwise -u is
        // ignored.
        "-u", "root",
        // Errors and warnings of the event loop, for the log a panic quotes.
        "-v",
    ];
    args.iter()
        .chain(extra_args)
        .map(|&arg| arg.to_owned())
        .collect()
}

/// The pid of the memcached that answers `stats` on `port`, if one does.
fn serving_pid(port: u16) -> Option<u32> {
    let stats = stats(port, "stats", PROBE_TIMEOUT).ok()?;
    stats.get("pid")?.parse().ok()
}

/// Sends `command` (`stats`, `stats settings`) to `port` and reads the
/// `STAT <name> <value>` lines up to `END`, all within `timeout`.
fn stats(port: u16, command: &str, timeout: Duration) -> Result<HashMap<String, String>, String> {
    let deadline = Instant::now() + timeout;
    let failed = |err: io::Error| {
        if is_timeout(&err) {
            format!("no whole answer to `{command}` within {timeout:?}")
        } else {
            format!("`{command}`: {err}")
        }
    };
    let mut connection = connect(port, deadline).map_err(failed)?;
    connection
        .get_mut()
        .write_all(format!("{command}\r\n").as_bytes())
        .map_err(failed)?;
    let mut stats = HashMap::new();
    loop {
        let line = read_line(&mut connection, deadline).map_err(failed)?;
        if line == "END" {
            return Ok(stats);
        }
        let Some((name, value)) = line
            .strip_prefix("STAT ")
            .and_then(|stat| stat.split_once(' '))
        else {
            return Err(format!("`{command}` was answered with {line:?}"));
        };
        stats.insert(name.to_owned(), value.to_owned());
    }
}
