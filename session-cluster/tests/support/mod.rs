//! Shared by the cluster's tests: in-process clusters on loopback, and a
//! store that sends each call to the next node.
#![allow(dead_code, unreachable_pub)]

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use session_cluster::{ClusterConfig, ClusterStore};
use session_conformance::{async_trait, StoreFactory};
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, Data, OwnerPass, Record, SessionStore,
    },
    SessionId, StoreError,
};

pub const SECRET: &[u8; 32] = b"test-cluster-secret-of-32-bytes!";

/// Settings fast enough for tests: a dead node is noticed in well under a
/// second on loopback.
pub fn config(name: &str, nodes: usize, copies: usize) -> ClusterConfig {
    config_at(name, "127.0.0.1:0".parse().unwrap(), SECRET, nodes, copies)
}

/// [`config`] on a chosen address and secret.
pub fn config_at(
    name: &str,
    listen: std::net::SocketAddr,
    secret: &[u8],
    nodes: usize,
    copies: usize,
) -> ClusterConfig {
    ClusterConfig::new(name, listen, secret)
        .with_cluster_size(nodes)
        .with_replication_factor(copies)
        .with_probe_period(Duration::from_millis(100))
        .with_suspect_timeout(Duration::from_millis(300))
        .with_settle_time(Duration::from_secs(2))
        .with_anti_entropy_interval(Duration::from_secs(5))
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
        let node = ClusterStore::start(config(&format!("node-{i}")).with_seeds([seed]))
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

/// Makes each node take its read lease (a load on a key the node owns
/// waits for it), then waits, up to `timeout`, until each node is settled
/// (`ClusterStats::settled`): it has kept its view and its lease for the
/// settle time, and every other member has handed it what it holds since.
/// A test of a settled cluster's behaviour starts from there. The leases
/// come first because with a long suspect timeout a lease is renewed
/// seldom, and its first grant would otherwise come with the test's first
/// request.
pub async fn settle_all(nodes: &[ClusterStore], timeout: Duration) {
    for node in nodes {
        let id = (0..10_000)
            .map(|_| SessionId::generate())
            .find(|id| node.placement(id)[0] == node.node_id())
            .expect("a node owns some of 10,000 random ids");
        node.load(&id)
            .await
            .unwrap_or_else(|err| panic!("{} took no lease: {}", node.node_id(), err.to_line()));
    }
    eventually("every node settled", timeout, async || {
        nodes.iter().all(|node| node.stats().settled)
    })
    .await;
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

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.pick().delete_if_version(id, version).await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.pick().delete_by_owner(owner).await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.pick().sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        self.pick().indexes_owners()
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
            self.nodes.iter().map(|n| n.prefixed(prefix)).collect(),
        ))
    }
}

/// Runs `future`, failing the test if it takes longer than `limit`.
pub async fn bounded<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Far enough ahead that no session of a test expires during it.
pub fn in_an_hour() -> SystemTime {
    SystemTime::now() + Duration::from_secs(3600)
}

/// The data key the counter tests increment; its value is JSON text.
pub const COUNT: &str = "n";

/// A new session whose count is 0, padded with a JSON string of `pad` bytes
/// so tests can choose the size of what gets replicated.
pub fn counter_record(pad: usize) -> Record {
    let mut data = Data::new();
    data.insert(COUNT.to_owned(), "0".to_owned());
    if pad > 0 {
        data.insert("pad".to_owned(), format!("\"{}\"", "x".repeat(pad)));
    }
    let now = SystemTime::now();
    Record::new(SessionId::generate(), data, now, in_an_hour())
}

/// The count a record holds (a JSON number is its own decimal text).
pub fn count(record: &Record) -> u64 {
    let text = record
        .data
        .get(COUNT)
        .unwrap_or_else(|| panic!("record {:?} has no {COUNT:?}", record.id));
    text.parse()
        .unwrap_or_else(|_| panic!("{COUNT:?} of {:?} is not a count: {text}", record.id))
}

/// The changes of one increment: the new count, as JSON text.
pub fn set_count(value: u64) -> Changes {
    let mut changes = Changes::default();
    changes.set(COUNT, value.to_string());
    changes
}

/// How many of `nodes` hold a live copy of `id`.
pub async fn holders(nodes: &[ClusterStore], id: &SessionId) -> usize {
    let mut held = 0;
    for node in nodes {
        if node.holds(id).await {
            held += 1;
        }
    }
    held
}

