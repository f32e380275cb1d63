//! Owner indexes: which sessions belong to one owner, kept under a key of
//! their own so `delete_by_owner` finds them; the client side (`index`,
//! `end_sessions_of`) and the index owner node's side (`index_here`).

use std::{
    collections::{HashMap, HashSet},
    time::SystemTime,
};

use async_trait::async_trait;
use futures_util::{stream, StreamExt as _};
use session_core::{
    store::{Owner, OwnerPass, Record},
    ErrorKind, SessionId, StoreError,
};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::{
    coordinator::{kept_losing, Gathered, OwnerCall, Serving, MAX_ATTEMPTS},
    entry::{self, Entry, IndexDelta},
    local::OWNER_KEY_TAG,
    node::Inner,
    placement::{Member, View},
    protocol::{
        Encoded, EndOutcome, EndOwned, IndexAdd, IndexCopy, IndexRead, IndexRemove, IndexedSession,
        Install,
    },
    sign::to_hex,
    store::ClusterStore,
    wire::WireId,
};

/// Conditional deletes one `delete_by_owner` keeps in flight: enough to end a
/// user's sessions in a few round trips, few enough to leave the per-peer
/// slots to the requests of other users.
pub(crate) const END_CONCURRENCY: usize = 32;
/// Hashed into every owner index key, so the key space is this crate's own.
pub(crate) const OWNER_KEY_DOMAIN: &[u8] = b"session-cluster owner index\0";

impl ClusterStore {
    /// The key of `owner`'s index: the prefix, then `owner:` and the hex
    /// SHA-256 of the name. The part after the prefix has a fixed length (70
    /// characters), unlike a session key's (22), so no two prefixes' keys
    /// can meet, whatever the prefixes and names; the hash resists names
    /// chosen to collide and bounds the key's length.
    pub(crate) fn owner_key(&self, owner: &str) -> String {
        let digest = Sha256::new()
            .chain_update(OWNER_KEY_DOMAIN)
            .chain_update(owner.as_bytes())
            .finalize();
        format!("{}{OWNER_KEY_TAG}{}", self.prefix, to_hex(&digest))
    }

    /// Adds `id` to `owner`'s index, acknowledged by every holder of the
    /// index: done before the session itself is written, so an owned
    /// session is never live unindexed.
    pub(crate) async fn index(
        &self,
        owner: &Owner,
        id: &SessionId,
        operation: &'static str,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let key = self.owner_key(&owner.name);
        let request = IndexAdd {
            key,
            id: WireId(*id),
            until: owner.until,
        };
        self.inner.route(request, operation, deadline).await
    }

    /// The body of `delete_by_owner`; see its docs on the `SessionStore` impl.
    pub(crate) async fn end_sessions_of(&self, owner: &str) -> Result<OwnerPass, StoreError> {
        const OPERATION: &str = "delete_by_owner";
        let deadline = Instant::now() + self.inner.operation_timeout;
        let index = self.owner_key(owner);
        let read = IndexRead { key: index.clone() };
        let entries = self.inner.route(read, OPERATION, deadline).await?;
        // An index is a hash map, in an order of the process's own; a
        // simulation ends its sessions in an order the seed fixes.
        #[cfg(feature = "simulation")]
        let entries = {
            let mut entries = entries;
            entries.sort_by_key(|entry| entry.id.0.encode());
            entries
        };
        let indexed = entries.iter().map(|entry| entry.id.0).collect();
        let results: Vec<(WireId, Result<EndOutcome, StoreError>)> = stream::iter(entries)
            .map(|IndexedSession { id, until }| async move {
                let request = EndOwned {
                    key: self.key(&id.0),
                    owner: owner.to_owned(),
                    until,
                };
                (id, self.inner.route(request, OPERATION, deadline).await)
            })
            .buffer_unordered(END_CONCURRENCY)
            .collect()
            .await;
        let mut ended = 0;
        let mut settled = Vec::new();
        let mut error = None;
        for (id, result) in results {
            match result {
                Ok(EndOutcome::Ended) => {
                    ended += 1;
                    settled.push(id);
                }
                Ok(EndOutcome::Absent) => settled.push(id),
                // It belongs to someone else now, but a commit giving it
                // back to this owner may have indexed it already: the entry
                // stays until its `until`.
                Ok(EndOutcome::Kept) => {}
                Err(err) => {
                    error.get_or_insert(err);
                }
            }
        }
        if !settled.is_empty() {
            let remove = IndexRemove {
                key: index.clone(),
                ids: settled,
            };
            // Tidying only: entries left behind point at tombstones, which
            // the next call counts as absent, and leave by their `until`.
            if let Err(err) = self.inner.route(remove, OPERATION, deadline).await {
                tracing::debug!(
                    error = %err.to_line(),
                    "ended sessions stay in their owner's index for now"
                );
            }
        }
        match error {
            Some(err) => Err(err),
            None => Ok(OwnerPass { ended, indexed }),
        }
    }
}

