//! [`RedisServer`], one real `redis-server` (or `redis-sentinel`) process,
//! and the topologies built from it in [`sentinel`] and [`cluster`].

mod cluster;
mod probe;
mod sentinel;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tempfile::TempDir;

pub use self::{cluster::RedisCluster, sentinel::RedisSentinel};
use super::{
    poll_until,
    ports::{free_port, free_port_with_bus},
    process::{latest_run, log_tail, require_binary, run_bounded, Supervised},
};

/// How long a started server may take to answer PING. Redis needs a few
/// milliseconds; the rest is room for a loaded CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports a start tries: another process may take a port
/// between our check and the server's bind.
const PORT_ATTEMPTS: usize = 5;

/// How long one `redis-cli` call may take, so that one sent to a paused
/// server fails the test instead of hanging it.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// How many lines of a server's log a panic message quotes.
const LOG_LINES: usize = 30;

/// One real Redis process on a free loopback port, in its own temporary
/// folder, killed on drop and when the test process dies.
///
/// Started with the kit's settings: bound to `127.0.0.1`, no snapshots and
/// no AOF (a restarted master comes back empty), protected mode off, and
/// replicas synced without the default 5 s delay.
///
/// ```
/// use std::time::Duration;
///
/// use session_conformance::testkit::RedisServer;
///
/// let mut server = RedisServer::start_with(&["--maxmemory", "1mb"]);
/// assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
/// assert_eq!(server.cli(&["config", "get", "maxmemory"]), "maxmemory\n1048576");
///
/// server.pause(); // hung, as far as any client can tell
/// assert!(!server.answers_ping(Duration::from_millis(100)));
/// server.resume();
/// assert!(server.answers_ping(Duration::from_secs(1)));
/// ```
#[derive(Debug)]
pub struct RedisServer {
    flavor: Flavor,
    program: PathBuf,
    port: u16,
    /// The command line of the latest start, which `restart` reruns.
    args: Vec<String>,
    /// Declared before `folder`, so the process dies before its folder goes.
    process: Option<Supervised>,
    folder: TempDir,
}

/// What a [`RedisServer`] runs.
#[derive(Debug)]
enum Flavor {
    /// `redis-server` with the kit's settings and these extra arguments.
    Data { extra_args: Vec<String> },
    /// `redis-sentinel` watching the master on this port.
    Sentinel { master_port: u16 },
}

/// Why a start did not give a server answering PING.
#[derive(Debug)]
enum NotReady {
    AddressInUse,
    Exited,
    TimedOut,
}

impl RedisServer {
    /// Starts a standalone server and returns once it answers PING.
    ///
    /// # Panics
    /// When `redis-server` is not installed (the message names the package),
    /// or the server does not answer PING within 10 s; the message quotes
    /// the end of its log.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with `extra_args` after the kit's own, for instance
    /// `["--maxmemory", "1mb"]`, and returns once it answers PING. With
    /// `--cluster-enabled`, the port is chosen so that the cluster bus port
    /// (port + 10000) is free too.
    ///
    /// # Panics
    /// As [`start`](Self::start) does, also when `extra_args` stop the server
    /// from starting.
    #[must_use]
    pub fn start_with(extra_args: &[&str]) -> Self {
        let extra_args = extra_args.iter().map(|&arg| arg.to_owned()).collect();
        Self::launch(Flavor::Data { extra_args })
    }

    /// A sentinel of the group, watching the master on `master_port`.
    fn start_sentinel(master_port: u16) -> Self {
        Self::launch(Flavor::Sentinel { master_port })
    }

