//! The TOML blocks of `docs/migrating.md` are real configs: each one with
//! a `[migrate]` block parses and validates, once its placeholders (the
//! secret files and the old key) are filled in.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use session_kit::config::SessionConfig;

const GUIDE: &str = include_str!("../../docs/migrating.md");

/// The text of every ```toml block.
fn toml_blocks() -> Vec<&'static str> {
    GUIDE
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect()
}

#[test]
fn every_migrate_config_in_the_guide_validates() {
    let configs: Vec<&str> = toml_blocks()
        .into_iter()
        .filter(|block| block.contains("[migrate]"))
        .collect();
    assert_eq!(configs.len(), 2, "one per peer");
    for block in configs {
        let filled: String = block
            .lines()
            .map(|line| {
                if line.starts_with("key = ") {
                    // A stand-in for the old app's 64 key bytes.
                    format!("key = \"{}\"", STANDARD.encode([42u8; 64]))
                } else if line.starts_with("secret_file = ") {
                    "secret = \"a secret of at least thirty-two bytes, from a vault\"".to_owned()
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config =
            SessionConfig::from_toml(&filled).unwrap_or_else(|err| panic!("{err}\n{filled}"));
        config
            .validate()
            .unwrap_or_else(|err| panic!("{err}\n{filled}"));
        assert!(config.migrate.is_some());
    }
}
