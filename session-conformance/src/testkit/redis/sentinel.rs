//! A Sentinel group: a master, one replica and three sentinels, the smallest
//! group that fails over (quorum 2) and still does with one sentinel down.

use std::{fs, path::Path, time::Duration};

use super::{tls_server_settings, RedisServer, Tls};
use crate::testkit::{poll_until, RedisTls, TlsFiles};

/// The name the sentinels know the master by.
const SERVICE: &str = "mymaster";

/// How many sentinels watch the master; [`QUORUM`] of them must agree it is
/// down before a failover.
const SENTINELS: usize = 3;
const QUORUM: usize = 2;

/// Settings on both data servers, so that a replica syncs and is checked on
/// at once instead of after the defaults' seconds.
const REPLICATION_ARGS: [&str; 4] = [
    "--repl-diskless-sync",
    "yes",
    "--repl-ping-replica-period",
    "1",
];

/// How long the group may take to settle: the replica syncing, and the
/// sentinels finding each other (they say hello every 2 s).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// A master, one replica and three sentinels watching the master as
/// `mymaster`, quorum 2, all on loopback. Tuned to fail over within seconds:
/// a master is considered down after 1 s without an answer.
///
/// ```
/// use std::time::Duration;
///
/// use session_conformance::testkit::RedisSentinel;
///
/// let mut group = RedisSentinel::start();
/// assert_eq!(group.service_name(), "mymaster");
/// assert_eq!(group.sentinel_urls().len(), 3);
///
/// let old_master = group.kill_master();
/// let new_master = group.wait_for_new_master(old_master, Duration::from_secs(30));
/// assert_ne!(new_master, old_master);
///
/// // The sentinels turn the old master into a replica of the new one.
/// group.server(old_master).restart();
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    /// The master and the replica, in the roles they started with.
    data: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    /// Starts the group and returns once it is ready to fail over: the
    /// replica is in sync, and every sentinel names the master and knows the
    /// replica and the two other sentinels.
    ///
    /// # Panics
    /// When `redis-server`, `redis-sentinel` or `redis-cli` is not installed,
    /// or the group does not settle within 20 s; the message quotes the end
    /// of every log.
    #[must_use]
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// [`start`](Self::start), with every server and sentinel listening for
    /// TLS only, sharing one CA, and speaking TLS to each other
    /// (`tls-replication`): [`sentinel_urls`](Self::sentinel_urls) are
    /// `rediss://`, and so is the master the sentinels name.
    ///
    /// # Panics
    /// As [`start`](Self::start) does, and for
    /// [`RedisTls::ExpiredCertificate`]: the replica and the sentinels would
    /// refuse the master's certificate, so the group could never settle.
    #[must_use]
    pub fn start_tls(mode: RedisTls) -> Self {
        assert!(
            mode != RedisTls::ExpiredCertificate,
            "a Sentinel group cannot run on an expired certificate"
        );
        Self::start_in(Some(&Tls::generate(mode)))
    }

    fn start_in(tls: Option<&Tls>) -> Self {
        let master = RedisServer::start_in(tls, &REPLICATION_ARGS);
        let master_port = master.port();
        let replicaof = ["--replicaof", "127.0.0.1", &master_port.to_string()];
        let replica = RedisServer::start_in(tls, &[&REPLICATION_ARGS[..], &replicaof].concat());
        let mut group = Self {
            data: vec![master, replica],
            sentinels: Vec::new(),
        };
        // Sentinels learn of replicas from the master's INFO, which they ask
        // for only every 10 s after the first time: the replica must be
        // listed there before they start.
        group.wait_until("the replica is in sync", Self::replica_is_in_sync);
        group.sentinels = (0..SENTINELS)
            .map(|_| RedisServer::start_sentinel(master_port, tls))
            .collect();
        group.wait_until("every sentinel knows the whole group", |group| {
            group
                .sentinels
                .iter()
                .all(|sentinel| group.knows_everything(sentinel))
        });
        group
    }

    /// `"mymaster"`, the name the sentinels know the master by.
    #[must_use]
    pub fn service_name(&self) -> &str {
        SERVICE
    }

    /// `redis://127.0.0.1:{port}` for each sentinel, `rediss://` in TLS mode.
    #[must_use]
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// Where the group's certificates are (every server has a copy of the
    /// same set); `None` for a plain-text group.
    #[must_use]
    pub fn tls_files(&self) -> Option<TlsFiles> {
        self.data[0].tls_files()
    }

    /// The port of the master now. When the sentinels disagree, during a
    /// failover, the newest configuration (highest epoch) wins.
    ///
    /// # Panics
    /// When no sentinel answers.
    #[must_use]
    pub fn master_port(&self) -> u16 {
        self.views()
            .into_iter()
            .max_by_key(|view| view.epoch)
            .map(|view| view.port)
            .unwrap_or_else(|| self.fail("no sentinel answers"))
    }

    /// SIGKILLs the current master and returns its port.
    ///
    /// # Panics
    /// As [`master_port`](Self::master_port) and [`RedisServer::kill`] do.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.server(port).kill();
        port
    }

    /// Polls the sentinels until every one of them names the same master,
    /// other than the one on `old_port`, and that server says it is a master
    /// (`ROLE`); returns its port. Waiting for all of them, not only the
    /// leader of the failover, means a client asking any sentinel from now
    /// on is sent to the new master.
    ///
    /// # Panics
    /// When that does not happen within `timeout`; the message quotes the end
    /// of every log.
    #[allow(
        clippy::must_use_candidate,
        reason = "a test may wait for the failover without needing the port"
    )]
    pub fn wait_for_new_master(&self, old_port: u16, timeout: Duration) -> u16 {
        poll_until(timeout, || {
            let views = self.views();
            let port = views.first()?.port;
            let agreed = views.iter().all(|view| view.port == port);
            (agreed && port != old_port && self.is_master(port)).then_some(port)
        })
        .unwrap_or_else(|| {
            self.fail(&format!(
                "the sentinels did not agree on a new master, replacing the one on port \
                 {old_port}, within {timeout:?}"
            ))
        })
    }

    /// The data server (master or replica) on `port`: to restart a killed
    /// master, say.
    ///
    /// # Panics
    /// When none of the group's data servers is on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        let Some(index) = self.data.iter().position(|server| server.port() == port) else {
            let ports: Vec<u16> = self.data.iter().map(RedisServer::port).collect();
            panic!("no data server of the group is on port {port}; they are on {ports:?}");
        };
        &mut self.data[index]
    }

    /// The views of the sentinels that answer.
    fn views(&self) -> Vec<MasterView> {
        self.sentinels.iter().filter_map(view_of).collect()
    }

    fn replica_is_in_sync(&self) -> bool {
        let master = &self.data[0];
        master.try_cli(&["info", "replication"]).is_ok_and(|info| {
            info.lines()
                .any(|line| line.starts_with("slave0:") && line.contains("state=online"))
        })
    }

    /// Whether `sentinel` names the master, and knows the replica and the
    /// other sentinels: what a failover needs right away.
    fn knows_everything(&self, sentinel: &RedisServer) -> bool {
        // INFO sentinel sums a master up as
        // `master0:name=mymaster,status=ok,address=..,slaves=1,sentinels=3`.
        let expected = [
            format!("name={SERVICE}"),
            "status=ok".to_owned(),
            format!("address=127.0.0.1:{}", self.data[0].port()),
            "slaves=1".to_owned(),
            format!("sentinels={SENTINELS}"),
        ];
        sentinel.try_cli(&["info", "sentinel"]).is_ok_and(|info| {
            info.lines()
                .filter_map(|line| line.strip_prefix("master0:"))
                .any(|summary| {
                    let fields: Vec<&str> = summary.split(',').collect();
                    expected
                        .iter()
                        .all(|field| fields.contains(&field.as_str()))
                })
        })
    }

    fn is_master(&self, port: u16) -> bool {
        self.data
            .iter()
            .find(|server| server.port() == port)
            .and_then(|server| server.try_cli(&["role"]).ok())
            .is_some_and(|role| role.lines().next() == Some("master"))
    }

    fn wait_until(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        if poll_until(SETTLE_TIMEOUT, || ready(self).then_some(())).is_none() {
            self.fail(&format!("not ready within {SETTLE_TIMEOUT:?}: {what}"));
        }
    }

    /// Panics with `problem` and the end of every log in the group.
    #[track_caller]
    fn fail(&self, problem: &str) -> ! {
        let logs: Vec<String> = self
            .data
            .iter()
            .chain(&self.sentinels)
            .map(RedisServer::log_report)
            .collect();
        panic!("Sentinel group: {problem}\n{}", logs.join("\n"))
    }
}

