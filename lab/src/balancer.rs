//! A small HTTP load balancer, one per strategy, in-process: a hyper
//! HTTP/1 server in front, hyper's pooling client behind.
//!
//! - **Round-robin** sends each request to the next node that is up.
//! - **Sticky** pins each user to one node with its own affinity cookie
//!   (`lab-node=<i>`), set on the first response and honoured afterwards,
//!   as a cookie-inserting balancer (HAProxy's `cookie SERVERID insert`,
//!   nginx's `sticky cookie`) does. When the pinned node is down it picks
//!   another one and re-pins the user there: that is how a sticky setup
//!   loses a dead server's sessions.
//!
//! A node is marked down when connecting to it fails; the request is then
//! tried on another node, since it never reached the first. A request that
//! reached a node and then failed is not retried (it may have been
//! applied): it is answered 502. Down nodes are probed every
//! [`PROBE_EVERY`] and take traffic again once they accept connections.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{
    header::{COOKIE, SET_COOKIE},
    HeaderValue, Request, Response, StatusCode, Uri,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, task::JoinHandle, time::Instant};

use crate::{
    error::LabError,
    shutdown::{self, Shutdown},
};

/// How often down nodes are probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long connecting to a node may take before it counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the balancer waits for a node's whole answer. Above the app's
/// own bound on a request (two store calls), below the users' timeout.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);
/// The balancer's own cookie.
const AFFINITY_COOKIE: &str = "lab-node";

/// How the balancer picks a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routing {
    RoundRobin,
    Sticky,
}

/// A running balancer; stops when the run's [`Shutdown`] comes, or when
/// dropped.
#[derive(Debug)]
pub(crate) struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    routing: Routing,
    nodes: Vec<Backend>,
    next: AtomicUsize,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug)]
struct Backend {
    addr: SocketAddr,
    up: AtomicBool,
    /// Requests this node answered (with any status).
    answered: AtomicU64,
}

