//! # session-cluster
//!
//! Sessions kept in the memory of the app servers themselves, each one on
//! `R` of them, so an app behind a plain round-robin load balancer needs no
//! Redis, no Memcached and no sticky sessions. [`ClusterStore`] is a
//! [`SessionStore`](session_core::store::SessionStore) like any other: the Axum and
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
//!     .with_seeds(["10.0.0.2:7400".parse()?, "10.0.0.3:7400".parse()?]);
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
//! land on a non-owner and one more from the owner to its backups for
//! writes; the benchmarks measure both.
//!
//! **Ids a node owns.** A node gives the sessions it creates ids it owns:
//! [`generate_id`](session_core::store::SessionStore::generate_id) draws
//! random ids until one hashes to this node (about `N` draws; an id
//! keeps all but `log2(N)` bits of its 128 bits of secret). Placement is
//! still by hash, so nothing but cost depends on it, and it costs nothing
//! when a membership change moves the owner. A balancer that keeps a
//! user's connection on one node (any TCP balancer, or HTTP keeping a
//! client's kept-alive connection on one node) then sends most of that
//! user's requests to the session's owner: their reads make no peer
//! request, and their writes one, the copy to the backup. A balancer that
//! picks a node per request lands a third of them (with three nodes) on
//! the owner, as with random ids. Stickiness is needed for nothing: the
//! balancer never has to find the owner, and a node that dies takes no
//! session with it. Sessions spread over the owners as logins spread over
//! the nodes. WildFly's distributed web sessions do the same through
//! Infinispan's key affinity service.
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
//! it now holds; for [`with_settle_time`](ClusterConfig::with_settle_time) after any
//! membership change an owner also asks the other nodes for the newest copy
//! before it answers, so a new owner never serves a session it has not been
//! handed yet.
//!
//! **Partitions.** A node serves requests only while it sees a majority of
//! the [cluster size](ClusterConfig::with_cluster_size) (a quorum), itself
//! included, and holds a lease (below). On the minority side of a
//! partition every operation, reads included, fails with `Unavailable` once
//! the node's lease has ended, which is before the majority can take its
//! sessions over: the minority acknowledges no write the majority cannot
//! see and serves no copy the majority may have changed, and nothing
//! written on the majority is overwritten when the partition heals. The majority side keeps serving
//! every session that still has a copy on its side, which is every session
//! when the minority has at most `R-1` nodes: a partition costs what losing
//! the minority's nodes would. When it heals, the returning nodes rejoin
//! (SWIM announces to nodes it saw die), are handed the newer copies, and
//! any version they hold that the majority superseded is refused by version.
//! With no majority anywhere (say, a 4-node cluster split 2/2) no side
//! serves until it heals.
//!
//! Beyond `R-1`: when a partition (or a crash) takes *every* holder of a
//! session or of an owner's index out of the majority's reach, the majority
//! sees no copy and answers as for a session that does not exist: a load
//! finds nothing (the user gets a fresh session), and `delete_by_owner`
//! finds no index and ends nothing. The copies on the far side are not
//! lost, and come back when it heals; the session the user left is then
//! live again under the old cookie, though that cookie was replaced, and a
//! session `delete_by_owner` missed is live again. Only a plain `delete`
//! that finds no copy guards against this (see *Deletes stick*). The
//! guarantees hold for up to `R-1` nodes out of reach at once; choose `R`
//! for the failures to survive.
//!
//! **No stale read, even before a node notices it is cut off: read
//! leases.** SWIM's detection is not symmetric: the majority can declare a
//! cut-off node dead, and take its sessions over, a probe period or two
//! before that node has declared enough of the others dead to notice it
//! lost its quorum. To close that window a node serves nothing, reads of
//! its own copies included, unless it holds a *lease*:
//! - every third of a lease it asks every other member to confirm it; a
//!   member confirms only while it sees a quorum itself, counts the asker
//!   as a member, does not suspect it, and the asker sees every member the
//!   confirming member sees and does not suspect (below);
//! - the lease lasts until the send time (on the asker's own monotonic
//!   clock) of the newest request that `quorum - 1` members confirmed, plus
//!   half the shortest [suspect timeout](ClusterConfig::with_suspect_timeout)
//!   of any node it has heard of (each request and confirmation carries its
//!   sender's);
//! - the majority declares a node dead no sooner than one suspect timeout
//!   after it begins to suspect it, which is after the cut, since the
//!   members that confirmed did not suspect it. So a cut-off node's lease
//!   ends half a suspect timeout before anyone can take its sessions over.
//!   The other half is the margin for a suspicion that began just before
//!   the last confirmation, for scheduling delays and for clock *rate*
//!   differences; clock *offsets* do not matter, as each node compares only
//!   its own instants.
//!
//! **A lease also means "I place keys as the others do".** A node that
//! comes back from a partition learns the members one by one, and with
//! three of five it holds a quorum. In that partial view it may own keys
//! whose every copy the majority moved to the members it does not see
//! yet, so asking "every other member" for a newer copy asks none that
//! holds one. Each lease request therefore carries the asker's members,
//! and a member that sees (and does not suspect) someone the asker does
//! not see refuses to confirm it: the node serves nothing until its view
//! has caught up. A request that waited for the lease then serves by the
//! view current once the lease holds, not by the one it began with. The
//! lab's fault order (a node crashed and restarted empty, then another cut
//! off and healed) broke both before (`tests/simulation.rs`,
//! `the_labs_fault_order_keeps_every_promise`).
//!
//! We chose leases over checking each read with a backup: a check costs a
//! peer round trip on every read, and a lease costs one small request to
//! each member every third of a lease (with the default 750 ms suspect
//! timeout, about 8 a second to each peer), whatever the load; counted in
//! [`ClusterStats::lease_requests`]. A request that finds the lease lapsed
//! (a confirmation late under load) waits up to one lease length for a
//! renewal before it is refused with `Unavailable`.
//!
//! **Right after a membership change** (for
//! [`with_settle_time`](ClusterConfig::with_settle_time)) an owner asks
//! every other member for its copy before it answers, and if one of them
//! does not answer it refuses with `Unavailable` rather than serve its own
//! copy, which that member may have superseded. The same holds for the
//! settle time after a node's lease comes back from a lapse: a node that
//! detects failures more slowly than the majority can be cut off and
//! healed without its own view ever changing, while the majority moved
//! its sessions on; its lease returns with the heal, before the hand-over
//! brings it the majority's commits (`tests/read_lease.rs`).
//!
//! Time alone does not end it: an owner answers from its own copy again
//! only once every other member has also *handed over* to it since its
//! last change: run a hand-over pass to it, by the same members, begun
//! after the change. Each node's lease requests announce its changes (an
//! *intake*: its view's epoch and its lease's returns), a member that
//! hears a new one runs a pass to that node, and each pass ends with word
//! of the intake it was for. A node whose peer links to some members are
//! cut while membership still sees them (a firewalled port, say) would
//! otherwise count as settled after the settle time without having been
//! handed a thing. [`ClusterStats::settled`] tells which state a node is
//! in.
//!
//! **Deletes stick.** A deleted session leaves a tombstone on its holders for
//! as long as the record could have lived, so a node that missed the delete
//! cannot hand the session back. A delete that finds no copy at all (its
//! holders are all out of reach, say on the minority side of a partition)
//! leaves a tombstone that lasts as long as the longest lifetime any node has
//! given a session (nodes tell each other with their lease requests), so the
//! out-of-reach copy cannot come back when its nodes return. While members
//! are missing and no lifetime has been heard of yet, such a delete is
//! refused with `Unavailable` instead.
//!
//! ## Ending a user's sessions
//!
//! [`delete_by_owner`](session_core::store::SessionStore::delete_by_owner) ("log
//! this user out everywhere") needs every session of one
//! [`Owner`](session_core::store::Owner). Each node holds only its share of the
//! sessions, so none can scan for them; instead each owner has an **index**
//! of its session ids, and the index is placed and replicated like a
//! session:
//! - **Placement.** The index of owner `name` under prefix `p` is an entry at
//!   the key `p` + `owner:` + hex SHA-256 of `name`, in the same store as the
//!   sessions. Its holders are the `R` members with the highest rendezvous
//!   hash of that key: an owner node and `R-1` backups, as for any session.
//!   The key's part after the prefix is 70 characters long and a session's
//!   is 22, so no index key can be any prefix's session key or another
//!   prefix's index key, and [`prefixed`](ClusterStore::prefixed)
//!   views never see each other's owners.
//! - **Replication.** Every change to an index goes to its owner node, which
//!   applies it under the index's lock and copies it to the backups before
//!   it answers, exactly like a commit; a backup is sent the change alone
//!   (the ids added and removed), or the whole index when its copy is not
//!   the one the change was computed from. Hand-over on membership changes,
//!   anti-entropy, read fallback to a backup and tombstones cover indexes as
//!   they cover sessions.
//! - **Contents.** Each entry is a session id with the owner's
//!   [`until`](session_core::store::Owner::until), the latest the session can live.
//!   Every change drops the entries whose `until` has passed, and the index
//!   itself lives until its largest `until`, so an owner whose sessions all
//!   ended leaves nothing behind. An index that `delete_by_owner` emptied
//!   becomes a tombstone.
//!
//! **Ordering.** A `create` of a record with an owner, and a `commit` whose
//! changes give the session a new owner, first add the session to that
//! owner's index (acknowledged by all `R` holders) and only then write the
//! session, so an owned session is never live unindexed. An entry whose
//! session was never written costs nothing but its place until its
//! `until`. A session that moves to another owner is added to the new
//! owner's index; its entry in the old one stays, and `delete_by_owner` of
//! the old owner leaves the session alone. Commits that do not change the
//! owner, touches and loads never touch an index. Creating an owned session
//! therefore needs the index's holders as well as the session's: when one
//! of them is down and not yet declared dead, the create fails with
//! `Unavailable`.
//!
//! **`delete_by_owner(name)`** reads the index (from its owner node, or a
//! backup when that one does not answer, as loads do). For each entry it
//! sends a *conditional delete* to the session's owner node, which, under
//! the session's lock, replaces the session with a tombstone only if its
//! owner is still `name`: a commit racing it is either applied before (and
//! deleted with the session) or finds the session
//! [`Missing`](session_core::store::Committed::Missing), and the tombstone keeps
//! it from coming back, as with `delete`. An entry whose session is absent
//! also gets a tombstone, so that a create that indexed it but has not
//! written the session yet finds the id taken rather than bring up a
//! session nobody indexes any more. These deletes run 32 at a time, all
//! within one [`with_operation_timeout`](ClusterConfig::with_operation_timeout). Last, the
//! ended and absent ids leave the index (not those that belong to someone
//! else now). It returns how many sessions it ended; an error means some
//! may be left, and calling again finishes the job.
//!
//! **Cost.** With `S` indexed sessions, one `delete_by_owner` makes about
//! `1 + S + 1` routed requests (the index read, one conditional delete per
//! session, the index update), each of which is a peer request unless this
//! node owns its key, and each write is copied to `R-1` backups: at most
//! about `R·(S + 1) + 1` peer requests in all (`S + 1` round trips of
//! latency at most, far fewer as the deletes run side by side). Adding a
//! session to an index costs one routed request and `R-1` copies (and `R-1`
//! fetches for an owner's first session, as the index owner node checks
//! that no backup holds an index it lacks), on `create` with an owner and on
//! a commit that sets one; nothing else pays for owners. During [`with_settle_time`](ClusterConfig::with_settle_time) after a
//! membership change, owners ask every other node for the newest copy
//! first, as for every operation.
//!
//! **Stats.** [`ClusterStats::owner_indexes_held`] counts the indexes a node
//! holds (all prefixes), and [`ClusterStats::sessions_held`] counts
//! sessions only; the requests above are counted in
//! [`ClusterStats::requests_sent`] and the bytes with the rest.
//! With the `fault-injection` feature (tests), `holds_owner_index` and
//! `owner_index_placement` show where an owner's index is.
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
//! | cut-off node before it notices | serves its copies | serves its copies | serves only while its lease lasts, which ends before the majority can take over |
//! | peer authentication | optional (encryption interceptor) | optional | every message signed (HMAC-SHA256), replays refused |
//!
//! ## Peer link
//! Operations travel as signed [postcard](https://docs.rs/postcard) messages
//! in length-prefixed frames on TCP (one connection per peer, many calls in
//! flight on it, matched to their replies by request id), on the same port
//! number as membership's UDP. Not HTTP/2, which the link spoke up to
//! version 3: a hyper HTTP/2 round trip cost about 25 µs of CPU against 7
//! µs for frames, half of a cluster write, for generality the link does not
//! use. A connection opens with the protocol's magic and version (`SCL5`),
//! so another protocol is closed at once.
//! - Every request and every reply carries HMAC-SHA256 tags under a key
//!   derived from the shared secret. A request's *head* (the sender, a
//!   timestamp, the caller's remaining time, the body's length, a random
//!   128-bit nonce and the request id) has its own tag, which the receiver
//!   checks before it reads any of the body: a request whose head is not
//!   signed, or is more than a minute off the receiver's clock, is refused,
//!   its connection closed, and costs the receiver a head of at most a few
//!   hundred bytes, never a body. The body's tag is chained to the head's
//!   and checked once the body is in.
//! - A signed request is served once: the receiver remembers the nonces it
//!   served for as long as their requests are fresh and refuses a repeat,
//!   and each reply's tag covers its request's nonce, so a recorded request
//!   cannot be replayed, nor a recorded reply passed off as the answer to
//!   another request.
//! - Membership datagrams carry a tag under another derived key. The link
//!   is authenticated, not encrypted: run it on a private network.
//! - What strangers can hold is bounded: at most 1024 connections at once,
//!   each closed unless it sends a signed request within five seconds (a
//!   slowloris that never finishes its first frame included); bodies are
//!   read only for signed heads, each at most 32 MiB and within 256 MiB
//!   across all connections (past it, "busy", a transient failure); heads
//!   are at most 304 bytes.
//! - Every call runs under the store's
//!   [`with_operation_timeout`](ClusterConfig::with_operation_timeout), forwarding and
//!   replication included; the owner is told how much time the caller has
//!   left and works within it.
//! - At most [`with_max_in_flight_per_peer`](ClusterConfig::with_max_in_flight_per_peer)
//!   calls are in flight to one peer; further calls wait for a slot within
//!   their deadline. A node serves at most 1024 peer requests at once and
//!   answers "busy" past that instead of queueing.
//! - A reply cut off on its way (the peer crashed mid-reply, the connection
//!   reset) fails the call as `Unavailable`, as a refused connection does,
//!   so a read falls back to a backup; only a whole reply that fails its
//!   tag or does not decode is `Corrupt`.
//!
//! ## Runtimes
//! A node's tasks (its server, membership, leases and its connections to
//! peers) run on the tokio runtime [`ClusterStore::start`] was called on,
//! so start it on one that lives as long as the app: the runtime of
//! `main`, not an actix-web worker's or a test app's. Calls may come from
//! any runtime: an actix-web app, which runs a current-thread runtime per
//! worker, shares one node among its workers, and a worker's runtime that
//! ends takes nothing of the node with it. A connection whose tasks end
//! however they end fails the calls waiting on it at once (`Unavailable`),
//! and the next call opens a new one.
//!
//! ## Performance
//! Measured with `session-bench` (BENCHMARKS.md) on one 2-core machine, a
//! 3-node cluster with `R = 2` against Redis in the same run, the three
//! nodes and their apps on one core. Each user's keep-alive connection
//! stays on one node (the bench's default, as a TCP balancer or an HTTP
//! balancer keeping a client's connection on one node spreads them), and
//! a node gives the sessions it creates ids it owns (see [Ids a node
//! owns](#guarantees)):
//! - **reads: 2.04 × Redis** with Redis on the app servers' core, **1.49 ×**
//!   with Redis on a core of its own; no peer request;
//! - **writes: 1.43 × and 1.08 ×**; one peer request a write, the owner's
//!   copy to its backup, where a Redis write makes two round trips.
//!
//! With a balancer that sends each request to the next node
//! (`--spread-requests`), two requests in three land off the owner, as
//! with random ids: reads make 0.67 peer requests (1.28 × and 0.82 ×
//! Redis) and writes 2.33 (0.79 × and 0.56 ×). Each peer round trip is
//! paid at both ends by the app servers, where a Redis round trip's far
//! end is redis-server. Natively the store path of a write
//! (`bench/examples/cluster_ops`) spends about 60 % of its time in user
//! space and 40 % in the kernel; under callgrind it costs 76,837
//! instructions besides SHA-256 (allocation, the cluster's own code,
//! tokio's tasks, timers and channels, copies), and 144,059 in SHA-256
//! as valgrind counts it without SHA-NI.
#![forbid(unsafe_code)]
// On docs.rs (nightly, `--cfg docsrs`) each feature-gated item shows the
// feature it needs; `doc_cfg` does this by itself since `doc_auto_cfg` was
// merged into it (Rust 1.92).
#![cfg_attr(docsrs, feature(doc_cfg))]

