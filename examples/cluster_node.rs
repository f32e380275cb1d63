//! One node of a session cluster: the counter app on axum, with sessions
//! replicated in the memory of the app servers themselves
//! (`store.kind = "cluster"`), so no Redis, no Memcached and no sticky load
//! balancer. Three nodes on one machine, and one browser (a curl cookie
//! jar) counting round-robin across them:
//!
//! ```text
//! cargo build --example cluster_node --features axum,cluster
//! seeds=127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403
//! target/debug/examples/cluster_node --id a --http 127.0.0.1:3001 --listen 127.0.0.1:7401 --seeds $seeds &
//! target/debug/examples/cluster_node --id b --http 127.0.0.1:3002 --listen 127.0.0.1:7402 --seeds $seeds &
//! target/debug/examples/cluster_node --id c --http 127.0.0.1:3003 --listen 127.0.0.1:7403 --seeds $seeds &
//! for port in 3001 3002 3003 3001 3002 3003; do curl -s -b jar -c jar http://127.0.0.1:$port/; done
//! curl -s http://127.0.0.1:3001/stats
//! ```
//!
//! | route | answers |
//! |---|---|
//! | `GET /` | adds one to the session's count: `count: N` |
//! | `GET /count` | the count, without writing |
//! | `GET /stats` | this node's members and counters, as JSON |
//! | `GET /health` | 200 while this node sees a quorum, 503 otherwise |
//!
//! Flags, each overriding the config: `--config FILE` (a TOML file such as
//! `examples/config/cluster-3-nodes.toml`; without one, the defaults with
//! `store.kind = "cluster"`), `--id` (`store.node_id`), `--listen`
//! (`store.listen`, the peer port, TCP and UDP), `--seeds` (`store.seeds`,
//! comma-separated) and `--http` (the app's address; default `$ADDR`, or
//! 127.0.0.1:3000). Every other key comes from the file or a `SESSION__…`
//! variable, as in `from_config`.
//!
//! The two secrets, shared by every node and different from each other:
//! `SESSION__COOKIE__SECRET` and `SESSION__STORE__CLUSTER_SECRET`
//! (`openssl rand -base64 48` makes one). Without them, and only while every
//! address is loopback, the node uses development secrets written in this
//! file, and says so in a warning.
//!
//! Ctrl-C or SIGTERM: the node stops taking requests, hands its sessions to
//! the other nodes and leaves the cluster. `kill -9` loses no session either
//! (each one has a copy on another node), but writes to that node's sessions
//! answer 503 for about a second, until the others declare it dead.

mod support;

use std::{fmt::Write as _, net::SocketAddr, path::Path, process::ExitCode, time::Duration};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use session_kit::{
    cluster::ClusterStore,
    config::{
        figment::{
            providers::{Env, Format, Toml},
            Figment,
        },
        SessionConfig, ENV_PREFIX,
    },
    store::SessionStore,
    tower::{Error, Session, SessionLayer},
};

const USAGE: &str = "usage: cluster_node [--config FILE] [--id ID] [--listen IP:PORT] \
                     [--seeds HOST:PORT,HOST:PORT,...] [--http IP:PORT]";

/// Public, so usable only on loopback: they let three nodes share sessions
/// with nothing to set up.
const DEV_COOKIE_SECRET: &str = "cluster_node development cookie secret, public: never deploy";
const DEV_CLUSTER_SECRET: &str = "cluster_node development cluster secret, public: never deploy";

/// How long in-flight requests get to finish once the node is asked to stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the node gets to hand its sessions over before it leaves anyway.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    support::init_tracing();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cluster_node: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The command line, as given.
#[derive(Default)]
struct Args {
    config: Option<String>,
    id: Option<String>,
    listen: Option<String>,
    seeds: Option<Vec<String>>,
    http: Option<String>,
}

impl Args {
    fn parse() -> Result<Self, &'static str> {
        let mut args = std::env::args().skip(1);
        let mut parsed = Self::default();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(USAGE)?;
            match flag.as_str() {
                "--config" => parsed.config = Some(value),
                "--id" => parsed.id = Some(value),
                "--listen" => parsed.listen = Some(value),
                "--seeds" => {
                    parsed.seeds = Some(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|seed| !seed.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    );
                }
                "--http" => parsed.http = Some(value),
                _ => return Err(USAGE),
            }
        }
        Ok(parsed)
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse()?;
    let http: SocketAddr = match &args.http {
        Some(addr) => addr.parse()?,
        None => std::env::var("ADDR")
            .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
            .parse()?,
    };
    let figment = use_dev_secrets_if_unset(load(&args)?, http)?;
    let config = SessionConfig::from_figment(&figment)?;

    let (manager, node) = session_kit::cluster::build_manager(&config).await?;
    let app = Router::new()
        .route("/", get(count))
        .route("/count", get(read))
        .route("/stats", get(stats))
        .route("/health", get(health))
        .with_state(node.clone())
        .layer(SessionLayer::new(manager));

    let listener = tokio::net::TcpListener::bind(http).await?;
    tracing::info!(
        node = node.node_id(),
        %http,
        peers = %node.local_addr(),
        "cluster_node listening; it serves sessions once it sees a quorum"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    tokio::select! {
        ended = &mut server => {
            ended??;
            return Err("the HTTP server stopped on its own".into());
        }
        () = stop_signal() => {}
    }
    tracing::info!("stopping: finishing requests, then handing sessions over");
    let _ = stop.send(());
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut server)
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "requests still open; closing them");
        server.abort();
    }
    node.shutdown(HANDOFF_TIMEOUT).await;
    tracing::info!("left the cluster");
    Ok(())
}

