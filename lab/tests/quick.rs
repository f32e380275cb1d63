//! Runs `session-lab --quick` as a user would and checks the lab's own
//! claims from the figures it writes as JSON:
//!
//! - a (local memory, sticky balancer) logs users out when a node dies,
//!   and not before;
//! - b (session clustering: every server copies every session to every
//!   other after answering) serves stale reads before any fault, and every
//!   server holds every session;
//! - b5, the same on 5 servers, sends about twice b's bytes per write
//!   (N-1 copies: 4 against 2), and still holds every session per server,
//!   where the session-kit cluster holds fewer per server at N = 5 than at
//!   N = 3;
//! - c and c5 (the session-kit cluster at N = 3 and 5) and, when Redis is
//!   installed, e (the Redis failover mirror) lose no session, serve no
//!   stale read and lose no acknowledged increment, through the same
//!   faults: a node kill and a partition for the clusters, a Redis kill
//!   for e.
//!
//! The report is then opened in a real browser, headless Chromium: its
//! screenshot must show a rendered page (not a blank one), and the page
//! the browser built must hold the clustering baseline's verdict naming its
//! stale reads. A missing `chromium` fails the test with the command that
//! installs it.
//!
//! When `redis-server` is installed (`scripts/test` installs it) the test
//! insists on d to g with `--redis`, so a lab that wrongly thinks Redis is
//! missing fails here rather than skipping them; likewise h with
//! `--postgres` when PostgreSQL is installed too.
//!
//! Only counts are checked, never timings: on a slow machine the run makes
//! fewer requests, which changes no claim. The one bound is on how long
//! the run may take before the test gives up on it; the run's wall time is
//! printed, for the record.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use session_conformance::testkit::find_binary;

/// Far above a quick run's minute, for a debug build on a busy machine.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// How long the browser may take for one page.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);
/// The browser window the report is shot in, in CSS pixels: the PNG must
/// come out this size.
const SHOT: (u32, u32) = (1000, 2400);

fn strategy<'a>(figures: &'a Value, key: &str) -> &'a Value {
    figures["strategies"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["key"] == key))
        .unwrap_or_else(|| panic!("no strategy {key:?} in {figures:#}"))
}

fn count(strategy: &Value, field: &str) -> u64 {
    strategy[field].as_u64().unwrap_or_else(|| {
        panic!(
            "{field} of {} is not a count: {strategy:#}",
            strategy["key"]
        )
    })
}

fn seconds(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number of seconds: {value}"))
}

/// The figures that show whether a strategy lost anything, for messages.
fn losses(strategy: &Value) -> String {
    format!(
        "{}: lost sessions {}, stale reads {}, lost increments {}, failed requests {}, \
         requests {}, phantom counts {}, unread counters {}",
        strategy["key"],
        strategy["lost_sessions"],
        strategy["stale_reads"],
        strategy["lost_increments"],
        strategy["failed_requests"],
        strategy["requests"],
        strategy["phantom_counts"],
        strategy["unread_counters"],
    )
}

fn assert_ran(strategy: &Value) {
    assert_eq!(
        strategy["ran"], true,
        "{} did not run: {}",
        strategy["key"], strategy["skipped_because"]
    );
}

fn assert_nothing_lost(strategy: &Value, output: &str) {
    assert_ran(strategy);
    // `unread_counters` too: a user whose final read never got an answer
    // is not checked for lost increments, so enough failed final reads
    // would pass the other zeros with nothing verified.
    for field in [
        "lost_sessions",
        "stale_reads",
        "lost_increments",
        "phantom_counts",
        "unread_counters",
    ] {
        assert_eq!(
            count(strategy, field),
            0,
            "{}\n\nthe run's output:\n{output}",
            losses(strategy)
        );
    }
    assert!(
        count(strategy, "acknowledged_increments") > 0,
        "{} acknowledged nothing: the check tested nothing",
        strategy["key"]
    );
}

/// When the node kill took effect for `strategy`, in seconds from the
/// start of the load, as the strategy's own fault timeline recorded it.
fn node_killed_at(strategy: &Value) -> f64 {
    let kill = strategy["faults_applied"]
        .as_array()
        .and_then(|faults| faults.iter().find(|f| f["action"] == "kill-node"))
        .unwrap_or_else(|| panic!("{} has no kill-node fault: {strategy:#}", strategy["key"]));
    seconds(&kill["applied_seconds"], "the kill's applied_seconds")
}

