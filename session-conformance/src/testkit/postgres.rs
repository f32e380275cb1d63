//! [`PostgresServer`], one real PostgreSQL cluster: `initdb` once, then
//! `postgres` as an unprivileged user.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::{
    ports::free_port,
    process::{find_binary, is_executable, run_bounded},
    server::{ServerKind, ServerProcess},
};

/// Where Debian's `postgresql` package puts the server's binaries, one
/// folder per major version; they are not on `PATH`.
const DEBIAN_BINARIES: &str = "/usr/lib/postgresql";

/// The install command a missing binary's panic quotes.
const INSTALL: &str = "sudo apt-get install -y postgresql";

/// How long `initdb` may take (under a second on an idle machine).
const INITDB_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a signal to the server's other processes may take.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The database, user and folder name the kit uses.
const SUPERUSER: &str = "postgres";

/// One real PostgreSQL server on a free loopback port, in its own temporary
/// folder, killed on drop and when the test process dies.
///
/// The start runs `initdb` (trust authentication for the superuser
/// `postgres`, UTF-8, the C locale) and then `postgres`, listening on
/// `127.0.0.1` and on a Unix socket in the folder. PostgreSQL refuses to run
/// as root, so when the tests run as root both run as the `postgres` user
/// that Debian's package creates (`nobody` where there is none), through
/// `setpriv`, and the folder is handed to that user.
///
/// For speed, and only because a test's data is worth nothing, it runs with
/// `fsync=off` and `full_page_writes=off`: a killed *server* loses no
/// committed row (a commit still writes its log to the kernel before it
/// answers; `synchronous_commit` stays on for that), but a crashed machine
/// would. The data folder is kept across
/// [`restart`](Self::restart), so unlike Redis and Memcached a restarted
/// server comes back with its rows, as a real one does.
///
/// [`kill`](Self::kill) and [`pause`](Self::pause) reach every process of
/// the server, not only the postmaster: each connection is served by a
/// backend process of its own, which would otherwise go on answering.
///
/// ```
/// use session_conformance::testkit::PostgresServer;
///
/// let mut server = PostgresServer::start();
/// server.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (7)");
/// assert_eq!(server.psql("SELECT n FROM t"), "7");
///
/// server.kill(); // as a crash would
/// assert!(!server.is_running());
/// server.restart(); // the same port, the same data
/// assert_eq!(server.psql("SELECT n FROM t"), "7");
/// ```
#[derive(Debug)]
pub struct PostgresServer {
    server: ServerProcess,
    binaries: PathBuf,
}

impl PostgresServer {
    /// Runs `initdb`, starts the server and returns once it reports itself
    /// ready to accept connections, with the pid the kit started.
    ///
    /// # Panics
    /// When PostgreSQL is not installed (the message names the package),
    /// `initdb` fails, or the server is not ready within 10 s; the message
    /// quotes the end of its log.
    #[must_use]
    pub fn start() -> Self {
        let binaries = require_binaries();
        let user = run_as();
        let kind = ServerKind {
            name: "postgres",
            family: "postgres",
            program: match &user {
                Some(_) => super::process::require_binary("setpriv", "util-linux"),
                None => binaries.join("postgres"),
            },
            probe: "its postmaster.pid for `ready`",
            serving_pid,
        };
        let server = ServerProcess::launch(kind, free_port, |port, folder| {
            init_cluster(&binaries, user.as_deref(), folder);
            command_line(&binaries, user.as_deref(), port, folder)
        });
        Self { server, binaries }
    }

