//! The schedule explorer: one small multi-server scenario, run under many
//! seeded interleavings, each run's history checked.

use std::{
    fmt,
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use session_core::{store::SessionStore, Key, SessionManager};

use super::{
    client::Client,
    faults::{Faults, Schedule, SimulatedFaults, SimulatedStore},
    scenario::{Mix, Scenario, OWNER},
    Promise, Violation,
};
use crate::race::History;

/// The variable that replays one seed: `SESSION_KIT_RACE_SEED=<n>`.
pub const SEED_VAR: &str = "SESSION_KIT_RACE_SEED";
/// The variable that sets how many seeds each explorer test runs:
/// `SESSION_KIT_RACE_SEEDS=<count>`.
pub const SEEDS_VAR: &str = "SESSION_KIT_RACE_SEEDS";

/// What a scenario runs on: the stores every app server shares, and each
/// server's own store over them. A store crate implements it to explore
/// its stores.
///
/// The explorer wraps each shared store in a [`SimulatedStore`] (seeded
/// delays, and faults for in-process stores) before handing them to
/// [`server_store`](Self::server_store).
///
/// ```
/// use std::sync::Arc;
/// use session_conformance::race::Deployment;
/// use session_core::{failover::FailoverStore, memory::MemoryStore, store::SessionStore};
///
/// /// Every app server runs its own mirror over the same two stores.
/// struct Mirror;
///
/// impl Deployment for Mirror {
///     fn stores(&self) -> usize {
///         2
///     }
///     fn empty_store(&self, _index: usize) -> Arc<dyn SessionStore> {
///         Arc::new(MemoryStore::new())
///     }
///     fn server_store(&self, _server: usize, shared: &[Arc<dyn SessionStore>]) -> Arc<dyn SessionStore> {
///         Arc::new(FailoverStore::new(Arc::clone(&shared[0]), Arc::clone(&shared[1])))
///     }
/// }
/// ```
pub trait Deployment: Send + Sync + 'static {
    /// How many stores the app servers share (1 for a single store, 2 for
    /// a failover pair).
    fn stores(&self) -> usize;

    /// A new, empty shared store number `index`: called once per run, and
    /// by the simulated faults when store `index` restarts empty. Over a
    /// real server, a handle under a key prefix no earlier run used.
    fn empty_store(&self, index: usize) -> Arc<dyn SessionStore>;

    /// App server `server`'s store over the shared stores: the shared store
    /// itself, or a composite over them (a `FailoverStore`, a
    /// `TieredStore` with this server's own near-cache, ...). Called inside
    /// the run's runtime.
    fn server_store(
        &self,
        server: usize,
        shared: &[Arc<dyn SessionStore>],
    ) -> Arc<dyn SessionStore>;

    /// Who applies the scenario's faults. `None` (the default): the
    /// explorer's wrapper, which suits in-process stores. Over real
    /// servers, a [`Faults`] that kills, stops and restarts them.
    fn faults(&self) -> Option<Arc<dyn Faults>> {
        None
    }
}

/// One seeded run: its history and what the checker found in it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Run {
    /// The seed that replays it.
    pub seed: u64,
    /// Every request of the run.
    pub history: History,
    /// The broken promises; empty when all held.
    pub violations: Vec<Violation>,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} violation(s)",
            self.seed,
            self.violations.len()
        )?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        writeln!(f, "history:\n{}", self.history)?;
        write!(f, "replay this run alone with {SEED_VAR}={}", self.seed)
    }
}

/// What an exploration did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Histories run and checked.
    pub histories: u64,
    /// Operations checked, over all histories.
    pub operations: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The first run that broke a promise, if any (exploring stops there).
    pub failure: Option<Run>,
}

/// Runs a [`Scenario`] on a [`Deployment`] under many seeds.
///
/// Each seed runs on a fresh current-thread tokio runtime with a paused
/// clock: every delay, think time, timeout and breaker back-off is virtual
/// time, and the only source of choice is the seeded [`Schedule`], so with
/// in-process stores a seed replays its run exactly. Over real servers use
/// [`run_in_current_runtime`](Self::run_in_current_runtime) on a
/// multi-thread runtime with real time: the seed still fixes every delay,
/// request and fault, but the servers' own timing is not replayable.
///
/// ```
/// use std::sync::Arc;
/// use session_conformance::race::{Deployment, Explorer, Mix, Scenario};
/// use session_core::{memory::MemoryStore, store::SessionStore};
///
/// struct Memory;
///
/// impl Deployment for Memory {
///     fn stores(&self) -> usize { 1 }
///     fn empty_store(&self, _: usize) -> Arc<dyn SessionStore> { Arc::new(MemoryStore::new()) }
///     fn server_store(&self, _: usize, shared: &[Arc<dyn SessionStore>]) -> Arc<dyn SessionStore> {
///         Arc::clone(&shared[0])
///     }
/// }
///
/// let explorer = Explorer::new("memory", Memory, Scenario::new().with_mix(Mix::reads_and_writes()));
/// let summary = explorer.explore(0..5);
/// assert!(summary.failure.is_none());
/// assert_eq!(summary.histories, 5);
/// ```
pub struct Explorer {
    name: String,
    deployment: Arc<dyn Deployment>,
    scenario: Scenario,
    waived: Vec<(Promise, String)>,
}