/// Where a sentinel says the master is.
#[derive(Debug, Clone, Copy)]
struct MasterView {
    port: u16,
    /// Grows with every failover, so the highest is the newest view.
    epoch: u64,
}

/// The master as `sentinel` sees it, if it answers.
fn view_of(sentinel: &RedisServer) -> Option<MasterView> {
    let reply = sentinel.try_cli(&["sentinel", "master", SERVICE]).ok()?;
    // redis-cli prints the reply's field names and values a line each.
    let lines: Vec<&str> = reply.lines().map(str::trim).collect();
    let field = |name: &str| {
        let pair = lines.chunks_exact(2).find(|pair| pair[0] == name)?;
        Some(pair[1])
    };
    Some(MasterView {
        port: field("port")?.parse().ok()?,
        epoch: field("config-epoch")?.parse().ok()?,
    })
}

/// Writes the config of a sentinel on `port` watching the master on
/// `master_port` into `folder`, and returns its path. Sentinel rewrites the
/// file to remember what it learns, so it must be the sentinel's own and
/// writable.
pub(super) fn write_config(
    folder: &Path,
    port: u16,
    master_port: u16,
    tls: Option<&(RedisTls, TlsFiles)>,
) -> String {
    let path = folder.join("sentinel.conf");
    // In TLS mode the sentinel listens for TLS only, and speaks TLS to the
    // servers and the other sentinels (`tls-replication`).
    let listen = match tls {
        Some((mode, files)) => {
            let settings = tls_server_settings(port, *mode, files);
            let lines: Vec<String> = settings
                .iter()
                .map(|(name, value)| format!("{name} \"{value}\"\n"))
                .collect();
            format!("port 0\n{}", lines.concat())
        }
        None => format!("port {port}\n"),
    };
    let config = format!(
        "{listen}\
         bind 127.0.0.1\n\
         protected-mode no\n\
         dir \"{folder}\"\n\
         sentinel resolve-hostnames no\n\
         sentinel monitor {SERVICE} 127.0.0.1 {master_port} {QUORUM}\n\
         sentinel down-after-milliseconds {SERVICE} 1000\n\
         sentinel failover-timeout {SERVICE} 5000\n\
         sentinel parallel-syncs {SERVICE} 1\n",
        folder = folder.display(),
    );
    fs::write(&path, config).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    path.display().to_string()
}
