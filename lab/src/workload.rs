//! The users: each logs in through its strategy's balancer, then increments
//! the counter in its session, one request at a time, and checks every
//! answer against what it was told before.
//!
//! How each answer is judged:
//! - **lost session**: a 401, the app no longer knows the user. The user
//!   logs in again; every increment it had been acknowledged is lost too.
//! - **stale read**: `/incr` answered a count no higher than the last one
//!   acknowledged: the node read an older copy of the session. The
//!   acknowledged increments the answer is missing, `acked - (count - 1)`,
//!   are lost.
//! - **failed request**: a 5xx, a connection error or a timeout. It was not
//!   acknowledged, so it may or may not have been applied: a later count of
//!   `acked + 2` after one failure is fine.
//! - at the end each user reads its counter once more; a count below the
//!   last acknowledged one is lost increments as well.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{
    header::{COOKIE, HOST, SET_COOKIE},
    Request, StatusCode,
};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

/// The most one request may take, as a browser would give up. Longer than
/// the app's own bound on a request (two store calls of at most 1 s each,
/// see `strategy::OPERATION_TIMEOUT`), so that a request the user gave up
/// on has ended on the server before the user sends the next one: a write
/// landing after a later acknowledged one would look like a store bug.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at the final read of each counter.
const FINAL_READ_ATTEMPTS: usize = 10;
const FINAL_READ_PAUSE: Duration = Duration::from_millis(300);

/// Something that went wrong for one user, and when (from the run's start).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub(crate) at: Duration,
    pub(crate) kind: EventKind,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    Failed,
    LostSession,
    StaleRead,
}

/// What one user (or, summed, one strategy's users) saw.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    pub(crate) logins: u64,
    pub(crate) acknowledged_increments: u64,
    pub(crate) lost_sessions: u64,
    pub(crate) stale_reads: u64,
    pub(crate) lost_increments: u64,
    pub(crate) failed_requests: u64,
    /// Failed requests by cause.
    pub(crate) failures: BTreeMap<Failure, u64>,
    /// Counts above anything the user could have written: never expected.
    pub(crate) phantom_counts: u64,
    /// Final reads that found fewer increments than acknowledged.
    pub(crate) short_final_reads: u64,
    /// Users whose final read never got an answer.
    pub(crate) unread_counters: u64,
    /// Latency of the requests answered 2xx, in microseconds.
    pub(crate) latency: Histogram<u64>,
    pub(crate) events: Vec<Event>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            requests: 0,
            logins: 0,
            acknowledged_increments: 0,
            lost_sessions: 0,
            stale_reads: 0,
            lost_increments: 0,
            failed_requests: 0,
            failures: BTreeMap::new(),
            phantom_counts: 0,
            short_final_reads: 0,
            unread_counters: 0,
            latency: new_histogram(),
            events: Vec::new(),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant bounds are valid"))
}

impl Tally {
    /// Adds `other`'s counts, latencies and events to this one's.
    pub(crate) fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.logins += other.logins;
        self.acknowledged_increments += other.acknowledged_increments;
        self.lost_sessions += other.lost_sessions;
        self.stale_reads += other.stale_reads;
        self.lost_increments += other.lost_increments;
        self.failed_requests += other.failed_requests;
        for (failure, count) in other.failures {
            *self.failures.entry(failure).or_default() += count;
        }
        self.phantom_counts += other.phantom_counts;
        self.short_final_reads += other.short_final_reads;
        self.unread_counters += other.unread_counters;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.events.extend(other.events);
    }
}

/// How one request ended.
#[derive(Debug)]
enum Answer {
    Count(u64),
    Unauthorized,
    Failed(Failure),
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Failure {
    /// The app (or the balancer) answered this 4xx/5xx status.
    Status(u16),
    /// No answer within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The connection to the balancer failed.
    Connection,
    /// A 2xx whose body was not the app's JSON.
    Garbled,
}

impl Failure {
    /// A short name, for the JSON.
    pub(crate) fn name(self) -> String {
        match self {
            Failure::Status(code) => code.to_string(),
            Failure::Timeout => "timeout".to_owned(),
            Failure::Connection => "connection".to_owned(),
            Failure::Garbled => "garbled".to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Reply {
    count: u64,
}

/// One user's HTTP client: a keep-alive connection to the balancer, opened
/// again after any failure, and a cookie jar.
struct Client {
    balancer: SocketAddr,
    sender: Option<SendRequest<Empty<Bytes>>>,
    /// `(name, value)` of every cookie the answers set.
    jar: Vec<(String, String)>,
}

impl Client {
    fn new(balancer: SocketAddr) -> Self {
        Self {
            balancer,
            sender: None,
            jar: Vec::new(),
        }
    }

    /// Asks `path`, bounded by [`REQUEST_TIMEOUT`]; any failure drops the
    /// connection, so the next request starts on a fresh one.
    async fn ask(&mut self, path: &str) -> Answer {
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, self.try_ask(path)).await {
            Ok(Some(answer)) => answer,
            Ok(None) => Answer::Failed(Failure::Connection),
            Err(_) => Answer::Failed(Failure::Timeout),
        };
        if matches!(
            answer,
            Answer::Failed(Failure::Connection | Failure::Timeout)
        ) {
            self.sender = None;
        }
        answer
    }

    async fn try_ask(&mut self, path: &str) -> Option<Answer> {
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.balancer).await.ok()?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut()?;
        let mut request = Request::get(path).header(HOST, "lab");
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self
                .jar
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request = request.header(COOKIE, cookies.join("; "));
        }
        let request = request.body(Empty::new()).ok()?;
        sender.ready().await.ok()?;
        let response = sender.send_request(request).await.ok()?;
        for set in response.headers().get_all(SET_COOKIE) {
            if let Ok(set) = set.to_str() {
                self.keep(set);
            }
        }
        let status = response.status();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(if status == StatusCode::UNAUTHORIZED {
            Answer::Unauthorized
        } else if status.is_success() {
            match serde_json::from_slice::<Reply>(&body) {
                Ok(reply) => Answer::Count(reply.count),
                Err(_) => Answer::Failed(Failure::Garbled),
            }
        } else {
            Answer::Failed(Failure::Status(status.as_u16()))
        })
    }