impl Balancer {
    /// Starts a balancer on a fresh loopback port in front of `nodes`,
    /// serving until `shutdown`.
    pub(crate) async fn start(
        routing: Routing,
        nodes: &[SocketAddr],
        shutdown: Shutdown,
    ) -> Result<Self, LabError> {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| LabError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| LabError::Bind { addr, source })?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let shared = Arc::new(Shared {
            routing,
            nodes: nodes
                .iter()
                .map(|&addr| Backend {
                    addr,
                    up: AtomicBool::new(true),
                    answered: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        });
        let tasks = vec![
            tokio::spawn(accept(listener, Arc::clone(&shared), shutdown.clone())),
            tokio::spawn(probe(Arc::clone(&shared), shutdown)),
        ];
        Ok(Self {
            addr,
            shared,
            tasks,
        })
    }

    /// Where users connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests each node answered so far.
    pub(crate) fn answered(&self) -> Vec<u64> {
        self.shared
            .nodes
            .iter()
            .map(|node| node.answered.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Balancer {
    /// The backstop: the loops end with the run's shutdown, but a balancer
    /// dropped before it (the run failed) must not serve on.
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Forwards every connection's requests until `shutdown`, or until
/// aborted; by the shutdown every user is done, and what is left is idle
/// keep-alive connections, which would otherwise stay open for as long as
/// their users' clients.
async fn accept(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    shutdown::accept_until(listener, shutdown, |stream| {
        let shared = Arc::clone(&shared);
        async move {
            let service =
                hyper::service::service_fn(move |request| forward(Arc::clone(&shared), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
}

/// Probes the down nodes every [`PROBE_EVERY`] until `shutdown`; a node
/// that accepts a connection is up again.
async fn probe(shared: Arc<Shared>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(PROBE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let over = shutdown.requested();
    tokio::pin!(over);
    loop {
        tokio::select! {
            () = &mut over => return,
            _ = every.tick() => {}
        }
        for node in &shared.nodes {
            if node.up.load(Ordering::Relaxed) {
                continue;
            }
            let connected =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(node.addr))
                    .await;
            if matches!(connected, Ok(Ok(_))) {
                node.up.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl Shared {
    /// The next node that is up, round-robin; `None` when all are down.
    fn next_up(&self) -> Option<usize> {
        let count = self.nodes.len();
        if count == 0 {
            return None;
        }
        // Each draw takes the next slot of the shared sequence, so with one
        // node down the others still alternate evenly.
        (0..2 * count)
            .map(|_| self.next.fetch_add(1, Ordering::Relaxed) % count)
            .find(|&i| self.nodes[i].up.load(Ordering::Relaxed))
    }

    fn is_up(&self, node: usize) -> bool {
        self.nodes[node].up.load(Ordering::Relaxed)
    }
}

/// The node the request's affinity cookie names, if any.
fn pinned(request: &http::request::Parts, nodes: usize) -> Option<usize> {
    request
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == AFFINITY_COOKIE)
        .and_then(|(_, value)| value.parse().ok())
        .filter(|&node| node < nodes)
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

/// Sends one user request to a node and its answer back.
async fn forward(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let (parts, body) = request.into_parts();
    // The lab's requests are bodiless GETs; read what there is so the
    // request can be sent again to another node.
    let Ok(Ok(body)) = tokio::time::timeout_at(deadline, body.collect()).await else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let body = body.to_bytes();
    let pin = match shared.routing {
        Routing::Sticky => pinned(&parts, shared.nodes.len()),
        Routing::RoundRobin => None,
    };
    let mut choice = match pin {
        Some(node) if shared.is_up(node) => Some(node),
        _ => shared.next_up(),
    };
    // Each try either answers or marks a node down, so there are at most
    // as many tries as nodes.
    for _ in 0..shared.nodes.len() {
        let Some(node) = choice else { break };
        let backend = &shared.nodes[node];
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let Ok(uri) = Uri::builder()
            .scheme("http")
            .authority(backend.addr.to_string())
            .path_and_query(path)
            .build()
        else {
            return Ok(status(StatusCode::BAD_REQUEST));
        };
        let mut upstream = Request::new(Full::new(body.clone()));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = parts.headers.clone();
        match tokio::time::timeout_at(deadline, shared.client.request(upstream)).await {
            Err(_) => return Ok(status(StatusCode::GATEWAY_TIMEOUT)),
            Ok(Err(err)) if err.is_connect() => {
                // Never reached the node: safe to send elsewhere.
                backend.up.store(false, Ordering::Relaxed);
                choice = shared.next_up();
            }
            Ok(Err(_)) => return Ok(status(StatusCode::BAD_GATEWAY)),
            Ok(Ok(answer)) => {
                backend.answered.fetch_add(1, Ordering::Relaxed);
                let (mut head, body) = answer.into_parts();
                let Ok(Ok(body)) = tokio::time::timeout_at(deadline, body.collect()).await else {
                    return Ok(status(StatusCode::BAD_GATEWAY));
                };
                if shared.routing == Routing::Sticky && pin != Some(node) {
                    if let Ok(cookie) =
                        HeaderValue::from_str(&format!("{AFFINITY_COOKIE}={node}; Path=/"))
                    {
                        head.headers.append(SET_COOKIE, cookie);
                    }
                }
                return Ok(Response::from_parts(head, Full::new(body.to_bytes())));
            }
        }
    }
    Ok(status(StatusCode::SERVICE_UNAVAILABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_balancer_stops_at_the_run_s_shutdown() {
        let (trigger, until) = shutdown::channel();
        let balancer = Balancer::start(Routing::RoundRobin, &[], until)
            .await
            .expect("a balancer on loopback");
        assert!(tokio::net::TcpStream::connect(balancer.addr())
            .await
            .is_ok());
        trigger.fire();
        let stopped = tokio::time::timeout(Duration::from_secs(5), async {
            while !balancer.tasks.iter().all(JoinHandle::is_finished) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            stopped.is_ok(),
            "the accept and probe loops outlived the run"
        );
        // The accept loop took its listener with it.
        assert!(tokio::net::TcpStream::connect(balancer.addr())
            .await
            .is_err());
    }

    fn parts(cookie: &str) -> http::request::Parts {
        Request::get("/")
            .header(COOKIE, cookie)
            .body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|_| unreachable!("a constant request is valid"))
    }

    #[test]
    fn the_affinity_cookie_is_found_among_others() {
        assert_eq!(pinned(&parts("session=abc.def; lab-node=2"), 3), Some(2));
        assert_eq!(pinned(&parts("lab-node=1"), 3), Some(1));
        assert_eq!(pinned(&parts("session=x"), 3), None);
        // A node the balancer does not have is no pin.
        assert_eq!(pinned(&parts("lab-node=7"), 3), None);
    }
}
