//! `FailoverStore` against real servers: the fault scenarios of its two
//! modes, a hung primary, and the contract suites of the composite stores
//! over Redis and Memcached.
//!
//! **Fault scenarios** (one test per pair and mode). A Redis primary with a
//! Redis, Memcached, PostgreSQL or in-process memory secondary sits behind
//! an axum app
//! on loopback. Sixteen browsers, each with its own cookie jar, hit
//! `/counter` together, round after round, while the test kills the
//! primary, restarts it (empty: the test servers persist nothing) and then
//! kills the secondary. Every answer is classified against the last count
//! the user saw acknowledged, and the test asserts exactly what
//! [`FailoverMode`]'s docs promise for each phase. Each test prints a
//! markdown table (run with `--nocapture`): per phase, the requests, the
//! failures, the sessions lost, the stale reads, the unacknowledged writes
//! that landed, and the time from the kill to the breaker opening.
//!
//! **Hang**: a Redis primary stopped with SIGSTOP costs the first request
//! one call timeout, opens the breaker on that single timeout, and is then
//! skipped; once it is resumed, a probe closes the breaker.
//!
//! **Conformance**: `store_suite!` over mirror (Redis, Memcached), mirror
//! (Redis, Redis), standby (Redis, memory) and `TieredStore` over Redis;
//! `http_suite!` on axum over both mirror pairs (with Memcached, "log out
//! everywhere" is refused; with two Redis servers it ends the sessions in
//! both), and on actix over the standby pair.

use std::{
    fmt::Write as _,
    sync::{Arc, OnceLock, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime},
};

use futures_util::future::join_all;
use session_conformance::{
    async_trait, serve_store,
    testkit::{MemcachedServer, PostgresServer, RedisServer},
    Browser, Fault, InstrumentedStore, RunningApp, StoreFactory,
};
use session_kit::{
    failover::{BreakerState, FailoverMode, FailoverStore},
    memcached::{MemcachedConfig, MemcachedStore},
    memory::{MemoryStore, NearCache, TieredStore},
    postgres::{PostgresConfig, PostgresStore},
    redis::{RedisConfig, RedisStore},
    store::{Changes, Committed, ConditionalDelete, Created, Record, SessionStore, Stamp},
    tower::conformance::AxumApp,
    ErrorKind, ErrorPolicy, SessionId, StoreError,
};
use tokio::task::JoinHandle;

/// Browsers hitting the app at once.
const USERS: usize = 16;
/// Rounds of the warm-up: every user creates its session and counts on.
const WARM_UP_ROUNDS: usize = 3;
/// Rounds of every other phase (phase 2 first waits for the breaker to
/// close, then runs these).
const ROUNDS: usize = 15;
/// The longest a phase may run before the test fails.
const PHASE_LIMIT: Duration = Duration::from_secs(30);
/// How long the test watches for a breaker to change state.
const BREAKER_WATCH: Duration = Duration::from_secs(10);

/// The failover's call timeout: what one call to a dead or hung store may
/// cost a request.
const CALL_TIMEOUT: Duration = Duration::from_millis(200);
/// The stores' own operation timeout. Short, so an outage surfaces fast,
/// but longer than [`CALL_TIMEOUT`], so that against a hung server it is
/// the failover's timeout that fires (and opens the breaker at once), not
/// the store's (which would count as one failure of two).
const STORE_TIMEOUT: Duration = Duration::from_millis(300);
const FAILURE_THRESHOLD: u32 = 2;
const OPEN_FOR: Duration = Duration::from_millis(300);
const MAX_OPEN_FOR: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Stores and servers
// ---------------------------------------------------------------------------

async fn redis_store(config: RedisConfig) -> RedisStore {
    match RedisStore::connect(config).await {
        Ok(store) => store,
        Err(err) => panic!("{err}: {:?}", std::error::Error::source(&err)),
    }
}

