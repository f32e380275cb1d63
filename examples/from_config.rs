//! The counter app with its whole session stack read from a config file:
//! the same binary runs on memory, Redis, Sentinel, Cluster, Memcached or a
//! failover pair, chosen by the file in `examples/config/`.
//!
//! ```text
//! cargo run --example from_config --features axum -- --config examples/config/memory.toml
//! curl -i http://127.0.0.1:3000/
//!
//! SESSION__COOKIE__SECRET=$(openssl rand -base64 48) SESSION__STORE__URL=redis://127.0.0.1:6379 \
//!   cargo run --example from_config --features axum,redis -- --config examples/config/redis.toml
//! ```
//!
//! Every key can be overridden by a `SESSION__…` environment variable.
//! `--check` validates the file (and reads the secret) without connecting.
//! A backend the build lacks is named with the feature that adds it.

mod support;

use std::process::ExitCode;

use session_kit::config::SessionConfig;

const USAGE: &str = "usage: from_config --config FILE [--check]";

#[tokio::main]
async fn main() -> ExitCode {
    support::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("from_config: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut path, mut check) = (None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = Some(args.next().ok_or(USAGE)?),
            "--check" => check = true,
            _ => return Err(USAGE.into()),
        }
    }
    let config = SessionConfig::load(path.ok_or(USAGE)?)?;
    config.validate()?;
    if check {
        println!("config is valid: {:?}", config.store);
        return Ok(());
    }
    let manager = session_kit::build_manager(&config).await?;
    support::axum::serve(manager, "from_config").await
}