    /// The port the server listens on, on `127.0.0.1`.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`: the superuser, no
    /// password (trust), the default database.
    #[must_use]
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{SUPERUSER}",
            self.port()
        )
    }

    /// The server's temporary folder, with its data folder (`data`), its
    /// socket and its log (`postgres.log`). Removed on drop.
    #[must_use]
    pub fn folder(&self) -> &Path {
        self.server.folder()
    }

    /// Runs `sql` with `psql` as the superuser and returns what it printed,
    /// trimmed, unaligned and without headers (`7`, `a|b`).
    ///
    /// # Panics
    /// When `psql` fails or takes more than 10 s; the message quotes its
    /// error and the end of the server's log.
    #[must_use = "psql's output is its answer"]
    pub fn psql(&self, sql: &str) -> String {
        let mut command = Command::new(self.binaries.join("psql"));
        command
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port().to_string()])
            .args(["-U", SUPERUSER, "-d", SUPERUSER, "-c", sql]);
        match run_bounded(&mut command, Duration::from_secs(10)) {
            Ok(output) if output.status.success() => {
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
            Ok(output) => self.server.fail(&format!(
                "psql -c {sql:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(problem) => self.server.fail(&problem),
        }
    }

    /// Kills the server and every process of it with SIGKILL, as a crash
    /// would, and returns once the postmaster is gone. Does nothing if it is
    /// not running.
    ///
    /// # Panics
    /// When the postmaster is still there 10 s after the signal.
    pub fn kill(&mut self) {
        // Listed before the postmaster dies: orphans are adopted elsewhere.
        let children = self.children();
        self.server.kill();
        signal(&children, "KILL");
    }

    /// Starts the server again on the same port, on the same data, and
    /// returns once it is ready. A running server is killed first, as if it
    /// had crashed; PostgreSQL then recovers from its write-ahead log.
    ///
    /// # Panics
    /// When the port was taken while the server was down, or the server is
    /// not ready within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        self.server.restart();
    }

    /// Stops the server and its backends with SIGSTOP: connections are still
    /// accepted, nothing is answered, as with a hung server.
    ///
    /// # Panics
    /// When the server is not running, or not stopped 10 s after the signal.
    pub fn pause(&mut self) {
        self.server.pause();
        signal(&self.children(), "STOP");
    }

    /// Lets a paused server and its backends go on with SIGCONT.
    ///
    /// # Panics
    /// When the server is not running, or still stopped 10 s after the
    /// signal.
    pub fn resume(&mut self) {
        signal(&self.children(), "CONT");
        self.server.resume();
    }

    /// Whether the postmaster is alive: not killed, not exited. A paused
    /// server is running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// The pids of the postmaster's children (backends, background workers).
    fn children(&self) -> Vec<String> {
        let Some(parent) = self.server.pid() else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let stat = fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
                // After the command name in parentheses: state, then ppid.
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                (ppid.parse() == Ok(parent)).then_some(name)
            })
            .collect()
    }
}

/// Sends SIG`name` to `pids`; best effort, as a process may have exited.
fn signal(pids: &[String], name: &str) {
    if pids.is_empty() {
        return;
    }
    let mut command = Command::new("kill");
    command.arg(format!("-{name}")).args(pids);
    let _ = run_bounded(&mut command, SIGNAL_TIMEOUT);
}

/// The folder that holds `initdb` and `postgres`: on `PATH`, or the newest
/// version under [`DEBIAN_BINARIES`].
fn require_binaries() -> PathBuf {
    if let (Some(postgres), Some(_)) = (find_binary("postgres"), find_binary("initdb")) {
        // A symlink on PATH (to Debian's folder, say): its real folder also
        // holds psql of the same version.
        let real = fs::canonicalize(&postgres).unwrap_or(postgres);
        if let Some(folder) = real.parent() {
            if is_executable(&folder.join("initdb")) {
                return folder.to_owned();
            }
        }
    }
    let newest = fs::read_dir(DEBIAN_BINARIES)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (is_executable(&bin.join("postgres")) && is_executable(&bin.join("initdb")))
                .then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "postgres and initdb not found on PATH or in {DEBIAN_BINARIES}/*/bin; \
             install them with: {INSTALL}"
        ),
    }
}