/// Whether every one of `ids` is held by exactly `copies` of `nodes`.
pub async fn all_held_by(nodes: &[ClusterStore], ids: &[SessionId], copies: usize) -> bool {
    for id in ids {
        if holders(nodes, id).await != copies {
            return false;
        }
    }
    true
}

/// Creates `sessions` counters through `nodes` in turn, `tasks` at a time,
/// retrying transient failures a bounded number of times.
pub async fn create_counters(
    nodes: &[ClusterStore],
    sessions: usize,
    pad: usize,
    tasks: usize,
) -> Vec<Counter> {
    let mut set = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let nodes = nodes.to_vec();
        set.spawn(async move {
            let mut made = Vec::new();
            for i in (task..sessions).step_by(tasks) {
                let record = counter_record(pad);
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match nodes[i % nodes.len()].create(&record).await {
                        Ok(Created::Created) => break,
                        // A create that timed out may have been applied:
                        // then its retry finds the id taken, by itself.
                        Ok(Created::IdTaken) if attempt > 1 => {
                            let stored = nodes[i % nodes.len()].load(&record.id).await;
                            match stored {
                                Ok(Some(stored)) if stored.data == record.data => break,
                                other => panic!("a fresh id was taken: {other:?}"),
                            }
                        }
                        Ok(Created::IdTaken) => panic!("a fresh id was taken"),
                        Err(err) if err.kind().is_transient() && attempt < 20 => {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        Err(err) => panic!("create failed: {}", err.to_line()),
                    }
                }
                made.push(Counter::new(record.id));
            }
            made
        });
    }
    let mut all = Vec::with_capacity(sessions);
    while let Some(made) = set.join_next().await {
        all.extend(made.expect("a create task panicked"));
    }
    all
}

/// The ids of `counters`.
pub fn ids(counters: &[Counter]) -> Vec<SessionId> {
    counters.iter().map(|c| c.id).collect()
}

/// [`create_counters`], bounded by `limit`, then a bounded wait until every
/// one of them has `copies` copies: where a test about placement starts.
pub async fn placed_counters(
    nodes: &[ClusterStore],
    sessions: usize,
    pad: usize,
    tasks: usize,
    copies: usize,
    limit: Duration,
) -> Vec<Counter> {
    let counters = bounded(
        "creating the sessions",
        limit,
        create_counters(nodes, sessions, pad, tasks),
    )
    .await;
    let ids = ids(&counters);
    eventually(
        &format!("every session on {copies} nodes"),
        Duration::from_secs(20),
        async || all_held_by(nodes, &ids, copies).await,
    )
    .await;
    counters
}

/// One session as the client knows it: what it was told was stored.
#[derive(Debug, Clone)]
pub struct Counter {
    pub id: SessionId,
    /// The count of the last acknowledged commit.
    pub value: u64,
    /// The version of the last acknowledged commit (or of the last read).
    pub version: u64,
    /// Increments the client completed: what the count must end at.
    pub increments: u64,
}

impl Counter {
    pub fn new(id: SessionId) -> Self {
        Self {
            id,
            value: 0,
            version: Record::FIRST_VERSION,
            increments: 0,
        }
    }
}

/// What a client saw while incrementing counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Increments completed (acknowledged, or shown applied by a re-read).
    pub increments: u64,
    pub loads: u64,
    pub commits: u64,
    /// Loads that returned less than the last acknowledged count, or an
    /// older version than the last acknowledged one.
    pub stale_reads: u64,
    /// Loads that returned more than the client ever wrote.
    pub phantom_reads: u64,
    /// Operations that failed with `Unavailable` or `Timeout` and were retried.
    pub retried: u64,
    /// Commits that failed but that a re-read showed applied.
    pub applied_despite_error: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Self) {
        self.increments += other.increments;
        self.loads += other.loads;
        self.commits += other.commits;
        self.stale_reads += other.stale_reads;
        self.phantom_reads += other.phantom_reads;
        self.retried += other.retried;
        self.applied_despite_error += other.applied_despite_error;
    }
}

