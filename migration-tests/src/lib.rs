//! Test-only crate (`publish = false`): the migration from tower-sessions
//! and actix-session, tested against sessions those crates write
//! themselves (`tests/peers.rs`).
//!
//! Its crate docs are the migration guide, `docs/migrating.md`, so that
//! every Rust block in the guide is compiled as a doc test (against the
//! peers' crates too, for the "before" blocks), and `tests/guide.rs`
//! checks every TOML block against the config parser.
#![forbid(unsafe_code)]
#![doc = include_str!("../../docs/migrating.md")]
