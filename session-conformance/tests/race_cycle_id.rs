//! The schedule explorer with `cycle_id` in the mix, on the memory store.
//!
//! It found race 7 of issue 21 before it was fixed (`cycle_id` dropped a
//! commit that landed between its load and its create: a lost write).
//! The same mix also covers race 6 (`end_all_for` missing a session whose
//! id is cycled during its pass), which the memory store's one-step
//! `delete_by_owner` does not expose; `session-core`'s gated tests do.

use std::sync::Arc;

use session_conformance::race::{Deployment, Explorer, Mix, Scenario};
use session_core::{MemoryStore, SessionStore};

/// Seeds by default (each history takes a few milliseconds).
const SEEDS: u64 = 1000;

/// Every app server uses the one shared store directly.
struct Memory;

impl Deployment for Memory {
    fn stores(&self) -> usize {
        1
    }

    fn empty_store(&self, _index: usize) -> Arc<dyn SessionStore> {
        Arc::new(MemoryStore::new())
    }

    fn server_store(
        &self,
        _server: usize,
        shared: &[Arc<dyn SessionStore>],
    ) -> Arc<dyn SessionStore> {
        Arc::clone(&shared[0])
    }
}

#[test]
fn cycle_id_carries_over_every_commit_acknowledged_before_it() {
    let scenario = Scenario::new().servers(3).mix(Mix::default());
    Explorer::new("memory, with cycle_id", Memory, scenario).run(SEEDS);
}
