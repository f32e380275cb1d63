//! The end of the run, as a signal: the servers' loops (the balancers'
//! accept and probe loops, the app nodes' accept loops) wait on it next to
//! their work, so they end with the run rather than only when their task
//! is aborted. Aborting on drop stays as the backstop, and is still how a
//! node is killed mid-run (a crash, not a shutdown).

use std::{future::Future, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};

/// Ends the run when [`fire`](Self::fire)d or dropped: an early return with
/// an error ends every loop as surely as the normal end does.
#[derive(Debug)]
pub(crate) struct Trigger(watch::Sender<bool>);

/// What a loop waits on; cheap to clone, one per loop.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

/// A trigger and the signal it fires.
pub(crate) fn channel() -> (Trigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (Trigger(sender), Shutdown(receiver))
}

impl Trigger {
    /// Ends the run for every loop, those started later included.
    pub(crate) fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once the run is over. It reads the current value first,
    /// so a loop started after the trigger fired (a node restarted late)
    /// ends at once rather than waiting for a change that already came.
    pub(crate) async fn requested(mut self) {
        // An error means the trigger is gone: the run is over all the same.
        let _ = self.0.wait_for(|&over| over).await;
    }
}

/// Accepts connections until `shutdown`, or until the task running this
/// is aborted (a kill), handing each to `connection`. The connections are
/// tasks of a set this future owns, not detached ones, so either way they
/// end with it: nothing of a killed server lives on, and at the shutdown
/// no user is left, only idle keep-alive connections.
pub(crate) async fn accept_until<F, Fut>(listener: TcpListener, shutdown: Shutdown, connection: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let over = shutdown.requested();
    tokio::pin!(over);
    loop {
        tokio::select! {
            () = &mut over => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors or similar: let it pass rather
                    // than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(stream));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_signal_reaches_loops_started_before_and_after_it() {
        let (trigger, shutdown) = channel();
        let early = tokio::spawn(shutdown.clone().requested());
        trigger.fire();
        let done = Duration::from_secs(5);
        assert!(tokio::time::timeout(done, early).await.is_ok());
        assert!(tokio::time::timeout(done, shutdown.requested())
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_dropped_trigger_ends_the_run_too() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        let done = Duration::from_secs(5);
        assert!(tokio::time::timeout(done, shutdown.requested())
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn nothing_ends_before_the_trigger_fires() {
        let (_trigger, shutdown) = channel();
        let waited = tokio::time::timeout(Duration::from_millis(50), shutdown.requested()).await;
        assert!(waited.is_err());
    }
}
