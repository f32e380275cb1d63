//! The background task that deletes expired rows.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::sync::oneshot;

use crate::store::{timestamp, Statements};

/// The most statements one sweep runs: a table that fills faster than this
/// drains is left for the next sweep rather than held up in one loop.
const MAX_BATCHES_PER_SWEEP: u32 = 100;

/// What the sweep task needs.
pub(crate) struct Sweep {
    pub(crate) pool: PgPool,
    pub(crate) statements: Arc<Statements>,
    pub(crate) interval: Duration,
    pub(crate) batch: u32,
    pub(crate) operation_timeout: Duration,
}

impl Sweep {
    /// Runs the sweep every `interval` until `stop` resolves: when its
    /// sender, held by the store, is dropped with the store's last clone.
    pub(crate) fn spawn(self, mut stop: oneshot::Receiver<()>) {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.interval);
            // The first tick is immediate: rows left by a stopped server go
            // at start-up.
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = ticks.tick() => self.sweep_once().await,
                }
            }
        });
    }

    /// Deletes expired rows, a batch per statement, until a batch comes back
    /// short or [`MAX_BATCHES_PER_SWEEP`] ran. Failures are logged and left
    /// to the next sweep: expired rows are never served, so a late sweep
    /// costs only disk.
    async fn sweep_once(&self) {
        for _ in 0..MAX_BATCHES_PER_SWEEP {
            let now = timestamp(std::time::SystemTime::now());
            let statement = sqlx::query(&self.statements.sweep)
                .bind(now)
                .bind(i64::from(self.batch))
                .execute(&self.pool);
            match tokio::time::timeout(self.operation_timeout, statement).await {
                Ok(Ok(done)) if done.rows_affected() < u64::from(self.batch) => return,
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error.message = %err, "the sweep of expired sessions failed");
                    return;
                }
                Err(_) => {
                    tracing::warn!("the sweep of expired sessions timed out");
                    return;
                }
            }
        }
    }
}
