//! The race explorer over real Memcached, with real faults.
//!
//! Three app servers, each with its own [`MemcachedStore`] (its own
//! connections, CAS cache and commit queues, as three processes would have),
//! share one or three `memcached` servers. Clients (tabs sharing a session,
//! and a thief replaying a stolen cookie) read, write, cycle ids and log
//! out on any app server, their requests interleaved by seed (see
//! `session_conformance::race`), and every run's history is checked against
//! session-kit's promises. `end_all_for` is not in the mix: `MemcachedStore`
//! answers it `Unsupported` (see its docs), which the history records as a
//! failed request that promises nothing.
//!
//! Mid-run, the faults are real, applied to the `memcached` processes by
//! [`ServerFaults`] (a fault window's store number is a Memcached server's
//! index here):
//! - `Pause`: SIGSTOP, then SIGCONT. Requests time out; what they sent is
//!   served when the server wakes.
//! - `Down` and `RestartEmpty`: SIGKILL, then a restart on the same port.
//!   Memcached keeps nothing, so on Memcached both come back empty.
//!
//! # What a kill is allowed to break
//! A killed server's sessions are gone: Memcached has no replication, and
//! `MemcachedStore` documents that a server that comes back has lost its
//! sessions, whose users sign in again. So after a kill, and only for the
//! sessions the killed server held, a request that finds its session gone
//! is no violation: not the writes it misses (`NoLostWrite`), not the
//! values it no longer shows (`NoGoingBackwards`), not the fresh cookie a
//! write then gets (`CookieKept`). [`Explorer::waive`] waives a promise for
//! every session, which would stop checking the sessions on the live
//! servers too, so this file scopes the waiver itself ([`Ledger::lost`]): a
//! violation is excused only when its request found **no session at all**
//! under an id that
//! - Memcached's routing places on the killed server,
//! - whose create reached a store before the kill was over (so it may have
//!   lived in the killed process),
//! - that no store found absent before the kill began, nor present after
//!   it was over.
//!
//! Everything else is checked in every run: sessions on the live servers
//! keep every promise, nothing ended comes back (a restarted server must
//! not bring a logged-out session back), no read is stale, and sessions
//! created after the restart keep every promise too.
//!
//! # Seeds and time
//! On real servers and real time a seed fixes every delay, request and
//! fault window but not the servers' own timing, so a failing seed is a
//! lead rather than an exact replay. Each test runs [`SEEDS`] seeds by
//! default (the four tests take about 20 s together in a debug build on two
//! cores); `SESSION_KIT_RACE_SEEDS=<count>` runs more,
//! `SESSION_KIT_RACE_SEED=<n>` replays one and prints its history:
//! ```text
//! SESSION_KIT_RACE_SEEDS=200 cargo test -p session-memcached --test race
//! ```

mod support;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    ops::Range,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant, SystemTime},
};

use session_conformance::{
    async_trait,
    race::{
        Deployment, Explorer, FaultWindow, Faults, Mix, Observed, Operation, Outcome, Scenario,
        StoreFault, Violation, SEEDS_VAR, SEED_VAR,
    },
    testkit::MemcachedServer,
};
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore, Stamp,
    },
    SessionId, StoreError,
};
use session_memcached::MemcachedStore;
use support::{config, connect, holder};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Seeds per test by default: each run takes a few tenths of a second of
/// real time.
const SEEDS: u64 = 30;

/// App servers in every scenario, each with its own `MemcachedStore`.
const APP_SERVERS: usize = 3;

/// The managers' and the stores' operation timeout: short, so that a
/// paused server costs a run little.
const TIMEOUT: Duration = Duration::from_millis(100);