impl ClusterStore {
    /// The body of `sessions_of`: reads the owner's index as
    /// `delete_by_owner` does, then loads each indexed session from its own
    /// owner node, 32 at a time, keeping those that still belong to
    /// `owner`; all within one operation timeout.
    pub(crate) async fn list_sessions_of(&self, owner: &str) -> Result<Vec<Record>, StoreError> {
        const OPERATION: &str = "sessions_of";
        if Owner::check_name(owner).is_err() {
            return Ok(Vec::new());
        }
        let timeout = self.inner.operation_timeout;
        let listed = async {
            let deadline = Instant::now() + timeout;
            let read = IndexRead {
                key: self.owner_key(owner),
            };
            let entries = self.inner.route(read, OPERATION, deadline).await?;
            let loaded: Vec<Result<Option<Record>, StoreError>> = stream::iter(entries)
                .map(|IndexedSession { id, .. }| async move {
                    session_core::store::SessionStore::load(self, &id.0).await
                })
                .buffer_unordered(END_CONCURRENCY)
                .collect()
                .await;
            let mut records = Vec::new();
            for record in loaded {
                records.extend(
                    record?.filter(|record| record.owner.as_ref().is_some_and(|o| o.name == owner)),
                );
            }
            Ok(records)
        };
        match tokio::time::timeout(timeout, listed).await {
            Ok(result) => result,
            Err(elapsed) => {
                Err(StoreError::new(ErrorKind::Timeout, OPERATION).with_source(elapsed))
            }
        }
    }
}

impl Inner {
    /// The index owner's side of an index change: under the index's lock,
    /// computed from the newest copy, and on every holder before the answer.
    pub(crate) async fn index_here(
        &self,
        key: &str,
        change: &IndexChange,
        view: &View,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let mut base = self.read_base(key, view, deadline).await?;
        let none = HashMap::new();
        for _ in 0..MAX_ATTEMPTS {
            let (version, sessions, expires_at) = match &base {
                Some(Entry::Index(index)) => (index.version, &*index.sessions, index.expires_at),
                Some(Entry::Gone { version, until }) => (*version, &none, *until),
                None => (0, &none, SystemTime::UNIX_EPOCH),
                Some(Entry::Live(_)) => {
                    return Err(StoreError::new(ErrorKind::Corrupt, "index").with_source(
                        "an owner index key holds a session, which key derivation rules out",
                    ))
                }
            };
            let outcome = match change.plan(version, sessions, expires_at, self.clock.now()) {
                Planned::Nothing => return Ok(()),
                Planned::Change(delta) => {
                    self.replicate_index(key, &delta, sessions, holders, deadline)
                        .await?
                }
                Planned::Empty(gone) => self.replicate(key, &gone, holders, deadline).await?,
            };
            match outcome {
                None => return Ok(()),
                // Another coordinator changed it first (the nodes briefly
                // disagreed about the owner): apply this change on top.
                Some(newer) => base = Some(newer),
            }
        }
        Err(kept_losing("index"))
    }