async fn memcached_store(config: MemcachedConfig) -> MemcachedStore {
    match MemcachedStore::connect(config).await {
        Ok(store) => store,
        Err(err) => panic!("{err}: {:?}", std::error::Error::source(&err)),
    }
}

async fn postgres_store(config: PostgresConfig) -> PostgresStore {
    match PostgresStore::connect(config).await {
        Ok(store) => store,
        Err(err) => panic!("{}", err.to_line()),
    }
}

fn fault_postgres(server: &PostgresServer) -> PostgresConfig {
    PostgresConfig::new(server.url()).with_operation_timeout(STORE_TIMEOUT)
}

fn fault_redis(server: &RedisServer) -> RedisConfig {
    RedisConfig::standalone(server.url()).with_operation_timeout(STORE_TIMEOUT)
}

fn fault_memcached(server: &MemcachedServer) -> MemcachedConfig {
    MemcachedConfig::new([server.addr()]).with_operation_timeout(STORE_TIMEOUT)
}

/// A failover store with a breaker fast enough for a test.
fn fast_failover(
    primary: impl SessionStore,
    secondary: impl SessionStore,
    mode: FailoverMode,
) -> FailoverStore {
    FailoverStore::builder(primary, secondary)
        .with_mode(mode)
        .with_call_timeout(CALL_TIMEOUT)
        .with_failure_threshold(FAILURE_THRESHOLD)
        .with_open_for(OPEN_FOR)
        .with_max_open_for(MAX_OPEN_FOR)
        .build()
        .expect("valid failover settings")
}

/// A memory store whose whole content can be dropped at once: with the
/// fault of an [`InstrumentedStore`] around it, how the test "kills" an
/// in-process secondary.
#[derive(Debug, Default)]
struct Wipeable(RwLock<MemoryStore>);

impl Wipeable {
    fn current(&self) -> MemoryStore {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets every session, as a restarted process would.
    fn wipe(&self) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = MemoryStore::new();
    }
}

#[async_trait]
impl SessionStore for Wipeable {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        self.current().load(id).await
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        self.current().stamp(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        self.current().create(record).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        self.current().commit(id, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        self.current().touch(id, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.current().delete(id).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        self.current().delete_if_version(id, version).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.current().health().await
    }
}

/// The kind of secondary a fault scenario runs with.
#[derive(Debug, Clone, Copy)]
enum SecondaryKind {
    Redis,
    Memcached,
    Postgres,
    Memory,
}

impl SecondaryKind {
    fn pair(self) -> &'static str {
        match self {
            Self::Redis => "Redis + Redis",
            Self::Memcached => "Redis + Memcached",
            Self::Postgres => "Redis + PostgreSQL",
            Self::Memory => "Redis + Memory",
        }
    }
}

/// The secondary of a fault scenario, and how to kill it.
enum Secondary {
    Redis(RedisServer),
    Memcached(MemcachedServer),
    Postgres(PostgresServer),
    /// An in-process store only dies with the app, so its death is
    /// emulated: every call fails `Unavailable` and its data is dropped.
    Memory {
        faults: Arc<InstrumentedStore>,
        data: Arc<Wipeable>,
    },
}

impl Secondary {
    fn kill(&mut self) {
        match self {
            Self::Redis(server) => server.kill(),
            Self::Memcached(server) => server.kill(),
            Self::Postgres(server) => server.kill(),
            Self::Memory { faults, data } => {
                faults.set_fault(Some(Fault::Fail(ErrorKind::Unavailable)));
                data.wipe();
            }
        }
    }

    fn kill_note(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "kill emulated: every call fails Unavailable, data dropped",
            _ => "process killed",
        }
    }
}

