//! # session-cluster
//!
//! Sessions kept in the memory of the app servers themselves, each one on
//! `R` of them, so an app behind a plain round-robin load balancer needs no
//! Redis, no Memcached and no sticky sessions. [`ClusterStore`] is a
//! [`SessionStore`](session_core::SessionStore) like any other: the Axum and
//! Actix adapters, the failover and near-cache wrappers and the conformance
//! suite take it unchanged.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use session_cluster::{ClusterConfig, ClusterStore};
//!
//! // Node "a" of three; "b" and "c" run the same with their own id and address.
//! let secret = std::env::var("CLUSTER_SECRET")?; // at least 32 bytes, shared by all nodes
//! let config = ClusterConfig::new("a", "10.0.0.1:7400".parse()?, secret)
//!     .seeds(["10.0.0.2:7400".parse()?, "10.0.0.3:7400".parse()?]);
//! let store = ClusterStore::start(config).await?;
//! store.wait_for_members(2, Duration::from_secs(10)).await;
//! // Hand `store` to `SessionManager::builder(store, keys)` as with any backend.
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! **Placement.** Each session has an *owner* and `R-1` *backups*: the `R`
//! live members with the highest rendezvous (highest-random-weight) hash of
//! the session's key, the same answer on every node that sees the same
//! members. Each node holds about `R/N` of all sessions, not all of them.
//! When a node joins or leaves, only the sessions it held or now holds move.
//!
//! **Consistency: routing to the owner.** Any node serves any session, by
//! handing the operation to the session's owner over the peer link (or doing
//! it itself when it is the owner). The owner serialises the operations on
//! one session, applies each commit as one atomic step, and copies the
//! result to every backup *before* it answers. So:
//! - a read on any node right after a write on another sees that write:
//!   both went to the same owner, which answers from the copy it wrote;
//! - concurrent commits to disjoint keys of one session all survive, and on
//!   one key the last wins, as the store contract requires;
//! - an acknowledged commit is on all `R` holders. A commit that fails (a
//!   holder did not answer in time) is not acknowledged, and may or may not
//!   show up later, as with any store whose reply is lost.
//!
//! We chose routing over a signed version hint in the cookie. A hint lets a
//! node detect that its local copy is stale, but it still has to fetch the
//! fresh one from somewhere, and concurrent writers still need one place that
//! orders them; the owner is that place, and once every operation goes there
//! the hint adds nothing. It also keeps the cookie `<id>.<tag>`, the same as
//! every other backend's, so an app can move between backends without
//! logging anyone out. The price is one peer round trip for requests that
//! land on a non-owner (about `(N-1)/N` of them) and one more from the owner
//! to its backups for writes; the benchmarks measure both.
//!
//! **Failure.** Membership is SWIM (the [foca](https://docs.rs/foca) crate)
//! over UDP: nodes probe each other, and a node that stops answering is
//! suspected, then declared dead, after about `probe_period +
//! suspect_timeout` (about one second by default). Then:
//! - every session it owned has a backup that holds every acknowledged
//!   commit, and that backup is now the owner;
//! - each node re-replicates: it offers its sessions to their new holders,
//!   who take the ones they lack, until each session has `R` copies again;
//! - so losing up to `R-1` nodes at once loses no session.
//!
//! Until a dead node is declared dead, reads of its sessions fall back to a
//! backup, and writes to sessions it holds fail with `Unavailable` (the error
//! policy answers, a 503 by default) rather than be acknowledged with fewer
//! than `R` copies. A node that joins, or comes back, is handed the sessions
//! it now holds; for [`settle_time`](ClusterConfig::settle_time) after any
//! membership change an owner also asks the other nodes for the newest copy
//! before it answers, so a new owner never serves a session it has not been
//! handed yet.
//!
//! **Partitions.** A node serves requests only while it sees a majority of
//! the [cluster size](ClusterConfig::cluster_size) (a quorum), itself
//! included. On the minority side of a partition every operation, reads
//! included, fails with `Unavailable` once it has noticed the partition: the
//! minority accepts no writes and, after that, serves no copies the majority
//! may have changed, and nothing written on the majority is overwritten when
//! the partition heals. The majority side keeps serving
//! every session that still has a copy on its side, which is every session
//! when the minority has at most `R-1` nodes: a partition costs what losing
//! the minority's nodes would. When it heals, the returning nodes rejoin
//! (SWIM announces to nodes it saw die), are handed the newer copies, and
//! any version they hold that the majority superseded is refused by version.
//! With no majority anywhere (say, a 4-node cluster split 2/2) no side
//! serves until it heals.
//!
//! One window is open: the majority can notice the cut (and take over) a
//! probe period or two before a minority node notices it has lost its
//! quorum. In between, that node still answers a *read* of a session it
//! holds from its own copy, which the majority may already have changed: a
//! stale read, for about half a second with fast settings. Its writes fail,
//! since they need the holders it cannot reach, so nothing is lost or
//! diverges. Closing the window needs read leases (serve a read only while a
//! quorum answered within less than the majority's detection time); that is
//! not built yet, and `tests/partition.rs` keeps an ignored test that shows
//! the window.
//!
//! **Deletes stick.** A deleted session leaves a tombstone on its holders for
//! as long as the record could have lived, so a node that missed the delete
//! cannot hand the session back.
//!
//! ## Compared with Tomcat's session replication
//!
//! | | Tomcat DeltaManager | Tomcat BackupManager | session-cluster |
//! |---|---|---|---|
//! | copies of each session | every node | 2 (owner + one backup) | `R`, configurable |
//! | memory per node | all sessions | about `2/N` | about `R/N` |
//! | replication traffic per write | to `N-1` nodes | to 1 node | to `R-1` nodes |
//! | load balancer | sticky, or stale reads | sticky required | any, round-robin fine |
//! | read right after a write on another node | may see the old copy (asynchronous by default) | stale unless sticky | sees the write (routed to the owner) |
//! | write acknowledged after | local apply (asynchronous copy by default) | local apply | all `R` copies applied |
//! | partition | both sides accept writes | both sides accept writes | minority refuses; no divergence |
//! | peer authentication | optional (encryption interceptor) | optional | every message signed (HMAC-SHA256) |
//!
//! ## Peer link
//! Operations travel as signed [postcard](https://docs.rs/postcard) messages
//! over HTTP/2 (hyper, one multiplexed TCP connection per peer), on the same
//! port number as membership's UDP.
//! - Every request and every reply carries an HMAC-SHA256 tag under a key
//!   derived from the shared secret, over the sender, a timestamp, the
//!   caller's remaining time and the body; a request without a valid tag, or
//!   more than a minute off the receiver's clock, gets `401`. Membership
//!   datagrams carry a tag under another derived key. The link is
//!   authenticated, not encrypted: run it on a private network.
//! - Every call runs under the store's
//!   [`request_timeout`](ClusterConfig::request_timeout), forwarding and
//!   replication included; the owner is told how much time the caller has
//!   left and works within it.
//! - At most [`max_in_flight_per_peer`](ClusterConfig::max_in_flight_per_peer)
//!   calls are in flight to one peer; further calls wait for a slot within
//!   their deadline. A node serves at most 1024 peer requests at once and
//!   answers `503` past that instead of queueing.
#![forbid(unsafe_code)]

mod config;
mod link;
mod local;
mod membership;
mod placement;
mod store;
mod wire;

pub use config::ClusterConfig;
pub use store::{ClusterError, ClusterStats, ClusterStore};
