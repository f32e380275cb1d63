//! Standby mode: the primary alone while it is up; the secondary for new
//! sessions while it is down, and for the sessions made there meanwhile.

use std::{sync::Arc, time::SystemTime};

use super::{count_fallback, BreakerState, Inner, Missed, Reply};
use crate::{
    Changes, Committed, ConditionalDelete, Created, ErrorKind, Record, SessionId, StoreError,
};

impl Inner {
    pub(super) async fn standby_load(
        self: &Arc<Self>,
        id: &SessionId,
    ) -> Result<Option<Record>, StoreError> {
        let secondary = &self.secondary;
        match self
            .call(&self.primary, "load", self.primary.store.load(id))
            .await?
        {
            Reply::Answer(Some(record)) => Ok(Some(record)),
            // Not on the primary: it may have been created on the secondary
            // during an outage. A secondary that is down cannot have it now.
            // Not on the primary: it may have been created on the secondary
            // during an outage. A secondary that is down cannot serve it
            // now; its sessions are what standby loses with it.
            Reply::Answer(None) => {
                match self
                    .call(secondary, "load", secondary.store.load(id))
                    .await?
                {
                    Reply::Answer(record) => Ok(record),
                    Reply::Down(_) => Ok(None),
                }
            }
            // The primary's sessions are out of reach for now; the secondary
            // has the ones made during the outage. `None` for the rest gives
            // their users a fresh session that lives on the secondary.
            Reply::Down(primary_err) => {
                count_fallback("load");
                match self
                    .call(secondary, "load", secondary.store.load(id))
                    .await?
                {
                    Reply::Answer(record) => Ok(record),
                    Reply::Down(_) => Err(primary_err),
                }
            }
        }
    }

    /// Deletes `id` wherever it lives. A session lives in one store only:
    /// on the primary, or on the secondary when it was created there during
    /// an outage (a commit never copies it across). So the delete is
    /// acknowledged once it reached both stores, or once the store that is
    /// up is found to hold the session. Otherwise the session may live on
    /// the store that is down: acknowledging would let every other app
    /// server go on serving it from there once it is back (and, if this
    /// server restarted first, forever), so the delete fails instead, and
    /// is also queued for replay so that it finishes when the store is back.
    pub(super) async fn standby_delete(self: &Arc<Self>, id: &SessionId) -> Result<(), StoreError> {
        let (primary, secondary) = (&self.primary, &self.secondary);
        let degraded = primary.breaker.state() != BreakerState::Closed
            || secondary.breaker.state() != BreakerState::Closed;
        if degraded {
            // Ask the store that is up first: if the session is there, it
            // is nowhere else, and deleting it there is the whole delete.
            let (up, down) = if primary.breaker.state() == BreakerState::Closed {
                (primary, secondary)
            } else {
                (secondary, primary)
            };
            if let Reply::Answer(Some(_)) = self.call(up, "stamp", up.store.stamp(id)).await? {
                if let Reply::Down(err) = self.call(up, "delete", up.store.delete(id)).await? {
                    return Err(err);
                }
                let _ = self.missed(down, id, Missed::Delete);
                count_fallback("delete");
                return Ok(());
            }
        }
        let (on_primary, on_secondary) = tokio::join!(
            self.call(primary, "delete", primary.store.delete(id)),
            self.call(secondary, "delete", secondary.store.delete(id)),
        );
        match (on_primary?, on_secondary?) {
            (Reply::Answer(()), Reply::Answer(())) => Ok(()),
            (Reply::Down(err), Reply::Answer(())) => {
                let _ = self.missed(primary, id, Missed::Delete);
                Err(err)
            }
            (Reply::Answer(()), Reply::Down(err)) => {
                let _ = self.missed(secondary, id, Missed::Delete);
                Err(err)
            }
            (Reply::Down(err), Reply::Down(_)) => Err(err),
        }
    }

