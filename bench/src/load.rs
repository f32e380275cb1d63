//! The load generator: keep-alive HTTP/1.1 connections from an in-process
//! hyper client, each one a user with its own session cookie, asking one
//! path back to back for a fixed time.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::{
    client::conn::http1::SendRequest,
    header::{COOKIE, SET_COOKIE},
    Request,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The path every variant serves for the login that creates a session.
pub(crate) const LOGIN_PATH: &str = "/login";

/// How long past the window a request may take before it counts as failed.
const STUCK: Duration = Duration::from_secs(5);

/// One measurement: `connections` users spread over `addrs`, each logged in
/// first, then asking `path` until `warmup + duration` has passed. Only the
/// requests that complete inside the `duration` window count.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) path: &'static str,
    pub(crate) connections: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// How a user's requests spread over several `addrs`.
    pub(crate) spread: Spread,
}

/// How a balancer in front of several app servers (the cluster's nodes)
/// places one user's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spread {
    /// User `i` stays on node `i mod N`, where it logged in: a balancer
    /// that picks a node per connection (TCP, or HTTP keeping a client's
    /// kept-alive connection on one node).
    PerConnection,
    /// Each of a user's requests goes to the node after the previous
    /// one's, starting from where it logged in: a balancer that picks a
    /// node per request, the worst case for a cluster node that owns the
    /// sessions it made.
    PerRequest,
}

/// What one measurement saw.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Requests answered with a 2xx inside the window.
    pub(crate) requests: u64,
    /// Requests answered with a 2xx from the end of the logins to the end
    /// of the run, warm-up included: what the store counters cover.
    pub(crate) all_requests: u64,
    /// Requests inside the window that failed: a transport error or a status
    /// other than 2xx.
    pub(crate) errors: u64,
    /// The window's length.
    pub(crate) window: Duration,
    /// Latency of the counted requests, in microseconds.
    pub(crate) latency: Histogram<u64>,
}

impl Outcome {
    pub(crate) fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    pub(crate) fn p50_micros(&self) -> u64 {
        self.latency.value_at_quantile(0.50)
    }

    pub(crate) fn p99_micros(&self) -> u64 {
        self.latency.value_at_quantile(0.99)
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP/1 handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("the login request to {addr} got no 2xx answer")]
    Login { addr: SocketAddr },
}

/// One user: a keep-alive connection to each node it asks, the one it asks
/// next first.
struct User {
    links: Vec<Link>,
    cookie: Option<String>,
}

/// One keep-alive connection.
struct Link {
    addr: SocketAddr,
    sender: SendRequest<Empty<Bytes>>,
}

impl Link {
    async fn connect(addr: SocketAddr) -> Result<Self, LoadError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| LoadError::Connect { addr, source })?;
        stream
            .set_nodelay(true)
            .map_err(|source| LoadError::Connect { addr, source })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| LoadError::Handshake { addr, source })?;
        tokio::spawn(connection);
        Ok(Self { addr, sender })
    }
}

impl User {
    /// A user with a connection to each of `addrs`, logged in (so holding
    /// a session) on the first.
    async fn logged_in(addrs: &[SocketAddr]) -> Result<Self, LoadError> {
        let mut links = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            links.push(Link::connect(addr).await?);
        }
        let mut user = Self {
            links,
            cookie: None,
        };
        if user.ask(LOGIN_PATH).await {
            Ok(user)
        } else {
            Err(LoadError::Login { addr: addrs[0] })
        }
    }

    /// The nodes this user asks, in order.
    fn addrs(&self) -> Vec<SocketAddr> {
        self.links.iter().map(|link| link.addr).collect()
    }

    /// Asks `path` once with the current cookie, keeping whatever cookie
    /// the answer sets (a cookie store's session lives in it). Returns
    /// whether the answer was a 2xx with its whole body read.
    async fn ask(&mut self, path: &str) -> bool {
        let mut request = Request::get(path).header(hyper::header::HOST, "bench");
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie.as_str());
        }
        let request = request
            .body(Empty::new())
            .expect("a GET with constant headers is a valid request");
        // The next request goes to the next node, whatever this one's fate.
        self.links.rotate_left(1);
        let sender = &mut self.links.last_mut().expect("a user has a link").sender;
        if sender.ready().await.is_err() {
            return false;
        }
        let Ok(response) = sender.send_request(request).await else {
            return false;
        };
        if let Some(set) = response.headers().get(SET_COOKIE) {
            // `name=value; Path=/; ...`: the pair is all a browser sends back.
            if let Some(pair) = set.to_str().ok().and_then(|v| v.split(';').next()) {
                self.cookie = Some(pair.to_owned());
            }
        }
        let ok = response.status().is_success();
        ok && response.into_body().collect().await.is_ok()
    }
}

