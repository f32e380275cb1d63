//! Three `cluster_node` processes (the example binary) on loopback ports,
//! thirty users counting through them round-robin, each with its own cookie
//! jar, and one node killed with SIGKILL halfway through.
//!
//! The users then leave the dead node out, as a load balancer with health
//! checks would, and retry the 503s the other nodes answer while they have
//! not yet declared it dead. At the end no session is lost (no count starts
//! over, no new cookie), no acknowledged increment is lost, and no read was
//! stale. The figures are printed: `cargo test --test cluster_processes --
//! --nocapture` shows them.
//!
//! The nodes run the example binary as cargo last built it: a plain `cargo
//! test` rebuilds it, `cargo test --test cluster_processes` alone does not,
//! so after changing session-cluster build the example again (the failure
//! message when it is missing names the command).

use std::{
    fs::File,
    net::{SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use reqwest::{header::SET_COOKIE, StatusCode};

const COOKIE_SECRET: &str = "cluster_processes cookie secret, thirty-two bytes plus";
const CLUSTER_SECRET: &str = "cluster_processes cluster secret, not the cookie one";

const USERS: usize = 30;
/// Increments acknowledged across all users before the kill, and again
/// after the survivors see it, so both phases carry real traffic.
const PHASE_INCREMENTS: u64 = 300;
/// Each user's bound on operations (an increment and a read each).
const MAX_OPS_PER_USER: usize = 500;
/// Attempts at one operation, 503s and connection errors included.
const ATTEMPTS: usize = 100;
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Between one user's operations, so thirty users do not saturate three
/// debug builds.
const THINK_TIME: Duration = Duration::from_millis(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds on every wait.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
const DETECT_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// The example binary, next to this test's own: target/<profile>/examples.
fn cluster_node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/cluster_processes-<hash>
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile
        .join("examples")
        .join(format!("cluster_node{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the cluster_node example is not built at {}: run\n\n    \
         cargo build --example cluster_node --features axum,cluster\n\n\
         with the same CARGO_TARGET_DIR and profile as this test (a plain `cargo test \
         --all-features` builds it; `cargo test --test cluster_processes` alone does not)",
        binary.display()
    );
    binary
}

/// `count` loopback ports free for TCP and UDP alike, held until all are
/// found so no two are the same.
fn free_ports(count: usize) -> Vec<SocketAddr> {
    let mut held = Vec::new();
    for _ in 0..count * 20 {
        if held.len() == count {
            break;
        }
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = tcp.local_addr().expect("its address");
        if let Ok(udp) = UdpSocket::bind(addr) {
            held.push((addr, tcp, udp));
        }
    }
    assert_eq!(
        held.len(),
        count,
        "no {count} loopback ports free for TCP and UDP"
    );
    held.into_iter().map(|(addr, ..)| addr).collect()
}

/// One `cluster_node` process.
struct Node {
    id: &'static str,
    http: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

/// The three processes; killed (SIGKILL) and reaped on drop, whatever
/// happened to the test.
struct Cluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Cluster {
    fn start(ids: &[&'static str]) -> Self {
        let binary = cluster_node_binary();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let peers = free_ports(ids.len());
        let https = free_ports(ids.len());
        let seeds = peers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let nodes = ids
            .iter()
            .zip(peers.iter().zip(&https))
            .map(|(&id, (peer, &http))| {
                let log = dir.path().join(format!("{id}.log"));
                let out = File::create(&log).expect("a log file");
                let mut command = Command::new(&binary);
                command
                    .args(["--id", id, "--http", &http.to_string()])
                    .args(["--listen", &peer.to_string(), "--seeds", &seeds])
                    .env("SESSION__COOKIE__SECRET", COOKIE_SECRET)
                    .env("SESSION__STORE__CLUSTER_SECRET", CLUSTER_SECRET)
                    .env("RUST_LOG", "warn,session_cluster=info")
                    .stdin(Stdio::null())
                    .stdout(out.try_clone().expect("the log file, twice"))
                    .stderr(out);
                // Only what this test sets: a developer's own settings would
                // change what is measured.
                for (name, _) in std::env::vars_os() {
                    if name.to_string_lossy().starts_with("SESSION__") {
                        command.env_remove(name);
                    }
                }
                let child = command
                    .spawn()
                    .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
                Node {
                    id,
                    http,
                    child: Some(child),
                    log,
                }
            })
            .collect();
        Self { nodes, _dir: dir }
    }

    /// Panics with every node's log when a node has exited on its own.
    fn check_alive(&mut self) {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push(format!("{} exited with {status}", node.id));
                }
            }
        }
        assert!(exited.is_empty(), "{}\n{}", exited.join("; "), self.logs());
    }

    fn kill(&mut self, index: usize) {
        let mut child = self.nodes[index].child.take().expect("a running node");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let text = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail = text.lines().rev().take(40).collect::<Vec<_>>();
                let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
                format!("--- {} ({}) ---\n{tail}", node.id, node.log.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The number after `"key":` in a line of JSON.
fn json_number(body: &str, key: &str) -> Option<u64> {
    let start = body.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits = body[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>();
    digits.parse().ok()
}

/// The members a node reports, or `None` when it does not answer.
async fn members(client: &reqwest::Client, http: SocketAddr) -> Option<u64> {
    let reply = client
        .get(format!("http://{http}/stats"))
        .send()
        .await
        .ok()?;
    json_number(&reply.text().await.ok()?, "members")
}

/// `count: N` from the example's `/` and `/count`.
fn parse_count(body: &str) -> Option<u64> {
    body.trim().strip_prefix("count: ")?.parse().ok()
}

/// What all users share: where to send, when to stop, and the totals.
struct Shared {
    /// The HTTP addresses of the nodes the "load balancer" sends to.
    live: RwLock<Vec<SocketAddr>>,
    stop: AtomicBool,
    acked: AtomicU64,
    started: Instant,
    last_503: Mutex<Option<Instant>>,
}

impl Shared {
    fn node(&self, cursor: usize) -> SocketAddr {
        let live = self.live.read().unwrap();
        live[cursor % live.len()]
    }

    fn saw_503(&self) {
        *self.last_503.lock().unwrap() = Some(Instant::now());
    }
}

/// One user's record of what the nodes told it.
#[derive(Debug, Default)]
struct User {
    /// Increments answered 200.
    acked: u64,
    /// The count the last answered increment returned.
    last_seen: u64,
    /// Failed increment attempts since the last answered one: a failed
    /// commit may have been applied (its reply was lost), so the next
    /// answered count may be that many higher.
    unknown: u64,
    /// Whether those failed attempts were all 503s, not lost connections.
    unknown_all_503: bool,
    /// Increments that were applied although their attempt failed.
    applied_unacked: u64,
    /// Of those, the ones whose failed attempts were all answered 503: a
    /// 503 for a write that was in fact applied.
    applied_after_503: u64,
    /// Whether any answer so far set the session cookie.
    has_cookie: bool,
    requests: u64,
    reads: u64,
    retried_503: u64,
    retried_errors: u64,
    slowest: Duration,
    /// Every broken promise, described.
    violations: Vec<String>,
    /// Whether the session was lost: a new cookie, or a count that began
    /// again at 1.
    lost_session: bool,
    lost_increments: u64,
    stale_reads: u64,
}

enum Op {
    Increment,
    Read,
}

impl User {
    /// One operation, retried on 503s and connection errors on the next
    /// live node, within [`ATTEMPTS`].
    async fn run(
        &mut self,
        name: usize,
        client: &reqwest::Client,
        shared: &Shared,
        cursor: &mut usize,
        op: &Op,
    ) {
        let started = Instant::now();
        let path = match op {
            Op::Increment => "/",
            Op::Read => "/count",
        };
        for _ in 0..ATTEMPTS {
            let node = shared.node(*cursor);
            *cursor += 1;
            self.requests += 1;
            let Ok(reply) = client.get(format!("http://{node}{path}")).send().await else {
                self.retried_errors += 1;
                if matches!(op, Op::Increment) {
                    self.unknown_all_503 = false;
                    self.unknown += 1;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let status = reply.status();
            let new_cookie = reply.headers().contains_key(SET_COOKIE);
            let body = reply.text().await.unwrap_or_default();
            if new_cookie && self.has_cookie {
                self.lost_session = true;
                self.violations.push(format!(
                    "user {name}: {path} on {node} answered {status} with a new session cookie"
                ));
            }
            self.has_cookie |= new_cookie;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                self.retried_503 += 1;
                shared.saw_503();
                if matches!(op, Op::Increment) {
                    self.unknown_all_503 = self.unknown == 0 || self.unknown_all_503;
                    self.unknown += 1;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            self.slowest = self.slowest.max(started.elapsed());
            let Some(count) = parse_count(&body).filter(|_| status == StatusCode::OK) else {
                self.violations.push(format!(
                    "user {name}: {path} on {node} answered {status}: {body:?}"
                ));
                return;
            };
            match op {
                Op::Increment => self.answered_increment(name, node, count, shared),
                Op::Read => self.answered_read(name, node, count),
            }
            return;
        }
        self.violations.push(format!(
            "user {name}: {path} failed {ATTEMPTS} times in {:?}",
            started.elapsed()
        ));
    }

    fn answered_increment(&mut self, name: usize, node: SocketAddr, count: u64, shared: &Shared) {
        if !self.has_cookie {
            self.violations.push(format!(
                "user {name}: increment {} on {node} answered {count} with no session cookie",
                self.acked + 1
            ));
        }
        let lowest = self.last_seen + 1;
        if count < lowest {
            self.lost_session |= count == 1;
            self.lost_increments += 1;
            self.violations.push(format!(
                "user {name}: increment on {node} answered {count} after {}",
                self.last_seen
            ));
        } else if count > lowest + self.unknown {
            self.violations.push(format!(
                "user {name}: increment on {node} answered {count} after {}, with only {} \
                 failed attempts that could have applied",
                self.last_seen, self.unknown
            ));
        } else {
            self.applied_unacked += count - lowest;
            if self.unknown_all_503 {
                self.applied_after_503 += count - lowest;
            }
        }
        self.acked += 1;
        self.last_seen = count;
        self.unknown = 0;
        self.unknown_all_503 = false;
        shared.acked.fetch_add(1, Ordering::Relaxed);
    }

    fn answered_read(&mut self, name: usize, node: SocketAddr, count: u64) {
        self.reads += 1;
        if count != self.last_seen {
            self.stale_reads += 1;
            self.violations.push(format!(
                "user {name}: read {count} on {node}, after an increment answered {}",
                self.last_seen
            ));
        }
    }
}

/// Increment, then read on the next node, until told to stop.
async fn user(name: usize, shared: Arc<Shared>) -> User {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an http client");
    let mut user = User::default();
    // Users start on different nodes, so every node takes new sessions.
    let mut cursor = name;
    for _ in 0..MAX_OPS_PER_USER {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        user.run(name, &client, &shared, &mut cursor, &Op::Increment)
            .await;
        if user.acked > 0 {
            user.run(name, &client, &shared, &mut cursor, &Op::Read)
                .await;
        }
        tokio::time::sleep(THINK_TIME).await;
    }
    // Every live node now agrees on the final count.
    let live = shared.live.read().unwrap().clone();
    for _ in 0..live.len() {
        user.run(name, &client, &shared, &mut cursor, &Op::Read)
            .await;
    }
    user
}

/// Polls until `done`, at most `timeout`; returns how long it took.
async fn poll_until<F, Fut>(timeout: Duration, mut done: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < timeout {
        if done().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_node_loses_no_session_and_no_increment() {
    let mut cluster = Cluster::start(&["a", "b", "c"]);
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    // The cluster forms: every node sees all three.
    let https = cluster
        .nodes
        .iter()
        .map(|node| node.http)
        .collect::<Vec<_>>();
    let formed = poll_until(FORM_TIMEOUT, || async {
        for &http in &https {
            if members(&probe, http).await != Some(3) {
                return false;
            }
        }
        true
    })
    .await;
    cluster.check_alive();
    assert!(
        formed.is_some(),
        "the nodes did not all see 3 members within {FORM_TIMEOUT:?}\n{}",
        cluster.logs()
    );

    let shared = Arc::new(Shared {
        live: RwLock::new(https.clone()),
        stop: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        started: Instant::now(),
        last_503: Mutex::new(None),
    });
    let users = (0..USERS)
        .map(|name| tokio::spawn(user(name, Arc::clone(&shared))))
        .collect::<Vec<_>>();

    // Phase one: traffic on three nodes.
    let acked = || shared.acked.load(Ordering::Relaxed);
    let warmed = poll_until(PHASE_TIMEOUT, || async { acked() >= PHASE_INCREMENTS }).await;
    cluster.check_alive();
    assert!(
        warmed.is_some(),
        "only {} increments in {PHASE_TIMEOUT:?} before the kill\n{}",
        acked(),
        cluster.logs()
    );

    // SIGKILL b; the load balancer's health check takes it out at once.
    let (victim, survivors) = (1, [https[0], https[2]]);
    let acked_at_kill = acked();
    cluster.kill(victim);
    let killed_at = Instant::now();
    shared
        .live
        .write()
        .unwrap()
        .retain(|&http| http != https[victim]);

    // The survivors declare it dead.
    let detected = poll_until(DETECT_TIMEOUT, || async {
        for &http in &survivors {
            if members(&probe, http).await != Some(2) {
                return false;
            }
        }
        true
    })
    .await;
    cluster.check_alive();
    let detected = detected.unwrap_or_else(|| {
        panic!(
            "the survivors did not see b leave within {DETECT_TIMEOUT:?}\n{}",
            cluster.logs()
        )
    });

    // Phase two: as much traffic again on the two survivors.
    let after = poll_until(PHASE_TIMEOUT, || async {
        acked() >= acked_at_kill + PHASE_INCREMENTS
    })
    .await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut reports = Vec::new();
    for handle in users {
        let report = tokio::time::timeout(PHASE_TIMEOUT, handle)
            .await
            .expect("a user did not finish within its bound")
            .expect("a user panicked");
        reports.push(report);
    }
    let elapsed = shared.started.elapsed();
    cluster.check_alive();

    let sum = |field: fn(&User) -> u64| reports.iter().map(field).sum::<u64>();
    let last_503 = shared
        .last_503
        .lock()
        .unwrap()
        .and_then(|at| at.checked_duration_since(killed_at));
    let mut held = Vec::new();
    for (index, &http) in https.iter().enumerate() {
        if index != victim {
            let stats = probe
                .get(format!("http://{http}/stats"))
                .send()
                .await
                .expect("stats");
            let text = stats.text().await.unwrap_or_default();
            held.push(format!(
                "{}={}",
                cluster.nodes[index].id,
                json_number(&text, "sessions_held").unwrap_or(0)
            ));
        }
    }
    println!("cluster_processes: 3 cluster_node processes, {USERS} users, b killed with SIGKILL");
    println!(
        "  requests {} (increments acknowledged {}, reads {}) in {elapsed:.1?}",
        sum(|u| u.requests),
        sum(|u| u.acked),
        sum(|u| u.reads)
    );
    println!(
        "  increments acknowledged before the kill {acked_at_kill}, after it {}",
        acked() - acked_at_kill
    );
    println!(
        "  503s retried {}, connection errors retried {}",
        sum(|u| u.retried_503),
        sum(|u| u.retried_errors)
    );
    println!(
        "  failed increments that had been applied (reply lost) {}, of which after 503s only {}",
        sum(|u| u.applied_unacked),
        sum(|u| u.applied_after_503)
    );
    println!("  time to detect (SIGKILL until both survivors see 2 members) {detected:.1?}");
    match last_503 {
        Some(at) => println!("  last 503 {at:.1?} after the kill"),
        None => println!("  no 503 after the kill"),
    }
    println!(
        "  slowest operation, retries included {:.1?}",
        reports.iter().map(|u| u.slowest).max().unwrap_or_default()
    );
    println!(
        "  sessions held by the survivors at the end: {}",
        held.join(", ")
    );
    println!(
        "  sessions lost {}, increments lost {}, stale reads {}",
        sum(|u| u64::from(u.lost_session)),
        sum(|u| u.lost_increments),
        sum(|u| u.stale_reads)
    );

    let violations = reports
        .iter()
        .flat_map(|u| u.violations.iter().cloned())
        .collect::<Vec<_>>();
    assert!(
        violations.is_empty(),
        "{} broken promises:\n{}\n{}",
        violations.len(),
        violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        cluster.logs()
    );
    assert_eq!(sum(|u| u64::from(u.lost_session)), 0);
    assert_eq!(sum(|u| u.lost_increments), 0);
    assert_eq!(sum(|u| u.stale_reads), 0);
    for (name, report) in reports.iter().enumerate() {
        assert_eq!(
            report.last_seen,
            report.acked + report.applied_unacked,
            "user {name}: the final count is not its acknowledged increments plus the failed \
             ones that applied"
        );
    }
    assert!(
        after.is_some(),
        "only {} increments after the kill within {PHASE_TIMEOUT:?}",
        acked() - acked_at_kill
    );
}
