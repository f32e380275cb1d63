//! `ClusterConfig` from a config block (feature `serde`): the block as
//! written, then the same checks as the builder's. Seeds given by host name
//! are resolved when the node starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use session_core::{
    config::{optional_duration, optional_name, optional_socket_addr, set_if, Secret},
    ConfigError,
};

use crate::ClusterConfig;

/// A cluster block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterBlock {
    #[serde(default, deserialize_with = "optional_name")]
    node_id: Option<String>,
    #[serde(default, deserialize_with = "optional_socket_addr")]
    listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "optional_socket_addr")]
    advertise: Option<SocketAddr>,
    seeds: Option<Vec<String>>,
    cluster_secret: Option<Secret>,
    cluster_secret_file: Option<PathBuf>,
    replication_factor: Option<usize>,
    cluster_size: Option<usize>,
    key_prefix: Option<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    operation_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    connect_timeout: Option<Duration>,
    max_capacity: Option<u64>,
    max_in_flight_per_peer: Option<usize>,
    #[serde(default, deserialize_with = "optional_duration")]
    settle_time: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    anti_entropy_interval: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    probe_period: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    suspect_timeout: Option<Duration>,
}

/// A seed as written: an address, or a host name and port to resolve.
enum Seed {
    Addr(SocketAddr),
    Host(String, u16),
}

fn parse_seed(text: &str) -> Option<Seed> {
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
    is_name.then(|| Seed::Host(host.to_owned(), port))
}

impl TryFrom<ClusterBlock> for ClusterConfig {
    type Error = ConfigError;

    fn try_from(block: ClusterBlock) -> Result<Self, ConfigError> {
        let node_id = block.node_id.ok_or_else(|| {
            ConfigError::new(
                "node_id",
                "is missing: give this node a name no other node of the cluster has",
            )
        })?;
        let listen = block.listen.ok_or_else(|| {
            ConfigError::new(
                "listen",
                "is missing: give the ip:port this node serves its peers on (TCP and UDP)",
            )
        })?;
        if listen.ip().is_unspecified() && block.advertise.is_none() {
            return Err(ConfigError::new(
                "advertise",
                format!(
                    "is required when listen is a wildcard address ({listen}): give the \
                     ip:port the other nodes reach this one at"
                ),
            ));
        }
        let (secret, secret_file) = match (block.cluster_secret, block.cluster_secret_file) {
            (Some(secret), None) => (secret.expose().as_bytes().to_vec(), None),
            // Read when the node starts: reading a config reads no file.
            (None, Some(file)) => (Vec::new(), Some(file)),
            (None, None) => {
                return Err(ConfigError::new(
                    "cluster_secret",
                    format!(
                        "is missing: set cluster_secret or cluster_secret_file to at least {} \
                         random bytes that every node shares, other than the cookie secret \
                         (`openssl rand -base64 48` makes one)",
                        Self::MIN_SECRET_LEN
                    ),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "cluster_secret",
                    "give exactly one of cluster_secret and cluster_secret_file",
                ))
            }
        };
        let mut config = Self::new(node_id, listen, secret);
        config.secret_file = secret_file;
        for seed in block.seeds.iter().flatten() {
            match parse_seed(seed) {
                Some(Seed::Addr(addr)) => config.seeds.push(addr),
                // Listed twice is still one node.
                Some(Seed::Host(host, port))
                    if !config.seed_hosts.contains(&(host.clone(), port)) =>
                {
                    config.seed_hosts.push((host, port));
                }
                Some(Seed::Host(..)) => {}
                None => {
                    return Err(ConfigError::new(
                        "seeds",
                        format!(
                            "`{seed}` is not host:port; write each seed as \"10.0.0.2:7400\", \
                             \"[fd00::2]:7400\" or \"node-b.internal:7400\""
                        ),
                    ))
                }
            }
        }
        config = set_if(config, block.advertise, Self::with_advertise);
        config = set_if(config, block.key_prefix, Self::with_key_prefix);
        config = set_if(
            config,
            block.operation_timeout,
            Self::with_operation_timeout,
        );
        config = set_if(config, block.connect_timeout, Self::with_connect_timeout);
        config = set_if(config, block.max_capacity, Self::with_max_capacity);
        config = set_if(
            config,
            block.replication_factor,
            Self::with_replication_factor,
        );
        config = set_if(config, block.cluster_size, Self::with_cluster_size);
        config = set_if(
            config,
            block.max_in_flight_per_peer,
            Self::with_max_in_flight_per_peer,
        );
        config = set_if(config, block.settle_time, Self::with_settle_time);
        config = set_if(
            config,
            block.anti_entropy_interval,
            Self::with_anti_entropy_interval,
        );
        config = set_if(config, block.probe_period, Self::with_probe_period);
        config = set_if(config, block.suspect_timeout, Self::with_suspect_timeout);
        // The builder calls the secret `secret`; the block names the option
        // it was given in.
        config.validate().map_err(|err| match err.key() {
            "secret" => ConfigError::new("cluster_secret", err.reason().to_owned()),
            _ => err,
        })?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a cluster secret of at least thirty-two bytes";

    fn read(json: &str) -> Result<ClusterConfig, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn seeds_by_name_count_once_each_and_wait_for_start() {
        let config = read(&format!(
            r#"{{"node_id": "a", "listen": "127.0.0.1:7401", "cluster_secret": "{SECRET}",
                "seeds": ["127.0.0.1:7401", "127.0.0.1:7402", "node-c.internal:7400",
                          "node-c.internal:7400"]}}"#
        ))
        .unwrap();
        assert_eq!(config.expected_cluster_size(), 3);
        assert_eq!(config.seed_hosts, [("node-c.internal".to_owned(), 7400)]);
    }

    #[test]
    fn errors_name_the_key_relative_to_the_block() {
        let err = read(r#"{"listen": "127.0.0.1:7401"}"#).unwrap_err();
        assert!(err.starts_with("invalid session config `node_id`"), "{err}");
        let err = read(
            r#"{"node_id": "a", "listen": "127.0.0.1:7401", "cluster_secret": "short",
                "cluster_size": 1}"#,
        )
        .unwrap_err();
        assert!(
            err.starts_with("invalid session config `cluster_secret`"),
            "{err}"
        );
        let err = read(&format!(
            r#"{{"node_id": "a", "listen": "127.0.0.1:7401", "cluster_secret": "{SECRET}",
                "seeds": ["not a seed"]}}"#
        ))
        .unwrap_err();
        assert!(err.starts_with("invalid session config `seeds`"), "{err}");
    }
}
