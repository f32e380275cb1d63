//! A Redis Cluster of three masters: the smallest cluster `redis-cli` will
//! create, and enough for keys to land on different nodes.

use std::time::Duration;

use super::{redis_cli, tls_cli_options, RedisServer, Tls};
use crate::testkit::{poll_until, RedisTls, TlsFiles};

/// How many nodes, all masters.
const MASTERS: usize = 3;

/// Cluster mode, with the node table in each node's own folder (so it
/// survives a restart), and nodes considered failed after 2 s instead of 15.
const CLUSTER_ARGS: [&str; 6] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
];

/// How long `redis-cli --cluster create` may take; it waits for the nodes to
/// agree on the configuration.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the nodes may take to report `cluster_state:ok` afterwards.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Three masters sharing all 16384 slots, no replicas, all on loopback.
///
/// ```
/// use session_conformance::testkit::RedisCluster;
///
/// let mut cluster = RedisCluster::start();
/// assert_eq!(cluster.seed_urls().len(), 3);
///
/// // `-c` makes redis-cli follow the MOVED redirects to the key's node.
/// let seed = &cluster.nodes()[0];
/// seed.cli(&["-c", "set", "greeting", "hello"]);
/// assert_eq!(seed.cli(&["-c", "get", "greeting"]), "hello");
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, joins them into a cluster with `redis-cli
    /// --cluster create`, and returns once every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    /// When `redis-server` or `redis-cli` is not installed, the cluster
    /// cannot be created, or it is not ok within 20 s; the message quotes
    /// the end of every node's log.
    #[must_use]
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// [`start`](Self::start), with every node listening for TLS only,
    /// sharing one CA, and the cluster bus on TLS too (`tls-cluster`): the
    /// [`seed_urls`](Self::seed_urls) are `rediss://`, and the nodes name
    /// each other's TLS ports in `CLUSTER SLOTS`.
    ///
    /// # Panics
    /// As [`start`](Self::start) does, and for
    /// [`RedisTls::ExpiredCertificate`]: the nodes would refuse each other.
    #[must_use]
    pub fn start_tls(mode: RedisTls) -> Self {
        assert!(
            mode != RedisTls::ExpiredCertificate,
            "a cluster cannot run on an expired certificate"
        );
        Self::start_in(Some(&Tls::generate(mode)))
    }

    fn start_in(tls: Option<&Tls>) -> Self {
        let mut args = CLUSTER_ARGS.to_vec();
        if tls.is_some() {
            args.extend(["--tls-cluster", "yes"]);
        }
        let cluster = Self {
            nodes: (0..MASTERS)
                .map(|_| RedisServer::start_in(tls, &args))
                .collect(),
        };
        cluster.create();
        let all_ok = poll_until(SETTLE_TIMEOUT, || {
            cluster.nodes.iter().all(is_ok).then_some(())
        });
        if all_ok.is_none() {
            cluster.fail(&format!(
                "not every node reported cluster_state:ok within {SETTLE_TIMEOUT:?}"
            ));
        }
        cluster
    }

    /// `redis://127.0.0.1:{port}` (`rediss://` in TLS mode) for each node;
    /// a cluster client needs any one of them to discover the rest.
    #[must_use]
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, to kill, restart or pause one. A restarted node keeps its
    /// `nodes.conf`, so it rejoins the cluster as the same node.
    pub fn nodes(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// Where the cluster's certificates are (every node has a copy of the
    /// same set); `None` for a plain-text cluster.
    #[must_use]
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.nodes[0].tls_files()
    }

    fn create(&self) {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        // Any node's copy of the certificates does for redis-cli.
        let options = match self.tls_files() {
            Some(files) => tls_cli_options(self.nodes[0].port(), &files),
            None => Vec::new(),
        };
        let mut args: Vec<&str> = options.iter().map(String::as_str).collect();
        args.extend(["--cluster", "create"]);
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        if let Err(problem) = redis_cli(&args, CREATE_TIMEOUT) {
            self.fail(&format!("redis-cli {}: {problem}", args.join(" ")));
        }
    }

    /// Panics with `problem` and the end of every node's log.
    #[track_caller]
    fn fail(&self, problem: &str) -> ! {
        let logs: Vec<String> = self.nodes.iter().map(RedisServer::log_report).collect();
        panic!("Redis Cluster: {problem}\n{}", logs.join("\n"))
    }
}

fn is_ok(node: &RedisServer) -> bool {
    node.try_cli(&["cluster", "info"])
        .is_ok_and(|info| info.lines().any(|line| line.trim() == "cluster_state:ok"))
}