/// When `action` took effect for `strategy`, in seconds from the start of
/// the load.
fn applied_at(strategy: &Value, action: &str) -> f64 {
    let fault = strategy["faults_applied"]
        .as_array()
        .and_then(|faults| faults.iter().find(|f| f["action"] == action))
        .unwrap_or_else(|| panic!("{} has no {action} fault: {strategy:#}", strategy["key"]));
    seconds(&fault["applied_seconds"], "a fault's applied_seconds")
}

/// Checks the partition took effect on a session-kit cluster: its cut-off
/// node refuses (503) while it is cut off, so requests fail in the buckets
/// between the cut and the heal. Without this a partition that cut
/// nothing would pass the "nothing lost" checks all the same.
fn assert_partition_refused_requests(cluster: &Value) {
    let (cut, healed) = (
        applied_at(cluster, "partition-node"),
        applied_at(cluster, "heal-partition"),
    );
    let failed: u64 = cluster["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|bucket| {
            let start = seconds(&bucket["start_seconds"], "a bucket's start");
            start >= cut && start < healed
        })
        .map(|bucket| count(bucket, "failed"))
        .sum();
    assert!(
        failed > 0,
        "{}: no request failed while node 1 was cut off ({cut:.1} s to {healed:.1} s): \
         the partition cut nothing\n{:#}",
        cluster["key"],
        cluster["timeline"]
    );
}

/// The stale reads of `strategy`'s timeline in the buckets that end before
/// `instant`: with no fault yet.
fn stale_reads_before(strategy: &Value, instant: f64) -> u64 {
    let buckets = strategy["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no timeline: {strategy:#}", strategy["key"]));
    assert!(buckets.len() >= 2, "a timeline of one bucket: {strategy:#}");
    let width = seconds(&buckets[1]["start_seconds"], "a bucket's start")
        - seconds(&buckets[0]["start_seconds"], "a bucket's start");
    buckets
        .iter()
        .filter(|bucket| seconds(&bucket["start_seconds"], "a bucket's start") + width <= instant)
        .map(|bucket| count(bucket, "stale_reads"))
        .sum()
}

/// The clustering baseline's claims: stale reads with no fault yet (a
/// request beat the copy of the user's last write), and every server
/// holding every session at the end.
fn assert_clustering_shows_its_failures(clustering: &Value, users: u64) {
    assert_ran(clustering);
    let killed_at = node_killed_at(clustering);
    let stale = stale_reads_before(clustering, killed_at);
    assert!(
        stale > 0,
        "session clustering served no stale read before the first fault (at {killed_at:.1} s): \
         {}\n{:#}",
        losses(clustering),
        clustering["timeline"]
    );
    let held: Vec<u64> = clustering["sessions_per_node"]
        .as_array()
        .expect("sessions_per_node")
        .iter()
        .map(|n| n.as_u64().expect("a count"))
        .collect();
    // Every user ends logged in, so every server holds at least one
    // session per user: all of them. A tenth of slack for copies a
    // restarted server missed while it was down and started.
    assert!(
        held.iter().all(|&n| n * 10 >= users * 9),
        "a clustering server holds fewer than all {users} users' sessions: {held:?}"
    );
}

/// The lost sessions of `strategy`'s timeline clearly before `instant`
/// and from `instant`'s bucket on; the bucket just before `instant`'s is
/// in neither, see below.
fn lost_sessions_around(strategy: &Value, instant: f64) -> (u64, u64) {
    let buckets = strategy["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no timeline: {strategy:#}", strategy["key"]));
    assert!(buckets.len() >= 2, "a timeline of one bucket: {strategy:#}");
    let width = seconds(&buckets[1]["start_seconds"], "a bucket's start")
        - seconds(&buckets[0]["start_seconds"], "a bucket's start");
    // An event is stamped with the time its request was sent, and a
    // request sent just before the kill can still meet it: its balancer
    // finds the node gone, re-pins the user to another node, and the 401
    // is stamped a moment before the kill. So the bucket before the kill's
    // counts neither way: "before" ends a whole bucket ahead of the kill,
    // which leaves a request at least one bucket (0.5 s in a quick run) to
    // have been answered by the live node.
    let mut before = 0;
    let mut after = 0;
    for bucket in buckets {
        let start = seconds(&bucket["start_seconds"], "a bucket's start");
        let lost = count(bucket, "lost_sessions");
        if start + width <= instant - width {
            before += lost;
        } else if start + width > instant {
            after += lost;
        }
    }
    (before, after)
}

/// The headless browser, or a failure that says how to install it.
fn chromium() -> PathBuf {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find_map(find_binary)
        .unwrap_or_else(|| {
            panic!(
                "the report is checked in headless Chromium, which is not on the PATH; \
                 install it with\n\n    sudo apt-get install -y chromium\n"
            )
        })
}

