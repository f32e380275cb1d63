//! Runs `session-lab --quick` as a user would and checks the lab's own
//! claims from the figures it writes as JSON:
//!
//! - a (local memory, sticky balancer) logs users out when a node dies;
//! - b (local memory, round-robin, nothing shared) loses or serves stale
//!   sessions;
//! - c (the session-kit cluster) and, when Redis is installed, e (the
//!   Redis failover mirror) lose no session, serve no stale read and lose
//!   no acknowledged increment, through the same faults.
//!
//! Only counts are checked, never timings: on a slow machine the run makes
//! fewer requests, which changes no claim. The one bound is on how long
//! the run may take before the test gives up on it.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Far above a quick run's minute, for a debug build on a busy machine.
const RUN_LIMIT: Duration = Duration::from_secs(300);

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

fn assert_nothing_lost(strategy: &Value, output: &str) {
    assert_eq!(strategy["ran"], true, "{} did not run", strategy["key"]);
    for field in [
        "lost_sessions",
        "stale_reads",
        "lost_increments",
        "phantom_counts",
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

#[test]
fn the_quick_run_shows_each_failure_mode_and_none_in_session_kit() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let json = dir.path().join("figures.json");
    let report = dir.path().join("report.html");
    let mut child = Command::new(env!("CARGO_BIN_EXE_session-lab"))
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the session-lab binary starts");
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
    let output = child.wait_with_output().expect("session-lab's output");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(status.success(), "session-lab --quick failed:\n{output}");
    println!("{output}");

    let figures: Value = serde_json::from_slice(&std::fs::read(&json).expect("the JSON figures"))
        .expect("the figures are JSON");

    let sticky = strategy(&figures, "sticky-memory");
    assert!(
        count(sticky, "lost_sessions") > 0,
        "a sticky balancer lost no session when a node died: {}",
        losses(sticky)
    );
    let round_robin = strategy(&figures, "round-robin-memory");
    assert!(
        count(round_robin, "lost_sessions") + count(round_robin, "stale_reads") > 0,
        "round-robin over unshared memory lost nothing: {}",
        losses(round_robin)
    );
    assert_nothing_lost(strategy(&figures, "cluster"), &output);
    let failover = strategy(&figures, "redis-failover");
    if failover["ran"] == true {
        assert_nothing_lost(failover, &output);
    } else {
        println!(
            "e (Redis failover) was skipped: {}",
            failover["skipped_because"]
        );
    }

    let html = std::fs::read_to_string(&report).expect("the HTML report");
    assert!(html.contains("<svg"), "the report has no chart");
}
