//! The race explorer over a real PostgreSQL server, with real faults.
//!
//! Three app servers share one database; clients (a user's two tabs, a
//! third tab and a stolen cookie that only reads) read, write, cycle ids,
//! log out and end every session of their owner, their requests
//! interleaved by seed, while a real fault hits the server mid-run. Every
//! run's history goes through the history checker: no acknowledged write
//! lost, no stale read, nothing ended coming back, no cookie replaced but
//! by `cycle_id` or `destroy`, no value going backwards.
//!
//! | test | fault |
//! |---|---|
//! | `..._while_the_server_is_paused` | the postmaster and every backend SIGSTOPped, then SIGCONTed |
//! | `..._when_the_server_crashes_and_restarts` | every process SIGKILLed, then a restart on the same data (crash recovery from the write-ahead log) |
//!
//! A crash keeps what was acknowledged: a commit answers only once its
//! write-ahead log reached the kernel, which a killed server does not undo.
//!
//! On real servers and real time a seed fixes every delay, request and
//! fault window but not PostgreSQL's own timing, so a failing seed is a lead
//! rather than an exact replay (see `session_conformance::race`).
//! `SESSION_KIT_RACE_SEEDS=<count>` runs more seeds per test;
//! `SESSION_KIT_RACE_SEED=<n>` runs one seed and prints its history:
//! ```text
//! SESSION_KIT_RACE_SEEDS=200 cargo test -p session-postgres --test race -- --nocapture
//! ```

mod support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};

use session_conformance::{
    async_trait,
    race::{
        Deployment, Explorer, FaultWindow, Faults, Mix, Scenario, StoreFault, SEEDS_VAR, SEED_VAR,
    },
    testkit::PostgresServer,
};
use session_core::store::SessionStore;
use session_postgres::PostgresStore;
use support::{config, connect};

/// The managers' operation timeout: a request to a hung server answers 503
/// after this, and its store call may still land later.
const OPERATION_TIMEOUT: Duration = Duration::from_millis(100);

/// The store's own timeout, above the managers' so that the manager's
/// timeout decides, as in production.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// Default seeds of each test: a run takes about a third of a second
/// paused, under a second crashed (the restart recovers from the log).
const SEEDS: u64 = 20;

/// Three app servers, three clients on one session plus a thief, reads,
/// writes and every way a session ends or moves, the short operation
/// timeout.
fn three_servers() -> Scenario {
    Scenario::new()
        .with_servers(3)
        .with_thief(true)
        .with_mix(Mix::default().with_endings(1, 1, 1))
        .with_operation_timeout(OPERATION_TIMEOUT)
}

fn millis(range: std::ops::RangeInclusive<u64>) -> std::ops::RangeInclusive<Duration> {
    Duration::from_millis(*range.start())..=Duration::from_millis(*range.end())
}

/// One shared store under a key prefix no earlier run used, so runs never
/// see each other's sessions. Faults are real.
struct OnPostgres {
    base: PostgresStore,
    runs: AtomicUsize,
    faults: Arc<dyn Faults>,
}

impl Deployment for OnPostgres {
    fn stores(&self) -> usize {
        1
    }

    fn empty_store(&self, _index: usize) -> Arc<dyn SessionStore> {
        // Called once a run: with real faults the explorer never asks for
        // a simulated restart.
        let run = self.runs.fetch_add(1, Ordering::Relaxed);
        Arc::new(self.base.prefixed(format!("race-{run}:")))
    }

    fn server_store(
        &self,
        _server: usize,
        shared: &[Arc<dyn SessionStore>],
    ) -> Arc<dyn SessionStore> {
        Arc::clone(&shared[0])
    }

    fn faults(&self) -> Option<Arc<dyn Faults>> {
        Some(Arc::clone(&self.faults))
    }
}

/// Faults on the server: pause is SIGSTOP/SIGCONT of every process; down is
/// SIGKILL of every process, then a restart on the same port and data.
struct ServerFaults {
    server: Arc<Mutex<PostgresServer>>,
}

#[async_trait]
impl Faults for ServerFaults {
    async fn begin(&self, _store: usize, fault: StoreFault) {
        let server = Arc::clone(&self.server);
        blocking(move || match fault {
            StoreFault::Pause => lock(&server).pause(),
            StoreFault::Down => lock(&server).kill(),
            other => panic!("{other:?} is out of this file's scope"),
        })
        .await;
    }

    async fn end(&self, _store: usize, fault: StoreFault) {
        let server = Arc::clone(&self.server);
        blocking(move || match fault {
            StoreFault::Pause => lock(&server).resume(),
            _ => lock(&server).restart(),
        })
        .await;
    }
}

/// A server of the test's own (its faults must not reach other tests), a
/// store on it, and faults on it.
async fn deployment() -> OnPostgres {
    let server = blocking(PostgresServer::start).await;
    let base = connect(config(server.url()).with_operation_timeout(STORE_TIMEOUT)).await;
    OnPostgres {
        base,
        runs: AtomicUsize::new(0),
        faults: Arc::new(ServerFaults {
            server: Arc::new(Mutex::new(server)),
        }),
    }
}

/// Explores `scenario`: [`SEEDS`] seeds (or as many as
/// `SESSION_KIT_RACE_SEEDS` says, or only `SESSION_KIT_RACE_SEED`, whose
/// history is printed); checks every history and prints the figures.
///
/// # Panics
/// At the first run that breaks a promise, with its seed, violations and
/// history.
async fn explore(name: &str, deployment: OnPostgres, scenario: Scenario) {
    let explorer = Explorer::new(name, deployment, scenario);
    let replay = env_number(SEED_VAR);
    let seeds = match replay {
        Some(seed) => seed..seed + 1,
        None => 0..env_number(SEEDS_VAR).unwrap_or(SEEDS),
    };
    let started = Instant::now();
    let (mut histories, mut operations, mut acknowledged) = (0_u64, 0_usize, 0_usize);
    for seed in seeds {
        let run = explorer.run_in_current_runtime(seed).await;
        histories += 1;
        let ops = run.history.ops();
        operations += ops.len();
        acknowledged += ops.iter().filter(|op| op.acknowledged()).count();
        if replay.is_some() {
            eprintln!("{name}: {run}");
        }
        assert!(
            run.violations.is_empty(),
            "{name}: a run broke a promise after {histories} seed(s)\n{run}"
        );
    }
    // A run in which nothing was acknowledged checks nothing.
    assert!(acknowledged > 0, "{name}: no operation was acknowledged");
    eprintln!(
        "{name}: {histories} histories, {operations} operations ({acknowledged} acknowledged) \
         checked, no violation, in {:.2?}",
        started.elapsed()
    );
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
    )
}

/// Runs a blocking test-kit call (it sleeps and polls) on the blocking
/// pool, so the runtime's workers keep serving the clients meanwhile.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(call).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_promise_while_the_server_is_paused() {
    let scenario = three_servers()
        .with_settle(Duration::ZERO)
        .with_fault(FaultWindow::new(
            0,
            StoreFault::Pause,
            millis(10..=40),
            millis(20..=150),
        ));
    explore("postgres, paused", deployment().await, scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_promise_when_the_server_crashes_and_restarts() {
    // Settle: pooled connections to the killed server fail once each and
    // are replaced, so that the final reads reach the restarted server.
    let scenario = three_servers()
        .with_settle(Duration::from_millis(300))
        .with_fault(FaultWindow::new(
            0,
            StoreFault::Down,
            millis(10..=60),
            millis(20..=150),
        ));
    explore("postgres, crashed", deployment().await, scenario).await;
}