    fn launch(flavor: Flavor) -> Self {
        let folder = tempfile::Builder::new()
            .prefix("session-kit-redis-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary folder: {err}"));
        let mut server = Self {
            program: flavor.program(),
            flavor,
            port: 0,
            args: Vec::new(),
            process: None,
            folder,
        };
        let mut attempts_left = PORT_ATTEMPTS;
        loop {
            attempts_left -= 1;
            server.take_fresh_port();
            match server.spawn_until_ready() {
                Ok(()) => return server,
                Err(NotReady::AddressInUse) if attempts_left > 0 => server.discard_process(),
                Err(not_ready) => server.fail(&not_ready.describe()),
            }
        }
    }

    fn take_fresh_port(&mut self) {
        self.port = if self.flavor.needs_bus_port() {
            free_port_with_bus()
        } else {
            free_port()
        };
        self.args = self.flavor.args(self.port, self.folder.path());
    }

    /// Starts the process on `self.port` and waits until it answers PING.
    fn spawn_until_ready(&mut self) -> Result<(), NotReady> {
        let process = Supervised::spawn(
            &self.program,
            &self.args,
            self.folder.path(),
            &self.log_path(),
        );
        let pid = process.pid();
        self.process = Some(process);
        poll_until(READY_TIMEOUT, || {
            if !self.is_running() {
                return Some(Err(self.why_exited()));
            }
            // The pid matters: whoever won a race for our port, another
            // test's Redis for one, answers PING there as well.
            (probe::serving_pid(self.port) == Some(pid)).then_some(Ok(()))
        })
        .unwrap_or(Err(NotReady::TimedOut))
    }

    fn why_exited(&self) -> NotReady {
        if latest_run(&self.log_path()).contains("Address already in use") {
            NotReady::AddressInUse
        } else {
            NotReady::Exited
        }
    }

    /// Kills the process of a failed start, whose port is abandoned.
    fn discard_process(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// The port the server listens on, on `127.0.0.1`.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's temporary folder: its working directory, with its log
    /// (`redis.log`) and whatever it writes. Removed on drop.
    #[must_use]
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// Kills the server with SIGKILL, as a crash would, and returns once the
    /// process is gone. Does nothing if it is not running.
    ///
    /// # Panics
    /// When the process is still there 10 s after the signal.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            if !process.kill() {
                self.fail("was still there 10 s after SIGKILL");
            }
        }
    }

    /// Starts the server again on the same port, in the same folder, and
    /// returns once it answers PING. A running server is killed first, as if
    /// it had crashed.
    ///
    /// # Panics
    /// When the port was taken while the server was down, or the server
    /// does not answer PING within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(not_ready) = self.spawn_until_ready() {
            self.fail(&not_ready.describe());
        }
    }

    /// Stops the server with SIGSTOP: connections are still accepted, but
    /// nothing is answered, as with a hung server. For timeout tests.
    ///
    /// # Panics
    /// When the server is not running, or not stopped 10 s after the signal.
    pub fn pause(&mut self) {
        self.expect_running("pause");
        if !self.process.as_mut().is_some_and(Supervised::pause) {
            self.fail("was not stopped 10 s after SIGSTOP");
        }
    }

    /// Lets a paused server go on with SIGCONT.
    ///
    /// # Panics
    /// When the server is not running, or still stopped 10 s after the signal.
    pub fn resume(&mut self) {
        self.expect_running("resume");
        if !self.process.as_mut().is_some_and(Supervised::resume) {
            self.fail("was still stopped 10 s after SIGCONT");
        }
    }

    /// Whether the process is alive: not killed, not exited. A paused
    /// server is running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Supervised::is_alive)
    }

    /// Whether the server answers PING within `timeout`, over a raw TCP
    /// connection; false for a killed or paused server.
    #[must_use]
    pub fn answers_ping(&self, timeout: Duration) -> bool {
        probe::answers_ping(self.port, timeout)
    }

    /// Runs `redis-cli -p {port} <args>` and returns its trimmed stdout; an
    /// array reply comes one element a line. Options go before the command:
    /// `["-c", "set", "k", "v"]` follows cluster redirects.
    ///
    /// # Panics
    /// When `redis-cli` is not installed, exits nonzero (an error reply does
    /// that too), or takes longer than 10 s. The message quotes its stderr
    /// and the end of the server's log.
    #[allow(
        clippy::must_use_candidate,
        reason = "`cli(&[\"set\", ..])` is called for its effect as often as for its reply"
    )]
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|problem| {
            self.fail(&format!("redis-cli {}: {problem}", args.join(" ")))
        })
    }

    /// [`cli`](Self::cli), with the failure returned.
    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let port = self.port.to_string();
        let options = ["-h", "127.0.0.1", "-p", &port, "-e"];
        redis_cli(&[&options[..], args].concat(), CLI_TIMEOUT)
    }

    fn expect_running(&self, action: &str) {
        if !self.is_running() {
            self.fail(&format!("cannot {action}: it is not running"));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.folder.path().join("redis.log")
    }

    /// The end of the server's log, headed with its name, for panic messages.
    fn log_report(&self) -> String {
        let log = self.log_path();
        format!(
            "--- last {LOG_LINES} lines of {} ({} on port {}) ---\n{}",
            log.display(),
            self.flavor.name(),
            self.port,
            log_tail(&log, LOG_LINES),
        )
    }

    /// Panics with `problem` and the end of the server's log, which usually
    /// says why.
    #[track_caller]
    fn fail(&self, problem: &str) -> ! {
        panic!(
            "{} on port {}: {problem}\n{}",
            self.flavor.name(),
            self.port,
            self.log_report()
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Field order would do it too; this says that it must happen.
        self.process = None;
    }
}

impl Flavor {
    fn name(&self) -> &'static str {
        match self {
            Self::Data { .. } => "redis-server",
            Self::Sentinel { .. } => "redis-sentinel",
        }
    }

    fn program(&self) -> PathBuf {
        // Debian's package names happen to match the binaries' here.
        require_binary(self.name(), self.name())
    }

    fn needs_bus_port(&self) -> bool {
        match self {
            Self::Data { extra_args } => extra_args.iter().any(|arg| arg == "--cluster-enabled"),
            Self::Sentinel { .. } => false,
        }
    }

    /// The command line for a run on `port`. A sentinel gets a fresh config
    /// file here, which it then rewrites as it learns; a restart keeps that.
    fn args(&self, port: u16, folder: &Path) -> Vec<String> {
        match self {
            Self::Data { extra_args } => {
                let mut args = data_server_args(port, folder);
                args.extend_from_slice(extra_args);
                args
            }
            Self::Sentinel { master_port } => {
                vec![sentinel::write_config(folder, port, *master_port)]
            }
        }
    }
}

