//! A redis-server of the test kit, driven from async code: the kit's calls
//! block (they start processes and wait for them) and panic on failure, so
//! each runs on the blocking pool and a panic comes back as an error.

use std::sync::{Arc, Mutex, PoisonError};

use session_conformance::testkit::{find_binary, RedisServer};

use crate::error::LabError;

/// Whether the Redis binaries the test kit runs are installed; the one
/// missing when not. The kit's own search decides, so the lab never runs
/// d and e on a binary the kit would then refuse (one that is not
/// executable, say).
pub(crate) fn installed() -> Result<(), &'static str> {
    match ["redis-server", "redis-cli"]
        .into_iter()
        .find(|binary| find_binary(binary).is_none())
    {
        Some(missing) => Err(missing),
        None => Ok(()),
    }
}

/// One redis-server, and the network bytes it has moved while counted.
#[derive(Debug)]
pub(crate) struct Redis {
    server: Arc<Mutex<RedisServer>>,
    url: String,
    /// Bytes counted in earlier lives of the server (its counters start at
    /// 0 again after a restart).
    counted: u64,
    /// `INFO stats` bytes when counting (re)started; `None` while down.
    baseline: Option<u64>,
}

impl Redis {
    /// Starts a server on a free loopback port.
    pub(crate) async fn start() -> Result<Self, LabError> {
        let server = blocking("start", RedisServer::start).await?;
        let url = server.url();
        Ok(Self {
            server: Arc::new(Mutex::new(server)),
            url,
            counted: 0,
            baseline: None,
        })
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Starts counting network bytes from now.
    pub(crate) async fn begin_counting(&mut self) -> Result<(), LabError> {
        self.baseline = Some(self.net_bytes().await?);
        Ok(())
    }

    /// Kills the server (SIGKILL), counting its bytes up to now first.
    pub(crate) async fn kill(&mut self) -> Result<(), LabError> {
        self.count_until_now().await?;
        self.baseline = None;
        let server = Arc::clone(&self.server);
        blocking("kill", move || lock(&server).kill()).await
    }

    /// Starts the killed server again on its port. It comes back empty: the
    /// kit's servers persist nothing.
    pub(crate) async fn restart(&mut self) -> Result<(), LabError> {
        let server = Arc::clone(&self.server);
        blocking("restart", move || lock(&server).restart()).await?;
        self.begin_counting().await
    }

    /// The network bytes (in plus out) counted since
    /// [`begin_counting`](Self::begin_counting), over every life of the server.
    pub(crate) async fn bytes_counted(&mut self) -> Result<u64, LabError> {
        self.count_until_now().await?;
        Ok(self.counted)
    }

    /// How many keys the server holds (`DBSIZE`).
    pub(crate) async fn keys(&self) -> Result<u64, LabError> {
        let reply = self.cli(&["DBSIZE"]).await?;
        reply.trim().parse().map_err(|_| LabError::Redis {
            what: "DBSIZE",
            message: format!("unexpected reply {reply:?}"),
        })
    }

    /// The memory Redis gives every key it holds, summed: `MEMORY USAGE`
    /// per key, in one script so the count is of one moment.
    pub(crate) async fn memory_usage(&self) -> Result<u64, LabError> {
        const SUM: &str = "local total = 0 \
            for _, key in ipairs(redis.call('KEYS', '*')) do \
            total = total + (redis.call('MEMORY', 'USAGE', key) or 0) end \
            return total";
        let reply = self.cli(&["EVAL", SUM, "0"]).await?;
        reply.trim().parse().map_err(|_| LabError::Redis {
            what: "MEMORY USAGE",
            message: format!("unexpected reply {reply:?}"),
        })
    }

    async fn count_until_now(&mut self) -> Result<(), LabError> {
        if let Some(baseline) = self.baseline {
            let now = self.net_bytes().await?;
            self.counted += now.saturating_sub(baseline);
            self.baseline = Some(now);
        }
        Ok(())
    }

    /// `total_net_input_bytes + total_net_output_bytes` from `INFO stats`.
    async fn net_bytes(&self) -> Result<u64, LabError> {
        let info = self.cli(&["INFO", "stats"]).await?;
        let field = |name: &str| {
            info.lines()
                .filter_map(|line| line.trim().split_once(':'))
                .find(|(key, _)| *key == name)
                .and_then(|(_, value)| value.trim().parse::<u64>().ok())
        };
        match (
            field("total_net_input_bytes"),
            field("total_net_output_bytes"),
        ) {
            (Some(input), Some(output)) => Ok(input + output),
            _ => Err(LabError::Redis {
                what: "INFO stats",
                message: "no total_net_input_bytes / total_net_output_bytes".to_owned(),
            }),
        }
    }

    async fn cli(&self, args: &[&str]) -> Result<String, LabError> {
        let server = Arc::clone(&self.server);
        let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
        blocking("redis-cli", move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            lock(&server).cli(&args)
        })
        .await
    }
}

fn lock(server: &Mutex<RedisServer>) -> std::sync::MutexGuard<'_, RedisServer> {
    server.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one of the kit's blocking calls off the runtime's workers; its
/// panic, the kit's way of failing, becomes an error.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    off_runtime(call)
        .await
        .map_err(|message| LabError::Redis { what, message })
}

/// Runs one of the test kit's blocking calls on the blocking pool; its
/// panic, the kit's way of failing, comes back as the panic's message.
pub(crate) async fn off_runtime<T: Send + 'static>(
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|err| match err.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "it panicked".to_owned()),
            Err(err) => err.to_string(),
        })
}
