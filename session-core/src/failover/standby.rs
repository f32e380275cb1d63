//! Standby mode: the primary alone while it is up; the secondary for new
//! sessions while it is down, and for the sessions made there meanwhile.

use std::{sync::Arc, time::SystemTime};

use super::{count_fallback, Inner, Reply};
use crate::{Changes, Committed, Created, Record, SessionId, StoreError};

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

    pub(super) async fn standby_create(
        self: &Arc<Self>,
        record: &Record,
    ) -> Result<Created, StoreError> {
        match self
            .call(&self.primary, "create", self.primary.store.create(record))
            .await?
        {
            Reply::Answer(created) => Ok(created),
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
}
