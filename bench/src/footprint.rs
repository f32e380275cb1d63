//! Heap per session of the two in-process stores, session-kit's
//! `MemoryStore` and tower-sessions' `MokaStore`: each fills a fresh store
//! with the same small session (a user id and a count) in a process of its
//! own, and the growth of the process's resident memory is divided by the
//! sessions stored. A fresh process keeps other runs' freed memory out of
//! the figure; no allocator hook slows the throughput runs.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use session_kit::{
    memory::MemoryStore,
    store::{Data, Record, SessionStore},
    SessionId,
};

/// Sessions per fill: half the default capacity of both stores, so neither
/// evicts, and enough that the page granularity of RSS is noise.
const SESSIONS: usize = 50_000;

/// The in-process stores whose footprint is measured.
pub(crate) const STORES: [&str; 2] = ["session-kit", "tower-sessions"];

/// Resident bytes of this process, from `VmRSS` in `/proc/self/status`
/// (in kB, so no page size is assumed). The soak test reads it too.
pub(crate) fn resident_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| format!("cannot measure memory: /proc/self/status: {err}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| "cannot measure memory: no VmRSS in /proc/self/status".to_owned())
}

/// Fills `store` (one of [`STORES`]) and prints bytes per session; the
/// child-process side of [`measure`].
pub(crate) fn fill_and_print(store: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let per_session = runtime.block_on(async {
        match store {
            "session-kit" => {
                let store = MemoryStore::new();
                let before = resident_bytes();
                let now = SystemTime::now();
                for _ in 0..SESSIONS {
                    let data: Data = [
                        ("user_id".to_owned(), "\"user-42\"".to_owned()),
                        ("count".to_owned(), "0".to_owned()),
                    ]
                    .into_iter()
                    .collect();
                    let record = Record::new(
                        SessionId::generate(),
                        data,
                        now,
                        now + Duration::from_secs(600),
                    );
                    // A fresh id cannot collide; `Created` is checked in the tests.
                    let _ = store.create(&record).await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(per(before, resident_bytes())?)
            }
            "tower-sessions" => {
                use tower_sessions::{
                    cookie::time::OffsetDateTime,
                    session::{Id, Record},
                    SessionStore,
                };
                let store = tower_sessions_moka_store::MokaStore::new(Some(
                    session_kit::memory::MemoryStoreBuilder::DEFAULT_MAX_CAPACITY,
                ));
                let before = resident_bytes();
                for _ in 0..SESSIONS {
                    let mut record = Record {
                        id: Id::default(),
                        data: HashMap::from([
                            ("user_id".to_owned(), "user-42".into()),
                            ("count".to_owned(), 0.into()),
                        ]),
                        expiry_date: OffsetDateTime::now_utc() + Duration::from_secs(600),
                    };
                    store
                        .create(&mut record)
                        .await
                        .map_err(|err| err.to_string())?;
                }
                Ok(per(before, resident_bytes())?)
            }
            other => Err(format!("no in-process store named {other}").into()),
        }
    })?;
    println!("{per_session}");
    Ok(())
}

fn per(before: Result<u64, String>, after: Result<u64, String>) -> Result<u64, String> {
    Ok(after?.saturating_sub(before?) / SESSIONS as u64)
}

/// Bytes per session of `store`, measured in a child process running this
/// same binary with `--footprint <store>`.
pub(crate) fn measure(store: &str) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--footprint", store])
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "measuring {store}'s footprint failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}