fn data_server_args(port: u16, folder: &Path) -> Vec<String> {
    let port = port.to_string();
    let folder = folder.display().to_string();
    #[rustfmt::skip]
    let args = [
        "--bind", "127.0.0.1",
        "--port", &port,
        "--dir", &folder,
        // Tests want speed, and a restarted master that comes back empty.
        "--save", "",
        "--appendonly", "no",
        // Loopback only anyway; without this, no client could connect.
        "--protected-mode", "no",
        // The watchdog must be the parent of the server itself.
        "--daemonize", "no",
        // A replica's first sync would otherwise wait 5 s.
        "--repl-diskless-sync-delay", "0",
    ];
    args.map(String::from).to_vec()
}

impl NotReady {
    fn describe(&self) -> String {
        match self {
            Self::AddressInUse => "its port was taken by another process".to_owned(),
            Self::Exited => "exited before answering PING".to_owned(),
            Self::TimedOut => format!("did not answer PING within {READY_TIMEOUT:?}"),
        }
    }
}

/// Runs `redis-cli` with `args` and returns its trimmed stdout, or why not.
fn redis_cli(args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut command = Command::new(require_binary("redis-cli", "redis-tools"));
    let output = run_bounded(command.args(args), timeout)?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "exited with {}\nstdout: {stdout}\nstderr: {}",
            output.status,
            stderr.trim()
        ))
    }
}
