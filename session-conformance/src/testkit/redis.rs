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
    tls::{RedisTls, TestCertificates, TlsFiles},
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
    /// The TLS mode, if the server listens for TLS only.
    tls: Option<RedisTls>,
}

/// What a [`RedisServer`] runs.
#[derive(Debug)]
enum Flavor {
    /// `redis-server` with the kit's settings and these extra arguments.
    Data {
        extra_args: Vec<String>,
        tls: Option<Tls>,
    },
    /// `redis-sentinel` watching the master on this port.
    Sentinel { master_port: u16, tls: Option<Tls> },
}

/// A server's TLS mode and the certificates it writes into its folder:
/// servers of one group share one set, so they trust each other.
#[derive(Debug, Clone)]
pub(super) struct Tls {
    mode: RedisTls,
    certificates: TestCertificates,
}

impl Tls {
    /// `mode` with a fresh set of certificates.
    pub(super) fn generate(mode: RedisTls) -> Self {
        Self {
            mode,
            certificates: TestCertificates::generate(),
        }
    }
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
        Self::start_in(None, extra_args)
    }

    /// Starts a server that listens for TLS only (`--port 0 --tls-port
    /// {port}`), with a CA, a server certificate for `127.0.0.1` and
    /// `localhost` and a client certificate made for it alone and written
    /// into its folder ([`tls_files`](Self::tls_files)); returns once it
    /// answers PING over TLS. Its [`url`](Self::url) is `rediss://`.
    ///
    /// ```
    /// use session_conformance::testkit::{RedisServer, RedisTls};
    ///
    /// let server = RedisServer::start_tls(RedisTls::Mutual);
    /// assert_eq!(server.url(), format!("rediss://127.0.0.1:{}", server.port()));
    /// assert!(server.tls_files().unwrap().ca_cert().exists());
    /// assert_eq!(server.cli(&["ping"]), "PONG"); // the kit's own client shows its certificate
    /// ```
    ///
    /// # Panics
    /// As [`start`](Self::start) does.
    #[must_use]
    pub fn start_tls(mode: RedisTls) -> Self {
        Self::start_in(Some(&Tls::generate(mode)), &[])
    }

    /// A data server, in TLS mode with `tls`'s certificates if given.
    pub(super) fn start_in(tls: Option<&Tls>, extra_args: &[&str]) -> Self {
        let extra_args = extra_args.iter().map(|&arg| arg.to_owned()).collect();
        Self::launch(&Flavor::Data {
            extra_args,
            tls: tls.cloned(),
        })
    }

    /// A sentinel of the group, watching the master on `master_port`.
    fn start_sentinel(master_port: u16, tls: Option<&Tls>) -> Self {
        Self::launch(&Flavor::Sentinel {
            master_port,
            tls: tls.cloned(),
        })
    }

    fn launch(flavor: &Flavor) -> Self {
        let kind = ServerKind {
            name: flavor.name(),
            family: "redis",
            // Debian's package names happen to match the binaries' here.
            program: require_binary(flavor.name(), flavor.name()),
            probe: "PING",
            serving_pid: if flavor.tls().is_some() {
                |port, folder| probe::serving_pid_tls(port, &tls_files(folder))
            } else {
                |port, _folder| probe::serving_pid(port)
            },
        };
        let free_port = if flavor.needs_bus_port() {
            free_port_with_bus
        } else {
            free_port
        };
        let server =
            ServerProcess::launch(kind, free_port, |port, folder| flavor.args(port, folder));
        Self {
            server,
            tls: flavor.tls().map(|tls| tls.mode),
        }
    }

    /// The port the server listens on, on `127.0.0.1`.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `redis://127.0.0.1:{port}`, or `rediss://…` in TLS mode.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    /// The TLS mode, if the server was started in one.
    #[must_use]
    pub fn tls(&self) -> Option<RedisTls> {
        self.tls
    }

    /// Where the certificates of a server in TLS mode are, in its folder;
    /// `None` for a plain-text server.
    #[must_use]
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.tls.map(|_| tls_files(self.folder()))
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
        match self.tls_files() {
            Some(files) => {
                let options = tls_cli_options(self.port(), &files);
                let mut args: Vec<&str> = options.iter().map(String::as_str).collect();
                args.push("PING");
                redis_cli(&args, timeout).is_ok_and(|reply| reply == "PONG")
            }
            None => probe::answers_ping(self.port(), timeout),
        }
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
        let options = match self.tls_files() {
            Some(files) => tls_cli_options(self.port(), &files),
            None => plain_cli_options(self.port()),
        };
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        redis_cli(&[&options[..], &["-e"][..], args].concat(), CLI_TIMEOUT)
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

    fn tls(&self) -> Option<&Tls> {
        match self {
            Self::Data { tls, .. } | Self::Sentinel { tls, .. } => tls.as_ref(),
        }
    }

    fn needs_bus_port(&self) -> bool {
        match self {
            Self::Data { extra_args, .. } => {
                extra_args.iter().any(|arg| arg == "--cluster-enabled")
            }
            Self::Sentinel { .. } => false,
        }
    }

    /// The command line for a run on `port`. A sentinel gets a fresh config
    /// file here, which it then rewrites as it learns; a restart keeps that.
    fn args(&self, port: u16, folder: &Path) -> Vec<String> {
        // A restart writes the same certificates again.
        let tls = self
            .tls()
            .map(|tls| (tls.mode, tls.certificates.write(folder)));
        match self {
            Self::Data { extra_args, .. } => {
                let mut args = data_server_args(port, folder, tls.as_ref());
                args.extend_from_slice(extra_args);
                args
            }
            Self::Sentinel { master_port, .. } => {
                vec![sentinel::write_config(
                    folder,
                    port,
                    *master_port,
                    tls.as_ref(),
                )]
            }
        }
    }
}

