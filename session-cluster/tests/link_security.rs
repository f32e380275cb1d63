//! The peer link against the network: a reply cut off mid-stream is a
//! transient failure, not a corrupt session; a stranger on the peer port
//! cannot make a node read request bodies, nor hold a connection open
//! without sending a signed request; and a signed request is served once.
//!
//! Issue 23's suspicions 4 to 6, each test failing before its fix. The
//! strangers here speak raw HTTP/2 (or plain TCP) to the peer port, as
//! anyone on the network can; the signed requests are built by hand from
//! the link's documented format, and the node's acceptance of the first one
//! shows the rebuild is right, so a refusal of the second means something.

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use session_cluster::ClusterStore;
use session_core::store::{Created, SessionStore};
use sha2::Sha256;
use support::{bounded, config, count, counter_record, start_with, MEASURING, SECRET};

/// The path of every peer request in the link's current format.
const PATH: &str = "/session-cluster/v3";

/// A one-node cluster, for tests that only talk to its peer port.
async fn one_node() -> ClusterStore {
    let mut nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(1, |name| config(name, 1, 1)),
    )
    .await;
    nodes.remove(0)
}

/// Suspicion 4. A reply cut off mid-stream (the owner crashes while sending
/// it) must be a transient failure, so a load falls back to the backup that
/// holds the session. As `Corrupt`, which is not transient, it neither fell
/// back nor let the caller retry: the session manager starts a fresh
/// session on `Corrupt`, so the user was logged out.
///
/// Forced with a 16 MiB session loaded through the node that does not hold
/// it: the owner is dropped (as a crash) once it has sent the first MiB of
/// its reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_off_mid_stream_falls_back_to_a_backup() {
    let _alone = MEASURING.write().await;
    const PAD: usize = 16 << 20;
    let mut nodes = bounded(
        "cluster start",
        Duration::from_secs(20),
        start_with(3, |name| {
            config(name, 3, 2).with_operation_timeout(Duration::from_secs(20))
        }),
    )
    .await;
    let record = counter_record(PAD);
    assert!(matches!(
        nodes[0].create(&record).await,
        Ok(Created::Created)
    ));
    let id = record.id;
    let placement = nodes[0].placement(&id);
    let client = nodes
        .iter()
        .find(|n| !placement.iter().any(|p| p == n.node_id()))
        .expect("a node that holds no copy")
        .clone();
    let owner_at = nodes
        .iter()
        .position(|n| n.node_id() == placement[0])
        .expect("the owner");
    // Let the start-up hand-overs finish, so the owner's traffic is the reply.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = nodes[owner_at].stats().bytes_sent;
    let load = {
        let client = client.clone();
        tokio::spawn(async move { client.load(&id).await })
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if nodes[owner_at].stats().bytes_sent - before >= 1 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let owner = nodes.remove(owner_at);
    let owner_name = owner.node_id().to_owned();
    let sent = owner.stats().bytes_sent - before;
    drop(owner);
    assert!(
        (1 << 20..PAD as u64).contains(&sent),
        "the owner had sent {sent} bytes of a {PAD}-byte reply when it was dropped: the reply \
         was not cut mid-stream, nothing forced"
    );
    let answer = bounded("the load", Duration::from_secs(30), load)
        .await
        .expect("the load panicked");
    println!(
        "link: owner {owner_name} dropped after sending {sent} bytes of its reply; the load through {} answered {:?}",
        client.node_id(),
        answer.as_ref().map(|r| r.as_ref().map(count)).map_err(|e| (e.kind(), e.to_line()))
    );
    match answer {
        Ok(Some(record)) => assert_eq!(count(&record), 0),
        Ok(None) => panic!("the load answered that the session does not exist"),
        Err(err) => assert!(
            err.kind().is_transient(),
            "a reply cut off mid-stream failed the load with {:?} (not transient: no fallback \
             to the backup, and the manager starts a fresh session): {}",
            err.kind(),
            err.to_line()
        ),
    }
}