// Where things live, for a first read:
// - store: `ClusterStore` and its `SessionStore` impl, the public face;
// - node: a running node's state, how it starts, the quorum check;
// - coordinator: routing an operation to its key's owner node, and the
//   owner's replication to the other holders;
// - operations: the owner's side of each session operation;
// - owner_index: the per-owner indexes behind `delete_by_owner`;
// - holder: a backup's side, on its own copies;
// - rebalance: hand-over and anti-entropy after membership changes;
// - protocol: the typed requests and replies; wire: records on the wire;
// - transport (the trait), link (framed TCP, its implementation: frame,
//   client, server), sign (HMAC),
//   replay (the nonces a node has served), ids (their maps' hasher);
// - entry and local: what a node holds, and the cache that holds it;
// - membership (SWIM) and placement (rendezvous hashing);
// - clock: the node's wall clock, which a simulation can replace;
// - simulation (feature `simulation`, tests only): a seeded in-process
//   network, and nodes started on it;
// - config and block: the builder and the config-file block.
#[cfg(feature = "serde")]
mod block;
mod clock;
#[cfg(feature = "codec")]
pub mod codec;
mod config;
mod coordinator;
mod entry;
mod holder;
mod ids;
mod lease;
mod link;
mod local;
mod membership;
mod node;
mod operations;
mod owner_index;
mod placement;
mod protocol;
mod rebalance;
mod replay;
mod settle;
mod sign;
#[cfg(feature = "simulation")]
pub mod simulation;
mod store;
mod transport;
mod wire;

pub use config::ClusterConfig;
pub use node::ClusterError;
pub use store::{ClusterStats, ClusterStore};