/// Starts a Redis primary and a secondary of `kind`, and the failover store
/// over them.
async fn start_pair(
    kind: SecondaryKind,
    mode: FailoverMode,
) -> (RedisServer, Secondary, FailoverStore) {
    let primary_server = RedisServer::start();
    let primary = redis_store(fault_redis(&primary_server)).await;
    let (secondary, failover) = match kind {
        SecondaryKind::Redis => {
            let server = RedisServer::start();
            let store = redis_store(fault_redis(&server)).await;
            (
                Secondary::Redis(server),
                fast_failover(primary, store, mode),
            )
        }
        SecondaryKind::Memcached => {
            let server = MemcachedServer::start();
            let store = memcached_store(fault_memcached(&server)).await;
            (
                Secondary::Memcached(server),
                fast_failover(primary, store, mode),
            )
        }
        SecondaryKind::Postgres => {
            let server = PostgresServer::start();
            let store = postgres_store(fault_postgres(&server)).await;
            (
                Secondary::Postgres(server),
                fast_failover(primary, store, mode),
            )
        }
        SecondaryKind::Memory => {
            let data = Arc::new(Wipeable::default());
            let faults = Arc::new(InstrumentedStore::new(Arc::clone(&data) as _));
            let failover = fast_failover(primary, Arc::clone(&faults), mode);
            (Secondary::Memory { faults, data }, failover)
        }
    };
    (primary_server, secondary, failover)
}

// ---------------------------------------------------------------------------
// The client loop and its bookkeeping
// ---------------------------------------------------------------------------

/// One browser and the last count it saw acknowledged (a 200).
struct User {
    browser: Browser,
    last: u64,
}

fn users(count: usize) -> Vec<User> {
    (0..count)
        .map(|_| User {
            browser: Browser::new(),
            last: 0,
        })
        .collect()
}

/// What one phase saw.
struct Phase {
    name: &'static str,
    requests: usize,
    /// Non-200 answers.
    failed: usize,
    /// 200 with count 1 from a user who had counted before: a fresh session.
    lost: usize,
    /// 200 with a count at or below the last acknowledged one (not a loss).
    stale: usize,
    /// 200 with a count more than one past the last acknowledged one: a
    /// write whose request failed landed after all (allowed).
    unacked: usize,
    lost_by_user: Vec<usize>,
    latencies: Vec<Duration>,
    /// From the kill to the relevant breaker opening.
    to_open: Option<Duration>,
    note: String,
}

impl Phase {
    fn new(name: &'static str, users: usize) -> Self {
        Self {
            name,
            requests: 0,
            failed: 0,
            lost: 0,
            stale: 0,
            unacked: 0,
            lost_by_user: vec![0; users],
            latencies: Vec::new(),
            to_open: None,
            note: String::new(),
        }
    }

    fn record(&mut self, index: usize, user: &mut User, status: u16, body: &str, took: Duration) {
        self.requests += 1;
        self.latencies.push(took);
        if status != 200 {
            self.failed += 1;
            return;
        }
        let count: u64 = body
            .parse()
            .unwrap_or_else(|_| panic!("a 200 whose body is not a count: {body:?}"));
        if user.last > 0 && count == 1 {
            self.lost += 1;
            self.lost_by_user[index] += 1;
        } else if count <= user.last {
            self.stale += 1;
        } else if count > user.last + 1 {
            self.unacked += 1;
        }
        user.last = count;
    }

    fn percentile(&self, per_cent: usize) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        sorted
            .get((sorted.len().saturating_sub(1)) * per_cent / 100)
            .copied()
            .unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.latencies.iter().max().copied().unwrap_or_default()
    }
}

/// Every user GETs `/counter` once, all at the same time.
async fn round(app: &RunningApp, users: &mut [User], phase: &mut Phase) {
    let answers = join_all(
        users
            .iter()
            .map(|user| async move { user.browser.get(app, "/counter").await }),
    )
    .await;
    for (index, (status, body, took)) in answers.into_iter().enumerate() {
        phase.record(index, &mut users[index], status, &body, took);
    }
}

/// Runs `rounds` rounds, failing the test once the phase (which started at
/// `started`) has run longer than [`PHASE_LIMIT`]. Each request is bounded
/// by the browser's own 10 s timeout.
async fn rounds(
    app: &RunningApp,
    users: &mut [User],
    phase: &mut Phase,
    rounds: usize,
    started: Instant,
) {
    for _ in 0..rounds {
        round(app, users, phase).await;
        assert!(
            started.elapsed() < PHASE_LIMIT,
            "phase {:?} ran longer than {PHASE_LIMIT:?}",
            phase.name
        );
    }
}

