//! The schedule explorer on mirror-mode failover: every app server runs
//! its own `FailoverStore` over the same two stores.
//!
//! They found races 1 and 2 of issue 21 before those were fixed, and
//! find them again within the default seeds when either fix is undone:
//! - race 1: a load on one server racing a logout on another sees the
//!   primary's copy from before the delete and the secondary's `None`
//!   from after it, takes that for a lost copy and writes the session
//!   back (found as a resurrection);
//! - race 2: after the secondary restarts empty, two commits' repair
//!   copies race, the later one gets `IdTaken` and counts as done, and
//!   when the primary dies the acknowledged write is gone (found as a
//!   lost write).

use std::{sync::Arc, time::Duration};

use session_conformance::race::{Deployment, Explorer, FaultWindow, Mix, Scenario, StoreFault};
use session_core::{FailoverStore, MemoryStore, SessionStore};

/// Seeds per scenario by default (each history takes a few milliseconds).
const SEEDS: u64 = 1000;

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Every app server runs its own mirror over the same two stores (0 is
/// the primary, 1 the secondary).
struct Mirror;

impl Deployment for Mirror {
    fn stores(&self) -> usize {
        2
    }

    fn empty_store(&self, _index: usize) -> Arc<dyn SessionStore> {
        Arc::new(MemoryStore::new())
    }

    fn server_store(
        &self,
        _server: usize,
        shared: &[Arc<dyn SessionStore>],
    ) -> Arc<dyn SessionStore> {
        Arc::new(FailoverStore::new(
            Arc::clone(&shared[0]),
            Arc::clone(&shared[1]),
        ))
    }
}

#[test]
fn mirror_never_brings_back_a_session_logged_out_on_another_server() {
    // No fault: logouts on one server while the same cookie is read and
    // written on the others, and replayed by a thief.
    let mix = Mix::reads_and_writes().with_endings(0, 2, 0);
    let scenario = Scenario::new().servers(3).clients(3).thief().mix(mix);
    Explorer::new("mirror, logouts racing loads", Mirror, scenario).run(SEEDS);
}

#[test]
fn mirror_loses_no_acknowledged_write_when_the_secondary_restarts_empty_and_then_the_primary_dies()
{
    // Reads and writes; the secondary restarts empty while commits run,
    // and the clients go on long enough for reads and commits to repair
    // it. Two seconds after they are done, the primary dies and comes back
    // empty: time enough for any bounded background repair, so what the
    // final reads miss was acknowledged with one copy.
    let scenario = Scenario::new()
        .servers(2)
        .clients(3)
        .requests(14)
        .think_time(ms(10))
        .mix(Mix::reads_and_writes())
        .fault(FaultWindow::new(
            1,
            StoreFault::RestartEmpty,
            ms(15)..=ms(30),
            ms(0)..=ms(5),
        ))
        .fault(FaultWindow::new(
            0,
            StoreFault::RestartEmpty,
            ms(2500)..=ms(2600),
            ms(0)..=ms(5),
        ));
    Explorer::new(
        "mirror, secondary then primary restarted empty",
        Mirror,
        scenario,
    )
    .run(SEEDS);
}

#[test]
fn mirror_keeps_every_promise_through_single_store_faults() {
    // One store fails at a time, each fault seconds after the last ended
    // (time for any bounded repair of what the failed store missed):
    // faults closer together would be two failures at once, whose loss
    // the mirror docs allow. The clients' requests spread over the first
    // two seconds or so.
    let mix = Mix::default().with_endings(0, 1, 1);
    let scenario = Scenario::new()
        .servers(3)
        .requests(14)
        .think_time(ms(250))
        .mix(mix)
        .fault(FaultWindow::new(
            1,
            StoreFault::Down,
            ms(10)..=ms(30),
            ms(5)..=ms(30),
        ))
        .fault(FaultWindow::new(
            0,
            StoreFault::Pause,
            ms(1500)..=ms(1600),
            ms(50)..=ms(300),
        ))
        .fault(FaultWindow::new(
            1,
            StoreFault::RestartEmpty,
            ms(4500)..=ms(4600),
            ms(0)..=ms(20),
        ));
    Explorer::new("mirror, single store faults", Mirror, scenario).run(SEEDS);
}
