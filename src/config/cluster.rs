//! The cluster kind of a store block: from `[store] kind = "cluster"` to a
//! [`ClusterConfig`], with seeds given by host name resolved.

use std::{net::SocketAddr, path::Path, time::Duration};

use session_cluster::ClusterConfig;

use super::{env_var, read_secret_file, Secret, SessionConfig, StoreConfig};
use crate::ConfigError;

/// The longest wait for the resolver on one seed's host name, so a DNS
/// server that does not answer fails start-up instead of hanging it.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A seed as written: an address, or a host name and port to resolve.
enum Seed<'a> {
    Addr(SocketAddr),
    Host(&'a str, u16),
}

impl StoreConfig {
    /// Checks a cluster block without the network: seeds given by host name
    /// are checked for shape here and resolved when the store is built.
    pub(crate) fn validate_cluster(&self, path: &str) -> Result<(), ConfigError> {
        let literal = self
            .parse_seeds(path)?
            .into_iter()
            .map(|seed| match seed {
                Seed::Addr(addr) => addr,
                // Stands in for the unresolved name: validation only needs to
                // know a seed is there (a node without any is refused).
                Seed::Host(_, port) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
            })
            .collect();
        self.cluster_config_with(path, literal).map(drop)
    }

    /// The node settings this block describes, with every seed resolved to
    /// one address.
    pub(crate) async fn cluster_config(&self, path: &str) -> Result<ClusterConfig, ConfigError> {
        let prefer_v6 = self.listen.is_some_and(|listen| listen.is_ipv6());
        let mut seeds = Vec::new();
        for seed in self.parse_seeds(path)? {
            seeds.push(match seed {
                Seed::Addr(addr) => addr,
                Seed::Host(host, port) => resolve(path, host, port, prefer_v6).await?,
            });
        }
        self.cluster_config_with(path, seeds)
    }

    /// The cluster's own error, keyed as this block spells it: the backend
    /// names its settings as its builder does.
    pub(crate) fn nest_cluster(&self, path: &str, err: &ConfigError) -> ConfigError {
        let option = match err.key() {
            "secret" if self.cluster_secret_file.is_some() => "cluster_secret_file",
            "secret" => "cluster_secret",
            "request_timeout" => "operation_timeout",
            "prefix" => "key_prefix",
            other => other,
        };
        ConfigError::new(format!("{path}.{option}"), err.reason().to_owned())
    }

    /// The shared secret and the option it came from, or `None` when the
    /// block gives none.
    fn cluster_secret_bytes(
        &self,
        path: &str,
    ) -> Result<Option<(Vec<u8>, &'static str)>, ConfigError> {
        match (&self.cluster_secret, &self.cluster_secret_file) {
            (None, None) => Ok(None),
            (Some(secret), None) => Ok(Some((
                secret.expose().as_bytes().to_vec(),
                "cluster_secret",
            ))),
            (None, Some(file)) => Ok(Some((
                read_secret_file(&format!("{path}.cluster_secret_file"), file)?,
                "cluster_secret_file",
            ))),
            (Some(_), Some(_)) => Err(ConfigError::new(
                format!("{path}.cluster_secret"),
                format!("give exactly one of {path}.cluster_secret and {path}.cluster_secret_file"),
            )),
        }
    }

    fn cluster_config_with(
        &self,
        path: &str,
        seeds: Vec<SocketAddr>,
    ) -> Result<ClusterConfig, ConfigError> {
        let key = |option: &str| format!("{path}.{option}");
        let node_id = self.node_id.clone().ok_or_else(|| {
            ConfigError::new(
                key("node_id"),
                format!(
                    "is missing: give this node a name no other node of the cluster has, in \
                     {path}.node_id or the environment variable {}",
                    env_var(&key("node_id"))
                ),
            )
        })?;
        let listen = self.listen.ok_or_else(|| {
            ConfigError::new(
                key("listen"),
                format!(
                    "is missing: give the ip:port this node serves its peers on (TCP and UDP), \
                     in {path}.listen or the environment variable {}",
                    env_var(&key("listen"))
                ),
            )
        })?;
        if listen.ip().is_unspecified() && self.advertise.is_none() {
            return Err(ConfigError::new(
                key("advertise"),
                format!(
                    "is required when {path}.listen is a wildcard address ({listen}): give the \
                     ip:port the other nodes reach this one at"
                ),
            ));
        }
        let (secret, _) = self.cluster_secret_bytes(path)?.ok_or_else(|| {
            ConfigError::new(
                key("cluster_secret"),
                format!(
                    "is missing: set {path}.cluster_secret, {path}.cluster_secret_file or the \
                     environment variable {} to at least {} random bytes that every node \
                     shares, other than the cookie secret (`openssl rand -base64 48` makes one)",
                    env_var(&key("cluster_secret")),
                    ClusterConfig::MIN_SECRET_LEN
                ),
            )
        })?;
        let mut config = ClusterConfig::new(node_id, listen, secret).seeds(seeds);
        if let Some(addr) = self.advertise {
            config = config.advertise(addr);
        }
        if let Some(prefix) = &self.key_prefix {
            config = config.prefix(prefix.clone());
        }
        if let Some(timeout) = self.operation_timeout {
            config = config.request_timeout(timeout);
        }
        if let Some(timeout) = self.connect_timeout {
            config = config.connect_timeout(timeout);
        }
        if let Some(entries) = self.max_capacity {
            config = config.max_capacity(entries);
        }
        if let Some(copies) = self.replication_factor {
            config = config.replication_factor(copies);
        }
        if let Some(nodes) = self.cluster_size {
            config = config.cluster_size(nodes);
        }
        if let Some(requests) = self.max_in_flight_per_peer {
            config = config.max_in_flight_per_peer(requests);
        }
        if let Some(time) = self.settle_time {
            config = config.settle_time(time);
        }
        if let Some(interval) = self.anti_entropy_interval {
            config = config.anti_entropy_interval(interval);
        }
        if let Some(period) = self.probe_period {
            config = config.probe_period(period);
        }
        if let Some(timeout) = self.suspect_timeout {
            config = config.suspect_timeout(timeout);
        }
        config
            .validate()
            .map_err(|err| self.nest_cluster(path, &err))?;
        Ok(config)
    }

