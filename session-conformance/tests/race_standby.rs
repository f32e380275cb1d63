//! The schedule explorer on standby-mode failover with the primary down:
//! every app server runs its own standby `FailoverStore` over the same two
//! stores.
//!
//! While the primary is down, standby mode documents that its sessions are
//! out of reach (their users get fresh sessions on the secondary), so the
//! promises about values and cookies are waived here; what is checked is
//! that nothing ended comes back.
//!
//! It found race 3 of issue 21 before it was fixed: a logout while the
//! primary is down landed on the secondary only, and the other servers
//! went on serving the primary's copy once it was back (a resurrection).

use std::{sync::Arc, time::Duration};

use session_conformance::race::{
    Deployment, Explorer, FaultWindow, Mix, Promise, Scenario, StoreFault,
};
use session_core::{FailoverMode, FailoverStore, MemoryStore, SessionStore};

/// Seeds by default (each history takes a few milliseconds).
const SEEDS: u64 = 1000;

const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Every app server runs its own standby failover store over the same two
/// stores (0 is the primary, 1 the secondary).
struct Standby;

impl Deployment for Standby {
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
        Arc::new(
            FailoverStore::builder(Arc::clone(&shared[0]), Arc::clone(&shared[1]))
                .mode(FailoverMode::Standby)
                .build()
                .expect("valid failover settings"),
        )
    }
}

#[test]
fn standby_never_brings_back_a_session_logged_out_while_the_primary_was_down() {
    let documented = "standby: the primary's sessions are out of reach while it is down";
    let scenario = Scenario::new()
        .servers(3)
        .requests(8)
        .thief()
        .mix(Mix::reads_and_writes().with_endings(0, 2, 0))
        .fault(FaultWindow::new(
            0,
            StoreFault::Down,
            ms(10)..=ms(40),
            ms(40)..=ms(120),
        ));
    Explorer::new("standby, primary down", Standby, scenario)
        .waive(Promise::NoLostWrite, documented)
        .waive(Promise::NoStaleRead, documented)
        .waive(Promise::NoGoingBackwards, documented)
        .waive(Promise::CookieKept, documented)
        .run(SEEDS);
}
