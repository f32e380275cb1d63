//! The peer link against the network: a reply cut off mid-stream is a
//! transient failure, not a corrupt session.
//!
//! Issue 23's suspicion 4, its test failing before its fix.

mod support;

use std::time::{Duration, Instant};

use session_core::store::{Created, SessionStore};
use support::{bounded, config, count, counter_record, start_with, MEASURING};

/// Suspicion 4. A reply cut off mid-stream (the owner crashes while sending
/// it) must be a transient failure, so a load falls back to the backup that
/// holds the session. As `Corrupt`, which is not transient, it neither fell
/// back nor let the caller retry: the session manager starts a fresh
/// session on `Corrupt`, so the user was logged out.
///
/// Forced with a 16 MiB session loaded through the node that does not hold
/// it: the owner is dropped (as a crash) once it has sent the first MiB of
/// its reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_off_mid_stream_falls_back_to_a_backup() {
    let _alone = MEASURING.write().await;
    const PAD: usize = 16 << 20;
    let mut nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, |name| {
            config(name, 3, 2).with_operation_timeout(Duration::from_secs(20))
        }),
    )
    .await;
    let record = counter_record(PAD);
    assert!(matches!(
        nodes[0].create(&record).await,
        Ok(Created::Created)
    ));
    let id = record.id;
    let placement = nodes[0].placement(&id);
    let client = nodes
        .iter()
        .find(|n| !placement.iter().any(|p| p == n.node_id()))
        .expect("a node that holds no copy")
        .clone();
    let owner_at = nodes
        .iter()
        .position(|n| n.node_id() == placement[0])
        .expect("the owner");
    // Let the start-up hand-overs finish, so the owner's traffic is the reply.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = nodes[owner_at].stats().bytes_sent;
    let load = {
        let client = client.clone();
        tokio::spawn(async move { client.load(&id).await })
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if nodes[owner_at].stats().bytes_sent - before >= 1 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let owner = nodes.remove(owner_at);
    let owner_name = owner.node_id().to_owned();
    let sent = owner.stats().bytes_sent - before;
    drop(owner);
    assert!(
        (1 << 20..PAD as u64).contains(&sent),
        "the owner had sent {sent} bytes of a {PAD}-byte reply when it was dropped: the reply \
         was not cut mid-stream, nothing forced"
    );
    let answer = bounded("the load", Duration::from_secs(30), load)
        .await
        .expect("the load panicked");
    println!(
        "link: owner {owner_name} dropped after sending {sent} bytes of its reply; the load through {} answered {:?}",
        client.node_id(),
        answer.as_ref().map(|r| r.as_ref().map(count)).map_err(|e| (e.kind(), e.to_line()))
    );
    match answer {
        Ok(Some(record)) => assert_eq!(count(&record), 0),
        Ok(None) => panic!("the load answered that the session does not exist"),
        Err(err) => assert!(
            err.kind().is_transient(),
            "a reply cut off mid-stream failed the load with {:?} (not transient: no fallback \
             to the backup, and the manager starts a fresh session): {}",
            err.kind(),
            err.to_line()
        ),
    }
}