    /// [`replicate`](Self::replicate) for an index change: holders with the
    /// version it was computed from get only the change, the others the
    /// whole result, so adding to a long index does not resend it.
    pub(crate) async fn replicate_index(
        &self,
        key: &str,
        delta: &IndexDelta,
        base: &HashMap<SessionId, SystemTime>,
        holders: &[&Member],
        deadline: Instant,
    ) -> Result<Option<Entry>, StoreError> {
        let next = Entry::Index(delta.apply(base));
        let msg = Encoded::new(IndexCopy {
            key: key.to_owned(),
            delta: delta.into(),
        })?;
        let mut gathered = Gathered::default();
        let mut behind = Vec::new();
        for (holder, answer) in holders
            .iter()
            .zip(self.to_holders(holders, &msg, deadline).await)
        {
            if gathered.add_patch(answer) {
                behind.push(*holder);
            }
        }
        if !behind.is_empty() {
            let install = Encoded::new(Install {
                key: key.to_owned(),
                entry: (&next).into(),
            })?;
            for answer in self.to_holders(&behind, &install, deadline).await {
                gathered.add(answer);
            }
        }
        self.settle(key, next, gathered).await
    }
}

/// A change to an owner's index, as a client node asks for it.
#[derive(Debug)]
pub(crate) enum IndexChange {
    /// Index a session until the owner's `until`.
    Add(SessionId, SystemTime),
    /// Forget sessions `delete_by_owner` ended or found absent.
    Remove(Vec<SessionId>),
}

/// What an [`IndexChange`] does to the index the owner node holds.
#[derive(Debug)]
pub(crate) enum Planned {
    /// It is already so.
    Nothing,
    Change(IndexDelta),
    /// Nothing is left: a tombstone, so a holder that missed the change
    /// cannot hand the removed entries back.
    Empty(Entry),
}

impl IndexChange {
    /// The change to `sessions` (the index at `version`, living until
    /// `expires_at`), computed on the index's owner node at `now`. Every
    /// change also drops the entries whose `until` has passed.
    pub(crate) fn plan(
        &self,
        version: u64,
        sessions: &HashMap<SessionId, SystemTime>,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Planned {
        let remove: Vec<SessionId> = sessions
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(id, _)| *id)
            .collect();
        let change = |remove, add, expires_at| {
            Planned::Change(IndexDelta {
                from_version: version,
                from_digest: entry::digest(sessions),
                remove,
                add,
                expires_at,
            })
        };
        match self {
            // An entry already past its `until` would be dropped at once; its
            // session cannot be live either.
            Self::Add(_, until) if *until <= now => Planned::Nothing,
            Self::Add(id, until) => {
                // Never shorten an entry: the session may live until the
                // later of the two.
                let until = sessions.get(id).map_or(*until, |held| (*held).max(*until));
                if remove.is_empty() && sessions.get(id) == Some(&until) {
                    return Planned::Nothing;
                }
                // The largest `until`, computed here on the owner node under
                // the index's lock, so concurrent adds cannot shrink it.
                change(remove, Some((*id, until)), expires_at.max(until))
            }
            Self::Remove(ids) => {
                let mut gone: HashSet<SessionId> = remove.into_iter().collect();
                gone.extend(ids.iter().filter(|id| sessions.contains_key(id)));
                if gone.is_empty() {
                    return Planned::Nothing;
                }
                if gone.len() == sessions.len() {
                    return Planned::Empty(Entry::Gone {
                        version: version.saturating_add(1),
                        until: expires_at,
                    });
                }
                let left = sessions
                    .iter()
                    .filter(|(id, _)| !gone.contains(id))
                    .map(|(_, until)| *until)
                    .max()
                    .unwrap_or(expires_at);
                let remove = gone.into_iter().collect();
                change(remove, None, left)
            }
        }
    }
}

#[async_trait]
impl OwnerCall for IndexAdd {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<(), StoreError> {
        let change = IndexChange::Add(self.id.0, self.until);
        inner
            .index_here(&self.key, &change, at.view, at.holders, at.deadline)
            .await
    }
}

#[async_trait]
impl OwnerCall for IndexRemove {
    fn key(&self) -> &str {
        &self.key
    }
    async fn serve(self, inner: &Inner, at: &Serving<'_>) -> Result<(), StoreError> {
        let change = IndexChange::Remove(self.ids.into_iter().map(|id| id.0).collect());
        inner
            .index_here(&self.key, &change, at.view, at.holders, at.deadline)
            .await
    }
}