impl fmt::Debug for Explorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Explorer")
            .field("name", &self.name)
            .field("scenario", &self.scenario)
            .field("waived", &self.waived)
            .finish_non_exhaustive()
    }
}

impl Explorer {
    /// An explorer of `scenario` on `deployment`; `name` heads its reports.
    #[must_use]
    pub fn new(name: impl Into<String>, deployment: impl Deployment, scenario: Scenario) -> Self {
        Self {
            name: name.into(),
            deployment: Arc::new(deployment),
            scenario,
            waived: Vec::new(),
        }
    }

    /// Stops checking `promise`, because the deployment documents an
    /// exception to it (`why`, which heads the report): say, standby
    /// mode's sessions that are out of reach while the primary is down.
    /// The other promises are still checked in the same runs.
    #[must_use]
    pub fn waive(mut self, promise: Promise, why: impl Into<String>) -> Self {
        self.waived.push((promise, why.into()));
        self
    }

    /// What a test calls: with [`SEED_VAR`] set, replays that seed and
    /// prints its history; otherwise runs seeds `0..n`, `n` from
    /// [`SEEDS_VAR`] or `default_seeds`, and prints a one-line summary.
    ///
    /// # Panics
    /// When a run breaks a promise: the message has the seed, the
    /// violations and the history.
    // The summary is for callers that report it; a test only needs the
    // panic.
    #[allow(clippy::must_use_candidate)]
    pub fn run(&self, default_seeds: u64) -> Summary {
        if let Some(seed) = env_number(SEED_VAR) {
            let started = Instant::now();
            let run = self.run_seed(seed);
            eprintln!("{}: {run}", self.name);
            let summary = Summary {
                histories: 1,
                operations: run.history.len() as u64,
                elapsed: started.elapsed(),
                failure: (!run.violations.is_empty()).then_some(run),
            };
            assert!(
                summary.failure.is_none(),
                "{}: seed {seed} failed",
                self.name
            );
            return summary;
        }
        let seeds = env_number(SEEDS_VAR).unwrap_or(default_seeds);
        let summary = self.explore(0..seeds);
        if let Some(failure) = &summary.failure {
            panic!(
                "{}: a run broke a promise after {} seed(s)\n{failure}",
                self.name, summary.histories
            );
        }
        eprintln!(
            "{}: {} histories, {} operations checked, no violation, in {:.2?}",
            self.name, summary.histories, summary.operations, summary.elapsed
        );
        for (promise, why) in &self.waived {
            eprintln!("  not checked: {promise:?} ({why})");
        }
        summary
    }

    /// Runs `seeds` in order, stopping at the first run that breaks a
    /// promise.
    #[must_use]
    pub fn explore(&self, seeds: Range<u64>) -> Summary {
        let started = Instant::now();
        let mut summary = Summary {
            histories: 0,
            operations: 0,
            elapsed: Duration::ZERO,
            failure: None,
        };
        for seed in seeds {
            let run = self.run_seed(seed);
            summary.histories += 1;
            summary.operations += run.history.len() as u64;
            if !run.violations.is_empty() {
                summary.failure = Some(run);
                break;
            }
        }
        summary.elapsed = started.elapsed();
        summary
    }

    /// [`explore`](Self::explore) on the runtime the caller is in, each
    /// seed by [`run_in_current_runtime`](Self::run_in_current_runtime):
    /// for real servers.
    pub async fn explore_in_current_runtime(&self, seeds: Range<u64>) -> Summary {
        let started = Instant::now();
        let mut summary = Summary {
            histories: 0,
            operations: 0,
            elapsed: Duration::ZERO,
            failure: None,
        };
        for seed in seeds {
            let run = self.run_in_current_runtime(seed).await;
            summary.histories += 1;
            summary.operations += run.history.len() as u64;
            if !run.violations.is_empty() {
                summary.failure = Some(run);
                break;
            }
        }
        summary.elapsed = started.elapsed();
        summary
    }

    /// Runs one seed on a fresh paused current-thread runtime.
    ///
    /// # Panics
    /// When the runtime cannot be built.
    #[must_use]
    pub fn run_seed(&self, seed: u64) -> Run {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime starts")
            .block_on(self.run_in_current_runtime(seed))
    }

