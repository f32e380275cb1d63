//! `ClusterConfig`: who this node is, whom it joins, and its limits.

use std::{fmt, net::SocketAddr, time::Duration};

use session_core::ConfigError;

/// The configuration of one node of a [`ClusterStore`](crate::ClusterStore).
///
/// Every node of a cluster must agree on the secret, the replication factor,
/// the prefix scheme and the cluster size; each has its own id and address.
///
/// ```
/// use session_cluster::ClusterConfig;
///
/// let config = ClusterConfig::new("node-a", "127.0.0.1:7401".parse().unwrap(), [7u8; 32])
///     .with_seeds(["127.0.0.1:7402".parse().unwrap(), "127.0.0.1:7403".parse().unwrap()])
///     .with_replication_factor(2);
/// assert_eq!(config.quorum(), 2);
/// config.validate().unwrap();
/// ```
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "crate::block::ClusterBlock")
)]
#[must_use]
pub struct ClusterConfig {
    pub(crate) node_id: String,
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) seeds: Vec<SocketAddr>,
    /// Seeds given by host name (from config), resolved when the node
    /// starts.
    pub(crate) seed_hosts: Vec<(String, u16)>,
    pub(crate) secret: Vec<u8>,
    /// The file the secret is read from when the node starts (from config),
    /// instead of `secret`.
    pub(crate) secret_file: Option<std::path::PathBuf>,
    pub(crate) replication_factor: usize,
    pub(crate) cluster_size: Option<usize>,
    pub(crate) operation_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_in_flight_per_peer: usize,
    pub(crate) max_capacity: u64,
    pub(crate) key_prefix: String,
    pub(crate) settle_time: Duration,
    pub(crate) anti_entropy_interval: Duration,
    pub(crate) probe_period: Duration,
    pub(crate) suspect_timeout: Duration,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("seed_hosts", &self.seed_hosts)
            .field("secret", &"<redacted>")
            .field("secret_file", &self.secret_file)
            .field("replication_factor", &self.replication_factor)
            .field("cluster_size", &self.expected_cluster_size())
            .field("operation_timeout", &self.operation_timeout)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// The shortest secret accepted, in bytes.
    pub const MIN_SECRET_LEN: usize = 32;
    /// The default number of copies of each session.
    pub const DEFAULT_REPLICATION_FACTOR: usize = 2;
    /// The default bound on one store call, forwarding and replication
    /// included. It stays under the manager's default operation timeout (2 s)
    /// so a slow peer is reported as this store's error, not the manager's.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_millis(1500);
    /// The most sessions (and tombstones) one node holds by default.
    pub const DEFAULT_MAX_CAPACITY: u64 = 1_000_000;
    /// The default key prefix.
    pub const DEFAULT_KEY_PREFIX: &'static str = session_core::store::DEFAULT_KEY_PREFIX;
    /// The default bound on opening a connection to a peer: peers sit on
    /// one network, so a connect that takes longer means the peer is gone.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
    /// The default most calls in flight to one peer.
    pub const DEFAULT_MAX_IN_FLIGHT_PER_PEER: usize = 256;
    /// The default time after a membership change during which owners also
    /// ask the other nodes for a session.
    pub const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(10);
    /// The default interval between anti-entropy rounds.
    pub const DEFAULT_ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(60);
    /// The default interval between membership probes.
    pub const DEFAULT_PROBE_PERIOD: Duration = Duration::from_millis(250);
    /// The default time a silent peer stays suspect before it is dead.
    pub const DEFAULT_SUSPECT_TIMEOUT: Duration = Duration::from_millis(750);
    /// The longest wait for the resolver on one seed's host name, so a DNS
    /// server that does not answer fails start-up instead of hanging it.
    pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The longest any duration setting may be: far past any sane value, and
    /// short enough that deadline arithmetic cannot overflow.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

    /// A node called `node_id`, serving the peer link (TCP) and membership
    /// (UDP) on `listen`, sharing `secret` (at least 32 bytes) with its peers.
    pub fn new(node_id: impl Into<String>, listen: SocketAddr, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            node_id: node_id.into(),
            listen,
            advertise: None,
            seeds: Vec::new(),
            seed_hosts: Vec::new(),
            secret: secret.into(),
            secret_file: None,
            replication_factor: Self::DEFAULT_REPLICATION_FACTOR,
            cluster_size: None,
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            max_in_flight_per_peer: Self::DEFAULT_MAX_IN_FLIGHT_PER_PEER,
            max_capacity: Self::DEFAULT_MAX_CAPACITY,
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            settle_time: Self::DEFAULT_SETTLE_TIME,
            anti_entropy_interval: Self::DEFAULT_ANTI_ENTROPY_INTERVAL,
            probe_period: Self::DEFAULT_PROBE_PERIOD,
            suspect_timeout: Self::DEFAULT_SUSPECT_TIMEOUT,
        }
    }

    /// The address peers reach this node at, when it differs from `listen`
    /// (listening on `0.0.0.0`, or behind NAT). Default: `listen`.
    pub fn with_advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Peers to join through. Listing every other node is simplest; one live
    /// one is enough. This node's own address is ignored if listed, so every
    /// node can share one list.
    pub fn with_seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// How many nodes hold each session (`R`, default 2). Losing up to `R-1`
    /// nodes at once loses no session.
    pub fn with_replication_factor(mut self, copies: usize) -> Self {
        self.replication_factor = copies;
        self
    }

    /// How many nodes the cluster is meant to have (`N`). A node serves
    /// requests only while it sees a majority of them (itself included), so
    /// the minority side of a partition refuses instead of diverging.
    /// Default: the distinct seeds other than this node, plus one.
    pub fn with_cluster_size(mut self, nodes: usize) -> Self {
        self.cluster_size = Some(nodes);
        self
    }

    /// The bound on one store call, including the hop to the session's owner
    /// and the owner's copy to the backups (default 1.5 s).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The bound on opening a TCP connection to a peer (default 300 ms).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The most requests this node has in flight to one peer (default 256).
    /// A call that finds no free slot waits, within its timeout: this is the
    /// back-pressure a slow peer puts on its callers.
    pub fn with_max_in_flight_per_peer(mut self, requests: usize) -> Self {
        self.max_in_flight_per_peer = requests;
        self
    }

    /// The most sessions and tombstones this node holds (default 1 000 000).
    /// Past it copies are evicted, those not read since they were written
    /// first, and an evicted copy must be re-replicated from another node,
    /// so size it for `R/N` of your sessions with room to spare.
    /// Owner indexes ("log out everywhere") are not counted and never
    /// evicted: an evicted index would let `delete_by_owner` miss sessions.
    /// They end with their last session.
    pub fn with_max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = entries;
        self
    }

    /// The prefix of every key (default `"session:"`).
    pub fn with_key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// How long after a membership change the owner of a session also asks
    /// the other nodes for it before answering (default 10 s): long enough
    /// for the nodes to hand each other the sessions they now own.
    pub fn with_settle_time(mut self, time: Duration) -> Self {
        self.settle_time = time;
        self
    }

    /// How often each node compares its sessions with their other holders
    /// and repairs missing copies, besides after every membership change
    /// (default 60 s).
    pub fn with_anti_entropy_interval(mut self, interval: Duration) -> Self {
        self.anti_entropy_interval = interval;
        self
    }

    /// How often the membership protocol (SWIM) probes a peer (default
    /// 250 ms). A dead node is noticed after about one or two periods plus the
    /// [suspect timeout](Self::with_suspect_timeout).
    pub fn with_probe_period(mut self, period: Duration) -> Self {
        self.probe_period = period;
        self
    }

    /// How long a peer that missed its probes stays suspect before it is
    /// declared dead (default 750 ms). Shorter notices deaths sooner; longer
    /// survives pauses (GC, a busy machine) without a false alarm.
    pub fn with_suspect_timeout(mut self, timeout: Duration) -> Self {
        self.suspect_timeout = timeout;
        self
    }

    /// The address peers reach this node at.
    #[must_use]
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertise.unwrap_or(self.listen)
    }

    /// Resolves the seeds given by host name, each to one address, and adds
    /// them to the seeds: a name with IPv4 and IPv6 addresses is one node
    /// (the first address of `listen`'s family), and counting it twice
    /// would raise the quorum the cluster size implies. The cluster size
    /// was fixed before, counting each name once.
    pub(crate) async fn resolve_seed_hosts(&mut self) -> Result<(), ConfigError> {
        if self.cluster_size.is_none() {
            self.cluster_size = Some(self.expected_cluster_size());
        }
        let prefer_v6 = self.listen.is_ipv6();
        for (host, port) in std::mem::take(&mut self.seed_hosts) {
            let error = |reason: String| ConfigError::new("seeds", reason);
            let found: Vec<SocketAddr> = tokio::time::timeout(
                Self::RESOLVE_TIMEOUT,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            .map_err(|_| {
                error(format!(
                    "`{host}:{port}` did not resolve within {} s",
                    Self::RESOLVE_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|err| error(format!("`{host}:{port}` does not resolve: {err}")))?
            .collect();
            let addr = found
                .iter()
                .find(|addr| addr.is_ipv6() == prefer_v6)
                .or_else(|| found.first())
                .copied()
                .ok_or_else(|| error(format!("`{host}:{port}` resolves to no address")))?;
            self.seeds.push(addr);
        }
        Ok(())
    }

    /// The secret given inline, or `None` when the config names a file to
    /// read it from when the node starts: for configs that refuse a
    /// cluster secret equal to a cookie secret.
    #[must_use]
    pub fn inline_secret(&self) -> Option<&[u8]> {
        self.secret_file.is_none().then_some(self.secret.as_slice())
    }

    /// The file the secret is read from when the node starts, when the
    /// config named one (`cluster_secret_file`).
    #[must_use]
    pub fn secret_file(&self) -> Option<&std::path::Path> {
        self.secret_file.as_deref()
    }

    /// Reads the secret from [`secret_file`](Self::secret_file), if one is
    /// named, and checks it; a config is data until the node starts, so
    /// reading a config never reads a file.
    pub(crate) fn read_secret_file(&mut self) -> Result<(), ConfigError> {
        const KEY: &str = "cluster_secret_file";
        if let Some(file) = self.secret_file.take() {
            self.secret = session_core::config::read_secret_file(KEY, &file)?;
            self.validate().map_err(|err| match err.key() {
                "secret" => ConfigError::new(KEY, err.reason().to_owned()),
                _ => err,
            })?;
        }
        Ok(())
    }

    /// The configured cluster size, or the one derived from the seeds.
    #[must_use]
    pub fn expected_cluster_size(&self) -> usize {
        self.cluster_size.unwrap_or_else(|| {
            let me = self.advertised_addr();
            let mut others: Vec<_> = self
                .seeds
                .iter()
                .filter(|s| **s != me && **s != self.listen)
                .collect();
            others.sort();
            others.dedup();
            // Each host name counts as one node, whatever it resolves to.
            let mut hosts: Vec<_> = self.seed_hosts.iter().collect();
            hosts.sort();
            hosts.dedup();
            others.len() + hosts.len() + 1
        })
    }

    /// The members a node must see, itself included, to serve requests: a
    /// majority of the cluster size.
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.expected_cluster_size() / 2 + 1
    }

    /// Checks every setting; the error names the setting (the facade's
    /// `[store]` block spells a few differently and renames them).
    ///
    /// # Errors
    /// The first setting that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty() || self.node_id.len() > 128 {
            return Err(ConfigError::new(
                "node_id",
                "give this node a unique, non-empty name of at most 128 bytes",
            ));
        }
        // A secret still in its file is checked when the node reads it.
        if self.secret_file.is_none() && self.secret.len() < Self::MIN_SECRET_LEN {
            return Err(ConfigError::new(
                "secret",
                format!(
                    "must be at least {} bytes, got {}; every node of the cluster shares it",
                    Self::MIN_SECRET_LEN,
                    self.secret.len()
                ),
            ));
        }
        if self.advertise.is_none() && self.listen.ip().is_unspecified() {
            return Err(ConfigError::new(
                "advertise",
                "set the address peers reach this node at: `listen` is a wildcard address",
            ));
        }
        if self.seeds.is_empty() && self.seed_hosts.is_empty() && self.cluster_size.is_none() {
            // Without either, a node that was meant to join would form a
            // cluster of one and serve on its own: a split brain by typo.
            return Err(ConfigError::new(
                "seeds",
                "list the other nodes' addresses, or set cluster_size = 1 for a cluster of one",
            ));
        }
        if self.replication_factor == 0 || self.replication_factor > 16 {
            return Err(ConfigError::new(
                "replication_factor",
                "must be between 1 and 16",
            ));
        }
        if self.cluster_size == Some(0) || self.cluster_size.is_some_and(|n| n > 1024) {
            return Err(ConfigError::new(
                "cluster_size",
                "must be between 1 and 1024",
            ));
        }
        if self.max_in_flight_per_peer == 0 || self.max_in_flight_per_peer > 65_535 {
            return Err(ConfigError::new(
                "max_in_flight_per_peer",
                "must be between 1 and 65535",
            ));
        }
        if self.max_capacity == 0 {
            return Err(ConfigError::new("max_capacity", "must be at least 1"));
        }
        for (key, value) in [
            ("operation_timeout", self.operation_timeout),
            ("connect_timeout", self.connect_timeout),
            ("settle_time", self.settle_time),
            ("anti_entropy_interval", self.anti_entropy_interval),
            ("probe_period", self.probe_period),
            ("suspect_timeout", self.suspect_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be longer than zero"));
            }
            if value > Self::MAX_DURATION {
                return Err(ConfigError::new(key, "must be at most 24h"));
            }
        }
        if self.probe_period < Duration::from_millis(10) {
            return Err(ConfigError::new("probe_period", "must be at least 10ms"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        ClusterConfig::new("a", "127.0.0.1:7000".parse().unwrap(), [1u8; 32])
            .with_seeds(["127.0.0.1:7001".parse().unwrap()])
    }

    #[test]
    fn cluster_size_defaults_to_the_distinct_other_seeds_plus_one() {
        let seeds = [
            "127.0.0.1:7000",
            "127.0.0.1:7001",
            "127.0.0.1:7002",
            "127.0.0.1:7001",
        ];
        let config = config().with_seeds(seeds.iter().map(|s| s.parse().unwrap()));
        assert_eq!(config.expected_cluster_size(), 3);
        assert_eq!(config.quorum(), 2);
        assert_eq!(config.with_cluster_size(5).quorum(), 3);
    }

    #[test]
    fn errors_name_the_key() {
        let short = ClusterConfig::new("a", "127.0.0.1:7000".parse().unwrap(), [1u8; 8]);
        assert_eq!(short.validate().unwrap_err().key(), "secret");
        assert_eq!(
            config()
                .with_replication_factor(0)
                .validate()
                .unwrap_err()
                .key(),
            "replication_factor"
        );
        assert_eq!(
            config()
                .with_operation_timeout(Duration::ZERO)
                .validate()
                .unwrap_err()
                .key(),
            "operation_timeout"
        );
        assert_eq!(
            config()
                .with_suspect_timeout(Duration::from_secs(90_000))
                .validate()
                .unwrap_err()
                .key(),
            "suspect_timeout"
        );
        assert_eq!(
            config().with_seeds([]).validate().unwrap_err().key(),
            "seeds"
        );
        config().with_cluster_size(1).validate().unwrap();
        let wildcard = ClusterConfig::new("a", "0.0.0.0:7000".parse().unwrap(), [1u8; 32])
            .with_cluster_size(1);
        assert_eq!(wildcard.clone().validate().unwrap_err().key(), "advertise");
        wildcard
            .with_advertise("10.0.0.1:7000".parse().unwrap())
            .validate()
            .unwrap();
        let nameless = ClusterConfig::new("", "127.0.0.1:7000".parse().unwrap(), [1u8; 32]);
        assert_eq!(nameless.validate().unwrap_err().key(), "node_id");
    }

    #[test]
    fn debug_redacts_the_secret() {
        let text = format!(
            "{:?}",
            ClusterConfig::new(
                "a",
                "127.0.0.1:7000".parse().unwrap(),
                *b"0123456789abcdef0123456789abcdef"
            )
        );
        assert!(!text.contains("0123456789abcdef"), "{text}");
    }
}
