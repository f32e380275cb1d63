//! Peer requests on the simulated network: the transport a node calls its
//! peers with, and how a delivered request is served and answered.

use std::{
    net::SocketAddr,
    sync::{Arc, Weak},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{ErrorKind, StoreError};
use tokio::{sync::oneshot, task::AbortHandle, time::Instant};

use super::network::{Kind, SimNetwork};
use crate::{
    link::{Handler, ServedNow},
    protocol::{Failure, Request as PeerRequest, WireErrorKind},
    sign::{Signer, TAG_LEN},
    transport::Transport,
};

/// A request on its way: what the receiving side needs to serve it.
struct InFlight {
    from: SocketAddr,
    from_name: Arc<str>,
    to: SocketAddr,
    incarnation: u64,
    budget: Duration,
    body: Bytes,
    tag: [u8; TAG_LEN],
}

/// A reply as it travels back: the body and its tag, or a refusal.
type Reply = Result<(Vec<u8>, [u8; TAG_LEN]), &'static str>;

impl SimNetwork {
    /// Delivers `request` after `delay`, serves it on the receiving node
    /// and, if `reply` is given, sends the answer back with its own fate.
    async fn deliver(
        self,
        request: Arc<InFlight>,
        delay: Duration,
        reply: Option<oneshot::Sender<Reply>>,
    ) {
        tokio::time::sleep(delay).await;
        if !self.passes(request.from, request.to, Some(request.incarnation), true) {
            return;
        }
        let (handler, signer, max_budget) = {
            let state = self.lock();
            let Some(endpoint) = state.nodes.get(&request.to) else {
                return;
            };
            (
                endpoint.handler.clone(),
                endpoint.signer.clone(),
                endpoint.max_budget,
            )
        };
        let (network, to) = (self.clone(), request.to);
        let serving = tokio::spawn(async move {
            let answer = serve(&request, handler, &signer, max_budget).await;
            let Some(reply) = reply else { return };
            let fate = {
                let mut state = network.lock();
                // A reply never duplicates: the caller takes one answer.
                SimNetwork::fate(&mut state, Kind::Reply, request.to, request.from, 0.0)
            };
            let Some(delay) = fate.delays.first().copied() else {
                return;
            };
            // The reply travels on its own: a crash of the receiver after
            // it answered does not call it back.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if network.passes(request.to, request.from, None, true) {
                    let _ = reply.send(answer);
                }
            });
        });
        if let Some(endpoint) = self.lock().nodes.get_mut(&to) {
            endpoint.serving.retain(|task| !task.is_finished());
            endpoint.serving.push(serving.abort_handle());
        }
    }
}

/// Serves one delivered request as the link's server does: checks the
/// signature, decodes, runs the handler within the caller's budget, signs
/// the reply.
async fn serve(
    request: &InFlight,
    handler: Option<Weak<dyn Handler>>,
    signer: &Signer,
    max_budget: Duration,
) -> Reply {
    let budget = u64::try_from(request.budget.as_millis()).unwrap_or(u64::MAX);
    if !signer.verify(
        &[
            request.from_name.as_bytes(),
            &budget.to_le_bytes(),
            &request.body,
        ],
        &request.tag,
    ) {
        return Err("refused as unauthenticated");
    }
    let Ok(decoded) = postcard::from_bytes::<PeerRequest>(&request.body) else {
        return Err("could not decode the request");
    };
    let Some(handler) = handler.and_then(|weak| weak.upgrade()) else {
        return Err("not serving");
    };
    // As the link serves it: at once when it has nothing to wait for.
    let reply = match handler.serve_now(&request.from_name, decoded) {
        ServedNow::Replied(reply) => reply,
        ServedNow::Later(decoded) => {
            // Keep a tenth of the caller's time for the reply's trip back.
            let deadline = Instant::now() + (request.budget * 9 / 10).min(max_budget);
            let handled = tokio::time::timeout_at(
                deadline,
                handler.handle(&request.from_name, deadline, decoded),
            )
            .await;
            match handled {
                Ok(reply) => reply,
                Err(_) => Failure {
                    kind: WireErrorKind::Timeout,
                    reason: "the owner ran out of time".to_owned(),
                }
                .encode_as_reply(),
            }
        }
    };
    let Ok(reply) = reply else {
        return Err("could not encode the reply");
    };
    let tag = signer.tag(&[b"reply", &request.tag, &reply]);
    Ok((reply, tag))
}

