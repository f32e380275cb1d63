//! An app server's store in the simulation: the node it runs beside, with
//! session ids made deterministic.
//!
//! The manager draws each new session id from the operating system's
//! random generator, and an id decides which nodes hold the session. So
//! that a seed fixes placement too, every id the manager hands the store
//! is replaced, on the way in, by the next id of a sequence the seed fixes
//! (the first time it is seen) and mapped back on the way out. The cluster
//! only ever sees the sequence's ids; the manager and the history only the
//! manager's.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use session_cluster::ClusterStore;
use session_conformance::async_trait;
use session_core::{
    store::{
        Changes, Committed, ConditionalDelete, Created, OwnerPass, Record, SessionStore, Stamp,
    },
    ErrorKind, SessionId, StoreError,
};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::Slot;

/// The manager's ids and the seeded ids that stand for them, both ways.
/// Shared by every app server of a run.
#[derive(Clone)]
pub struct IdMap {
    seed: u64,
    inner: Arc<Mutex<Ids>>,
}

#[derive(Default)]
struct Ids {
    to_sim: HashMap<SessionId, SessionId>,
    to_manager: HashMap<SessionId, SessionId>,
}

impl IdMap {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            inner: Arc::default(),
        }
    }

    /// The seeded id standing for `id`, allotted the first time.
    fn inward(&self, id: &SessionId) -> SessionId {
        let mut ids = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sim) = ids.to_sim.get(id) {
            return *sim;
        }
        let sim = seeded_id(self.seed, ids.to_sim.len() as u64);
        ids.to_sim.insert(*id, sim);
        ids.to_manager.insert(sim, *id);
        sim
    }

    fn outward(&self, sim: &SessionId) -> SessionId {
        let ids = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        *ids.to_manager
            .get(sim)
            .expect("the cluster returns only ids it was given")
    }
}

/// Id number `n` of `seed`'s sequence: 128 bits from a hash, written as the
/// 22 characters of unpadded base64url that `SessionId::decode` reads.
fn seeded_id(seed: u64, n: u64) -> SessionId {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let high = xxh3_64_with_seed(&n.to_le_bytes(), seed);
    let low = xxh3_64_with_seed(&n.to_le_bytes(), seed ^ 0x9e37_79b9_7f4a_7c15);
    let bits = (u128::from(high) << 64) | u128::from(low);
    // 22 characters of 6 bits hold 132: the last character carries the
    // final 2 bits, followed by 4 zero bits.
    let text: String = (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let sextet = if shift >= 0 {
                (bits >> shift) & 0x3f
            } else {
                (bits << -shift) & 0x3f
            };
            char::from(ALPHABET[usize::try_from(sextet).unwrap_or(0)])
        })
        .collect();
    SessionId::decode(&text).expect("a canonical 22-character id")
}

/// App server `i`'s store: node `i` as it runs now, under seeded ids.
pub struct OnNode {
    slot: Arc<Slot>,
    ids: IdMap,
}

impl std::fmt::Debug for OnNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnNode")
            .field("node", &self.slot.name)
            .finish_non_exhaustive()
    }
}

impl OnNode {
    pub(super) fn new(slot: Arc<Slot>, ids: IdMap) -> Self {
        Self { slot, ids }
    }

    /// The node, or the error a load balancer's health check would avoid:
    /// it is down (crashed, not restarted yet).
    fn node(&self, operation: &'static str) -> Result<ClusterStore, StoreError> {
        self.slot.current().ok_or_else(|| {
            StoreError::new(ErrorKind::Unavailable, operation).with_source(format!(
                "{} is down (crashed by the simulation)",
                self.slot.name
            ))
        })
    }
}

#[async_trait]
impl SessionStore for OnNode {
    async fn load(&self, id: &SessionId) -> Result<Option<Record>, StoreError> {
        let sim = self.ids.inward(id);
        let record = self.node("load")?.load(&sim).await?;
        Ok(record.map(|mut record| {
            record.id = self.ids.outward(&record.id);
            record
        }))
    }

    async fn stamp(&self, id: &SessionId) -> Result<Option<Stamp>, StoreError> {
        let sim = self.ids.inward(id);
        self.node("stamp")?.stamp(&sim).await
    }

    async fn create(&self, record: &Record) -> Result<Created, StoreError> {
        let mut sim = record.clone();
        sim.id = self.ids.inward(&record.id);
        self.node("create")?.create(&sim).await
    }

    async fn commit(
        &self,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let sim = self.ids.inward(id);
        self.node("commit")?.commit(&sim, changes, expires_at).await
    }

    async fn touch(&self, id: &SessionId, expires_at: SystemTime) -> Result<bool, StoreError> {
        let sim = self.ids.inward(id);
        self.node("touch")?.touch(&sim, expires_at).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let sim = self.ids.inward(id);
        self.node("delete")?.delete(&sim).await
    }

    async fn delete_if_version(
        &self,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let sim = self.ids.inward(id);
        self.node("delete_if_version")?
            .delete_if_version(&sim, version)
            .await
    }

    async fn delete_by_owner(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        self.node("delete_by_owner")?.delete_by_owner(owner).await
    }

    async fn sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        self.node("sessions_of")?.sessions_of(owner).await
    }

    fn indexes_owners(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.node("health")?.health().await
    }
}
