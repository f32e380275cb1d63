//! A PostgreSQL server of the test kit, for the strategy that keeps Redis's
//! standby there (h), driven from async code as `redis.rs` drives Redis.

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use session_conformance::testkit::{find_binary, PostgresServer};

use crate::{error::LabError, redis::off_runtime};

/// Where Debian's `postgresql` package puts the server's binaries, one
/// folder per major version, off the PATH; the test kit looks there too.
const DEBIAN_BINARIES: &str = "/usr/lib/postgresql";

/// Whether the PostgreSQL binaries the test kit runs are installed; the
/// one missing when not. The kit finds `postgres` and `initdb` on the PATH
/// or in Debian's own folder.
pub(crate) fn installed() -> Result<(), &'static str> {
    let on_path = find_binary("postgres").is_some() && find_binary("initdb").is_some();
    let in_debian_folder = std::fs::read_dir(DEBIAN_BINARIES)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|entry| {
            let bin = entry.path().join("bin");
            Path::new(&bin.join("postgres")).exists() && bin.join("initdb").exists()
        });
    if on_path || in_debian_folder {
        Ok(())
    } else {
        Err("postgres")
    }
}

/// One PostgreSQL server.
#[derive(Debug)]
pub(crate) struct Postgres {
    server: Arc<Mutex<PostgresServer>>,
    url: String,
}

impl Postgres {
    /// Starts a server on a free loopback port.
    pub(crate) async fn start() -> Result<Self, LabError> {
        let server = off_runtime(PostgresServer::start)
            .await
            .map_err(|message| LabError::Postgres {
                what: "start",
                message,
            })?;
        let url = server.url();
        Ok(Self {
            server: Arc::new(Mutex::new(server)),
            url,
        })
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// What `sql` prints, through the kit's `psql`.
    async fn psql(&self, sql: &'static str) -> Result<String, LabError> {
        let server = Arc::clone(&self.server);
        off_runtime(move || {
            server
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .psql(sql)
        })
        .await
        .map_err(|message| LabError::Postgres {
            what: "psql",
            message,
        })
    }

    /// Rows of the sessions table, and its size on disk with its indexes
    /// and TOAST (`pg_total_relation_size`).
    pub(crate) async fn sessions(&self) -> Result<(u64, u64), LabError> {
        let reply = self
            .psql("SELECT count(*), pg_total_relation_size('sessions') FROM sessions")
            .await?;
        let parsed = reply.split_once('|').and_then(|(rows, bytes)| {
            Some((rows.trim().parse().ok()?, bytes.trim().parse().ok()?))
        });
        parsed.ok_or(LabError::Postgres {
            what: "the sessions table's size",
            message: format!("unexpected reply {reply:?}"),
        })
    }
}