/// Runs rounds until the primary's breaker is closed; how long that took.
async fn rounds_until_primary_closes(
    app: &RunningApp,
    users: &mut [User],
    phase: &mut Phase,
    failover: &FailoverStore,
    since: Instant,
) -> Duration {
    let deadline = since + BREAKER_WATCH;
    loop {
        if failover.state().primary == BreakerState::Closed {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the primary's breaker did not close within {BREAKER_WATCH:?}: {:?}",
            failover.state()
        );
        round(app, users, phase).await;
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Primary,
    Secondary,
}

/// Polls the breaker of `which` every millisecond, from a task of its own
/// (the client loop must run meanwhile: only calls to the dead store open
/// it), until it is open; the time from `since` to its `opened_at`.
/// `None` when it did not open within [`BREAKER_WATCH`].
fn watch_for_open(
    failover: FailoverStore,
    which: Which,
    since: Instant,
) -> JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        let deadline = since + BREAKER_WATCH;
        while Instant::now() < deadline {
            let state = failover.state();
            let breaker = match which {
                Which::Primary => state.primary,
                Which::Secondary => state.secondary,
            };
            if let BreakerState::Open { opened_at, .. } = breaker {
                return Some(opened_at.saturating_duration_since(since));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    })
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// The phases as a markdown table.
fn table(pair: &str, mode: FailoverMode, phases: &[Phase]) -> String {
    let mut out = String::from(
        "\n| pair | mode | phase | requests | failed | sessions lost | stale reads \
         | unacked writes applied | ms to breaker open | p50 ms | max ms | notes |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for phase in phases {
        let to_open = phase.to_open.map_or_else(|| "–".to_owned(), ms);
        let _ = writeln!(
            out,
            "| {pair} | {mode:?} | {} | {} | {} | {} | {} | {} | {to_open} | {} | {} | {} |",
            phase.name,
            phase.requests,
            phase.failed,
            phase.lost,
            phase.stale,
            phase.unacked,
            ms(phase.percentile(50)),
            ms(phase.max()),
            phase.note,
        );
    }
    out
}

// ---------------------------------------------------------------------------
// The fault scenario
// ---------------------------------------------------------------------------

/// Warm up, kill the primary, restart it (empty), kill the secondary; the
/// client loop runs throughout. Returns the phases, after printing them.
async fn fault_scenario(kind: SecondaryKind, mode: FailoverMode) -> Vec<Phase> {
    let (mut primary, mut secondary, failover) = start_pair(kind, mode).await;
    let app = serve_store(&AxumApp, failover.clone(), ErrorPolicy::Reject).await;
    let mut users = users(USERS);
    let mut phases = Vec::new();

    // 0: every user creates its session and counts a few times.
    let started = Instant::now();
    let mut phase = Phase::new("0 warm-up", USERS);
    rounds(&app, &mut users, &mut phase, WARM_UP_ROUNDS, started).await;
    phases.push(phase);

    // 1: the primary dies; the app keeps serving.
    primary.kill();
    let killed_at = Instant::now();
    let watch = watch_for_open(failover.clone(), Which::Primary, killed_at);
    let mut phase = Phase::new("1 primary killed", USERS);
    rounds(&app, &mut users, &mut phase, ROUNDS, killed_at).await;
    phase.to_open = watch.await.expect("the breaker watch ran");
    phase.note = "primary: process killed".to_owned();
    phases.push(phase);

    // 2: the primary comes back, empty. The breaker closes at the first
    // probe after its back-off; then the fixed rounds run.
    primary.restart();
    let restarted_at = Instant::now();
    let mut phase = Phase::new("2 primary restarted (empty)", USERS);
    let to_close =
        rounds_until_primary_closes(&app, &mut users, &mut phase, &failover, restarted_at).await;
    rounds(&app, &mut users, &mut phase, ROUNDS, restarted_at).await;
    let state = failover.state();
    phase.note = format!(
        "primary breaker closed {} ms after the restart; pending replay at the end: {}",
        ms(to_close),
        state.pending_primary
    );
    phases.push(phase);

    // 3: the secondary dies; the app keeps serving.
    secondary.kill();
    let killed_at = Instant::now();
    let watch = watch_for_open(failover.clone(), Which::Secondary, killed_at);
    let mut phase = Phase::new("3 secondary killed", USERS);
    rounds(&app, &mut users, &mut phase, ROUNDS, killed_at).await;
    phase.to_open = watch.await.expect("the breaker watch ran");
    phase.note = format!("secondary: {}", secondary.kill_note());
    phases.push(phase);

    println!("{}", table(kind.pair(), mode, &phases));
    drop(app);
    phases
}

#[track_caller]
fn assert_clean(phase: &Phase) {
    assert_eq!(
        (phase.failed, phase.lost, phase.stale),
        (0, 0, 0),
        "phase {:?}: (failed, lost, stale) must all be 0",
        phase.name
    );
}

#[track_caller]
fn assert_breaker_opened(phase: &Phase) {
    assert!(
        phase.to_open.is_some(),
        "phase {:?}: the breaker never opened within {BREAKER_WATCH:?}",
        phase.name
    );
}

/// Mirror's guarantee: every acknowledged write is on every store that is
/// up, so killing either store loses nothing. That holds in phase 3 too:
/// the primary came back empty in phase 2, but its breaker closed, the
/// replay and every read copied the sessions back to it, and only then was
/// the secondary killed (one failure at a time, never two in a row).
async fn mirror(kind: SecondaryKind) {
    let phases = fault_scenario(kind, FailoverMode::Mirror).await;
    for phase in &phases {
        assert_clean(phase);
    }
    assert_breaker_opened(&phases[1]);
    assert_breaker_opened(&phases[3]);
}

/// Standby's guarantee, phase by phase.
async fn standby(kind: SecondaryKind) {
    let phases = fault_scenario(kind, FailoverMode::Standby).await;
    let [warm_up, primary_killed, primary_back, secondary_killed] = &phases[..] else {
        unreachable!("four phases")
    };
    assert_clean(warm_up);

    // The sessions live on the primary alone, so while it is down they are
    // out of reach: each user gets a fresh session, once, stored on the
    // secondary, which keeps counting from then on. No request fails: a
    // load that cannot reach the primary asks the secondary, and a create
    // goes there.
    assert_eq!(primary_killed.failed, 0, "phase 1: failed requests");
    assert_eq!(primary_killed.stale, 0, "phase 1: stale reads");
    assert_eq!(
        primary_killed.lost_by_user,
        vec![1; USERS],
        "phase 1: every user loses its session exactly once"
    );
    assert_breaker_opened(primary_killed);

    // The sessions made on the secondary stay readable there after the
    // primary returns (a load the primary answers "no such session" asks
    // the secondary; so does a commit the primary answers `Missing`).
    assert_clean(primary_back);

    // Every session now lives on the secondary only: standby writes to one
    // store, and the primary came back empty and took none of them. So the
    // secondary's death loses each of them, once: the primary misses, the
    // secondary is down, the load is "no session", and the fresh session
    // goes to the primary, which keeps counting. Still no request fails.
    assert_eq!(secondary_killed.failed, 0, "phase 3: failed requests");
    assert_eq!(secondary_killed.stale, 0, "phase 3: stale reads");
    assert_eq!(
        secondary_killed.lost_by_user,
        vec![1; USERS],
        "phase 3: every user loses its session (it lived on the secondary only) exactly once"
    );
    assert_breaker_opened(secondary_killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_redis_redis_survives_each_store_dying_in_turn() {
    mirror(SecondaryKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_redis_memcached_survives_each_store_dying_in_turn() {
    mirror(SecondaryKind::Memcached).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_redis_postgres_survives_each_store_dying_in_turn() {
    mirror(SecondaryKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_redis_memory_survives_each_store_dying_in_turn() {
    mirror(SecondaryKind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_redis_redis_loses_only_what_lives_on_the_dead_store() {
    standby(SecondaryKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_redis_memcached_loses_only_what_lives_on_the_dead_store() {
    standby(SecondaryKind::Memcached).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_redis_postgres_loses_only_what_lives_on_the_dead_store() {
    standby(SecondaryKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_redis_memory_loses_only_what_lives_on_the_dead_store() {
    standby(SecondaryKind::Memory).await;
}

// ---------------------------------------------------------------------------
// The kill run of issue 21, with the breaker an app runs with
// ---------------------------------------------------------------------------

/// Runs rounds for `length`, however many that takes.
async fn rounds_for(app: &RunningApp, users: &mut [User], phase: &mut Phase, length: Duration) {
    let started = Instant::now();
    while started.elapsed() < length {
        round(app, users, phase).await;
    }
}

/// The black-box kill run of issue 21 as a test, with the breaker settings
/// an app gets by default (1 s back-off doubling to 30 s, a background
/// probe every second) rather than the fast ones above: Redis is killed
/// under load, restarted empty 3 s later, and Memcached is killed 4 s after
/// that. Before the background probe, the breaker's back-off kept the
/// returned Redis out, unrepaired, until Memcached died, and every session
/// was replaced by a fresh one. Now the primary is repaired within about a
/// probe interval of answering again, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_with_default_breakers_repairs_a_restarted_primary_before_the_secondary_dies() {
    const DOWN_FOR: Duration = Duration::from_secs(3);
    const SECOND_KILL_AFTER: Duration = Duration::from_secs(4);
    let mut primary = RedisServer::start();
    let mut secondary = MemcachedServer::start();
    let failover = FailoverStore::builder(
        redis_store(fault_redis(&primary)).await,
        memcached_store(fault_memcached(&secondary)).await,
    )
    .with_call_timeout(CALL_TIMEOUT)
    .build()
    .expect("valid failover settings");
    let app = serve_store(&AxumApp, failover.clone(), ErrorPolicy::Reject).await;
    let mut users = users(USERS);
    let mut phases = Vec::new();

    let started = Instant::now();
    let mut phase = Phase::new("0 warm-up", USERS);
    rounds(&app, &mut users, &mut phase, WARM_UP_ROUNDS, started).await;
    phases.push(phase);

    primary.kill();
    let mut phase = Phase::new("1 Redis killed", USERS);
    rounds_for(&app, &mut users, &mut phase, DOWN_FOR).await;
    phase.note = format!(
        "pending replay at the end: {}",
        failover.state().pending_primary
    );
    phases.push(phase);

    primary.restart();
    let restarted_at = Instant::now();
    let mut phase = Phase::new("2 Redis restarted (empty)", USERS);
    // Redis is whole again once it holds every user's session and the
    // failover store's epoch mark (written again when it found Redis
    // empty): `DBSIZE`, asked between rounds.
    let whole = USERS as u64 + 1;
    let mut repaired_after = None;
    while restarted_at.elapsed() < SECOND_KILL_AFTER {
        round(&app, &mut users, &mut phase).await;
        let keys: u64 = primary.cli(&["DBSIZE"]).trim().parse().unwrap_or(0);
        if repaired_after.is_none() && keys >= whole {
            repaired_after = Some(restarted_at.elapsed());
        }
    }
    phase.note = repaired_after.map_or_else(
        || "Redis did not hold every session again before Memcached died".to_owned(),
        |after| {
            format!(
                "Redis held every session again {} ms after its restart",
                ms(after)
            )
        },
    );
    phases.push(phase);

    secondary.kill();
    let mut phase = Phase::new("3 Memcached killed", USERS);
    rounds_for(&app, &mut users, &mut phase, DOWN_FOR).await;
    phases.push(phase);

    println!(
        "{}",
        table(
            "Redis + Memcached, default breaker",
            FailoverMode::Mirror,
            &phases
        )
    );
    let repaired_after = repaired_after.expect("Redis repaired before Memcached was killed");
    println!(
        "time with a single copy after Redis was restarted: {} ms",
        ms(repaired_after)
    );
    for phase in &phases {
        assert_clean(phase);
    }
}

// ---------------------------------------------------------------------------
// A hung primary
// ---------------------------------------------------------------------------

/// A Redis primary stopped with SIGSTOP accepts connections and answers
/// nothing. The first request pays one call timeout, which opens the
/// breaker at once (the threshold is two failures; a timeout needs one);
/// later requests skip the primary, except one probe per back-off. Once
/// resumed, a probe closes the breaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_costs_one_call_timeout_then_is_skipped_until_it_answers() {
    const HANG_USERS: usize = 8;
    let mut primary = RedisServer::start();
    let failover = fast_failover(
        redis_store(fault_redis(&primary)).await,
        MemoryStore::new(),
        FailoverMode::Mirror,
    );
    let app = serve_store(&AxumApp, failover.clone(), ErrorPolicy::Reject).await;
    let mut users = users(HANG_USERS);
    let mut phases = Vec::new();

    let started = Instant::now();
    let mut phase = Phase::new("0 warm-up", HANG_USERS);
    rounds(&app, &mut users, &mut phase, WARM_UP_ROUNDS, started).await;
    phases.push(phase);

    primary.pause();
    let paused_at = Instant::now();
    let mut phase = Phase::new("1 primary paused (SIGSTOP)", HANG_USERS);
    // One request alone first: what the first victim of the hang pays.
    let (status, body, first) = users[0].browser.get(&app, "/counter").await;
    phase.record(0, &mut users[0], status, &body, first);
    let after_first = failover.state().primary;
    let BreakerState::Open { opened_at, .. } = after_first else {
        panic!("one call timeout must open the breaker, got {after_first:?}")
    };
    phase.to_open = Some(opened_at.saturating_duration_since(paused_at));
    rounds(&app, &mut users, &mut phase, ROUNDS, paused_at).await;
    let p50_paused = phase.percentile(50);
    phase.note = format!("first request alone: {} ms", ms(first));
    phases.push(phase);

    primary.resume();
    let resumed_at = Instant::now();
    let mut phase = Phase::new("2 primary resumed", HANG_USERS);
    let to_close =
        rounds_until_primary_closes(&app, &mut users, &mut phase, &failover, resumed_at).await;
    rounds(&app, &mut users, &mut phase, ROUNDS, resumed_at).await;
    phase.note = format!(
        "primary breaker closed {} ms after the resume",
        ms(to_close)
    );
    phases.push(phase);

    println!(
        "{}",
        table("Redis + Memory (hang)", FailoverMode::Mirror, &phases)
    );

    assert!(
        first >= CALL_TIMEOUT,
        "the first request ({first:?}) cannot have waited out the call timeout: did Redis hang?"
    );
    // "About the call timeout": the load's timeout, plus the request's own
    // work on a machine that may be busy; far below the store's 300 ms plus
    // a second round of store calls.
    assert!(
        first < CALL_TIMEOUT + Duration::from_millis(250),
        "the first request took {first:?}; the call timeout is {CALL_TIMEOUT:?}"
    );
    assert!(
        p50_paused < Duration::from_millis(100),
        "with the breaker open, requests must skip the hung primary: p50 {p50_paused:?}"
    );
    // Mirror: the hang costs time, never a session or a count.
    for phase in &phases {
        assert_clean(phase);
    }
}

// ---------------------------------------------------------------------------
// Conformance over real servers
// ---------------------------------------------------------------------------

/// One Redis for the whole test binary, shared by every conformance test
/// (they keep apart by key prefix); the test kit stops it at exit.
fn shared_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// One Memcached for the whole test binary, as [`shared_redis`].
fn shared_memcached() -> &'static MemcachedServer {
    static SERVER: OnceLock<MemcachedServer> = OnceLock::new();
    SERVER.get_or_init(MemcachedServer::start)
}

/// A second Redis, the other half of [`MirrorRedisRedis`].
fn shared_redis_secondary() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A store on the shared Redis under `prefix`, on a connection of its own
/// (opened in the runtime of the test that asks: each test has its own).
async fn conformance_redis(prefix: &str) -> RedisStore {
    redis_store(RedisConfig::standalone(shared_redis().url()).with_key_prefix(prefix)).await
}

async fn conformance_memcached(prefix: &str) -> MemcachedStore {
    memcached_store(MemcachedConfig::new([shared_memcached().addr()]).with_key_prefix(prefix)).await
}

/// Mirror over (Redis, Memcached), default breaker settings.
struct MirrorRedisMemcached;

#[async_trait]
impl StoreFactory for MirrorRedisMemcached {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(FailoverStore::new(
            conformance_redis(prefix).await,
            conformance_memcached(prefix).await,
        ))
    }

    /// Memcached keeps whole seconds, and mirror may serve its copy.
    fn expiry_resolution(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// Memcached cannot index owners, so the pair cannot either.
    fn indexes_owners(&self) -> bool {
        false
    }
}

/// Mirror over two Redis servers, default breaker settings: a pair where
/// both stores index owners, so "log out everywhere" runs through it.
struct MirrorRedisRedis;

#[async_trait]
impl StoreFactory for MirrorRedisRedis {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        let secondary =
            RedisConfig::standalone(shared_redis_secondary().url()).with_key_prefix(prefix);
        Arc::new(FailoverStore::new(
            conformance_redis(prefix).await,
            redis_store(secondary).await,
        ))
    }

    /// A racing write's repair may end a copy before the call counts it
    /// (see `FailoverStore::delete_by_owner`).
    fn owner_counts_are_exact(&self) -> bool {
        false
    }
}

/// Standby over (Redis, memory), default breaker settings; every prefix
/// shares one memory store, as every prefix shares the Redis.
struct StandbyRedisMemory(MemoryStore);

#[async_trait]
impl StoreFactory for StandbyRedisMemory {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(
            FailoverStore::builder(conformance_redis(prefix).await, self.0.prefixed(prefix))
                .with_mode(FailoverMode::Standby)
                .build()
                .expect("valid failover settings"),
        )
    }
}

/// A tiered store over Redis, each with a near-cache of its own.
struct TieredRedis;

#[async_trait]
impl StoreFactory for TieredRedis {
    async fn store(&self, prefix: &str) -> Arc<dyn SessionStore> {
        Arc::new(TieredStore::new(
            NearCache::new(),
            conformance_redis(prefix).await,
        ))
    }
}

fn shared_memory() -> MemoryStore {
    static STORE: OnceLock<MemoryStore> = OnceLock::new();
    STORE.get_or_init(MemoryStore::new).clone()
}

mod mirror_redis_memcached {
    session_conformance::store_suite!(super::MirrorRedisMemcached);

    mod http {
        session_conformance::http_suite!(
            session_kit::tower::conformance::AxumApp,
            super::super::MirrorRedisMemcached
        );
    }
}

mod mirror_redis_redis {
    session_conformance::store_suite!(super::MirrorRedisRedis);

    mod http {
        session_conformance::http_suite!(
            session_kit::tower::conformance::AxumApp,
            super::super::MirrorRedisRedis
        );
    }
}

mod standby_redis_memory {
    session_conformance::store_suite!(super::StandbyRedisMemory(super::shared_memory()));

    mod http {
        session_conformance::http_suite!(
            session_actix::conformance::ActixApp,
            super::super::StandbyRedisMemory(super::super::shared_memory())
        );
    }
}

mod tiered_redis {
    session_conformance::store_suite!(super::TieredRedis);
}