/// An HTTP/2 connection to a node's peer port, as anyone on the network can
/// open one.
async fn connect(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the peer port");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

fn unix_millis() -> String {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
        .to_string()
}

/// Suspicion 5. The link read a request's whole body (up to 32 MiB) before
/// it checked the HMAC, so anyone who reached the port made the node buffer
/// bodies without the secret: 256 streams a connection, any number of
/// connections. Now the signed head is checked first.
///
/// Measured with four unsigned 8 MiB requests on one connection: a node that
/// refuses before reading the body has taken in at most its HTTP/2 flow
/// control windows (a few MiB) when it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_request_is_refused_before_its_body_is_read() {
    let _alone = MEASURING.write().await;
    const BODY: usize = 8 << 20;
    const STREAMS: usize = 4;
    let node = one_node().await;
    let addr = node.local_addr();
    let sender = connect(addr).await;
    let before = node.stats().bytes_received;
    let started = Instant::now();
    let body = Bytes::from(vec![0u8; BODY]);
    let answers = bounded(
        "the unsigned requests",
        Duration::from_secs(30),
        futures_util::future::join_all((0..STREAMS).map(|_| {
            let mut sender = sender.clone();
            let request = http::Request::post(format!("http://{addr}{PATH}"))
                .header("x-sc-node", "not-a-member")
                .header("x-sc-time", unix_millis())
                .header("x-sc-budget-ms", "1000")
                .header("x-sc-length", BODY.to_string())
                .header("x-sc-nonce", "00".repeat(16))
                .header("x-sc-head-mac", "00".repeat(32))
                .header("x-sc-mac", "00".repeat(32))
                .body(Full::new(body.clone()))
                .expect("a valid request");
            async move {
                // A closed connection or a reset stream is a refusal too.
                sender.ready().await.map_err(|e| e.to_string())?;
                sender
                    .send_request(request)
                    .await
                    .map(|response| response.status())
                    .map_err(|e| e.to_string())
            }
        })),
    )
    .await;
    let read = node.stats().bytes_received - before;
    println!(
        "link: {STREAMS} unsigned {BODY}-byte requests on one connection answered {answers:?} after {} ms; the node read {read} bytes ({} MiB) of them",
        started.elapsed().as_millis(),
        read >> 20
    );
    assert!(
        answers
            .iter()
            .all(|s| s.as_ref().map_or(true, http::StatusCode::is_client_error)),
        "unsigned requests answered {answers:?}"
    );
    assert!(
        read < (STREAMS * BODY / 2) as u64,
        "the node read {read} bytes of {STREAMS} unsigned {BODY}-byte bodies (on one \
         connection, without the secret) before refusing them with {answers:?}"
    );
}

/// A connection that never sends a signed request (a slowloris, or a port
/// scanner that keeps its socket) is closed after a few seconds, so
/// strangers cannot hold the node's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_signed_request_is_closed() {
    use tokio::io::AsyncReadExt as _;
    let _measuring = MEASURING.read().await;
    let node = one_node().await;
    let mut stream = tokio::net::TcpStream::connect(node.local_addr())
        .await
        .expect("connect to the peer port");
    let opened = Instant::now();
    // The node sends its HTTP/2 settings, then (after the timeout) a GOAWAY
    // and EOF; everything up to the EOF is read and thrown away.
    let mut buf = [0u8; 1024];
    let closed = bounded(
        "the idle connection's end",
        Duration::from_secs(20),
        async {
            for _ in 0..1000 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
            false
        },
    )
    .await;
    let after = opened.elapsed();
    println!(
        "link: a connection that sent nothing was closed after {} ms",
        after.as_millis()
    );
    assert!(closed, "the node kept writing to a silent connection");
    assert!(
        after >= Duration::from_secs(1),
        "closed after {after:?}: before a peer could have sent its first request"
    );
}