/// The user to run PostgreSQL as, when the tests run as root (which it
/// refuses); `None` to run it as ourselves.
fn run_as() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").ok();
    let uid = status.as_deref().and_then(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))?
            .split_whitespace()
            .nth(1) // effective
            .map(str::to_owned)
    });
    let uid = uid.or_else(|| {
        let output = run_bounded(Command::new("id").arg("-u"), SIGNAL_TIMEOUT).ok()?;
        Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    });
    if uid.as_deref() != Some("0") {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let exists = |user: &str| {
        passwd
            .lines()
            .any(|line| line.starts_with(&format!("{user}:")))
    };
    Some(
        if exists(SUPERUSER) {
            SUPERUSER
        } else {
            "nobody"
        }
        .to_owned(),
    )
}

/// `setpriv`'s arguments that make the rest run as `user`: it then `exec`s,
/// so the pid the kit watches is the program's own.
fn as_user(user: &str) -> Vec<String> {
    vec![
        format!("--reuid={user}"),
        format!("--regid={user}"),
        "--init-groups".to_owned(),
        "--".to_owned(),
    ]
}

/// Runs `initdb` into `folder/data`, once: restarts and later port attempts
/// reuse it.
fn init_cluster(binaries: &Path, user: Option<&str>, folder: &Path) {
    let data = folder.join("data");
    if data.exists() {
        return;
    }
    let fail = |problem: String| -> ! { panic!("initdb in {}: {problem}", data.display()) };
    if let Some(user) = user {
        let mut chown = Command::new("chown");
        chown.arg(format!("{user}:")).arg(folder);
        match run_bounded(&mut chown, SIGNAL_TIMEOUT) {
            Ok(output) if output.status.success() => {}
            Ok(output) => fail(format!(
                "cannot hand the folder to {user}: {}",
                String::from_utf8_lossy(&output.stderr)
            )),
            Err(problem) => fail(problem),
        }
    }
    let initdb = binaries.join("initdb");
    let mut command = match user {
        Some(user) => {
            let mut command = Command::new("setpriv");
            command.args(as_user(user)).arg(&initdb);
            command
        }
        None => Command::new(&initdb),
    };
    command
        .arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
        // The test's data is worth nothing; skipping the final fsync of
        // every file saves most of initdb's time.
        .arg("--no-sync");
    match run_bounded(&mut command, INITDB_TIMEOUT) {
        Ok(output) if output.status.success() => {}
        Ok(output) => fail(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(problem) => fail(problem),
    }
}

/// The command line for a run on `port`, after the program (`setpriv` or
/// `postgres`).
fn command_line(binaries: &Path, user: Option<&str>, port: u16, folder: &Path) -> Vec<String> {
    let mut args = user.map(as_user).unwrap_or_default();
    if user.is_some() {
        args.push(binaries.join("postgres").display().to_string());
    }
    let path = |name: &str| folder.join(name).display().to_string();
    #[rustfmt::skip]
    args.extend([
        "-D".to_owned(), path("data"),
        "-p".to_owned(), port.to_string(),
        "-h".to_owned(), "127.0.0.1".to_owned(),
        // The socket in the folder, not /var/run/postgresql: several
        // servers at once, and no system folder needed.
        "-k".to_owned(), folder.display().to_string(),
        // Test data is worth nothing: see the type's docs.
        "-c".to_owned(), "fsync=off".to_owned(),
        "-c".to_owned(), "full_page_writes=off".to_owned(),
        // Every test opens a pool of its own, and tests run in parallel.
        "-c".to_owned(), "max_connections=400".to_owned(),
    ]);
    args
}

/// The pid of the postmaster serving `port` from `folder/data`, once it
/// reports itself ready: `postmaster.pid` holds the pid on its first line,
/// the port on its fourth and the state (`ready`) on its eighth.
fn serving_pid(port: u16, folder: &Path) -> Option<u32> {
    let pid_file = fs::read_to_string(folder.join("data").join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().map(str::trim).collect();
    let ready = lines.get(3)?.parse() == Ok(port) && *lines.get(7)? == "ready";
    ready.then(|| lines[0].parse().ok()).flatten()
}