fn data_server_args(port: u16, folder: &Path, tls: Option<&(RedisTls, TlsFiles)>) -> Vec<String> {
    let mut args = match tls {
        Some((mode, files)) => {
            let mut args = vec!["--port".to_owned(), "0".to_owned()];
            args.extend(
                tls_server_settings(port, *mode, files)
                    .into_iter()
                    .flat_map(|(name, value)| [format!("--{name}"), value]),
            );
            args
        }
        None => vec!["--port".to_owned(), port.to_string()],
    };
    let folder = folder.display().to_string();
    #[rustfmt::skip]
    let kit_args = [
        "--bind", "127.0.0.1",
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
    args.extend(kit_args.map(String::from));
    args
}

/// The TLS settings of a server (or sentinel) in `mode` on `port`, as
/// `(name, value)` pairs: the same names on a command line (`--name
/// value`) and in a config file. TLS is also what replicas and sentinels
/// speak to their master (`tls-replication`); a cluster adds `tls-cluster`
/// for its bus.
fn tls_server_settings(port: u16, mode: RedisTls, files: &TlsFiles) -> Vec<(&'static str, String)> {
    let (cert, key) = files.server_cert_and_key(mode);
    vec![
        ("tls-port", port.to_string()),
        ("tls-cert-file", cert.display().to_string()),
        ("tls-key-file", key.display().to_string()),
        ("tls-ca-cert-file", files.ca_cert().display().to_string()),
        ("tls-auth-clients", mode.auth_clients().to_owned()),
        ("tls-replication", "yes".to_owned()),
    ]
}

/// The certificates in a server's `folder`.
fn tls_files(folder: &Path) -> TlsFiles {
    TlsFiles::in_folder(&folder.join("tls"))
}

fn plain_cli_options(port: u16) -> Vec<String> {
    ["-h", "127.0.0.1", "-p", &port.to_string()]
        .map(String::from)
        .to_vec()
}

/// `redis-cli`'s options for a server in TLS mode: always the client
/// certificate (a mutual-TLS server asks for it), and `--insecure`, since
/// the kit checks which server answers by its pid, and an expired-certificate
/// server must answer the kit too. Checking certificates is the job of the
/// client under test.
fn tls_cli_options(port: u16, files: &TlsFiles) -> Vec<String> {
    let mut options = plain_cli_options(port);
    options.extend([
        "--tls".to_owned(),
        "--insecure".to_owned(),
        "--cert".to_owned(),
        files.client_cert().display().to_string(),
        "--key".to_owned(),
        files.client_key().display().to_string(),
    ]);
    options
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