/// Runs one measurement on the current runtime, calling `snapshot` once
/// every user has logged in and before the first measured request, so store
/// counters it reads cover exactly the run.
///
/// # Errors
/// When a connection or a login fails before the measurement starts; a
/// failure during it is counted, not returned.
pub(crate) async fn run<S>(
    load: &Load,
    snapshot: impl FnOnce() -> S,
) -> Result<(Outcome, S), LoadError> {
    let mut users = Vec::with_capacity(load.connections);
    for i in 0..load.connections {
        let first = i % load.addrs.len();
        let addrs = match load.spread {
            Spread::PerConnection => vec![load.addrs[first]],
            Spread::PerRequest => (0..load.addrs.len())
                .map(|k| load.addrs[(first + k) % load.addrs.len()])
                .collect(),
        };
        users.push(User::logged_in(&addrs).await?);
    }
    let snapshot = snapshot();

    let start = Instant::now();
    let window_start = start + load.warmup;
    let window_end = window_start + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        let path = load.path;
        tasks.spawn(drive(user, path, window_start, window_end));
    }
    let mut outcome = Outcome {
        requests: 0,
        all_requests: 0,
        errors: 0,
        window: load.duration,
        latency: new_histogram(),
    };
    while let Some(joined) = tasks.join_next().await {
        let (requests, all, errors, latency) = joined.expect("a load task does not panic");
        outcome.requests += requests;
        outcome.all_requests += all;
        outcome.errors += errors;
        outcome
            .latency
            .add(&latency)
            .expect("histograms of the same bounds add");
    }
    Ok((outcome, snapshot))
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// One user's loop. A failed request is counted and the connection is
/// opened again (with a new login), so one broken connection cannot
/// silently halve the offered load.
async fn drive(
    mut user: User,
    path: &'static str,
    window_start: Instant,
    window_end: Instant,
) -> (u64, u64, u64, Histogram<u64>) {
    let mut latency = new_histogram();
    let (mut requests, mut all, mut errors) = (0, 0, 0);
    loop {
        let sent = Instant::now();
        if sent >= window_end {
            break;
        }
        // A server that stops answering must not hold the run past its end.
        let ok = tokio::time::timeout_at((window_end + STUCK).into(), user.ask(path))
            .await
            .unwrap_or(false);
        let done = Instant::now();
        let counted = sent >= window_start && done <= window_end;
        if ok {
            all += 1;
            if counted {
                requests += 1;
                let micros =
                    u64::try_from(done.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                latency.saturating_record(micros.max(1));
            }
        } else {
            if counted {
                errors += 1;
            }
            match reconnect(&user.addrs(), window_end).await {
                Some(again) => user = again,
                None => break,
            }
        }
    }
    (requests, all, errors, latency)
}

async fn reconnect(addrs: &[SocketAddr], give_up: Instant) -> Option<User> {
    while Instant::now() < give_up {
        if let Ok(user) = User::logged_in(addrs).await {
            return Some(user);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// One user logs in, `between` runs, then the user asks `path` `requests`
/// times in a row: a pass that counts what a store does per request, not
/// how fast. Returns `between`'s value and the requests answered with a 2xx.
///
/// # Errors
/// As [`run`].
pub(crate) async fn count<S>(
    addr: SocketAddr,
    path: &'static str,
    requests: u64,
    between: impl FnOnce() -> S,
) -> Result<(u64, S), LoadError> {
    let mut user = User::logged_in(&[addr]).await?;
    let value = between();
    let mut answered = 0;
    for _ in 0..requests {
        let ok = tokio::time::timeout(STUCK, user.ask(path))
            .await
            .unwrap_or(false);
        answered += u64::from(ok);
    }
    Ok((answered, value))
}
