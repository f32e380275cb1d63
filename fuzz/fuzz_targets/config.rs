//! Any text as a TOML config: parsing and validating never panic, and an
//! error always names a key. Built with every store's feature, so the
//! Redis, Memcached and cluster blocks are checked, not refused for a
//! missing feature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_kit::config::{SessionConfig, StoreConfig};

/// Whether validating `config` would read a file: a cookie secret or
/// previous secret, or a cluster secret, given as a path. The fuzzer must
/// not touch the filesystem (it would read whatever path it guessed, and
/// its findings would depend on the machine), so such configs are only
/// parsed, not validated. This tests the parsed value, not the text, so a
/// quoted or escaped key (`"secret\u005ffile"`) cannot slip past.
fn reads_files(config: &SessionConfig) -> bool {
    let store = |store: &StoreConfig| {
        matches!(store, StoreConfig::Cluster(cluster) if cluster.secret_file().is_some())
    };
    config.cookie.secret_file.is_some()
        || !config.cookie.previous_secret_files.is_empty()
        || store(&config.store)
        || config
            .failover
            .as_ref()
            .is_some_and(|failover| store(&failover.secondary))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SessionConfig::from_toml(text) {
        Ok(config) => {
            if reads_files(&config) {
                return;
            }
            if let Err(err) = config.validate() {
                assert!(!err.key().is_empty());
            }
            let _ = config.keys();
            let _ = config.cookie_config();
        }
        Err(err) => assert!(!err.key().is_empty()),
    }
});
