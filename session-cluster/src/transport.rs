//! How a node reaches its peers, apart from what it says to them: the
//! [`Transport`] trait moves signed request and reply bodies; [`Peers`]
//! encodes typed requests onto it and decodes each reply as exactly its
//! request's answer.
//!
//! Today's transport is the framed-TCP [`Link`](crate::link::Link). The trait is
//! small so that a deterministic network simulation (an in-process channel
//! network, or turmoil) can implement it too and run whole clusters in one
//! process. The test-only partition switch is a wrapper transport,
//! `Partitioned`, that exists only with the `fault-injection` feature, so
//! the production call path has no check for it.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Weak},
};

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{ErrorKind, StoreError};
use tokio::{task::AbortHandle, time::Instant};

use crate::{
    link::{Counters, Handler},
    protocol::{Call, Encoded, Failure},
};

/// Carries peer traffic: signed request bodies out, verified reply bodies
/// back, and incoming requests to a [`Handler`].
#[async_trait]
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends the request `body` (a postcard-encoded
    /// [`Request`](crate::protocol::Request), for an `operation` named in
    /// errors and logs) to the peer at `to`, and returns the peer's reply
    /// body once its signature checks out, all before `deadline`.
    ///
    /// # Errors
    /// `Unavailable` when the peer cannot be reached, refuses the request,
    /// or its reply is cut off (a backup may still answer), `Timeout` when
    /// `deadline` passes, `Corrupt` when the whole reply fails its
    /// signature.
    async fn send(
        &self,
        to: SocketAddr,
        operation: &'static str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, StoreError>;

    /// Starts answering peers' requests with `handler` (held weakly, so the
    /// node can be dropped while its server runs); the server stops when
    /// the returned task is aborted. Called once, when the node starts.
    fn serve(&self, handler: Weak<dyn Handler>) -> AbortHandle;

    /// Forgets what is kept for peers that are no longer members
    /// (connections, in-flight slots).
    fn retain(&self, live: &dyn Fn(&SocketAddr) -> bool);
}

/// Typed calls to peers over a [`Transport`].
#[derive(Clone)]
pub(crate) struct Peers {
    transport: Arc<dyn Transport>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").finish_non_exhaustive()
    }
}

impl Peers {
    /// Typed calls over `transport`, each counted in `counters` (unless
    /// its type says otherwise: [`Call::COUNTED`]).
    pub(crate) fn new(transport: Arc<dyn Transport>, counters: Arc<Counters>) -> Self {
        Self {
            transport,
            counters,
        }
    }

    /// Sends `request` to the peer at `addr` and returns its answer, all
    /// before `deadline`. A failure the peer reports is an error of its
    /// kind; a reply that does not decode as `R`'s answer is `Corrupt`.
    pub(crate) async fn call<R: Call>(
        &self,
        addr: SocketAddr,
        request: &Encoded<R>,
        deadline: Instant,
    ) -> Result<R::Reply, StoreError> {
        self.ask(addr, request, deadline)
            .await?
            .map_err(|failure| failure.into_error(R::NAME))
    }

    /// As [`call`](Self::call), but a failure the peer reports is handed
    /// back apart from an error of the transport (no answer, or one that
    /// does not decode): a read routed to an owner that answered does not
    /// fall back to a backup.
    pub(crate) async fn ask<R: Call>(
        &self,
        addr: SocketAddr,
        request: &Encoded<R>,
        deadline: Instant,
    ) -> Result<Result<R::Reply, Failure>, StoreError> {
        if R::COUNTED {
            self.counters.requests_sent.fetch_add(1, Ordering::Relaxed);
        }
        let reply = self
            .transport
            .send(addr, R::NAME, request.body.clone(), deadline)
            .await?;
        Encoded::<R>::decode_reply(&reply).ok_or_else(|| {
            StoreError::new(ErrorKind::Corrupt, R::NAME).with_source(format!(
                "peer {addr} sent a reply that fails its signature or does not decode"
            ))
        })
    }

    /// Starts the transport's server; see [`Transport::serve`].
    pub(crate) fn serve(&self, handler: Weak<dyn Handler>) -> AbortHandle {
        self.transport.serve(handler)
    }

    /// See [`Transport::retain`].
    pub(crate) fn retain(&self, live: &dyn Fn(&SocketAddr) -> bool) {
        self.transport.retain(live);
    }
}

/// A transport whose calls to chosen peers fail as if the network were down:
/// what `ClusterStore::partition_from` cuts and `heal` restores. Test
/// support only, so it exists only with the `fault-injection` feature.
#[cfg(feature = "fault-injection")]
pub(crate) struct Partitioned {
    inner: Arc<dyn Transport>,
    blocked: crate::link::Blocked,
}

#[cfg(feature = "fault-injection")]
impl Partitioned {
    pub(crate) fn new(inner: Arc<dyn Transport>, blocked: crate::link::Blocked) -> Self {
        Self { inner, blocked }
    }
}

#[cfg(feature = "fault-injection")]
#[async_trait]
impl Transport for Partitioned {
    async fn send(
        &self,
        to: SocketAddr,
        operation: &'static str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, StoreError> {
        if crate::link::is_blocked(&self.blocked, &to) {
            // As the link reports a refused connection.
            return Err(
                StoreError::new(ErrorKind::Unavailable, operation).with_source(format!(
                    "cannot connect to peer {to}: partitioned by fault injection"
                )),
            );
        }
        self.inner.send(to, operation, body, deadline).await
    }

    fn serve(&self, handler: Weak<dyn Handler>) -> AbortHandle {
        self.inner.serve(handler)
    }

    fn retain(&self, live: &dyn Fn(&SocketAddr) -> bool) {
        self.inner.retain(live);
    }
}
