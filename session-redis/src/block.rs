//! `RedisConfig` from a config block (feature `serde`): the block as
//! written, then the same checks as the builder's.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;
use session_core::{
    config::{optional_duration, set_if, Endpoint, Secret},
    ConfigError,
};

use crate::RedisConfig;

/// A Redis block as written: exactly one of `url`, `sentinels` (with
/// `service_name`) and `nodes`, and the options every topology shares.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisBlock {
    url: Option<Endpoint>,
    sentinels: Option<Vec<Endpoint>>,
    service_name: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    db: Option<i64>,
    nodes: Option<Vec<Endpoint>>,
    key_prefix: Option<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    operation_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "optional_duration")]
    connect_timeout: Option<Duration>,
    tls_ca_cert_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

impl TryFrom<RedisBlock> for RedisConfig {
    type Error = ConfigError;

    fn try_from(block: RedisBlock) -> Result<Self, ConfigError> {
        let strings = |list: Vec<Endpoint>| {
            list.iter()
                .map(|endpoint| endpoint.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let given = [
            block.url.is_some(),
            block.sentinels.is_some(),
            block.nodes.is_some(),
        ];
        if given.iter().filter(|set| **set).count() != 1 {
            return Err(ConfigError::new(
                "url",
                "give exactly one of url (redis://, redis+sentinel:// or redis+cluster://), \
                 sentinels with service_name, or nodes",
            ));
        }
        if block.sentinels.is_none() {
            let master_only = [
                ("service_name", block.service_name.is_some()),
                ("username", block.username.is_some()),
                ("password", block.password.is_some()),
                ("db", block.db.is_some()),
            ];
            if let Some((option, _)) = master_only.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(
                    *option,
                    "applies only with sentinels; for one server or a cluster put credentials \
                     and database in the URL (redis://user:password@host:6379/0)",
                ));
            }
        }
        // Checked before the URL, which is checked with the files.
        let client_cert = match (block.tls_cert_file, block.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "tls_key_file",
                    "give the client certificate's private key too",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "tls_cert_file",
                    "give the certificate that goes with tls_key_file",
                ))
            }
        };
        let mut config = if let Some(url) = &block.url {
            Self::from_url(url.as_str())?
        } else if let Some(sentinels) = block.sentinels {
            let service_name = block.service_name.ok_or_else(|| {
                ConfigError::new("service_name", "name the master the sentinels monitor")
            })?;
            let mut config = Self::sentinel(strings(sentinels), service_name).with_master_auth(
                block.username,
                block.password.map(|password| password.expose().to_owned()),
            );
            if let Some(db) = block.db {
                config = config.with_master_db(db);
            }
            config
        } else {
            Self::cluster(strings(block.nodes.unwrap_or_default()))
        };
        config = set_if(config, block.key_prefix, Self::with_key_prefix);
        config = set_if(
            config,
            block.operation_timeout,
            Self::with_operation_timeout,
        );
        config = set_if(config, block.connect_timeout, Self::with_connect_timeout);
        config = set_if(config, block.tls_ca_cert_file, Self::with_tls_ca_cert_file);
        if let Some((cert, key)) = client_cert {
            config = config.with_tls_client_cert(cert, key);
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topology;

    fn read(json: &str) -> Result<RedisConfig, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn a_sentinel_block_reads_its_master_settings() {
        let config = read(
            r#"{"sentinels": ["redis://10.0.0.1:26379"], "service_name": "sessions",
                "password": "pw", "db": 3, "operation_timeout": "250ms"}"#,
        )
        .unwrap();
        let Topology::Sentinel { password, db, .. } = config.topology() else {
            panic!("{config:?}")
        };
        assert_eq!((password.as_deref(), *db), (Some("pw"), 3));
        assert_eq!(config.operation_timeout(), Duration::from_millis(250));
    }

    #[test]
    fn errors_name_the_key_relative_to_the_block() {
        let err = read(r#"{"url": "redis://a:6379", "nodes": ["redis://b:7000"]}"#).unwrap_err();
        assert!(err.starts_with("invalid session config `url`"), "{err}");
        let err = read(r#"{"url": "redis://a:6379", "db": 2}"#).unwrap_err();
        assert!(err.starts_with("invalid session config `db`"), "{err}");
        let err = read(r#"{"url": "redis://a:6379", "pool_size": 2}"#).unwrap_err();
        assert!(err.contains("unknown field `pool_size`"), "{err}");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_tls_files_need_rediss() {
        let err = read(r#"{"url": "rediss://a:6379", "tls_cert_file": "/c.pem"}"#).unwrap_err();
        assert!(
            err.starts_with("invalid session config `tls_key_file`"),
            "{err}"
        );
        let err = read(r#"{"url": "rediss://a:6379", "tls_key_file": "/k.pem"}"#).unwrap_err();
        assert!(
            err.starts_with("invalid session config `tls_cert_file`"),
            "{err}"
        );
        // Without the feature the key is refused for that; with it, for the
        // plain URL.
        let err = read(r#"{"url": "redis://a:6379", "tls_ca_cert_file": "/ca.pem"}"#).unwrap_err();
        assert!(
            err.starts_with("invalid session config `tls_ca_cert_file`"),
            "{err}"
        );
    }
}