    pub(super) async fn standby_create(
        self: &Arc<Self>,
        record: &Record,
    ) -> Result<Created, StoreError> {
        match self
            .call(&self.primary, "create", self.primary.store.create(record))
            .await?
        {
            Reply::Answer(created) => Ok(created),
            // A create that timed out may have landed on the primary; a
            // second copy on the secondary would break the rule that a
            // session lives in one store, which is what makes a delete
            // during an outage safe to acknowledge (see `standby_delete`).
            Reply::Down(primary_err) if primary_err.kind() == ErrorKind::Timeout => {
                Err(primary_err)
            }
            Reply::Down(primary_err) => {
                count_fallback("create");
                match self
                    .call(
                        &self.secondary,
                        "create",
                        self.secondary.store.create(record),
                    )
                    .await?
                {
                    Reply::Answer(created) => Ok(created),
                    Reply::Down(_) => Err(primary_err),
                }
            }
        }
    }

    pub(super) async fn standby_commit(
        self: &Arc<Self>,
        id: &SessionId,
        changes: &Changes,
        expires_at: SystemTime,
    ) -> Result<Committed, StoreError> {
        let on_secondary = || self.secondary.store.commit(id, changes, expires_at);
        match self
            .call(
                &self.primary,
                "commit",
                self.primary.store.commit(id, changes, expires_at),
            )
            .await?
        {
            Reply::Answer(Committed::Applied { version }) => Ok(Committed::Applied { version }),
            // A session created on the secondary during an outage.
            Reply::Answer(Committed::Missing) => {
                match self.call(&self.secondary, "commit", on_secondary()).await? {
                    Reply::Answer(committed) => Ok(committed),
                    // It may live there; dropping the changes as `Missing`
                    // would end it. Fail the request instead.
                    Reply::Down(err) => Err(err),
                }
            }
            Reply::Down(primary_err) => {
                count_fallback("commit");
                match self.call(&self.secondary, "commit", on_secondary()).await? {
                    Reply::Answer(Committed::Applied { version }) => {
                        Ok(Committed::Applied { version })
                    }
                    // The session lives on the primary, which is down: the
                    // request fails rather than report the session gone.
                    Reply::Answer(Committed::Missing) | Reply::Down(_) => Err(primary_err),
                }
            }
        }
    }

    pub(super) async fn standby_touch(
        self: &Arc<Self>,
        id: &SessionId,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let on_secondary = || self.secondary.store.touch(id, expires_at);
        match self
            .call(
                &self.primary,
                "touch",
                self.primary.store.touch(id, expires_at),
            )
            .await?
        {
            Reply::Answer(true) => Ok(true),
            Reply::Answer(false) => {
                match self.call(&self.secondary, "touch", on_secondary()).await? {
                    Reply::Answer(touched) => Ok(touched),
                    Reply::Down(err) => Err(err),
                }
            }
            Reply::Down(primary_err) => {
                count_fallback("touch");
                match self.call(&self.secondary, "touch", on_secondary()).await? {
                    Reply::Answer(true) => Ok(true),
                    Reply::Answer(false) | Reply::Down(_) => Err(primary_err),
                }
            }
        }
    }

    /// The conditional delete where the session lives, decided as a
    /// commit is: the primary first, the secondary for a session made there
    /// during an outage.
    pub(super) async fn standby_delete_if_version(
        self: &Arc<Self>,
        id: &SessionId,
        version: u64,
    ) -> Result<ConditionalDelete, StoreError> {
        let on_secondary = || self.secondary.store.delete_if_version(id, version);
        match self
            .call(
                &self.primary,
                "delete_if_version",
                self.primary.store.delete_if_version(id, version),
            )
            .await?
        {
            // A session created on the secondary during an outage.
            Reply::Answer(ConditionalDelete::Missing) => {
                match self
                    .call(&self.secondary, "delete_if_version", on_secondary())
                    .await?
                {
                    Reply::Answer(answer) => Ok(answer),
                    Reply::Down(err) => Err(err),
                }
            }
            Reply::Answer(answer) => Ok(answer),
            Reply::Down(primary_err) => {
                match self
                    .call(&self.secondary, "delete_if_version", on_secondary())
                    .await?
                {
                    Reply::Answer(
                        answer @ (ConditionalDelete::Deleted | ConditionalDelete::Changed),
                    ) => Ok(answer),
                    // The session lives on the primary, which is down: fail
                    // rather than report it gone, as a commit does.
                    Reply::Answer(ConditionalDelete::Missing) | Reply::Down(_) => Err(primary_err),
                }
            }
        }
    }
}
