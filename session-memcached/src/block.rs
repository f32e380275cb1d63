//! `MemcachedConfig` from a config block (feature `serde`): the block as
//! written, then the same checks as the builder's.

use std::time::Duration;

use serde::Deserialize;
use session_core::{
    config::{optional_duration, set_if, Endpoint},
    ConfigError,
};

use crate::MemcachedConfig;

/// A Memcached block as written: exactly one of `url` and `servers`, and
/// the options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemcachedBlock {
    url: Option<Endpoint>,
    servers: Option<Vec<Endpoint>>,
    key_prefix: Option<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    operation_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    connect_timeout: Option<Duration>,
    pool_size: Option<usize>,
    max_connections: Option<usize>,
    item_size_limit: Option<usize>,
    commit_attempts: Option<u32>,
}

impl TryFrom<MemcachedBlock> for MemcachedConfig {
    type Error = ConfigError;

    fn try_from(block: MemcachedBlock) -> Result<Self, ConfigError> {
        let mut config = match (block.url, block.servers) {
            (Some(url), None) => Self::from_url(url.as_str())?,
            (None, Some(servers)) => {
                Self::new(servers.iter().map(|server| server.as_str().to_owned()))
            }
            _ => {
                return Err(ConfigError::new(
                    "servers",
                    "give exactly one of servers (a list of host:port) and url \
                     (memcache://host:port,…)",
                ))
            }
        };
        config = set_if(config, block.key_prefix, Self::with_key_prefix);
        config = set_if(
            config,
            block.operation_timeout,
            Self::with_operation_timeout,
        );
        config = set_if(config, block.connect_timeout, Self::with_connect_timeout);
        config = set_if(config, block.pool_size, Self::with_pool_size);
        if block.max_connections.is_some() {
            config = config.with_max_connections(block.max_connections);
        }
        config = set_if(config, block.item_size_limit, Self::with_item_size_limit);
        config = set_if(config, block.commit_attempts, Self::with_commit_attempts);
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<MemcachedConfig, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn a_block_reads_every_option() {
        let config = read(
            r#"{"servers": ["10.0.0.7:11211"], "pool_size": 4, "max_connections": 64,
                "item_size_limit": 65536, "commit_attempts": 8, "connect_timeout": "2s"}"#,
        )
        .unwrap();
        assert_eq!(config.servers(), ["10.0.0.7:11211"]);
        assert_eq!(config.pool_size(), 4);
        assert_eq!(config.max_connections(), Some(64));
        assert_eq!(config.item_size_limit(), Some(65536));
        assert_eq!(config.commit_attempts(), 8);
        assert_eq!(config.connect_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn errors_name_the_key_relative_to_the_block() {
        let err = read(r#"{"url": "memcache://a:11211", "servers": ["b:11211"]}"#).unwrap_err();
        assert!(err.starts_with("invalid session config `servers`"), "{err}");
        let err = read(r#"{"servers": ["a:11211"], "pool_size": 0}"#).unwrap_err();
        assert!(
            err.starts_with("invalid session config `pool_size`"),
            "{err}"
        );
        let err = read(r#"{"servers": ["a:11211"], "db": 2}"#).unwrap_err();
        assert!(err.contains("unknown field `db`"), "{err}");
    }
}
