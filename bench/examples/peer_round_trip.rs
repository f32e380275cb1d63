//! What one request/reply round trip costs in CPU, for four ways a cluster
//! node could talk to a peer, measured the way `session-bench` runs the
//! cluster: both ends on one tokio current-thread runtime, on loopback.
//!
//! ```text
//! cargo build --release -p session-bench --example peer_round_trip
//! CONCURRENCY=1 taskset -c 0 target/release/examples/peer_round_trip [WHICH] [ROUNDS]
//! ```
//!
//! `WHICH` is one of `hyper`, `h2`, `framed`, `redis` (default: all four);
//! `CONCURRENCY` callers (default 16) each make `ROUNDS` calls (default
//! 5000) one after another, as the bench's connections do. The figure is the
//! thread's CPU time (user and system, from `/proc/thread-self/stat`) per
//! round trip; for Redis the `redis-server` process's CPU is added, as its
//! core is the app's in the bench.
//!
//! - `hyper`: HTTP/2 through hyper's client and server connections, with
//!   the peer link's four request headers and its reply header (what
//!   `session-cluster`'s link did up to its v3, minus the HMACs, which cost
//!   the same on every transport).
//! - `h2`: the same HTTP/2 exchange on the `h2` crate directly: no hyper
//!   dispatch channel and no task spawned per request on the client.
//! - `framed`: length-prefixed frames (length, request id, payload) on one
//!   TCP connection, multiplexed by id, a writer task per side that
//!   coalesces what is queued, and a task per request on the server: the
//!   shape of the link since v4 (`session-cluster/src/link/`), without its
//!   signing, bounds and reconnects.
//! - `redis`: one `HGETALL` through `RedisStore::load` against a
//!   `redis-server` started by the test kit, the round trip a Redis-backed
//!   app pays.
//!
//! Not a criterion bench: criterion times one future at a time, and the
//! figure that matters here is CPU per call with several in flight.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use session_core::{store::SessionStore, SessionId};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp::OwnedWriteHalf, TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};

/// Request and reply body size: about a peer-link `Install` of a small
/// session.
const BODY: usize = 100;
/// The most frames a writer task queues: the callers in flight.
const QUEUE: usize = 256;

fn concurrency() -> usize {
    std::env::var("CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(16)
}

/// CPU clock ticks (user + system) of the thread or process whose `stat`
/// file is at `path`.
fn ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|end| stat[end + 2..].split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

/// Microseconds per clock tick (`CLK_TCK` is 100 on Linux).
const TICK_MICROS: f64 = 10_000.0;

struct Measured {
    calls: u64,
    wall: Duration,
    thread_ticks: u64,
}

fn report(name: &str, measured: &Measured, other_ticks: u64) {
    let per = |ticks: u64| ticks as f64 * TICK_MICROS / measured.calls as f64;
    println!(
        "{name}: {} round trips in {:.2} s ({:.0}/s); CPU {:.1} µs per round trip \
         (this thread {:.1}, other process {:.1})",
        measured.calls,
        measured.wall.as_secs_f64(),
        measured.calls as f64 / measured.wall.as_secs_f64(),
        per(measured.thread_ticks + other_ticks),
        per(measured.thread_ticks),
        per(other_ticks),
    );
}

/// Runs `concurrency()` callers, each making `rounds` calls in a row.
async fn drive<F, Fut>(rounds: u64, call: F) -> Measured
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = ()>,
{
    let callers = concurrency();
    let before = ticks("/proc/thread-self/stat");
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let call = call.clone();
        set.spawn_local(async move {
            for _ in 0..rounds {
                call().await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    Measured {
        calls: rounds * callers as u64,
        wall: start.elapsed(),
        thread_ticks: ticks("/proc/thread-self/stat") - before,
    }
}

/// The peer link's request, with its four signed headers.
fn link_request<B>(addr: std::net::SocketAddr, body: B) -> Request<B> {
    Request::post(format!("http://{addr}/session-cluster/v2"))
        .header("x-sc-node", "node-1")
        .header("x-sc-time", "1765000000000")
        .header("x-sc-budget-ms", "1499")
        .header("x-sc-mac", "b".repeat(64))
        .body(body)
        .expect("a valid request")
}

async fn one_connection() -> (TcpListener, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("an address"))
        .await
        .expect("connect");
    client.set_nodelay(true).expect("nodelay");
    (listener, client)
}

async fn hyper_http2(rounds: u64) -> Measured {
    let (listener, client) = one_connection().await;
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        let (server, _) = listener.accept().await.expect("accept");
        server.set_nodelay(true).expect("nodelay");
        let service =
            hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                let _mac = request.headers().get("x-sc-mac").cloned();
                let body = request.into_body().collect().await?.to_bytes();
                let mut response = Response::new(Full::new(body));
                response
                    .headers_mut()
                    .insert("x-sc-mac", "a".repeat(64).parse().expect("a header value"));
                Ok::<_, hyper::Error>(response)
            });
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new()).max_concurrent_streams(256);
        let _ = builder
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(client))
        .await
        .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    drive(rounds, move || {
        let mut sender = sender.clone();
        async move {
            let request = link_request(addr, Full::new(Bytes::from(vec![7u8; BODY])));
            sender.ready().await.expect("a ready connection");
            let response = sender.send_request(request).await.expect("a response");
            let _ = response.into_body().collect().await.expect("a body");
        }
    })
    .await
}