/// A node's peer transport on the simulated network.
pub(crate) struct SimTransport {
    network: SimNetwork,
    addr: SocketAddr,
    me: Arc<str>,
    signer: Signer,
}

impl SimTransport {
    pub(super) fn new(network: SimNetwork, addr: SocketAddr, me: Arc<str>, signer: Signer) -> Self {
        Self {
            network,
            addr,
            me,
            signer,
        }
    }
}

#[async_trait]
impl Transport for SimTransport {
    async fn send(
        &self,
        to: SocketAddr,
        operation: &'static str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, StoreError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let budget_millis = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        let tag = self
            .signer
            .tag(&[self.me.as_bytes(), &budget_millis.to_le_bytes(), &body]);
        let planned = {
            let mut state = self.network.lock();
            state.stats.requests += 1;
            let sender_up = state.nodes.get(&self.addr).is_some_and(|e| e.up);
            match state.nodes.get(&to).filter(|e| e.up && sender_up) {
                None => {
                    state.stats.refused += 1;
                    None
                }
                Some(endpoint) => {
                    let incarnation = endpoint.incarnation;
                    let dup = state.faults.request_duplication;
                    let cut = state.cut.contains(&(self.addr, to))
                        || state.requests_cut.contains(&(self.addr, to));
                    if cut {
                        state.stats.cut += 1;
                    }
                    let fate = SimNetwork::fate(&mut state, Kind::Request, self.addr, to, dup);
                    Some((incarnation, if cut { Vec::new() } else { fate.delays }))
                }
            }
        };
        let Some((incarnation, delays)) = planned else {
            return Err(
                StoreError::new(ErrorKind::Unavailable, operation).with_source(format!(
                    "cannot connect to peer {to}: connection refused (simulated network)"
                )),
            );
        };
        let request = Arc::new(InFlight {
            from: self.addr,
            from_name: Arc::clone(&self.me),
            to,
            incarnation,
            budget: Duration::from_millis(budget_millis),
            body,
            tag,
        });
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut reply_tx = Some(reply_tx);
        for delay in delays {
            // The first copy carries the reply; a duplicate's answer is lost.
            let network = self.network.clone();
            tokio::spawn(network.deliver(Arc::clone(&request), delay, reply_tx.take()));
        }
        drop(reply_tx);
        let timeout = || {
            StoreError::new(ErrorKind::Timeout, operation).with_source(format!(
                "peer {to} did not answer in time (simulated network)"
            ))
        };
        match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(Ok((reply, reply_tag)))) => {
                if self.signer.verify(&[b"reply", &tag, &reply], &reply_tag) {
                    Ok(Bytes::from(reply))
                } else {
                    Err(StoreError::new(ErrorKind::Corrupt, operation)
                        .with_source(format!("peer {to} sent a reply that fails its signature")))
                }
            }
            Ok(Ok(Err(why))) => Err(StoreError::new(ErrorKind::Unavailable, operation)
                .with_source(format!("peer {to}: {why} (simulated network)"))),
            Ok(Err(_)) => {
                // Lost on the way: the caller cannot tell, and waits.
                tokio::time::sleep_until(deadline).await;
                Err(timeout())
            }
            Err(_) => Err(timeout()),
        }
    }

    fn serve(&self, handler: Weak<dyn Handler>) -> AbortHandle {
        if let Some(endpoint) = self.network.lock().nodes.get_mut(&self.addr) {
            endpoint.handler = Some(handler);
        }
        // Nothing listens: requests are served as they are delivered.
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    fn retain(&self, _live: &dyn Fn(&SocketAddr) -> bool) {}
}
