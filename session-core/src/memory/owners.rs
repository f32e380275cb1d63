//! The [`MemoryStore`](super::MemoryStore)'s owner index, and the
//! quick_cache lifecycle that takes an evicted session out of it.
//!
//! Lock order: the index's mutex is taken either with no shard lock held or
//! while holding exactly one shard's lock (inside an atomic step on an
//! entry, in a sweep's predicate, in the eviction hook), and nothing calls
//! into the cache while holding the mutex. So no thread ever waits for a
//! shard's lock while holding the mutex, and the two cannot deadlock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use quick_cache::Lifecycle;

use super::{CacheKey, Stored};
use crate::Owner;

/// Owner name → the cache keys of that owner's sessions, each with its
/// owner's `until`. Shared by every prefix view; a key carries its prefix,
/// so a view picks out its own.
///
/// Entries are added inside the same atomic step that stores the session,
/// so a session with an owner is never live unindexed. They leave inside
/// the atomic step that removes the session (a delete, an eviction, a
/// sweep of expired sessions), when their `until` has passed (swept on the
/// next add for that owner), or when `delete_by_owner` finds, inside the
/// atomic step on the session's entry, that the session is gone or has
/// another owner. An entry never leaves while its session is live with its
/// owner, so every pass of `delete_by_owner` sees every such session,
/// however many passes run at once.
#[derive(Default)]
pub(super) struct OwnerIndex {
    owners: Mutex<HashMap<String, HashMap<CacheKey, SystemTime>>>,
}

impl OwnerIndex {
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, HashMap<CacheKey, SystemTime>>) -> T,
    ) -> T {
        // Every critical section leaves the maps consistent, so a panic in
        // another thread cannot have left them half-changed.
        f(&mut self.owners.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn add(&self, owner: &Owner, key: &CacheKey) {
        let now = SystemTime::now();
        self.with(|owners| {
            let keys = owners.entry(owner.name.clone()).or_default();
            keys.retain(|_, until| *until > now);
            keys.insert(key.clone(), owner.until);
        });
    }

    pub(super) fn remove(&self, owner: &str, key: &CacheKey) {
        self.with(|owners| {
            if let Some(keys) = owners.get_mut(owner) {
                keys.remove(key);
                if keys.is_empty() {
                    owners.remove(owner);
                }
            }
        });
    }

    /// Takes the session stored at `key` out of its owner's index, if it
    /// has an owner: called as the session leaves the cache.
    pub(super) fn forget(&self, key: &CacheKey, stored: &Stored) {
        if let Some(owner) = &stored.owner {
            self.remove(&owner.name, key);
        }
    }

    /// The keys of `owner`'s sessions under `prefix`, left in the index: an
    /// entry leaves only with its session (see the type's docs), so a pass
    /// that fails or is dropped half-way leaves no live session unindexed.
    pub(super) fn keys(&self, owner: &str, prefix: &str) -> Vec<CacheKey> {
        self.with(|owners| {
            owners.get(owner).map_or_else(Vec::new, |keys| {
                keys.keys()
                    .filter(|key| &*key.prefix == prefix)
                    .cloned()
                    .collect()
            })
        })
    }

    /// Keeps the index in step with a store write of `key`: indexes the new
    /// owner, and forgets the old one when it changed.
    pub(super) fn update(&self, key: &CacheKey, old: Option<&Owner>, new: Option<&Owner>) {
        if let Some(old) = old.filter(|old| new.is_none_or(|new| new.name != old.name)) {
            self.remove(&old.name, key);
        }
        if let Some(new) = new {
            if old != Some(new) {
                self.add(new, key);
            }
        }
    }
}

/// The cache's [`Lifecycle`]: an evicted session leaves its owner's index
/// in the same step, under the shard's lock, so no write of that key can
/// come between (a later create of the key re-indexes it, and is not
/// undone by an index removal arriving late).
#[derive(Clone)]
pub(super) struct Evictions {
    pub(super) owners: Arc<OwnerIndex>,
}

impl Lifecycle<CacheKey, Arc<Stored>> for Evictions {
    /// Evicted sessions, dropped when the request's state drops, after the
    /// shard's lock is released (as quick_cache's default lifecycle does):
    /// freeing a session's data is then no time spent holding the lock. An
    /// insert evicts one or two sessions at a time; a third, if ever, is
    /// dropped under the lock.
    type RequestState = [Option<Arc<Stored>>; 2];

    fn on_evict(&self, state: &mut Self::RequestState, key: CacheKey, stored: Arc<Stored>) {
        self.owners.forget(&key, &stored);
        if let Some(slot) = state.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(stored);
        }
    }
}