async fn h2_direct(rounds: u64) -> Measured {
    let (listener, client) = one_connection().await;
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        let (server, _) = listener.accept().await.expect("accept");
        server.set_nodelay(true).expect("nodelay");
        let mut connection = h2::server::handshake(server).await.expect("a handshake");
        // Ends when the client's connection closes.
        while let Some(Ok((request, mut respond))) = connection.accept().await {
            tokio::spawn(async move {
                let _mac = request.headers().get("x-sc-mac").cloned();
                let mut body = request.into_body();
                let mut received = BytesMut::new();
                // Ends with the stream; a stream has finitely many chunks.
                while let Some(Ok(chunk)) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    received.extend_from_slice(&chunk);
                }
                let mut response = Response::new(());
                response
                    .headers_mut()
                    .insert("x-sc-mac", "a".repeat(64).parse().expect("a header value"));
                if let Ok(mut send) = respond.send_response(response, false) {
                    let _ = send.send_data(received.freeze(), true);
                }
            });
        }
    });
    let (sender, connection) = h2::client::handshake(client).await.expect("a handshake");
    tokio::spawn(connection);
    drive(rounds, move || {
        let sender = sender.clone();
        async move {
            let mut sender = sender.ready().await.expect("a ready connection");
            let (response, mut send) = sender
                .send_request(link_request(addr, ()), false)
                .expect("a stream");
            send.send_data(Bytes::from(vec![7u8; BODY]), true)
                .expect("the body is sent");
            let mut body = response.await.expect("a response").into_body();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
        }
    })
    .await
}

/// Appends one frame: its length (id and payload), the id, the payload.
fn put_frame(id: u64, payload: &[u8], out: &mut BytesMut) {
    out.put_u32(u32::try_from(8 + payload.len()).expect("a small frame"));
    out.put_u64(id);
    out.put_slice(payload);
}

/// Takes every whole frame off the front of `buffer`.
fn take_frames(buffer: &mut BytesMut, mut each: impl FnMut(u64, Bytes)) {
    while buffer.len() >= 4 {
        let len = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
        if buffer.len() < 4 + len {
            return;
        }
        buffer.advance(4);
        let mut frame = buffer.split_to(len);
        let id = frame.get_u64();
        each(id, frame.freeze());
    }
}

