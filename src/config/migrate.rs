//! The `[migrate]` block: moving tower-sessions' or actix-session's users
//! into session-kit on first contact (feature `migrate`).

use std::fmt;

use figment::value::Value;
use serde::Deserialize;

#[cfg(feature = "migrate")]
use super::block;
use crate::ConfigError;

/// The `[migrate]` block: while it is there, a request with no session-kit
/// cookie but with tower-sessions' or actix-session's has its old session
/// moved into the store (see
/// [`session_kit::migrate`](crate::migrate) and `docs/migrating.md`).
/// Remove the block once the old cookies' lifetime has passed. Needs the
/// Cargo feature `migrate`.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `from` | required | `"tower-sessions"` or `"actix-session"` |
/// | `url` | the `[store]` block's Redis | the Redis holding the old records, when it is not the store's |
/// | `cookie_name` | `"id"` | the old cookie's name |
/// | `cookie_path`, `cookie_domain` | `"/"`, none | where the old app set it |
/// | `cookie_security` | tower-sessions `plain`, actix-session `private` | `plain`, `signed` or `private` |
/// | `key` | required unless `plain` | the old app's `cookie::Key` master key: base64 of its 64 or more bytes |
/// | `key_prefix` | `""` | what the old store put before its ids in Redis keys |
/// | `forward_ttl` | `"5m"` | how long parallel requests with one old cookie are sent to the same new session |
/// | `max_record_bytes` | `1048576` | a larger old record is not moved |
///
/// ```
/// # #[cfg(feature = "migrate")] {
/// use session_kit::config::SessionConfig;
///
/// let config = SessionConfig::from_toml(r#"
///     [cookie]
///     secret = "a secret of at least thirty-two bytes, from a vault"
///     [store]
///     kind = "redis"
///     url = "redis://127.0.0.1:6379"
///     [migrate]
///     from = "actix-session"
///     key = "not base64"
/// "#).unwrap_err();
/// assert_eq!(config.key(), "migrate.key");
/// # }
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct MigrateSection {
    /// The Redis holding the old records, when it is not the store's.
    pub url: Option<String>,
    /// What to read, and how.
    #[cfg(feature = "migrate")]
    pub config: session_redis::migrate::LegacyConfig,
}

impl fmt::Debug for MigrateSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password; the config's Debug hides its key.
        let mut debug = f.debug_struct("MigrateSection");
        debug.field("url", &self.url.as_ref().map(|_| "<set>"));
        #[cfg(feature = "migrate")]
        debug.field("config", &self.config);
        debug.finish_non_exhaustive()
    }
}

impl MigrateSection {
    /// Reads the block: `url` here, the rest as the Redis reader's config.
    /// Keys in errors are relative to the block.
    fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let Some(block) = value.as_dict() else {
            return Err(ConfigError::new(
                "",
                format!("expected a table, found {}", value.to_actual()),
            ));
        };
        #[cfg(not(feature = "migrate"))]
        {
            let _ = block;
            Err(ConfigError::new(
                "",
                "needs the Cargo feature `migrate`; enable it with \
                 session-kit = { features = [\"migrate\"] }",
            ))
        }
        #[cfg(feature = "migrate")]
        {
            let mut settings = block.clone();
            let url = match settings.remove("url") {
                None => None,
                Some(url) => Some(
                    url.into_string()
                        .ok_or_else(|| ConfigError::new("url", "must be a string"))?,
                ),
            };
            if let Some(url) = &url {
                session_redis::RedisConfig::from_url(url)
                    .map(drop)
                    .map_err(|err| ConfigError::new("url", err.reason().to_owned()))?;
            }
            let config: session_redis::migrate::LegacyConfig =
                block::from_block(&Value::from(settings))?;
            config.validate()?;
            Ok(Self { url, config })
        }
    }
}

impl<'de> Deserialize<'de> for MigrateSection {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = <Value as Deserialize>::deserialize(deserializer)?;
        Self::from_value(&value).map_err(ConfigError::into_de_error)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::SessionConfig;

    const BASE: &str = r#"
        [cookie]
        secret = "a secret of at least thirty-two bytes, from a vault"
        [store]
        kind = "redis"
        url = "redis://127.0.0.1:6379"
    "#;

    fn error_key(migrate: &str) -> String {
        let toml = format!("{BASE}\n[migrate]\n{migrate}");
        match SessionConfig::from_toml(&toml).and_then(|config| config.validate().map(|()| config))
        {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(err) => err.key().to_owned(),
        }
    }

    #[cfg(feature = "migrate")]
    #[test]
    fn bad_migrate_blocks_name_their_key() {
        assert_eq!(error_key(r#"cookie_name = "id""#), "migrate.from");
        assert_eq!(error_key(r#"from = "django""#), "migrate.from");
        assert_eq!(error_key(r#"from = "actix-session""#), "migrate.key");
        assert_eq!(
            error_key(
                r#"from = "tower-sessions"
cookie_security = "signed"
key = "c2hvcnQ=""#
            ),
            "migrate.key"
        );
        assert_eq!(
            error_key(
                r#"from = "tower-sessions"
bogus = 1"#
            ),
            "migrate.bogus"
        );
        assert_eq!(
            error_key(
                r#"from = "tower-sessions"
url = "http://not-redis""#
            ),
            "migrate.url"
        );
        assert_eq!(
            error_key(
                r#"from = "tower-sessions"
forward_ttl = "0s""#
            ),
            "migrate.forward_ttl"
        );
    }

    #[cfg(feature = "migrate")]
    #[test]
    fn a_memory_store_needs_the_url_of_the_old_redis() {
        let toml = r#"
            [cookie]
            secret = "a secret of at least thirty-two bytes, from a vault"
            [migrate]
            from = "tower-sessions"
        "#;
        let err = SessionConfig::from_toml(toml)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(err.key(), "migrate.url");
        let with_url = toml.replace("[migrate]", "[migrate]\nurl = \"redis://10.0.0.5:6379\"");
        let config = SessionConfig::from_toml(&with_url).unwrap();
        config.validate().unwrap();
        // The key and the URL stay out of logs.
        let debug = format!("{:?}", config.migrate.unwrap());
        assert!(!debug.contains("10.0.0.5"), "{debug}");
    }

    #[cfg(feature = "migrate")]
    #[test]
    fn the_key_never_shows_in_debug() {
        let key = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==";
        let toml = format!("{BASE}\n[migrate]\nfrom = \"actix-session\"\nkey = \"{key}\"");
        let config = SessionConfig::from_toml(&toml).unwrap();
        assert!(!format!("{config:?}").contains("KioqKioq"));
    }

    #[cfg(not(feature = "migrate"))]
    #[test]
    fn without_the_feature_the_block_says_which_feature() {
        assert_eq!(error_key(r#"from = "tower-sessions""#), "migrate");
    }
}
