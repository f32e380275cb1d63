//! `PostgresConfig` from a config block (feature `serde`): the block as
//! written, then the same checks as the builder's.

use std::time::Duration;

use serde::Deserialize;
use session_core::{
    config::{optional_duration, set_if, Endpoint},
    ConfigError,
};

use crate::PostgresConfig;

/// A Postgres block as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresBlock {
    url: Option<Endpoint>,
    table: Option<String>,
    key_prefix: Option<String>,
    pool_size: Option<u32>,
    migrate: Option<bool>,
    #[serde(default, deserialize_with = "optional_duration")]
    operation_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    sweep_interval: Option<Duration>,
    sweep_batch: Option<u32>,
}

impl TryFrom<PostgresBlock> for PostgresConfig {
    type Error = ConfigError;

    fn try_from(block: PostgresBlock) -> Result<Self, ConfigError> {
        let url = block.url.ok_or_else(|| {
            ConfigError::new(
                "url",
                "missing field `url` (postgres://user:password@host/db)",
            )
        })?;
        let mut config = Self::new(url.as_str());
        config = set_if(config, block.table, Self::with_table);
        config = set_if(config, block.key_prefix, Self::with_key_prefix);
        config = set_if(config, block.pool_size, Self::with_pool_size);
        config = set_if(config, block.migrate, Self::with_migrate);
        config = set_if(
            config,
            block.operation_timeout,
            Self::with_operation_timeout,
        );
        config = set_if(config, block.connect_timeout, Self::with_connect_timeout);
        config = set_if(config, block.sweep_interval, Self::with_sweep_interval);
        config = set_if(config, block.sweep_batch, Self::with_sweep_batch);
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<PostgresConfig, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn a_block_reads_every_option() {
        let config = read(
            r#"{"url": "postgres://app@db/app", "table": "auth.sessions", "pool_size": 4,
                "migrate": false, "operation_timeout": "250ms", "sweep_interval": "0s"}"#,
        )
        .unwrap();
        assert_eq!(config.table(), "auth.sessions");
        assert_eq!(config.pool_size(), 4);
        assert!(!config.migrate());
        assert_eq!(config.operation_timeout(), Duration::from_millis(250));
        assert_eq!(config.sweep_interval(), Duration::ZERO);
    }

    #[test]
    fn errors_name_the_key_relative_to_the_block() {
        let err = read(r#"{"url": "postgres://db/app", "table": "Bad Name"}"#).unwrap_err();
        assert!(err.starts_with("invalid session config `table`"), "{err}");
        let err = read(r#"{"table": "sessions"}"#).unwrap_err();
        assert!(err.starts_with("invalid session config `url`"), "{err}");
        let err = read(r#"{"url": "postgres://db/app", "servers": []}"#).unwrap_err();
        assert!(err.contains("unknown field `servers`"), "{err}");
    }
}
