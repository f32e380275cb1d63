//! A child process under a small `sh` watchdog, so that it never outlives the
//! test process, however that process ends; and the other process chores of
//! the kit: finding binaries, bounded commands, log tails.

use std::{
    env,
    fs::{self, OpenOptions},
    io::{BufRead, BufReader, Read, Write},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Output, Stdio},
    thread::{self, JoinHandle},
    time::Duration,
};

use super::poll_until;

/// The watchdog script; `sh -c WATCHDOG sh <folder> <program> <args>...`.
///
/// Statics are never dropped, and a test process that aborts or is SIGKILLed
/// runs no destructors at all, so the kill cannot live in Rust. Instead `sh`
/// reads commands from a pipe whose only writer is the test process: the
/// kernel closes that pipe however the process ends, and the EOF makes the
/// watchdog kill the server. EOF also means nobody is left to remove the
/// temporary folder, so the watchdog does it; after a deliberate `KILL` the
/// folder stays, for a restart.
///
/// The server's stdout goes to stderr (the log) so that only `sh` writes the
/// pid line. `HUP` is ignored because a process group whose parent died while
/// a member is stopped (a paused server) gets SIGHUP, and the watchdog must
/// live on to read the EOF.
const WATCHDOG: &str = r#"
folder=$1
shift
"$@" >&2 &
child=$!
echo "$child"
exec >&2
trap '' HUP
orphaned=yes
while IFS= read -r command; do
    case $command in
        STOP|CONT) kill -"$command" "$child" ;;
        KILL) orphaned=no; break ;;
    esac
done
kill -CONT "$child" 2>/dev/null
kill -KILL "$child" 2>/dev/null
wait "$child"
if [ "$orphaned" = yes ]; then rm -rf -- "$folder"; fi
"#;

/// Starts each run's section of the log, so a run's own lines can be told
/// from those of the runs before it.
const RUN_MARKER: &str = "--- testkit: running";

/// How long a process may take to show that it got a signal.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A process started through the watchdog. Killed on drop.
#[derive(Debug)]
pub(crate) struct Supervised {
    watchdog: Child,
    /// The watchdog's stdin; dropping it is the EOF that kills the process.
    commands: Option<ChildStdin>,
    pid: u32,
}

impl Supervised {
    /// Starts `program` with `args` in `folder`, its output appended to
    /// `log`. Should the test process die first, the watchdog kills the
    /// process and removes `folder`.
    pub(crate) fn spawn(program: &Path, args: &[String], folder: &Path, log: &Path) -> Self {
        let mut log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|err| panic!("cannot open the log {}: {err}", log.display()));
        // Best effort: a log without the marker only loses its sections.
        let _ = writeln!(log_file, "{RUN_MARKER} {} {args:?} ---", program.display());
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(folder)
            .arg(program)
            .args(args)
            .current_dir(folder)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            // Out of the terminal's process group: Ctrl-C must end the test
            // process only, so that the watchdog sees the EOF and cleans up.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start sh to run {}: {err}", program.display()));
        let pid = read_pid(&mut watchdog);
        let commands = watchdog.stdin.take();
        Self {
            watchdog,
            commands,
            pid,
        }
    }

    /// The pid of the process itself, not of its watchdog.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process exists and has not exited; a stopped one counts.
    pub(crate) fn is_alive(&self) -> bool {
        process_state(self.pid).is_some_and(|state| !matches!(state, 'Z' | 'X'))
    }

    /// SIGSTOP. True once the kernel reports the process stopped.
    pub(crate) fn pause(&mut self) -> bool {
        self.send("STOP") && self.wait_for_state(|state| state == Some('T'))
    }

    /// SIGCONT. True once the kernel no longer reports the process stopped.
    pub(crate) fn resume(&mut self) -> bool {
        self.send("CONT") && self.wait_for_state(|state| state != Some('T'))
    }

    /// SIGKILL, then waits until the watchdog has reaped the process and
    /// exited. False if that took longer than [`SIGNAL_TIMEOUT`]. Idempotent.
    pub(crate) fn kill(&mut self) -> bool {
        self.send("KILL");
        // Closing the pipe also ends the watchdog, should KILL not get there.
        self.commands = None;
        let watchdog = &mut self.watchdog;
        poll_until(SIGNAL_TIMEOUT, || match watchdog.try_wait() {
            Ok(Some(_)) | Err(_) => Some(()),
            Ok(None) => None,
        })
        .is_some()
    }

    fn send(&mut self, command: &str) -> bool {
        self.commands
            .as_mut()
            .is_some_and(|pipe| pipe.write_all(format!("{command}\n").as_bytes()).is_ok())
    }

    fn wait_for_state(&self, wanted: impl Fn(Option<char>) -> bool) -> bool {
        poll_until(SIGNAL_TIMEOUT, || {
            wanted(process_state(self.pid)).then_some(())
        })
        .is_some()
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Nothing to report from a destructor: a watchdog slower than the
        // timeout still kills the process once it reads the closed pipe.
        self.kill();
    }
}