/// One read-modify-write increment as a round-robin balancer splits a
/// user's requests: the load on `nodes[*turn]`, the commit on the next node.
/// Transient failures are retried (at most `attempts` loads); a failed commit
/// is ambiguous, so the re-read decides whether it was applied. Errors are
/// what the test must report: a lost session or retries exhausted.
pub async fn increment(
    nodes: &[ClusterStore],
    turn: &mut usize,
    counter: &mut Counter,
    tally: &mut Tally,
    attempts: usize,
) -> Result<(), String> {
    let mut pending = false;
    for _ in 0..attempts {
        let node = &nodes[*turn % nodes.len()];
        *turn += 1;
        tally.loads += 1;
        let record = match node.load(&counter.id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                return Err(format!(
                    "{:?} is gone on {} (count was {})",
                    counter.id,
                    node.node_id(),
                    counter.value
                ))
            }
            Err(err) if err.kind().is_transient() => {
                tally.retried += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
                continue;
            }
            Err(err) => return Err(format!("load on {}: {}", node.node_id(), err.to_line())),
        };
        let seen = count(&record);
        if pending && seen == counter.value + 1 {
            tally.applied_despite_error += 1;
            counter.value = seen;
            counter.version = record.version;
            counter.increments += 1;
            tally.increments += 1;
            return Ok(());
        }
        if seen < counter.value || record.version < counter.version {
            tally.stale_reads += 1;
        } else if seen > counter.value {
            tally.phantom_reads += 1;
        }
        let node = &nodes[*turn % nodes.len()];
        *turn += 1;
        tally.commits += 1;
        match node
            .commit(&counter.id, &set_count(seen + 1), in_an_hour())
            .await
        {
            Ok(Committed::Applied { version }) => {
                counter.value = seen + 1;
                counter.version = version;
                counter.increments += 1;
                tally.increments += 1;
                return Ok(());
            }
            Ok(Committed::Missing) => {
                return Err(format!(
                    "{:?} is missing on commit via {}",
                    counter.id,
                    node.node_id()
                ))
            }
            Err(err) if err.kind().is_transient() => {
                tally.retried += 1;
                pending = true;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(err) => return Err(format!("commit on {}: {}", node.node_id(), err.to_line())),
        }
    }
    Err(format!(
        "{:?}: no increment after {attempts} attempts",
        counter.id
    ))
}

/// Reads every counter from every node in turn and returns the ones whose
/// count is not what the client completed, as `(node, id, found, expected)`.
pub async fn check_counts(
    nodes: &[ClusterStore],
    counters: &[Counter],
) -> Vec<(String, SessionId, Option<u64>, u64)> {
    let mut wrong = Vec::new();
    for node in nodes {
        for counter in counters {
            let found = match node.load(&counter.id).await {
                Ok(record) => record.as_ref().map(count),
                Err(err) => panic!("load on {}: {}", node.node_id(), err.to_line()),
            };
            if found != Some(counter.increments) || counter.value != counter.increments {
                wrong.push((
                    node.node_id().to_owned(),
                    counter.id,
                    found,
                    counter.increments,
                ));
            }
        }
    }
    wrong
}

/// Tests that measure timings or traffic take this for writing, so no
/// neighbour in the same binary loads a small machine while they measure
/// (or trips failure detection); the others take it for reading and run
/// side by side.
pub static MEASURING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Clients incrementing counters: `tasks` tasks, each with its share of the
/// sessions, one increment at a time per session, until `rounds` rounds are
/// done or [`stop`](Self::stop) is called.
pub struct Writers {
    set: tokio::task::JoinSet<Result<(Vec<Counter>, Tally), String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Writers {
    pub fn start(
        nodes: &[ClusterStore],
        counters: Vec<Counter>,
        tasks: usize,
        rounds: usize,
        attempts: usize,
    ) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        let per_task = counters.len().div_ceil(tasks).max(1);
        for (task, chunk) in counters.chunks(per_task).enumerate() {
            let nodes = nodes.to_vec();
            let mut mine = chunk.to_vec();
            let stop = Arc::clone(&stop);
            set.spawn(async move {
                let mut tally = Tally::default();
                // Tasks start on different nodes so each node sees every role.
                let mut turn = task;
                'rounds: for _ in 0..rounds {
                    for counter in &mut mine {
                        if stop.load(Ordering::Relaxed) {
                            break 'rounds;
                        }
                        increment(&nodes, &mut turn, counter, &mut tally, attempts).await?;
                    }
                }
                Ok((mine, tally))
            });
        }
        Self { set, stop }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits (bounded) for every task; panics with the first client error.
    pub async fn finish(mut self, limit: Duration) -> (Vec<Counter>, Tally) {
        bounded("the writers", limit, async move {
            let mut all = Vec::new();
            let mut tally = Tally::default();
            while let Some(done) = self.set.join_next().await {
                let (mine, theirs) = done
                    .expect("a client task panicked")
                    .unwrap_or_else(|err| panic!("client: {err}"));
                all.extend(mine);
                tally.add(&theirs);
            }
            (all, tally)
        })
        .await
    }
}