/// Defaults with `store.kind = "cluster"`, then the file, then `SESSION__…`
/// variables, then the flags.
fn load(args: &Args) -> Result<Figment, Box<dyn std::error::Error>> {
    let mut figment = Figment::new().merge(("store.kind", "cluster"));
    if let Some(path) = &args.config {
        // figment would report a missing file as a missing key.
        std::fs::metadata(Path::new(path)).map_err(|err| format!("cannot read `{path}`: {err}"))?;
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
    if let Some(id) = &args.id {
        figment = figment.merge(("store.node_id", id));
    }
    if let Some(listen) = &args.listen {
        figment = figment.merge(("store.listen", listen));
    }
    if let Some(seeds) = &args.seeds {
        figment = figment.merge(("store.seeds", seeds));
    }
    Ok(figment)
}

/// Fills in the development secrets the config lacks, as long as nothing
/// but this machine can reach the node.
fn use_dev_secrets_if_unset(
    mut figment: Figment,
    http: SocketAddr,
) -> Result<Figment, Box<dyn std::error::Error>> {
    let set = |key: &str| figment.find_value(key).is_ok();
    let no_cookie_secret = !set("cookie.secret")
        && !set("cookie.secret_file")
        && !figment
            .extract_inner::<bool>("cookie.generate_secret")
            .unwrap_or(false);
    let no_cluster_secret = !set("store.cluster_secret") && !set("store.cluster_secret_file");
    if !no_cookie_secret && !no_cluster_secret {
        return Ok(figment);
    }
    // An unset or malformed `listen` is reported by the build, naming its key.
    let listen = figment
        .extract_inner::<String>("store.listen")
        .ok()
        .and_then(|listen| listen.parse::<SocketAddr>().ok());
    let reachable =
        !http.ip().is_loopback() || listen.is_some_and(|listen| !listen.ip().is_loopback());
    if reachable {
        return Err(
            "set SESSION__COOKIE__SECRET and SESSION__STORE__CLUSTER_SECRET (at least 32 \
                    bytes each, shared by every node, different from each other): the \
                    development secrets are public, so they are used only on loopback"
                .into(),
        );
    }
    if no_cookie_secret {
        tracing::warn!(
            "SESSION__COOKIE__SECRET is not set: using the public development cookie secret; \
             anyone can forge this node's cookies"
        );
        figment = figment.merge(("cookie.secret", DEV_COOKIE_SECRET));
    }
    if no_cluster_secret {
        tracing::warn!(
            "SESSION__STORE__CLUSTER_SECRET is not set: using the public development cluster \
             secret; anyone who can reach the peer port can read and write every session"
        );
        figment = figment.merge(("store.cluster_secret", DEV_CLUSTER_SECRET));
    }
    Ok(figment)
}

/// Ctrl-C, or SIGTERM (what `kill`, systemd and Kubernetes send).
async fn stop_signal() {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; Ctrl-C still stops");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// `/`: adds one to the count and answers it.
async fn count(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0) + 1;
    session.insert("count", count).await?;
    Ok(format!("count: {count}\n"))
}

/// `/count`: the count, without writing.
async fn read(session: Session) -> Result<String, Error> {
    let count = session.get::<u64>("count").await?.unwrap_or(0);
    Ok(format!("count: {count}\n"))
}

/// `/stats`: this node's members and counters, as one line of JSON.
async fn stats(State(node): State<ClusterStore>) -> ([(&'static str, &'static str); 1], String) {
    let stats = node.stats();
    let members = node
        .members()
        .iter()
        .map(|id| json_string(id))
        .collect::<Vec<_>>()
        .join(",");
    let body = format!(
        "{{\"node\":{},\"addr\":\"{}\",\"members\":{},\"member_ids\":[{members}],\
         \"sessions_held\":{},\"owner_indexes_held\":{},\"bytes_sent\":{},\"bytes_received\":{},\"requests_sent\":{},\
         \"requests_refused\":{},\"rebalances\":{}}}\n",
        json_string(node.node_id()),
        node.local_addr(),
        stats.members,
        stats.sessions_held,
        stats.owner_indexes_held,
        stats.bytes_sent,
        stats.bytes_received,
        stats.requests_sent,
        stats.requests_refused,
        stats.rebalances,
    );
    ([("content-type", "application/json")], body)
}

/// `/health`: for a load balancer's health check.
async fn health(State(node): State<ClusterStore>) -> (StatusCode, String) {
    match node.health().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", err.to_line()),
        ),
    }
}

/// `text` as a JSON string: node ids are whatever the operator chose.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