    /// Runs one seed on the runtime the caller is in: for real servers, a
    /// multi-thread runtime with real time (see the type's docs).
    ///
    /// # Panics
    /// When the managers cannot be built (a bad operation timeout).
    pub async fn run_in_current_runtime(&self, seed: u64) -> Run {
        let scenario = &self.scenario;
        let schedule = Schedule::new(seed, scenario.max_delay);
        let simulated: Vec<Arc<SimulatedStore>> = (0..self.deployment.stores())
            .map(|index| {
                let deployment = Arc::clone(&self.deployment);
                Arc::new(SimulatedStore::new(
                    deployment.empty_store(index),
                    move || deployment.empty_store(index),
                    schedule.clone(),
                ))
            })
            .collect();
        let shared: Vec<Arc<dyn SessionStore>> = simulated
            .iter()
            .map(|store| Arc::clone(store) as Arc<dyn SessionStore>)
            .collect();
        let faults = self
            .deployment
            .faults()
            .unwrap_or_else(|| Arc::new(SimulatedFaults::new(simulated)));
        let key = Key::generate();
        let managers: Vec<SessionManager> = (0..scenario.servers)
            .map(|server| {
                SessionManager::builder(self.deployment.server_store(server, &shared), key.clone())
                    .with_operation_timeout(scenario.operation_timeout)
                    .build()
                    .expect("the scenario's manager settings are valid")
            })
            .collect();
        let history = History::new();
        let everyone = scenario.clients + usize::from(scenario.thief);
        let mut clients: Vec<Client> = (0..everyone)
            .map(|index| Client::new(index, everyone, history.clone()))
            .collect();
        let pick_server =
            || usize::try_from(schedule.pick(0..=scenario.servers as u64 - 1)).unwrap_or(0);

        let sessions = scenario.sessions.min(scenario.clients);
        for client in clients.iter_mut().take(sessions) {
            let server = pick_server();
            client.login(server, &managers[server], OWNER).await;
        }
        for index in sessions..clients.len() {
            let (first, rest) = clients.split_at_mut(index);
            rest[0].adopt_cookie(&first[index % sessions]);
        }
        if scenario.thief {
            if let Some(thief) = clients.last_mut() {
                thief.keep_cookie();
            }
        }

        let windows: Vec<_> = scenario
            .faults
            .iter()
            .map(|window| {
                let start = schedule.duration(window.starts.clone());
                let length = schedule.duration(window.lasts.clone());
                let (faults, store, fault) = (Arc::clone(&faults), window.store, window.fault);
                async move {
                    tokio::time::sleep(start).await;
                    faults.begin(store, fault).await;
                    tokio::time::sleep(length).await;
                    faults.end(store, fault).await;
                }
            })
            .collect();
        let runs = clients.iter_mut().enumerate().map(|(index, client)| {
            let (managers, schedule) = (&managers, &schedule);
            let mix = if index == scenario.clients {
                // The thief only replays the cookie.
                Mix::reads_and_writes().with_weights(1, 0)
            } else {
                scenario.mix
            };
            async move {
                for _ in 0..scenario.requests {
                    tokio::time::sleep(schedule.duration(Duration::ZERO..=scenario.think)).await;
                    let server = pick_server();
                    request(client, server, &managers[server], mix, schedule).await;
                }
            }
        });
        futures_util::future::join(join_all(windows), join_all(runs)).await;

        // Every fault is over: let breakers re-probe and replays run, then
        // each client reads once on every server, so what was lost shows.
        tokio::time::sleep(scenario.settle).await;
        for client in &mut clients {
            for (server, manager) in managers.iter().enumerate() {
                if client.session().is_some() {
                    client.read(server, manager).await;
                }
            }
        }
        let mut violations = history.check();
        violations.retain(|violation| {
            self.waived
                .iter()
                .all(|(promise, _)| *promise != violation.promise())
        });
        Run {
            seed,
            history,
            violations,
        }
    }
}

/// One request of `client`, drawn from `mix`.
async fn request(
    client: &mut Client,
    server: usize,
    manager: &SessionManager,
    mix: Mix,
    schedule: &Schedule,
) {
    if client.session().is_none() {
        client.login(server, manager, OWNER).await;
        return;
    }
    let total = u64::from(mix.read + mix.write + mix.cycle_id + mix.destroy + mix.end_all);
    let mut roll = schedule.pick(0..=total.max(1) - 1);
    for (weight, kind) in [
        (mix.read, 0),
        (mix.write, 1),
        (mix.cycle_id, 2),
        (mix.destroy, 3),
        (mix.end_all, 4),
    ] {
        let weight = u64::from(weight);
        if roll >= weight {
            roll -= weight;
            continue;
        }
        match kind {
            0 => client.read(server, manager).await,
            1 => client.write(server, manager).await,
            2 => client.cycle_id(server, manager).await,
            3 => client.destroy(server, manager).await,
            _ => client.end_all_for(server, manager, OWNER).await,
        }
        return;
    }
    client.read(server, manager).await;
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, not {text:?}")),
    )
}
