//! The rule that ties a cluster block to the cookie block: the cluster's
//! secret must not be a cookie secret.

use std::path::Path;

use super::{read_secret_file, Secret, SessionConfig, StoreConfig};
use crate::ConfigError;

impl SessionConfig {
    /// Checks each cluster block's secret: one read from a file must be
    /// long enough (the node reads it again when it starts), and none may
    /// be a cookie secret, the current one or any previous one still
    /// verifying: whoever learns one would hold both, and could then write
    /// any session over the peer link as well as forge cookies.
    pub(crate) fn check_cluster_secrets(&self) -> Result<(), ConfigError> {
        let cookie_secrets = self.cookie_secrets();
        let secondary = self
            .failover
            .as_ref()
            .map(|failover| (&failover.secondary, "failover.secondary"));
        for (block, path) in std::iter::once((&self.store, "store")).chain(secondary) {
            let StoreConfig::Cluster(config) = block else {
                continue;
            };
            let (secret, key) = match (config.inline_secret(), config.secret_file()) {
                (Some(secret), _) => (secret.to_vec(), format!("{path}.cluster_secret")),
                (None, Some(file)) => {
                    let key = format!("{path}.cluster_secret_file");
                    let secret = read_secret_file(&key, file)?;
                    let min = session_cluster::ClusterConfig::MIN_SECRET_LEN;
                    if secret.len() < min {
                        return Err(ConfigError::new(
                            key,
                            format!(
                                "must be at least {min} bytes, got {}; every node of the \
                                 cluster shares it",
                                secret.len()
                            ),
                        ));
                    }
                    (secret, key)
                }
                (None, None) => continue,
            };
            if let Some((cookie_key, _)) = cookie_secrets
                .iter()
                .find(|(_, cookie_secret)| *cookie_secret == secret)
            {
                return Err(ConfigError::new(
                    key,
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
