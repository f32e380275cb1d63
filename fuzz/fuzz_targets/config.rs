//! Any text as a TOML config: parsing and validating never panic, and an
//! error always names a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_kit::config::SessionConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SessionConfig::from_toml(text) {
        Ok(config) => {
            if let Err(err) = config.validate() {
                assert!(!err.key().is_empty());
            }
            let _ = config.keys();
            let _ = config.cookie_config();
        }
        Err(err) => assert!(!err.key().is_empty()),
    }
});