fn read_pid(watchdog: &mut Child) -> u32 {
    let stdout = watchdog
        .stdout
        .take()
        .expect("the watchdog's stdout is piped");
    let mut line = String::new();
    // Bounded: the watchdog prints the pid right after forking, or exits.
    let _ = BufReader::new(stdout).read_line(&mut line);
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("the watchdog reported no pid, but {line:?}"))
}

/// The state letter of a process (`R`, `S`, `T` stopped, `Z` zombie), or
/// `None` once it is gone.
fn process_state(pid: u32) -> Option<char> {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The command name, in parentheses, may itself hold spaces or `)`.
        Ok(stat) => stat.rsplit_once(')')?.1.trim_start().chars().next(),
        Err(_) if Path::new("/proc/self/stat").exists() => None,
        // No procfs (macOS, the BSDs): ps prints nothing for a missing pid.
        Err(_) => {
            let mut ps = Command::new("ps");
            ps.args(["-o", "stat=", "-p", &pid.to_string()]);
            let output = run_bounded(&mut ps, SIGNAL_TIMEOUT).ok()?;
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .chars()
                .next()
        }
    }
}

/// The first executable file named `binary` in a folder of `PATH`, as a
/// shell would run it; `None` when there is none.
///
/// A file without an execute bit does not count: the shell would not run
/// it either, so a test that went by it would fail later, and less clearly.
///
/// ```
/// use session_conformance::testkit::find_binary;
///
/// // `sh` is on the PATH of every Unix machine the kit runs on.
/// let sh = find_binary("sh").expect("sh is on the PATH");
/// assert!(sh.ends_with("sh"));
/// assert_eq!(find_binary("no-such-binary-of-the-testkit"), None);
/// ```
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join(binary))
        .find(|path| is_executable(path))
}

/// Finds `binary` on `PATH`. A missing server is a failed test that says how
/// to install it, never a skipped one: a skip would let CI pass with nothing
/// tested.
pub(crate) fn require_binary(binary: &str, package: &str) -> PathBuf {
    find_binary(binary).unwrap_or_else(|| {
        panic!("{binary} not found on PATH; install it with: sudo apt-get install -y {package}")
    })
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `command` to completion, killing it after `timeout`: a client stuck
/// on a paused server must fail the test, not hang it.
pub(crate) fn run_bounded(command: &mut Command, timeout: Duration) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot start {command:?}: {err}"))?;
    // Read while it runs: a child that fills a pipe would wait for us forever.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    match poll_until(timeout, || child.try_wait().transpose()) {
        Some(Ok(status)) => Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }),
        Some(Err(err)) => Err(format!("waiting for {command:?}: {err}")),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{command:?} did not finish within {timeout:?}"))
        }
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// The last `count` lines of `log`: a server that failed usually said why in
/// its last words.
pub(crate) fn log_tail(log: &Path, count: usize) -> String {
    let text = read_log(log);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// What the latest run wrote to `log`.
pub(crate) fn latest_run(log: &Path) -> String {
    let text = read_log(log);
    match text.rfind(RUN_MARKER) {
        Some(start) => text[start..].to_owned(),
        None => text,
    }
}

fn read_log(log: &Path) -> String {
    fs::read(log).map_or_else(
        |err| format!("(cannot read {}: {err})", log.display()),
        |bytes| String::from_utf8_lossy(&bytes).into_owned(),
    )
}