/// Runs headless Chromium with `args` then `page`, bounded by
/// [`BROWSER_LIMIT`]; returns its stdout. Its own profile folder in `dir`,
/// so no user profile is touched; no sandbox, which needs privileges a
/// container or CI runner often lacks (the page is our own file).
fn browse(dir: &Path, args: &[String], page: &Path) -> String {
    let stdout_path = dir.join("browser-stdout.txt");
    let stderr_path = dir.join("browser-stderr.txt");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("a file for the browser's stdout"))
        .stderr(File::create(&stderr_path).expect("a file for the browser's stderr"))
        .spawn()
        .expect("chromium starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium still running after {BROWSER_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "chromium failed: {status}\n{stderr}");
    std::fs::read_to_string(&stdout_path).expect("the browser's stdout")
}

/// Shoots the report and checks the picture: a PNG of the window's size,
/// with enough ink and enough colours to be the report's text and charts
/// (a blank page, or an error page, has neither).
fn check_screenshot(dir: &Path, report: &Path) {
    let shot = dir.join("report.png");
    browse(
        dir,
        &[
            format!("--window-size={},{}", SHOT.0, SHOT.1),
            format!("--screenshot={}", shot.display()),
        ],
        report,
    );
    let decoder = png::Decoder::new(File::open(&shot).expect("the screenshot"));
    let mut reader = decoder.read_info().expect("the screenshot is a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut pixels)
        .expect("the screenshot decodes");
    assert_eq!(
        (info.width, info.height),
        SHOT,
        "the screenshot is not the window's size"
    );
    let channels = info.color_type.samples();
    assert!(
        channels >= 3 && info.bit_depth == png::BitDepth::Eight,
        "an unexpected PNG format: {info:?}"
    );
    let mut inked = 0_u64;
    let mut colours = std::collections::HashSet::new();
    for pixel in pixels[..info.buffer_size()].chunks(channels) {
        let rgb = (pixel[0], pixel[1], pixel[2]);
        if rgb != (255, 255, 255) {
            inked += 1;
        }
        colours.insert(rgb);
    }
    let total = u64::from(SHOT.0) * u64::from(SHOT.1);
    assert!(
        inked * 50 > total,
        "the screenshot is almost blank: {inked} of {total} pixels are not white"
    );
    assert!(
        colours.len() > 50,
        "the screenshot has only {} colours: no charts rendered",
        colours.len()
    );
}

/// The page as the browser built it, and the clustering baseline's
/// verdict in it: it must name the stale reads, with a count above 0.
fn check_clustering_verdict(dir: &Path, report: &Path) {
    let dom = browse(dir, &["--dump-dom".to_owned()], report);
    let (_, verdict) = dom
        .split_once("data-strategy=\"clustering\"")
        .unwrap_or_else(|| panic!("the rendered report has no clustering verdict:\n{dom}"));
    let verdict = verdict.split("</li>").next().unwrap_or_default();
    let stale = verdict
        .split_once(" stale reads")
        .and_then(|(before, _)| before.rsplit(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the clustering verdict names no stale reads: {verdict}"));
    assert!(
        stale > 0,
        "the clustering verdict shows 0 stale reads: {verdict}"
    );
}

/// The quick run, its output in files: read while it runs, a pipe could
/// fill, and a lab blocked on a full pipe would look like a hung one.
struct Run {
    figures: Value,
    output: String,
    wall: Duration,
}

/// Whether PostgreSQL is installed where the test kit finds it: on the
/// PATH, or in Debian's own folder.
fn postgres_installed() -> bool {
    (find_binary("postgres").is_some() && find_binary("initdb").is_some())
        || std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|entry| entry.path().join("bin/postgres").exists())
}

/// The mean session copies per app server of `strategy`.
fn copies_per_server(strategy: &Value) -> f64 {
    let held: Vec<u64> = strategy["sessions_per_node"]
        .as_array()
        .expect("sessions_per_node")
        .iter()
        .map(|n| n.as_u64().expect("a count"))
        .collect();
    held.iter().sum::<u64>() as f64 / held.len().max(1) as f64
}

fn per_write(strategy: &Value) -> f64 {
    strategy["store_bytes_per_write"]
        .as_f64()
        .unwrap_or_else(|| panic!("no store_bytes_per_write: {strategy:#}"))
}

fn run_quick(dir: &Path, redis: bool, postgres: bool) -> Run {
    let json = dir.join("figures.json");
    let report = dir.join("report.html");
    let stdout_path = dir.join("stdout.txt");
    let stderr_path = dir.join("stderr.txt");
    let mut command = Command::new(env!("CARGO_BIN_EXE_session-lab"));
    command
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("a file for the lab's stdout"))
        .stderr(File::create(&stderr_path).expect("a file for the lab's stderr"));
    if redis {
        command.arg("--redis");
    }
    if postgres {
        command.arg("--postgres");
    }
    let mut child = command.spawn().expect("the session-lab binary starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for session-lab") {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("session-lab --quick still running after {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let wall = started.elapsed();
    let read = |path: &Path| {
        String::from_utf8_lossy(&std::fs::read(path).expect("the lab's output")).into_owned()
    };
    let output = format!("{}{}", read(&stdout_path), read(&stderr_path));
    assert!(status.success(), "session-lab --quick failed:\n{output}");
    let html = std::fs::read_to_string(&report).expect("the HTML report");
    assert!(html.contains("<svg"), "the report has no chart");
    check_screenshot(dir, &report);
    check_clustering_verdict(dir, &report);
    let figures = serde_json::from_slice(&std::fs::read(&json).expect("the JSON figures"))
        .expect("the figures are JSON");
    Run {
        figures,
        output,
        wall,
    }
}

#[test]
fn the_quick_run_shows_each_failure_mode_and_none_in_session_kit() {
    let redis = find_binary("redis-server");
    let postgres = redis.is_some() && postgres_installed();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let Run {
        figures,
        output,
        wall,
    } = run_quick(dir.path(), redis.is_some(), postgres);
    println!("{output}");
    // The lab's own figure ends its "report: PATH (run took N s)" line.
    let took = output
        .lines()
        .find_map(|line| line.split_once("(run took ").map(|(_, took)| took))
        .map_or("no \"run took\" line", |took| took.trim_end_matches(')'));
    println!(
        "session-lab --quick wall time: {took} as the lab printed it; {:.1} s as the test \
         measured it, process start to exit",
        wall.as_secs_f64()
    );

    let sticky = strategy(&figures, "sticky-memory");
    let killed_at = node_killed_at(sticky);
    let (before, after) = lost_sessions_around(sticky, killed_at);
    assert_eq!(
        before,
        0,
        "a sticky balancer lost sessions before the node died (at {killed_at:.1} s): {}\n{:#}",
        losses(sticky),
        sticky["timeline"]
    );
    assert!(
        after > 0,
        "a sticky balancer lost no session after the node died (at {killed_at:.1} s): {}\n{:#}",
        losses(sticky),
        sticky["timeline"]
    );
    let users = figures["users"].as_u64().expect("the users per strategy");
    let (clustering, clustering_5) = (
        strategy(&figures, "clustering"),
        strategy(&figures, "clustering-5"),
    );
    assert_clustering_shows_its_failures(clustering, users);
    assert_clustering_shows_its_failures(clustering_5, users);
    // N-1 copies per write: 4 at N = 5 against 2 at N = 3.
    assert!(
        per_write(clustering_5) > 1.5 * per_write(clustering),
        "clustering's traffic per write did not grow with N-1: {:.0} B at N = 3, {:.0} B at N = 5",
        per_write(clustering),
        per_write(clustering_5)
    );
    let (cluster, cluster_5) = (
        strategy(&figures, "cluster"),
        strategy(&figures, "cluster-5"),
    );
    assert_nothing_lost(cluster, &output);
    assert_nothing_lost(cluster_5, &output);
    assert_partition_refused_requests(cluster);
    assert_partition_refused_requests(cluster_5);
    // 2 copies of each session whatever N: 2/3 of them per server at
    // N = 3, 2/5 at N = 5.
    assert!(
        copies_per_server(cluster_5) < copies_per_server(cluster),
        "the cluster's copies per server did not fall with N: {:.1} at N = 3, {:.1} at N = 5",
        copies_per_server(cluster),
        copies_per_server(cluster_5)
    );
    match redis {
        Some(server) => {
            for key in ["redis", "redis-standby", "redis-near-cache"] {
                assert_ran(strategy(&figures, key));
            }
            assert_nothing_lost(strategy(&figures, "redis-failover"), &output);
            if postgres {
                assert_ran(strategy(&figures, "redis-postgres-standby"));
            }
            println!(
                "redis-server at {}: d to g ran; PostgreSQL {}",
                server.display(),
                if postgres {
                    "too: h ran"
                } else {
                    "is not installed: h was skipped"
                }
            );
        }
        None => println!(
            "redis-server is not on the PATH: d and e were skipped ({})",
            strategy(&figures, "redis-failover")["skipped_because"]
        ),
    }
}
