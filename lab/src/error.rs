//! The one error type of the lab: what can stop it before or after the run.
//! Nothing that goes wrong *during* the run is an error: a failed request is
//! a measurement.

use std::{net::SocketAddr, path::PathBuf};

use session_kit::{cluster::ClusterError, ConfigError, StoreError};

/// Why the lab could not set up, or could not write what it measured.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LabError {
    /// A loopback port could not be bound (an app node or a balancer).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `--redis` was given but the Redis binaries are not installed.
    #[error(
        "--redis asks for the Redis strategies, but {missing} is not on the PATH; install it with\n\n    \
         sudo apt-get install -y redis-server redis-tools\n"
    )]
    RedisMissing { missing: &'static str },
    /// `--postgres` was given but PostgreSQL is not installed.
    #[error(
        "--postgres asks for the PostgreSQL strategy, but {missing} is not installed; install it with\n\n    \
         sudo apt-get install -y postgresql\n"
    )]
    PostgresMissing { missing: &'static str },
    /// The test kit could not start or ask a PostgreSQL server.
    #[error("postgres: {what} failed: {message}")]
    Postgres { what: &'static str, message: String },
    /// The test kit could not start, stop or ask a redis-server.
    #[error("redis-server: {what} failed: {message}")]
    Redis { what: &'static str, message: String },
    /// A store could not connect at start-up.
    #[error("strategy {strategy}: the store did not start: {source}")]
    Store {
        strategy: &'static str,
        source: StoreError,
    },
    /// A session manager or failover setting was refused.
    #[error("a session-kit setting was refused: {0}")]
    Config(#[from] ConfigError),
    /// A cluster node could not start.
    #[error("a cluster node did not start: {0}")]
    Cluster(#[from] ClusterError),
    /// The cluster's nodes did not all see each other in time.
    #[error("cluster node {node} sees only {members:?} after {seconds} s")]
    ClusterForming {
        node: String,
        members: Vec<String>,
        seconds: u64,
    },
    /// The report or the JSON could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The figures could not be turned into JSON.
    #[error("cannot encode the figures as JSON: {0}")]
    Json(#[from] serde_json::Error),
}