    fn parse_seeds(&self, path: &str) -> Result<Vec<Seed<'_>>, ConfigError> {
        self.seeds
            .iter()
            .flatten()
            .map(|seed| {
                parse_seed(seed).ok_or_else(|| {
                    ConfigError::new(
                        format!("{path}.seeds"),
                        format!(
                            "`{seed}` is not host:port; write each seed as \"10.0.0.2:7400\", \
                             \"[fd00::2]:7400\" or \"node-b.internal:7400\""
                        ),
                    )
                })
            })
            .collect()
    }
}

fn parse_seed(text: &str) -> Option<Seed<'_>> {
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Some(Seed::Addr(addr));
    }
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let is_name = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    is_name.then_some(Seed::Host(host, port))
}

/// One address for `host`: a name with IPv4 and IPv6 addresses is one node,
/// and counting it twice would raise the quorum the cluster size implies.
async fn resolve(
    path: &str,
    host: &str,
    port: u16,
    prefer_v6: bool,
) -> Result<SocketAddr, ConfigError> {
    let error = |reason: String| ConfigError::new(format!("{path}.seeds"), reason);
    let found: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                error(format!(
                    "`{host}:{port}` did not resolve within {}",
                    humantime::format_duration(RESOLVE_TIMEOUT)
                ))
            })?
            .map_err(|err| error(format!("`{host}:{port}` does not resolve: {err}")))?
            .collect();
    found
        .iter()
        .find(|addr| addr.is_ipv6() == prefer_v6)
        .or_else(|| found.first())
        .copied()
        .ok_or_else(|| error(format!("`{host}:{port}` resolves to no address")))
}

impl SessionConfig {
    /// Refuses a cluster secret that is also a cookie secret, the current
    /// one or any previous one still verifying: whoever learns one would
    /// hold both, and could then write any session over the peer link as
    /// well as forge cookies.
    pub(crate) fn check_cluster_secret_apart(&self) -> Result<(), ConfigError> {
        let cookie_secrets = self.cookie_secrets();
        if cookie_secrets.is_empty() {
            return Ok(());
        }
        let secondary = self
            .failover
            .as_ref()
            .map(|failover| (&failover.secondary, "failover.secondary"));
        for (block, path) in std::iter::once((&self.store, "store")).chain(secondary) {
            if block.kind != crate::config::StoreKind::Cluster {
                continue;
            }
            let Some((secret, option)) = block.cluster_secret_bytes(path)? else {
                continue;
            };
            if let Some((cookie_key, _)) = cookie_secrets
                .iter()
                .find(|(_, cookie_secret)| *cookie_secret == secret)
            {
                return Err(ConfigError::new(
                    format!("{path}.{option}"),
                    format!(
                        "is the same secret as `{cookie_key}`; give the cluster a secret of \
                         its own, so that whoever learns one cannot also use the other"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every cookie secret, current and previous, with the key it came
    /// from. A file that cannot be read is left out: `keys` has already
    /// reported it.
    fn cookie_secrets(&self) -> Vec<(String, Vec<u8>)> {
        let cookie = &self.cookie;
        let inline = |key: String, secret: &Secret| (key, secret.expose().as_bytes().to_vec());
        let from_file = |key: String, file: &Path| {
            read_secret_file(&key, file)
                .ok()
                .map(|secret| (key, secret))
        };
        let current = match (&cookie.secret, &cookie.secret_file) {
            (Some(secret), _) => Some(inline("cookie.secret".to_owned(), secret)),
            (None, Some(file)) => from_file("cookie.secret_file".to_owned(), file),
            (None, None) => None,
        };
        let previous = cookie
            .previous_secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| inline(format!("cookie.previous_secrets[{index}]"), secret));
        let previous_files =
            cookie
                .previous_secret_files
                .iter()
                .enumerate()
                .filter_map(|(index, file)| {
                    from_file(format!("cookie.previous_secret_files[{index}]"), file)
                });
        current
            .into_iter()
            .chain(previous)
            .chain(previous_files)
            .collect()
    }
}
