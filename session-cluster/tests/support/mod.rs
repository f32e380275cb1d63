//! Shared by the cluster's tests: in-process clusters on loopback, and a
//! store that sends each call to the next node.
#![allow(dead_code, unreachable_pub)]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use session_cluster::{ClusterConfig, ClusterStore};
use session_conformance::{async_trait, StoreFactory};
use session_core::{Changes, Committed, Created, Record, SessionId, SessionStore, StoreError};

pub const SECRET: &[u8; 32] = b"test-cluster-secret-of-32-bytes!";

/// Settings fast enough for tests: a dead node is noticed in well under a
/// second on loopback.
pub fn config(name: &str, nodes: usize, copies: usize) -> ClusterConfig {
    ClusterConfig::new(name, "127.0.0.1:0".parse().unwrap(), *SECRET)
        .cluster_size(nodes)
        .replication_factor(copies)
        .probe_period(Duration::from_millis(100))
        .suspect_timeout(Duration::from_millis(300))
        .settle_time(Duration::from_secs(2))
        .anti_entropy_interval(Duration::from_secs(5))
}

/// Starts `nodes` nodes that all seed from the first, and waits (bounded)
/// until every one sees all of them.
pub async fn start(nodes: usize, copies: usize) -> Vec<ClusterStore> {
    start_with(nodes, |name| config(name, nodes, copies)).await
}

pub async fn start_with(nodes: usize, config: impl Fn(&str) -> ClusterConfig) -> Vec<ClusterStore> {
    let first = ClusterStore::start(config("node-0"))
        .await
        .expect("first node starts");
    let seed = first.local_addr();
    let mut all = vec![first];
    for i in 1..nodes {
        let node = ClusterStore::start(config(&format!("node-{i}")).seeds([seed]))
            .await
            .expect("node starts");
        all.push(node);
    }
    for node in &all {
        assert!(
            node.wait_for_members(nodes, Duration::from_secs(15)).await,
            "{} sees only {:?}",
            node.node_id(),
            node.members()
        );
    }
    all
}

/// Waits (bounded) until `check` holds, polling; returns how long it took.
pub async fn eventually(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends each call to the next node in turn: what a round-robin load
/// balancer does to an app's requests.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    nodes: Arc<Vec<ClusterStore>>,
    next: Arc<AtomicUsize>,
}

impl RoundRobin {
    pub fn new(nodes: Vec<ClusterStore>) -> Self {
        Self {
            nodes: Arc::new(nodes),
            next: Arc::default(),
        }
    }

    fn pick(&self) -> &ClusterStore {
        &self.nodes[self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len()]
    }
}

#[async_trait]
impl SessionStore for RoundRobin {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.pick().load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.pick().create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.pick().commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.pick().touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.pick().delete(id).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.pick().health().await
    }
}

/// A 3-node cluster per test; each store it hands out spreads its calls
/// over the three nodes.
pub struct ThreeNodes {
    nodes: Vec<ClusterStore>,
}

impl ThreeNodes {
    pub async fn start() -> Self {
        Self {
            nodes: start(3, 2).await,
        }
    }
}

#[async_trait]
impl StoreFactory for ThreeNodes {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(RoundRobin::new(
            self.nodes.iter().map(|n| n.with_prefix(prefix)).collect(),
        ))
    }
}