    /// Keeps a `Set-Cookie`, as a browser would: a removal (`Max-Age=0` or
    /// an empty value) drops the cookie.
    fn keep(&mut self, set_cookie: &str) {
        let mut attributes = set_cookie.split(';');
        let Some((name, value)) = attributes
            .next()
            .and_then(|pair| pair.trim().split_once('='))
        else {
            return;
        };
        let removed =
            value.is_empty() || attributes.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
        self.jar.retain(|(kept, _)| kept != name);
        if !removed {
            self.jar.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// What a user knows about its counter: the last count it was told, and
/// how many increments it sent since then that failed, each of which may
/// have been applied all the same.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Ledger {
    acked: u64,
    unsure: u64,
}

/// What a count the app answered says about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judgement {
    /// What the user's own writes explain.
    Consistent,
    /// The app read an older copy: `lost` acknowledged increments are not
    /// in it.
    Stale { lost: u64 },
    /// More than the user ever sent.
    Phantom,
}

impl Ledger {
    /// `/incr` answered `count`: the app read `count - 1` and wrote
    /// `count`, which is now acknowledged.
    fn acknowledged(&mut self, count: u64) -> Judgement {
        let judgement = if count <= self.acked {
            Judgement::Stale {
                lost: self.acked - count.saturating_sub(1),
            }
        } else if count > self.acked + 1 + self.unsure {
            Judgement::Phantom
        } else {
            Judgement::Consistent
        };
        *self = Ledger {
            acked: count,
            unsure: 0,
        };
        judgement
    }

    /// An increment failed: it may or may not have been applied.
    fn failed(&mut self) {
        self.unsure += 1;
    }

    /// The session is gone, and every acknowledged increment with it:
    /// returns how many.
    fn lost(&mut self) -> u64 {
        std::mem::take(self).acked
    }

    /// The final `/read` answered `count`, which must hold every
    /// acknowledged increment.
    fn read(&self, count: u64) -> Judgement {
        if count < self.acked {
            Judgement::Stale {
                lost: self.acked - count,
            }
        } else if count > self.acked + self.unsure {
            Judgement::Phantom
        } else {
            Judgement::Consistent
        }
    }
}

/// One simulated user of one strategy.
pub(crate) struct User {
    name: String,
    client: Client,
    logged_in: bool,
    ledger: Ledger,
    tally: Tally,
}

impl User {
    pub(crate) fn new(name: String, balancer: SocketAddr) -> Self {
        Self {
            name,
            client: Client::new(balancer),
            logged_in: false,
            ledger: Ledger::default(),
            tally: Tally::default(),
        }
    }

    /// Logs in and increments until `end`, one request at a time with
    /// `pause` between two; `start` is the run's start, for the events.
    pub(crate) async fn run(mut self, start: Instant, end: Instant, pause: Duration) -> Self {
        while Instant::now() < end {
            let sent = Instant::now();
            if self.logged_in {
                self.increment(start, sent).await;
            } else {
                self.login(start, sent).await;
            }
            let left = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(pause.min(left)).await;
        }
        self
    }

    /// Reads the counter once more after the run and compares it with the
    /// last acknowledged count; then returns what this user saw.
    pub(crate) async fn finish(mut self, start: Instant) -> Tally {
        if !self.logged_in {
            return self.tally;
        }
        for _ in 0..FINAL_READ_ATTEMPTS {
            let sent = Instant::now();
            let answer = self.client.ask("/read").await;
            self.tally.requests += 1;
            match answer {
                Answer::Count(count) => {
                    self.record_latency(sent);
                    match self.ledger.read(count) {
                        Judgement::Consistent => {}
                        Judgement::Stale { lost } => {
                            self.tally.lost_increments += lost;
                            self.tally.short_final_reads += 1;
                        }
                        Judgement::Phantom => self.tally.phantom_counts += 1,
                    }
                    return self.tally;
                }
                Answer::Unauthorized => {
                    self.lose_session(start, sent);
                    return self.tally;
                }
                Answer::Failed(failure) => {
                    self.fail(start, sent, failure);
                    tokio::time::sleep(FINAL_READ_PAUSE).await;
                }
            }
        }
        self.tally.unread_counters += 1;
        self.tally
    }

