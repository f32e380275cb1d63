//! One server process on a free loopback port, in its own temporary folder:
//! the start, readiness, crash, hang and restart machinery that
//! [`RedisServer`](super::RedisServer) and
//! [`MemcachedServer`](super::MemcachedServer) share. What sets a server
//! apart, its binary and the question that shows it is up, comes in a
//! [`ServerKind`]; its command line comes to [`ServerProcess::launch`].

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tempfile::TempDir;

use super::{
    poll_until,
    process::{latest_run, log_tail, Supervised},
};

/// How long a started server may take to answer its readiness probe. Redis
/// and Memcached need a few milliseconds; the rest is room for a loaded CI
/// machine.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports a start tries: another process may take a port
/// between our check and the server's bind.
const PORT_ATTEMPTS: usize = 5;

/// How many lines of a server's log a panic message quotes.
const LOG_LINES: usize = 30;

/// What a server of one kind runs, and how the kit tells that it is up.
#[derive(Debug)]
pub(crate) struct ServerKind {
    /// What messages call the server: its binary's name, `redis-server`.
    pub(crate) name: &'static str,
    /// Names the temporary folder (`session-kit-{family}-…`) and the log in
    /// it (`{family}.log`).
    pub(crate) family: &'static str,
    /// The binary, found on `PATH`.
    pub(crate) program: PathBuf,
    /// What the readiness probe asks, for messages: `PING`.
    pub(crate) probe: &'static str,
    /// The pid of the server that answers the probe on a port, if one does;
    /// given the server's folder too, where a TLS server keeps the
    /// certificates the probe needs and PostgreSQL reports its pid.
    pub(crate) serving_pid: fn(u16, &Path) -> Option<u32>,
}

/// A server process on a loopback port, in a temporary folder that holds
/// its log and outlives restarts. Killed on drop, and by the watchdog when
/// the test process dies.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    kind: ServerKind,
    port: u16,
    /// The command line of the latest start, which `restart` reruns.
    args: Vec<String>,
    /// Declared before `folder`, so the process dies before its folder goes.
    process: Option<Supervised>,
    folder: TempDir,
}

/// Why a start did not give a server answering the probe.
#[derive(Debug)]
enum NotReady {
    AddressInUse,
    Exited,
    TimedOut,
}

impl ServerProcess {
    /// Starts a server of `kind` on a port from `free_port`, with the command
    /// line `args` gives for that port and the folder, and returns once the
    /// server answers the probe with the pid of the process started.
    /// When another process took the port first, tries again on a new one.
    ///
    /// # Panics
    /// When the folder cannot be made, or the server does not start within
    /// [`READY_TIMEOUT`]; the message quotes the end of its log.
    pub(crate) fn launch(
        kind: ServerKind,
        free_port: fn() -> u16,
        args: impl Fn(u16, &Path) -> Vec<String>,
    ) -> Self {
        let folder = tempfile::Builder::new()
            .prefix(&format!("session-kit-{}-", kind.family))
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary folder: {err}"));
        let mut server = Self {
            kind,
            port: 0,
            args: Vec::new(),
            process: None,
            folder,
        };
        let mut attempts_left = PORT_ATTEMPTS;
        loop {
            attempts_left -= 1;
            server.port = free_port();
            server.args = args(server.port, server.folder.path());
            match server.spawn_until_ready() {
                Ok(()) => return server,
                Err(NotReady::AddressInUse) if attempts_left > 0 => server.discard_process(),
                Err(not_ready) => server.fail(&server.describe(&not_ready)),
            }
        }
    }

    /// Starts the process on `self.port` and waits until it answers the probe.
    fn spawn_until_ready(&mut self) -> Result<(), NotReady> {
        let process = Supervised::spawn(
            &self.kind.program,
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
            // test's server for one, answers the probe there as well.
            ((self.kind.serving_pid)(self.port, self.folder.path()) == Some(pid)).then_some(Ok(()))
        })
        .unwrap_or(Err(NotReady::TimedOut))
    }

    fn why_exited(&self) -> NotReady {
        // Redis, Memcached and PostgreSQL all end their bind error with the
        // OS's words.
        if latest_run(&self.log_path()).contains("Address already in use") {
            NotReady::AddressInUse
        } else {
            NotReady::Exited
        }
    }

    fn describe(&self, not_ready: &NotReady) -> String {
        let probe = self.kind.probe;
        match not_ready {
            NotReady::AddressInUse => "its port was taken by another process".to_owned(),
            NotReady::Exited => format!("exited before answering {probe}"),
            NotReady::TimedOut => format!("did not answer {probe} within {READY_TIMEOUT:?}"),
        }
    }

    /// Kills the process of a failed start, whose port is abandoned.
    fn discard_process(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// The port the server listens on, on `127.0.0.1`.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The temporary folder: the server's working directory and its log.
    pub(crate) fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// SIGKILL, as a crash; returns once the process is gone. Does nothing
    /// if it is not running.
    ///
    /// # Panics
    /// When the process is still there 10 s after the signal.
    pub(crate) fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            if !process.kill() {
                self.fail("was still there 10 s after SIGKILL");
            }
        }
    }

    /// Kills a running server, then starts it again on the same port with the
    /// same command line, and returns once it answers the probe.
    ///
    /// # Panics
    /// When the port was taken while the server was down, or the server does
    /// not answer within [`READY_TIMEOUT`].
    pub(crate) fn restart(&mut self) {
        self.kill();
        if let Err(not_ready) = self.spawn_until_ready() {
            self.fail(&self.describe(&not_ready));
        }
    }

    /// SIGSTOP: connections are still accepted, nothing is answered.
    ///
    /// # Panics
    /// When the server is not running, or not stopped 10 s after the signal.
    pub(crate) fn pause(&mut self) {
        self.expect_running("pause");
        if !self.process.as_mut().is_some_and(Supervised::pause) {
            self.fail("was not stopped 10 s after SIGSTOP");
        }
    }

    /// SIGCONT, for a paused server.
    ///
    /// # Panics
    /// When the server is not running, or still stopped 10 s after the signal.
    pub(crate) fn resume(&mut self) {
        self.expect_running("resume");
        if !self.process.as_mut().is_some_and(Supervised::resume) {
            self.fail("was still stopped 10 s after SIGCONT");
        }
    }

    /// The pid of the running process, if it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.process
            .as_ref()
            .filter(|process| process.is_alive())
            .map(Supervised::pid)
    }

    /// Whether the process is alive: not killed, not exited. A paused server
    /// is running.
    pub(crate) fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Supervised::is_alive)
    }

    fn expect_running(&self, action: &str) {
        if !self.is_running() {
            self.fail(&format!("cannot {action}: it is not running"));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.folder.path().join(format!("{}.log", self.kind.family))
    }

    /// The end of the server's log, headed with its name, for panic messages.
    pub(crate) fn log_report(&self) -> String {
        let log = self.log_path();
        format!(
            "--- last {LOG_LINES} lines of {} ({} on port {}) ---\n{}",
            log.display(),
            self.kind.name,
            self.port,
            log_tail(&log, LOG_LINES),
        )
    }

    /// Panics with `problem` and the end of the server's log, which usually
    /// says why.
    #[track_caller]
    pub(crate) fn fail(&self, problem: &str) -> ! {
        panic!(
            "{} on port {}: {problem}\n{}",
            self.kind.name,
            self.port,
            self.log_report()
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Field order would do it too; this says that it must happen.
        self.process = None;
    }
}