/// Why a killed server's lost sessions are excused; heads the report.
const LOSS_EXCUSED: &str =
    "a killed Memcached server's sessions are lost: Memcached keeps nothing \
     across a restart and has no replication (MemcachedStore's docs, \"Several servers\"); \
     excused only for requests that found no session under an id the killed server held";

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The clients' mix: reads, writes, `cycle_id` and logouts; no
/// `end_all_for`, which Memcached refuses.
fn mix() -> Mix {
    Mix::default().with_endings(1, 1, 0)
}

/// Three app servers, a thief, short timeouts, and `fault` on Memcached
/// server 0.
fn scenario(fault: FaultWindow) -> Scenario {
    Scenario::new()
        .with_servers(APP_SERVERS)
        .with_thief(true)
        .with_mix(mix())
        .with_operation_timeout(TIMEOUT)
        .with_settle(Duration::ZERO)
        .with_fault(fault)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_memcached_paused_mid_run_keeps_every_promise() {
    let scenario = scenario(FaultWindow::new(
        0,
        StoreFault::Pause,
        ms(10)..=ms(40),
        ms(20)..=ms(150),
    ));
    let figures = Bench::start(1, scenario)
        .await
        .explore("memcached, paused")
        .await;
    figures.report();
    assert_eq!(figures.waived(), 0, "nothing is excused without a kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_memcached_killed_and_restarted_loses_only_what_it_held_and_brings_nothing_back() {
    // Ten requests each, so that runs go on well after the restart.
    let scenario = scenario(FaultWindow::new(
        0,
        StoreFault::Down,
        ms(10)..=ms(60),
        ms(20)..=ms(100),
    ))
    .with_requests(10);
    let figures = Bench::start(1, scenario)
        .await
        .explore("memcached, killed and restarted")
        .await;
    figures.report();
    figures.assert_the_kill_took_sessions();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_memcacheds_with_one_paused_keep_every_promise() {
    // Three sessions, so that most runs have sessions on the paused server
    // and on the others.
    let scenario = scenario(FaultWindow::new(
        0,
        StoreFault::Pause,
        ms(10)..=ms(40),
        ms(20)..=ms(150),
    ))
    .with_clients(4)
    .with_sessions(3);
    let figures = Bench::start(3, scenario)
        .await
        .explore("3 memcacheds, one paused")
        .await;
    figures.report();
    assert_eq!(figures.waived(), 0, "nothing is excused without a kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_memcacheds_with_one_restarted_empty_lose_only_its_sessions() {
    let scenario = scenario(FaultWindow::new(
        0,
        StoreFault::RestartEmpty,
        ms(10)..=ms(60),
        ms(20)..=ms(100),
    ))
    .with_clients(4)
    .with_sessions(3)
    .with_requests(10);
    let figures = Bench::start(3, scenario)
        .await
        .explore("3 memcacheds, one restarted empty")
        .await;
    figures.report();
    figures.assert_the_kill_took_sessions();
}

/// Where Memcached's routing puts `key` among `servers`: rendezvous hashing
/// on XXH3, as `MemcachedStore` documents it (its router is private, so the
/// test computes the same thing, and [`check_routing`] checks that
/// it agrees with where the store puts sessions).
fn route(key: &str, servers: &[String]) -> usize {
    servers
        .iter()
        .enumerate()
        .max_by_key(|(index, server)| {
            (
                xxh3_64_with_seed(key.as_bytes(), xxh3_64(server.as_bytes())),
                Reverse(*index),
            )
        })
        .map_or(0, |(index, _)| index)
}

/// Checks that [`route`] places sessions on the server the store puts them
/// on, as the excuse for lost sessions relies on it.
async fn check_routing(store: &MemcachedStore, servers: &[MemcachedServer], addrs: &[String]) {
    let store = store.prefixed("route-check:");
    for _ in 0..30 {
        let record = support::record(Duration::from_secs(60));
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        let key = format!("route-check:{}", record.id.encode());
        assert_eq!(
            holder(servers, &key).await,
            Some(route(&key, addrs)),
            "the test's routing disagrees with the store's"
        );
    }
}

/// A test's Memcached servers, deployment and explorer.
struct Bench {
    explorer: Explorer,
    ledger: Arc<Ledger>,
    addrs: Vec<String>,
}

impl Bench {
    /// Starts `memcacheds` servers and connects one store per app server.
    async fn start(memcacheds: usize, scenario: Scenario) -> Self {
        let servers = MemcachedServer::start_many(memcacheds);
        let addrs: Vec<String> = servers.iter().map(MemcachedServer::addr).collect();
        let config = config(&servers).with_operation_timeout(TIMEOUT);
        let mut stores = Vec::new();
        for _ in 0..APP_SERVERS {
            stores.push(connect(config.clone()).await);
        }
        if memcacheds > 1 {
            check_routing(&stores[0], &servers, &addrs).await;
        }
        let ledger = Arc::new(Ledger::default());
        let faults = Arc::new(ServerFaults {
            servers: servers
                .into_iter()
                .map(|server| Arc::new(Mutex::new(server)))
                .collect(),
            ledger: Arc::clone(&ledger),
        });
        let deployment = OnMemcached {
            stores,
            ledger: Arc::clone(&ledger),
            faults,
        };
        Self {
            explorer: Explorer::new("memcached", deployment, scenario),
            ledger,
            addrs,
        }
    }

    /// Runs the seeds ([`SEEDS`], or as the variables say), checks every
    /// history, and panics on the first violation not excused by a kill.
    async fn explore(&self, name: &str) -> Figures {
        let replay = env_number(SEED_VAR);
        let seeds: Range<u64> = match replay {
            Some(seed) => seed..seed + 1,
            None => 0..env_number(SEEDS_VAR).unwrap_or(SEEDS),
        };
        let started = Instant::now();
        let mut figures = Figures {
            name: name.to_owned(),
            ..Figures::default()
        };
        for seed in seeds {
            self.ledger.next_run();
            let run = self.explorer.run_in_current_runtime(seed).await;
            let ops = run.history.ops();
            let lost = self.ledger.lost(&self.addrs);
            let (excused, broken): (Vec<&Violation>, Vec<&Violation>) = run
                .violations
                .iter()
                .partition(|violation| excused_by_loss(violation, &ops, &lost.ids));
            figures.histories += 1;
            figures.operations += ops.len() as u64;
            figures.failed += ops
                .iter()
                .filter(|op| matches!(op.outcome, Some(Outcome::Failed(_))))
                .count() as u64;
            figures.held_at_kill += lost.held as u64;
            figures.runs_hit += u64::from(lost.held > 0);
            for violation in &excused {
                *figures
                    .excused
                    .entry(format!("{:?}", violation.promise()))
                    .or_default() += 1;
            }
            if replay.is_some() || !broken.is_empty() {
                let mut report = format!("{name}: seed {seed}: {} violation(s)\n", broken.len());
                for violation in &broken {
                    let _ = writeln!(report, "  {violation}");
                }
                for violation in &excused {
                    let _ = writeln!(report, "  excused (lost in the kill): {violation}");
                }
                let _ = write!(
                    report,
                    "history:\n{}replay with {SEED_VAR}={seed} (real servers: a lead, not an exact replay)",
                    run.history
                );
                assert!(broken.is_empty(), "{report}");
                eprintln!("{report}");
            }
        }
        figures.elapsed = started.elapsed();
        figures
    }
}

/// Whether `violation` is what the loss of a killed server's session looks
/// like: its request found no session at all under an id in `lost`.
fn excused_by_loss(violation: &Violation, ops: &[Operation], lost: &HashSet<SessionId>) -> bool {
    let op = match violation {
        Violation::LostWrite { read, .. } => read,
        Violation::WentBackwards { later, .. } => later,
        Violation::CookieReplaced { op, .. } => op,
        // Stale reads and resurrections are never a loss.
        _ => return false,
    };
    let op = &ops[op.0];
    op.observed == Observed::Absent && op.cookie.is_some_and(|id| lost.contains(&id))
}

/// What the tests and the deployment share: the run's key prefix, what
/// the stores were asked, and when servers were killed.
#[derive(Debug, Default)]
struct Ledger {
    run: AtomicU64,
    log: Mutex<Log>,
}

/// One run's record.
#[derive(Debug, Default)]
struct Log {
    /// Each id a store was asked to create: its key, and when the first
    /// create call reached a store.
    created: HashMap<SessionId, (String, Instant)>,
    /// Each load of an id: when it reached a store, and whether it found
    /// the session (`None`: it failed).
    loads: HashMap<SessionId, Vec<(Instant, Option<bool>)>>,
    kills: Vec<Kill>,
}

/// One kill of a Memcached server.
#[derive(Debug, Clone, Copy)]
struct Kill {
    server: usize,
    /// Just before the signal.
    began: Instant,
    /// Once the process was gone.
    done: Instant,
}

/// The sessions one run lost in its kills.
struct Lost {
    /// The ids whose violations are excused.
    ids: HashSet<SessionId>,
    /// Ids created on a killed server before its kill was over.
    held: usize,
}

impl Ledger {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new run: a key prefix no earlier run used, an empty log.
    fn next_run(&self) {
        self.run.fetch_add(1, Ordering::Relaxed);
        *self.log() = Log::default();
    }

    fn prefix(&self) -> String {
        format!("race-{}:", self.run.load(Ordering::Relaxed))
    }

    /// The sessions this run's kills may have taken (see the file's docs),
    /// given the servers as configured.
    fn lost(&self, servers: &[String]) -> Lost {
        let log = self.log();
        let mut lost = Lost {
            ids: HashSet::new(),
            held: 0,
        };
        for (id, (key, created)) in &log.created {
            let server = route(key, servers);
            let Some(kill) = log
                .kills
                .iter()
                .find(|kill| kill.server == server && *created < kill.done)
            else {
                continue;
            };
            lost.held += 1;
            let loads = log.loads.get(id).map_or(&[][..], Vec::as_slice);
            let absent_before = loads
                .iter()
                .any(|&(at, found)| found == Some(false) && at < kill.began);
            let present_after = loads
                .iter()
                .any(|&(at, found)| found == Some(true) && at > kill.done);
            if !absent_before && !present_after {
                lost.ids.insert(*id);
            }
        }
        lost
    }

    fn created(&self, id: SessionId, key: String, at: Instant) {
        self.log().created.entry(id).or_insert((key, at));
    }

    fn loaded(&self, id: SessionId, at: Instant, found: Option<bool>) {
        self.log().loads.entry(id).or_default().push((at, found));
    }

    fn killed(&self, kill: Kill) {
        self.log().kills.push(kill);
    }
}

/// The servers share Memcached; each app server has its own store, under
/// the run's prefix.
struct OnMemcached {
    stores: Vec<MemcachedStore>,
    ledger: Arc<Ledger>,
    faults: Arc<ServerFaults>,
}

impl Deployment for OnMemcached {
    /// One store per app server: the explorer's store `i` is app server
    /// `i`'s.
    fn stores(&self) -> usize {
        self.stores.len()
    }

    fn empty_store(&self, index: usize) -> Arc<dyn SessionStore> {
        Arc::new(Recorded {
            store: self.stores[index].prefixed(self.ledger.prefix()),
            prefix: self.ledger.prefix(),
            ledger: Arc::clone(&self.ledger),
        })
    }

    fn server_store(
        &self,
        server: usize,
        shared: &[Arc<dyn SessionStore>],
    ) -> Arc<dyn SessionStore> {
        Arc::clone(&shared[server])
    }

    fn faults(&self) -> Option<Arc<dyn Faults>> {
        Some(Arc::clone(&self.faults) as Arc<dyn Faults>)
    }
}

/// Kills, stops and restarts the Memcached servers; a fault window's store
/// number is a server's index.
struct ServerFaults {
    servers: Vec<Arc<Mutex<MemcachedServer>>>,
    ledger: Arc<Ledger>,
}

impl ServerFaults {
    /// Runs `act` on server `index` off the runtime's workers: the test
    /// kit's calls block until the process has taken the signal.
    async fn on(&self, index: usize, act: fn(&mut MemcachedServer)) {
        let server = Arc::clone(&self.servers[index]);
        tokio::task::spawn_blocking(move || act(&mut lock(&server)))
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()));
    }
}

#[async_trait]
impl Faults for ServerFaults {
    async fn begin(&self, store: usize, fault: StoreFault) {
        match fault {
            StoreFault::Pause => self.on(store, MemcachedServer::pause).await,
            StoreFault::Down | StoreFault::RestartEmpty => {
                let began = Instant::now();
                self.on(store, MemcachedServer::kill).await;
                self.ledger.killed(Kill {
                    server: store,
                    began,
                    done: Instant::now(),
                });
            }
            other => panic!("no real fault for {other:?}"),
        }
    }

    async fn end(&self, store: usize, fault: StoreFault) {
        match fault {
            StoreFault::Pause => self.on(store, MemcachedServer::resume).await,
            // Memcached persists nothing: back, and empty, either way.
            StoreFault::Down | StoreFault::RestartEmpty => {
                self.on(store, MemcachedServer::restart).await;
            }
            other => panic!("no real fault for {other:?}"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An app server's `MemcachedStore`, noting in the ledger when each create
/// and load reached it and what each load found.
#[derive(Debug)]
struct Recorded {
    store: MemcachedStore,
    prefix: String,
    ledger: Arc<Ledger>,
}

#[async_trait]
impl SessionStore for Recorded {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let at = Instant::now();
        let answer = self.store.load(id).await;
        let found = answer.as_ref().ok().map(Option::is_some);
        self.ledger.loaded(*id, at, found);
        answer
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        let at = Instant::now();
        let answer = self.store.stamp(id).await;
        let found = answer.as_ref().ok().map(Option::is_some);
        self.ledger.loaded(*id, at, found);
        answer
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let key = format!("{}{}", self.prefix, record.id.encode());
        self.ledger.created(record.id, key, Instant::now());
        self.store.create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.store.commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.store.touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.store.delete(id).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.store.delete_if_version(id, version).await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.store.delete_by_owner(owner).await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.store.sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        self.store.indexes_owners()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.store.health().await
    }
}

/// What an exploration did.
#[derive(Debug, Default)]
struct Figures {
    name: String,
    histories: u64,
    operations: u64,
    /// Requests that failed (a 503 or an error).
    failed: u64,
    /// Sessions created on a killed server before its kill was over.
    held_at_kill: u64,
    /// Runs whose kill took at least one session.
    runs_hit: u64,
    /// Violations excused as a killed server's losses, by promise.
    excused: BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Figures {
    fn waived(&self) -> u64 {
        self.excused.values().sum()
    }

    fn report(&self) {
        eprintln!(
            "{}: {} histories, {} operations checked ({} failed requests), no violation, in {:.2?}",
            self.name, self.histories, self.operations, self.failed, self.elapsed
        );
        if self.runs_hit > 0 || self.waived() > 0 {
            eprintln!(
                "  the kill took {} session(s) in {} run(s); excused as lost: {:?}\n  why: {LOSS_EXCUSED}",
                self.held_at_kill, self.runs_hit, self.excused
            );
        }
    }

    /// A kill scenario that never killed a session would test nothing about
    /// losses; a replay of one seed may miss, a whole exploration must not.
    fn assert_the_kill_took_sessions(&self) {
        if env_number(SEED_VAR).is_none() && self.histories >= 10 {
            assert!(
                self.runs_hit > 0,
                "{}: no run's kill hit a session",
                self.name
            );
        }
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
    )
}
