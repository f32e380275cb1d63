//! [`RedisServer`], one real `redis-server` (or `redis-sentinel`) process,
//! and the topologies built from it in [`sentinel`] and [`cluster`].

mod cluster;
mod probe;
mod sentinel;

use std::{path::Path, process::Command, time::Duration};

pub use self::{cluster::RedisCluster, sentinel::RedisSentinel};
use super::{
    ports::{free_port, free_port_with_bus},
    process::{require_binary, run_bounded},
    server::{ServerKind, ServerProcess},
};

/// How long one `redis-cli` call may take, so that one sent to a paused
/// server fails the test instead of hanging it.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

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
    server: ServerProcess,
}

/// What a [`RedisServer`] runs.
#[derive(Debug)]
enum Flavor {
    /// `redis-server` with the kit's settings and these extra arguments.
    Data { extra_args: Vec<String> },
    /// `redis-sentinel` watching the master on this port.
    Sentinel { master_port: u16 },
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
        Self::launch(&Flavor::Data { extra_args })
    }

    /// A sentinel of the group, watching the master on `master_port`.
    fn start_sentinel(master_port: u16) -> Self {
        Self::launch(&Flavor::Sentinel { master_port })
    }

    fn launch(flavor: &Flavor) -> Self {
        let kind = ServerKind {
            name: flavor.name(),
            family: "redis",
            // Debian's package names happen to match the binaries' here.
            program: require_binary(flavor.name(), flavor.name()),
            probe: "PING",
            serving_pid: |port, _| probe::serving_pid(port),
        };
        let free_port = if flavor.needs_bus_port() {
            free_port_with_bus
        } else {
            free_port
        };
        let server =
            ServerProcess::launch(kind, free_port, |port, folder| flavor.args(port, folder));
        Self { server }
    }

    /// The port the server listens on, on `127.0.0.1`.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `redis://127.0.0.1:{port}`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// The server's temporary folder: its working directory, with its log
    /// (`redis.log`) and whatever it writes. Removed on drop.
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

    /// Starts the server again on the same port, in the same folder, and
    /// returns once it answers PING. A running server is killed first, as if
    /// it had crashed.
    ///
    /// # Panics
    /// When the port was taken while the server was down, or the server
    /// does not answer PING within 10 s.
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

    /// Whether the server answers PING within `timeout`, over a raw TCP
    /// connection; false for a killed or paused server.
    #[must_use]
    pub fn answers_ping(&self, timeout: Duration) -> bool {
        probe::answers_ping(self.port(), timeout)
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
            self.server
                .fail(&format!("redis-cli {}: {problem}", args.join(" ")))
        })
    }

    /// [`cli`](Self::cli), with the failure returned.
    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let port = self.port().to_string();
        let options = ["-h", "127.0.0.1", "-p", &port, "-e"];
        redis_cli(&[&options[..], args].concat(), CLI_TIMEOUT)
    }

    /// The end of the server's log, headed with its name, for panic messages.
    fn log_report(&self) -> String {
        self.server.log_report()
    }
}

impl Flavor {
    fn name(&self) -> &'static str {
        match self {
            Self::Data { .. } => "redis-server",
            Self::Sentinel { .. } => "redis-sentinel",
        }
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
