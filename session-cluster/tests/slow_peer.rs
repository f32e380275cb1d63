//! A peer that stops answering (its process frozen, as a long GC pause or
//! SIGSTOP would) cannot stall a request past the request timeout, and
//! reads of its sessions are served by another holder meanwhile.

mod support;

use std::{
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use session_cluster::ClusterStore;
use session_core::{
    store::{Changes, Committed, Created, Data, Record, SessionStore},
    SessionId,
};

const REQUEST_TIMEOUT: Duration = Duration::from_millis(600);

/// Runs one node on its own single-threaded runtime, so blocking that
/// thread freezes the whole node: sockets open, nothing answered.
struct FrozenNode {
    commands: mpsc::Sender<Option<Duration>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FrozenNode {
    fn start(config: session_cluster::ClusterConfig) -> (Self, ClusterStore) {
        let (commands, orders) = mpsc::channel::<Option<Duration>>();
        let (store_tx, store_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let store = ClusterStore::start(config).await.expect("node starts");
                store_tx.send(store.clone()).unwrap();
                loop {
                    // Poll for orders without blocking the runtime, except
                    // when told to freeze: then block the thread until the
                    // next order (or the freeze's bound).
                    match orders.try_recv() {
                        Ok(Some(bound)) => match orders.recv_timeout(bound) {
                            Ok(Some(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        },
                        Ok(None) | Err(mpsc::TryRecvError::Disconnected) => break,
                        Err(mpsc::TryRecvError::Empty) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                drop(store);
            });
        });
        let store = store_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("node reports its store");
        (
            Self {
                commands,
                thread: Some(thread),
            },
            store,
        )
    }

    /// Freezes the node until [`thaw`](Self::thaw), or at most `bound`.
    fn freeze(&self, bound: Duration) {
        self.commands.send(Some(bound)).unwrap();
    }

    fn thaw(&self) {
        self.commands.send(Some(Duration::ZERO)).unwrap();
    }
}

impl Drop for FrozenNode {
    fn drop(&mut self) {
        let _ = self.commands.send(None);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn config(name: &str) -> session_cluster::ClusterConfig {
    // Suspicion far longer than the test, so the frozen node stays a member
    // and requests keep being routed to it: the case the timeout is for.
    support::config(name, 3, 2)
        .with_operation_timeout(REQUEST_TIMEOUT)
        .with_suspect_timeout(Duration::from_secs(30))
        .with_settle_time(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_costs_at_most_the_request_timeout() {
    let first = ClusterStore::start(config("node-0")).await.unwrap();
    let seed = first.local_addr();
    let second = ClusterStore::start(config("node-1").with_seeds([seed]))
        .await
        .unwrap();
    let (frozen, third) = FrozenNode::start(config("node-2").with_seeds([seed]));
    for node in [&first, &second, &third] {
        assert!(
            node.wait_for_members(3, Duration::from_secs(15)).await,
            "{:?}",
            node.members()
        );
    }
    support::settle_all(
        &[first.clone(), second.clone(), third.clone()],
        Duration::from_secs(10),
    )
    .await;

    let now = SystemTime::now();
    let mut ids = Vec::new();
    for i in 0..24 {
        let mut data = Data::new();
        data.insert("n".to_owned(), i.to_string());
        let record = Record::new(
            SessionId::generate(),
            data,
            now,
            now + Duration::from_secs(600),
        );
        assert_eq!(first.create(&record).await.unwrap(), Created::Created);
        ids.push((record.id, i.to_string()));
    }

    // The copies' cache needs no runtime, so the frozen node's copies can
    // still be inspected from here.
    let mut on_frozen = Vec::new();
    for (id, _) in &ids {
        on_frozen.push(third.holds(id).await);
    }

    frozen.freeze(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut slowest = Duration::ZERO;
    let (mut failed_commits, mut applied_commits) = (0, 0);
    for ((id, n), frozen_holds) in ids.iter().zip(&on_frozen) {
        let started = Instant::now();
        let loaded = first.load(id).await;
        slowest = slowest.max(started.elapsed());
        // Every session has a holder besides the frozen node, and holders
        // have every acknowledged write: reads succeed.
        let record = loaded.unwrap_or_else(|err| panic!("load while a peer is frozen: {err}"));
        assert_eq!(record.expect("session exists").data["n"], *n);

        let mut changes = Changes::default();
        changes.set("touched", "1");
        let started = Instant::now();
        let committed = first
            .commit(id, &changes, now + Duration::from_secs(600))
            .await;
        slowest = slowest.max(started.elapsed());
        // A session the frozen node holds cannot be acknowledged with fewer
        // than R copies; every other session takes writes as usual.
        match committed {
            Ok(Committed::Applied { .. }) if !frozen_holds => applied_commits += 1,
            Err(_) if *frozen_holds => failed_commits += 1,
            other => panic!("commit with the frozen node holding={frozen_holds}: {other:?}"),
        }
    }
    frozen.thaw();
    println!(
        "slow peer: {} loads and commits with one of 3 nodes frozen; slowest call {slowest:?} \
         (request timeout {REQUEST_TIMEOUT:?}); commits applied {applied_commits}, failed {failed_commits}",
        ids.len()
    );
    assert!(
        slowest < REQUEST_TIMEOUT + Duration::from_millis(250),
        "a call took {slowest:?}, past the {REQUEST_TIMEOUT:?} timeout"
    );
    assert!(
        failed_commits > 0 && applied_commits > 0,
        "{applied_commits} applied, {failed_commits} failed"
    );

    // Thawed, it answers again: every session takes a write.
    for (id, _) in &ids {
        let mut changes = Changes::default();
        changes.set("after", "1");
        let committed = second
            .commit(id, &changes, now + Duration::from_secs(600))
            .await
            .unwrap();
        assert!(
            matches!(committed, Committed::Applied { .. }),
            "{committed:?}"
        );
    }
    drop(frozen);
}