/// Writes what is queued, coalescing every frame waiting at that moment
/// into one write; ends when every sender is gone.
fn spawn_writer(mut socket: OwnedWriteHalf) -> mpsc::Sender<BytesMut> {
    let (frames, mut queued) = mpsc::channel::<BytesMut>(QUEUE);
    tokio::spawn(async move {
        let mut out = BytesMut::new();
        while let Some(frame) = queued.recv().await {
            out.extend_from_slice(&frame);
            for _ in 0..QUEUE {
                match queued.try_recv() {
                    Ok(frame) => out.extend_from_slice(&frame),
                    Err(_) => break,
                }
            }
            if socket.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    });
    frames
}

async fn framed(rounds: u64) -> Measured {
    let (listener, client) = one_connection().await;
    tokio::spawn(async move {
        let (server, _) = listener.accept().await.expect("accept");
        server.set_nodelay(true).expect("nodelay");
        let (mut read, write) = server.into_split();
        let replies = spawn_writer(write);
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        // Ends when the client closes the connection.
        while matches!(read.read_buf(&mut buffer).await, Ok(n) if n > 0) {
            take_frames(&mut buffer, |id, request| {
                let replies = replies.clone();
                tokio::spawn(async move {
                    let mut reply = BytesMut::with_capacity(request.len() + 12);
                    put_frame(id, &request[request.len() - BODY..], &mut reply);
                    let _ = replies.send(reply).await;
                });
            });
        }
    });
    let (mut read, write) = client.into_split();
    let requests = spawn_writer(write);
    let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>> = Arc::default();
    let answered = Arc::clone(&waiting);
    tokio::spawn(async move {
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        while matches!(read.read_buf(&mut buffer).await, Ok(n) if n > 0) {
            take_frames(&mut buffer, |id, reply| {
                let caller = answered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id);
                if let Some(caller) = caller {
                    let _ = caller.send(reply);
                }
            });
        }
    });
    let next_id = Arc::new(AtomicU64::new(0));
    drive(rounds, move || {
        let (requests, waiting, next_id) =
            (requests.clone(), Arc::clone(&waiting), Arc::clone(&next_id));
        async move {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let (reply, answer) = oneshot::channel();
            waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id, reply);
            // The fields the link's headers carry, then a tag and the body.
            let payload = [
                &b"node-1"[..],
                b"1765000000000",
                b"1499",
                &[0u8; 32],
                &[7u8; BODY],
            ]
            .concat();
            let mut frame = BytesMut::with_capacity(payload.len() + 12);
            put_frame(id, &payload, &mut frame);
            requests.send(frame).await.expect("the writer runs");
            let _ = answer.await.expect("a reply");
        }
    })
    .await
}

async fn redis(rounds: u64) -> (Measured, u64) {
    let server = session_conformance::testkit::RedisServer::start();
    let url = server.url();
    let config = session_redis::RedisConfig::from_url(&url).expect("the test kit's URL");
    let store = session_redis::RedisStore::connect(config)
        .await
        .expect("Redis answers");
    let stat = redis_stat(server.port());
    let before = ticks(&stat);
    let id = SessionId::generate();
    let measured = drive(rounds, move || {
        let store = store.clone();
        async move {
            let _ = store.load(&id).await.expect("a load");
        }
    })
    .await;
    let other = ticks(&stat).saturating_sub(before);
    drop(server);
    (measured, other)
}

/// The `stat` file of the `redis-server` listening on `port`.
fn redis_stat(port: u16) -> String {
    let wanted = format!(":{port}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .find(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("redis-server") && cmdline.contains(&wanted)
            })
        })
        .map(|entry| entry.path().join("stat").display().to_string())
        .unwrap_or_default()
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let rounds: u64 = std::env::args()
        .nth(2)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let chosen = |name: &str| which.is_empty() || which == name;
    println!(
        "{} callers × {rounds} calls, {BODY}-byte bodies",
        concurrency()
    );
    tokio::task::LocalSet::new().block_on(&runtime, async {
        if chosen("hyper") {
            report(
                "HTTP/2 through hyper (the link up to v3)",
                &hyper_http2(rounds).await,
                0,
            );
        }
        if chosen("h2") {
            report("HTTP/2 on h2 directly", &h2_direct(rounds).await, 0);
        }
        if chosen("framed") {
            report("length-prefixed frames on TCP", &framed(rounds).await, 0);
        }
        if chosen("redis") {
            let (measured, other) = redis(rounds).await;
            report("Redis HGETALL (RedisStore::load)", &measured, other);
        }
    });
}