/// HMAC-SHA256 under the link's key (derived from the cluster secret for
/// "link"), over length-prefixed parts: the link's documented construction,
/// rebuilt here because the crate's signer is private.
fn tag(parts: &[&[u8]]) -> [u8; 32] {
    let mut derive = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
    derive.update(b"session-cluster key derivation\0");
    derive.update(b"link");
    let key = derive.finalize().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A signed peer request in the link's format: the head (sender, time,
/// budget, body length, nonce) has its own tag, checked before the body is
/// read; the body's tag covers the head's tag and the body.
struct Signed {
    node: &'static str,
    time: String,
    budget: &'static str,
    length: String,
    nonce: String,
    head_tag: [u8; 32],
    body_tag: [u8; 32],
    body: Bytes,
}

impl Signed {
    fn new(node: &'static str, nonce: u128, body: Bytes) -> Self {
        let (time, budget, length) = (unix_millis(), "2000", body.len().to_string());
        let nonce = format!("{nonce:032x}");
        let head_tag = tag(&[
            b"head",
            PATH.as_bytes(),
            node.as_bytes(),
            time.as_bytes(),
            budget.as_bytes(),
            length.as_bytes(),
            nonce.as_bytes(),
        ]);
        let body_tag = tag(&[b"body", &head_tag, &body]);
        Self {
            node,
            time,
            budget,
            length,
            nonce,
            head_tag,
            body_tag,
            body,
        }
    }

    fn request(&self, addr: SocketAddr) -> http::Request<Full<Bytes>> {
        http::Request::post(format!("http://{addr}{PATH}"))
            .header("x-sc-node", self.node)
            .header("x-sc-time", &self.time)
            .header("x-sc-budget-ms", self.budget)
            .header("x-sc-length", &self.length)
            .header("x-sc-nonce", &self.nonce)
            .header("x-sc-head-mac", hex(&self.head_tag))
            .header("x-sc-mac", hex(&self.body_tag))
            .body(Full::new(self.body.clone()))
            .expect("a valid request")
    }

    /// Whether `mac` is the reply tag for `reply` to this request.
    fn signs_reply(&self, reply: &[u8], mac: &str) -> bool {
        hex(&tag(&[
            b"reply",
            self.nonce.as_bytes(),
            &self.body_tag,
            reply,
        ])) == mac
    }
}

/// Sends `request` on a new connection: its status, reply body and tag.
async fn send(addr: SocketAddr, request: &Signed) -> (http::StatusCode, Bytes, String) {
    let mut sender = connect(addr).await;
    sender.ready().await.expect("connection ready");
    let response = sender
        .send_request(request.request(addr))
        .await
        .expect("a response");
    let status = response.status();
    let mac = response
        .headers()
        .get("x-sc-mac")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let reply = response
        .into_body()
        .collect()
        .await
        .expect("the reply body")
        .to_bytes();
    (status, reply, mac)
}

/// postcard of `Request::Owner(OwnerRequest::Load(Load { key }))`: variant
/// 0, variant 0, then the key's length and bytes.
fn load_body(key: &[u8]) -> Bytes {
    let mut body = vec![0u8, 0, u8::try_from(key.len()).expect("short key")];
    body.extend_from_slice(key);
    Bytes::from(body)
}

/// Suspicion 6. A signed peer request carried no nonce, only a timestamp
/// checked to ±60 s: whoever saw one on the wire could send it again, and
/// the node acted on it again. Each reply's tag is bound to its request's
/// nonce, so an old reply cannot answer a new request either.
///
/// A signed `Load` (as a node forwards one) is sent, then the very same
/// bytes again a second later on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_peer_request_is_not_accepted_twice() {
    let _measuring = MEASURING.read().await;
    let node = one_node().await;
    let addr = node.local_addr();
    let request = Signed::new("node-x", rand_nonce(), load_body(b"replayed-key"));
    let first = bounded(
        "the signed request",
        Duration::from_secs(10),
        send(addr, &request),
    )
    .await;
    assert_eq!(
        first.0,
        http::StatusCode::OK,
        "the node refused the first, fresh request: the test's signer does not match the link's"
    );
    assert!(
        request.signs_reply(&first.1, &first.2),
        "the reply's tag is not bound to its request's nonce"
    );
    let other = Signed::new("node-x", rand_nonce(), load_body(b"replayed-key"));
    assert!(
        !other.signs_reply(&first.1, &first.2),
        "the reply to one request passes for the reply to another"
    );
    let refused_before = node.stats().requests_refused;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = bounded("the replay", Duration::from_secs(10), send(addr, &request)).await;
    let refused = node.stats().requests_refused - refused_before;
    println!(
        "link: a signed request answered {}; the same bytes a second later answered {}; refusals counted: {refused}",
        first.0, again.0
    );
    assert_eq!(
        again.0,
        http::StatusCode::UNAUTHORIZED,
        "the node did not refuse the same signed request sent again a second later"
    );
    assert_eq!(refused, 1, "the replay was not counted as refused");
    // A fresh nonce on the same request is served: the refusal was the nonce's.
    let fresh = bounded(
        "a fresh request",
        Duration::from_secs(10),
        send(addr, &other),
    )
    .await;
    assert_eq!(fresh.0, http::StatusCode::OK);
}

/// A signed head with a body that is not the one it was signed with: the
/// head passes, the body's tag does not, and the request is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_swapped_under_a_signed_head_is_refused() {
    let _measuring = MEASURING.read().await;
    let node = one_node().await;
    let addr = node.local_addr();
    let mut request = Signed::new("node-x", rand_nonce(), load_body(b"signed-key"));
    // Same length, so only the body's tag can tell.
    request.body = load_body(b"forged-key");
    let answer = bounded(
        "the forged request",
        Duration::from_secs(10),
        send(addr, &request),
    )
    .await;
    assert_eq!(answer.0, http::StatusCode::UNAUTHORIZED);
    assert_eq!(node.stats().requests_refused, 1);
}

fn rand_nonce() -> u128 {
    // Distinct per call: the time in nanoseconds, and a counter for calls
    // within one tick.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos();
    now ^ (u128::from(CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) << 100)
}