    async fn login(&mut self, start: Instant, sent: Instant) {
        let path = format!("/login/{}", self.name);
        let answer = self.client.ask(&path).await;
        self.tally.requests += 1;
        match answer {
            Answer::Count(_) => {
                self.record_latency(sent);
                self.tally.logins += 1;
                self.logged_in = true;
                self.ledger = Ledger::default();
            }
            // A login never answers 401; if one did, it failed all the same.
            Answer::Unauthorized => self.fail(start, sent, Failure::Status(401)),
            Answer::Failed(failure) => self.fail(start, sent, failure),
        }
    }

    async fn increment(&mut self, start: Instant, sent: Instant) {
        let answer = self.client.ask("/incr").await;
        self.tally.requests += 1;
        match answer {
            Answer::Count(count) => {
                self.record_latency(sent);
                self.tally.acknowledged_increments += 1;
                match self.ledger.acknowledged(count) {
                    Judgement::Consistent => {}
                    Judgement::Stale { lost } => {
                        self.tally.stale_reads += 1;
                        self.tally.lost_increments += lost;
                        self.event(start, sent, EventKind::StaleRead);
                    }
                    Judgement::Phantom => self.tally.phantom_counts += 1,
                }
            }
            Answer::Unauthorized => self.lose_session(start, sent),
            Answer::Failed(failure) => {
                self.ledger.failed();
                self.fail(start, sent, failure);
            }
        }
    }

    fn lose_session(&mut self, start: Instant, sent: Instant) {
        self.tally.lost_sessions += 1;
        self.tally.lost_increments += self.ledger.lost();
        self.event(start, sent, EventKind::LostSession);
        self.logged_in = false;
    }

    fn fail(&mut self, start: Instant, sent: Instant, failure: Failure) {
        self.tally.failed_requests += 1;
        *self.tally.failures.entry(failure).or_default() += 1;
        self.event(start, sent, EventKind::Failed);
    }

    fn event(&mut self, start: Instant, sent: Instant, kind: EventKind) {
        self.tally.events.push(Event {
            at: sent.saturating_duration_since(start),
            kind,
        });
    }

    fn record_latency(&mut self, sent: Instant) {
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.tally.latency.saturating_record(micros.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_at(acked: u64) -> Ledger {
        let mut ledger = Ledger::default();
        for count in 1..=acked {
            assert_eq!(ledger.acknowledged(count), Judgement::Consistent);
        }
        ledger
    }

    #[test]
    fn a_count_no_higher_than_the_last_acknowledged_is_a_stale_read() {
        let mut ledger = ledger_at(5);
        // The app read 2 and wrote 3: acknowledged counts 3, 4 and 5 are
        // not in what it read.
        assert_eq!(ledger.acknowledged(3), Judgement::Stale { lost: 3 });
        // From then on the user counts from what it was told.
        assert_eq!(ledger.acknowledged(4), Judgement::Consistent);
        assert_eq!(ledger.acknowledged(4), Judgement::Stale { lost: 1 });
    }

    #[test]
    fn a_failed_increment_may_have_landed_but_nothing_more() {
        let mut ledger = ledger_at(5);
        ledger.failed();
        assert_eq!(ledger.acknowledged(7), Judgement::Consistent);
        ledger.failed();
        assert_eq!(ledger.acknowledged(8), Judgement::Consistent);
        assert_eq!(ledger.acknowledged(10), Judgement::Phantom);
    }

    #[test]
    fn a_lost_session_loses_every_acknowledged_increment() {
        let mut ledger = ledger_at(4);
        assert_eq!(ledger.lost(), 4);
        assert_eq!(ledger, Ledger::default());
    }

    #[test]
    fn the_final_read_must_hold_every_acknowledged_increment() {
        let mut ledger = ledger_at(6);
        assert_eq!(ledger.read(6), Judgement::Consistent);
        assert_eq!(ledger.read(4), Judgement::Stale { lost: 2 });
        ledger.failed();
        assert_eq!(ledger.read(7), Judgement::Consistent);
        assert_eq!(ledger.read(8), Judgement::Phantom);
    }

    #[test]
    fn the_jar_keeps_the_latest_value_and_forgets_removed_cookies() {
        let mut client = Client::new(([127, 0, 0, 1], 9).into());
        client.keep("session=abc.tag; Path=/; HttpOnly");
        client.keep("lab-node=1; Path=/");
        client.keep("session=def.tag; Path=/");
        assert_eq!(
            client.jar,
            vec![
                ("lab-node".to_owned(), "1".to_owned()),
                ("session".to_owned(), "def.tag".to_owned())
            ]
        );
        client.keep("session=; Path=/; Max-Age=0");
        assert_eq!(client.jar, vec![("lab-node".to_owned(), "1".to_owned())]);
    }
}