#[async_trait]
impl OwnerCall for IndexRead {
    const READ: bool = true;
    fn key(&self) -> &str {
        &self.key
    }
    /// The index's entries whose `until` has not passed.
    async fn serve(
        self,
        inner: &Inner,
        at: &Serving<'_>,
    ) -> Result<Vec<IndexedSession>, StoreError> {
        let entry = inner.read_base(&self.key, at.view, at.deadline).await?;
        let now = inner.clock.now();
        Ok(match entry {
            Some(Entry::Index(index)) => index
                .sessions
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(id, until)| IndexedSession {
                    id: WireId(*id),
                    until: *until,
                })
                .collect(),
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn secs(n: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + n)
    }

    #[test]
    fn an_add_prunes_what_has_passed_and_never_shrinks_the_index() {
        let (old, kept, new) = (
            SessionId::generate(),
            SessionId::generate(),
            SessionId::generate(),
        );
        let sessions: HashMap<_, _> = [(old, secs(5)), (kept, secs(50))].into_iter().collect();
        let Planned::Change(delta) =
            IndexChange::Add(new, secs(20)).plan(3, &sessions, secs(90), secs(10))
        else {
            panic!("an add changed nothing");
        };
        assert_eq!(delta.from_version, 3);
        assert_eq!(delta.remove, vec![old]);
        // The index keeps living as long as it did: a concurrent add with a
        // later `until` may have set that.
        assert_eq!(delta.expires_at, secs(90));
        let after = delta.apply(&sessions);
        assert_eq!(after.version, 4);
        assert_eq!(
            after.sessions.as_ref(),
            &[(kept, secs(50)), (new, secs(20))]
                .into_iter()
                .collect::<HashMap<_, _>>()
        );
        // Again, with nothing to prune: nothing to do.
        assert!(matches!(
            IndexChange::Add(new, secs(20)).plan(4, &after.sessions, secs(90), secs(10)),
            Planned::Nothing
        ));
        // An earlier `until` for an indexed session keeps the later one.
        assert!(matches!(
            IndexChange::Add(new, secs(15)).plan(4, &after.sessions, secs(90), secs(10)),
            Planned::Nothing
        ));
        // A later one moves the index's own expiry.
        let Planned::Change(delta) =
            IndexChange::Add(new, secs(200)).plan(4, &after.sessions, secs(90), secs(10))
        else {
            panic!("a later until changed nothing");
        };
        assert_eq!(delta.expires_at, secs(200));
        // An entry already past its `until` is not added.
        assert!(matches!(
            IndexChange::Add(SessionId::generate(), secs(9)).plan(
                0,
                &HashMap::new(),
                secs(0),
                secs(10)
            ),
            Planned::Nothing
        ));
    }

    #[test]
    fn removing_the_last_entries_leaves_a_tombstone() {
        let (a, b, c) = (
            SessionId::generate(),
            SessionId::generate(),
            SessionId::generate(),
        );
        let sessions: HashMap<_, _> = [(a, secs(40)), (b, secs(60)), (c, secs(5))]
            .into_iter()
            .collect();
        // Removing b drops c too (past), and the index shrinks to a's until.
        let Planned::Change(delta) =
            IndexChange::Remove(vec![b, b]).plan(8, &sessions, secs(60), secs(10))
        else {
            panic!("a removal changed nothing");
        };
        let mut removed = delta.remove.clone();
        removed.sort_by_key(SessionId::encode);
        let mut expected = vec![b, c];
        expected.sort_by_key(SessionId::encode);
        assert_eq!(removed, expected);
        assert_eq!(delta.expires_at, secs(40));
        // Ids it does not hold change nothing.
        let after = delta.apply(&sessions);
        assert!(matches!(
            IndexChange::Remove(vec![b, SessionId::generate()]).plan(
                9,
                &after.sessions,
                secs(40),
                secs(10)
            ),
            Planned::Nothing
        ));
        assert!(matches!(
            IndexChange::Remove(vec![a]).plan(9, &after.sessions, secs(40), secs(10)),
            Planned::Empty(Entry::Gone { version: 10, until }) if until == secs(40)
        ));
    }
}
