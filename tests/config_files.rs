//! Every file in `examples/config/` builds a working stack: each is read as
//! shipped, its server addresses are pointed at the test kit's servers (as
//! a deployment would with `SESSION__…` variables), and a browser counts
//! through the resulting layer. Then what start-up does when a server is
//! down: fail with the key named, or start degraded and catch up.

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    path::Path,
    time::Duration,
};

use session_conformance::{
    http::{Browser, RunningApp, TestApp},
    testkit::{MemcachedServer, PostgresServer, RedisCluster, RedisSentinel, RedisServer},
};
use session_kit::{
    actix::conformance::ActixApp,
    build_manager,
    config::{
        figment::{
            providers::{Format, Toml},
            Figment,
        },
        SessionConfig,
    },
    tower::conformance::AxumApp,
    BuildError,
};

const SECRET: &str = "a test secret of at least thirty-two bytes";
const CONFIG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config");

/// The files this test knows how to point at test servers. A new file must
/// be added here, or `every_example_file_is_tested` fails.
const FILES: &[&str] = &[
    "memory.toml",
    "redis.toml",
    "redis-tls.toml",
    "redis-sentinel.toml",
    "redis-cluster.toml",
    "memcached.toml",
    "redis-memcached-failover.toml",
    "redis-postgres-standby.toml",
    "redis-near-cache.toml",
    "cluster-3-nodes.toml",
];

/// `file` as shipped, with `overrides` on top, and the two settings every
/// test needs: a shared secret (unless the file generates one) and cookies
/// without `Secure`, since the tests speak plain http.
fn load(file: &str, overrides: Figment) -> SessionConfig {
    try_load(file, overrides).unwrap_or_else(|err| panic!("{file}: {err}"))
}

/// [`load`], returning the error. A cluster file leaves each node's id and
/// address to the node, so it reads only with them given.
fn try_load(file: &str, overrides: Figment) -> Result<SessionConfig, session_kit::ConfigError> {
    let path = Path::new(CONFIG_DIR).join(file);
    let shipped = Figment::from(Toml::file_exact(&path));
    let generates_secret = shipped
        .extract_inner::<bool>("cookie.generate_secret")
        .unwrap_or(false);
    let mut figment = shipped.merge(("cookie.secure", false));
    if !generates_secret {
        figment = figment.merge(("cookie.secret", SECRET));
    }
    SessionConfig::from_figment(&figment.merge(overrides))
}

/// Serves `config` with `app` and checks that a browser's count goes up
/// and another browser starts its own.
async fn counts(app: &dyn TestApp, config: &SessionConfig, what: &str) {
    let manager = build_manager(config)
        .await
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let running = app.serve(manager).await;
    let (ada, bob) = (Browser::new(), Browser::new());
    for expected in ["1", "2", "3"] {
        assert_eq!(
            ada.get(&running, "/counter").await.1,
            expected,
            "{what}: ada's count"
        );
    }
    assert_eq!(
        bob.get(&running, "/counter").await.1,
        "1",
        "{what}: bob's count"
    );
    assert_eq!(
        ada.get(&running, "/read").await.1,
        "3",
        "{what}: ada's read"
    );
}

fn redis_url(server: &RedisServer) -> Figment {
    Figment::new().merge(("store.url", server.url()))
}

fn memcached_servers(path: &str, servers: &[MemcachedServer]) -> Figment {
    let addrs = servers
        .iter()
        .map(MemcachedServer::addr)
        .collect::<Vec<_>>();
    Figment::new().merge((format!("{path}.servers"), addrs))
}

/// Apps build the stack inside spawned tasks and `#[tokio::main]` alike.
#[test]
fn building_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let config = SessionConfig::default();
    let future = build_manager(&config);
    assert_send(&future);
    let future = session_kit::tower_layer(&config);
    assert_send(&future);
}

#[test]
fn every_example_file_is_tested() {
    let mut shipped = std::fs::read_dir(CONFIG_DIR)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    shipped.sort();
    let mut tested = FILES
        .iter()
        .map(|file| (*file).to_owned())
        .collect::<Vec<_>>();
    tested.sort();
    assert_eq!(shipped, tested);
}

#[tokio::test]
async fn memory_file_runs_on_axum_and_actix() {
    let config = load("memory.toml", Figment::new());
    counts(&AxumApp, &config, "memory.toml on axum").await;
    counts(&ActixApp, &config, "memory.toml on actix").await;
}

#[tokio::test]
async fn redis_file_runs_on_axum_and_actix() {
    let server = RedisServer::start();
    let config = load("redis.toml", redis_url(&server));
    counts(&AxumApp, &config, "redis.toml on axum").await;
    counts(&ActixApp, &config, "redis.toml on actix").await;
}

/// The paths are the shipped file's own, pointed at the test kit's
/// certificates as a deployment would with `SESSION__STORE__TLS_CA_CERT_FILE`
/// and the like; the server requires the client certificate.
#[cfg(feature = "tls")]
#[tokio::test]
async fn redis_tls_file_runs_over_mutual_tls() {
    use session_conformance::testkit::RedisTls;

    let server = RedisServer::start_tls(RedisTls::Mutual);
    let files = server.tls_files().expect("a TLS server");
    let overrides = redis_url(&server)
        .merge(("store.tls_ca_cert_file", files.ca_cert()))
        .merge(("store.tls_cert_file", files.client_cert()))
        .merge(("store.tls_key_file", files.client_key()));
    let config = load("redis-tls.toml", overrides);
    counts(&AxumApp, &config, "redis-tls.toml on axum").await;
    counts(&ActixApp, &config, "redis-tls.toml on actix").await;
}

/// As shipped, the file names certificate files this machine lacks: reading
/// it fails on the first, by its dotted key.
#[cfg(feature = "tls")]
#[test]
fn redis_tls_file_names_a_missing_certificate_file_by_its_key() {
    let err = try_load(
        "redis-tls.toml",
        Figment::new().merge(("store.url", "rediss://127.0.0.1:6380")),
    )
    .unwrap_err();
    assert_eq!(err.key(), "store.tls_ca_cert_file", "{err}");
    assert!(
        err.to_string().contains("/etc/session-kit/redis-ca.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn sentinel_file_finds_the_master() {
    let sentinel = RedisSentinel::start();
    let overrides = Figment::new()
        .merge(("store.sentinels", sentinel.sentinel_urls()))
        .merge(("store.service_name", sentinel.service_name()));
    let config = load("redis-sentinel.toml", overrides);
    counts(&AxumApp, &config, "redis-sentinel.toml").await;
}

#[tokio::test]
async fn cluster_file_discovers_the_nodes() {
    let cluster = RedisCluster::start();
    let config = load(
        "redis-cluster.toml",
        Figment::new().merge(("store.nodes", cluster.seed_urls())),
    );
    counts(&AxumApp, &config, "redis-cluster.toml").await;
}

#[tokio::test]
async fn memcached_file_spreads_over_the_pool() {
    let servers = MemcachedServer::start_many(3);
    let config = load("memcached.toml", memcached_servers("store", &servers));
    counts(&AxumApp, &config, "memcached.toml").await;
    let holding = servers
        .iter()
        .filter(|server| server.stats()["curr_items"] != "0")
        .count();
    assert!(holding >= 1, "no server holds a session");
}

#[tokio::test]
async fn failover_file_writes_both_stores() {
    let redis = RedisServer::start();
    let memcached = MemcachedServer::start_many(2);
    let overrides = redis_url(&redis).merge(memcached_servers("failover.secondary", &memcached));
    let config = load("redis-memcached-failover.toml", overrides);
    counts(&AxumApp, &config, "redis-memcached-failover.toml").await;
    let in_memcached: u64 = memcached
        .iter()
        .map(|server| server.stats()["curr_items"].parse::<u64>().unwrap())
        .sum();
    let in_redis: u64 = redis.cli(&["DBSIZE"]).trim().parse().unwrap();
    // Each store holds both sessions and, once the failover store has
    // written it in the background, this process's epoch mark (how it
    // tells a store that restarted empty after an outage).
    assert!(
        (2..=3).contains(&in_memcached),
        "the secondary should mirror both sessions: {in_memcached} items"
    );
    assert!(
        (2..=3).contains(&in_redis),
        "the primary should hold both sessions: {in_redis} keys"
    );
}

/// Standby: the sessions live in Redis alone while it is up (PostgreSQL
/// holds at most the failover store's epoch mark); with Redis killed, a new
/// visitor's session is served from PostgreSQL.
#[tokio::test]
async fn postgres_standby_file_writes_redis_and_falls_back_to_postgres() {
    let mut redis = RedisServer::start();
    let postgres = PostgresServer::start();
    let overrides = redis_url(&redis).merge(("failover.secondary.url", postgres.url()));
    let config = load("redis-postgres-standby.toml", overrides);
    let manager = build_manager(&config)
        .await
        .unwrap_or_else(|err| panic!("redis-postgres-standby.toml: {err}"));
    let running = AxumApp.serve(manager).await;
    let ada = Browser::new();
    for expected in ["1", "2", "3"] {
        assert_eq!(
            ada.get(&running, "/counter").await.1,
            expected,
            "ada's count"
        );
    }
    let rows = || -> u64 {
        postgres
            .psql("SELECT count(*) FROM sessions")
            .parse()
            .unwrap()
    };
    assert!(
        rows() <= 1,
        "standby wrote sessions to PostgreSQL: {} rows",
        rows()
    );
    let in_redis: u64 = redis.cli(&["DBSIZE"]).trim().parse().unwrap();
    assert!((1..=2).contains(&in_redis), "Redis holds {in_redis} keys");

    redis.kill();
    // Until the breaker opens a request may cost a call timeout, but none
    // fails: a load that cannot reach Redis asks PostgreSQL.
    let bob = Browser::new();
    for expected in ["1", "2", "3"] {
        let (status, body, _) = bob.get(&running, "/counter").await;
        assert_eq!((status, body.as_str()), (200, expected), "bob's count");
    }
    let sessions =
        postgres.psql("SELECT count(*) FROM sessions WHERE data ? 'count' AND expires_at > now()");
    assert_eq!(sessions, "1", "bob's session is in PostgreSQL");
}

#[tokio::test]
async fn near_cache_file_runs() {
    let server = RedisServer::start();
    let config = load("redis-near-cache.toml", redis_url(&server));
    counts(&AxumApp, &config, "redis-near-cache.toml").await;
}

/// A Redis that was started, then killed, so its port is known and nothing
/// listens on it.
fn dead_redis() -> RedisServer {
    let mut server = RedisServer::start();
    server.kill();
    server
}

fn fast_connect(config: &mut SessionConfig) {
    let session_kit::config::StoreConfig::Redis { config: redis, .. } = &mut config.store else {
        panic!("a redis config: {config:?}");
    };
    *redis = redis
        .clone()
        .with_connect_timeout(Duration::from_millis(300));
}

#[tokio::test]
async fn an_unreachable_store_fails_start_up_naming_the_key() {
    let server = dead_redis();
    let mut config = load("redis.toml", redis_url(&server));
    fast_connect(&mut config);
    let err = build_manager(&config).await.unwrap_err();
    assert!(matches!(err, BuildError::Unreachable { .. }), "{err:?}");
    assert_eq!(err.key(), "store");
    let message = err.to_string();
    assert!(
        message.contains("the redis store did not answer at start-up"),
        "{message}"
    );
    assert!(
        message.contains("store.on_unreachable = \"start_degraded\""),
        "{message}"
    );
}

/// The failover file over a live Redis and a Memcached that was started
/// and killed, with `extra` on top. The Memcached is returned for restarts.
fn failover_with_dead_secondary(
    redis: &RedisServer,
    extra: Figment,
) -> (SessionConfig, MemcachedServer) {
    let mut memcached = MemcachedServer::start();
    let overrides = redis_url(redis)
        .merge(memcached_servers(
            "failover.secondary",
            std::slice::from_ref(&memcached),
        ))
        .merge(("failover.secondary.connect_timeout", "300ms"))
        .merge(extra);
    memcached.kill();
    (load("redis-memcached-failover.toml", overrides), memcached)
}

#[tokio::test]
async fn an_unreachable_secondary_fails_start_up_naming_its_key() {
    let redis = RedisServer::start();
    let (config, _memcached) = failover_with_dead_secondary(
        &redis,
        Figment::new().merge(("failover.secondary.on_unreachable", "fail")),
    );
    let err = build_manager(&config).await.unwrap_err();
    assert_eq!(err.key(), "failover.secondary", "{err}");
    assert!(
        err.to_string().contains("memcached store did not answer"),
        "{err}"
    );
}

/// Degraded start: the app serves 503s (the reject policy) while Redis is
/// down, and sessions work once it is up, with no restart.
#[tokio::test]
async fn a_degraded_start_serves_once_the_store_comes_up() {
    let mut server = dead_redis();
    let overrides = redis_url(&server).merge(("store.on_unreachable", "start_degraded"));
    let mut config = load("redis.toml", overrides);
    fast_connect(&mut config);
    let manager = build_manager(&config).await.expect("starts degraded");
    let running: RunningApp = AxumApp.serve(manager).await;
    let browser = Browser::new();
    let (status, _, took) = browser.get(&running, "/counter").await;
    assert_eq!(status, 503, "no store yet");
    assert!(took < Duration::from_secs(1), "answered in {took:?}");

    server.restart();
    let mut last = (0, String::new());
    for _ in 0..100 {
        let (status, body, _) = browser.get(&running, "/counter").await;
        last = (status, body);
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, (200, "1".to_owned()), "the store was never reached");
    assert_eq!(browser.get(&running, "/counter").await.1, "2");
}

/// A failover secondary that is down at start-up: the app starts on the
/// primary alone, and the secondary is filled once it answers.
#[tokio::test]
async fn a_degraded_secondary_joins_when_it_comes_up() {
    let redis = RedisServer::start();
    // The shipped file already says start_degraded for the secondary.
    let (config, mut memcached) = failover_with_dead_secondary(&redis, Figment::new());
    let manager = build_manager(&config).await.expect("starts degraded");
    let running = AxumApp.serve(manager).await;
    let browser = Browser::new();
    let (status, body, _) = browser.get(&running, "/counter").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "1"),
        "served by the primary alone"
    );

    memcached.restart();
    let mut mirrored = false;
    for _ in 0..100 {
        assert_eq!(browser.get(&running, "/counter").await.0, 200);
        if memcached.stats()["curr_items"] != "0" {
            mirrored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mirrored, "the secondary never received the session");
}

const CLUSTER_SECRET: &str = "a test cluster secret, other than the cookie secret";

/// `count` loopback ports that are free for TCP and UDP alike, as a cluster
/// node binds both on one port. All are held until all are found, so no
/// two are the same.
fn free_cluster_ports(count: usize) -> Vec<SocketAddr> {
    let mut held = Vec::new();
    for _ in 0..count * 20 {
        if held.len() == count {
            break;
        }
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        if let Ok(udp) = UdpSocket::bind(addr) {
            held.push((addr, tcp, udp));
        }
    }
    assert_eq!(
        held.len(),
        count,
        "no {count} loopback ports free for TCP and UDP"
    );
    held.into_iter().map(|(addr, ..)| addr).collect()
}

/// The cluster file for node `id` of the cluster at `addrs`, as each node's
/// `--id`/`--listen` flags (or `SESSION__STORE__…` variables) would set it.
fn cluster_node(id: &str, listen: SocketAddr, addrs: &[SocketAddr]) -> SessionConfig {
    let seeds = addrs.iter().map(ToString::to_string).collect::<Vec<_>>();
    load(
        "cluster-3-nodes.toml",
        Figment::new()
            .merge(("store.node_id", id))
            .merge(("store.listen", listen.to_string()))
            .merge(("store.seeds", seeds))
            .merge(("store.cluster_secret", CLUSTER_SECRET)),
    )
}

/// Three nodes in this process, each behind its own axum app; one browser
/// counts through them round-robin, as behind a plain load balancer.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_file_counts_round_robin_across_three_nodes() {
    let addrs = free_cluster_ports(3);
    // Two nodes through `cluster::build_manager`, which hands back the node,
    // and one through `build_manager`, like any other kind.
    let (manager_a, node_a) =
        session_kit::cluster::build_manager(&cluster_node("a", addrs[0], &addrs))
            .await
            .expect("node a");
    let (manager_b, node_b) =
        session_kit::cluster::build_manager(&cluster_node("b", addrs[1], &addrs))
            .await
            .expect("node b");
    let manager_c = build_manager(&cluster_node("c", addrs[2], &addrs))
        .await
        .expect("node c");
    for node in [&node_a, &node_b] {
        assert!(
            node.wait_for_members(3, Duration::from_secs(10)).await,
            "{} sees only {:?}",
            node.node_id(),
            node.members()
        );
    }
    let mut c_serves = false;
    for _ in 0..100 {
        if manager_c.store().health().await.is_ok() {
            c_serves = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c_serves, "node c never saw a quorum");

    let apps = [
        AxumApp.serve(manager_a).await,
        AxumApp.serve(manager_b).await,
        AxumApp.serve(manager_c).await,
    ];
    let (ada, bob) = (Browser::new(), Browser::new());
    for count in 1..=6_usize {
        let (status, body, _) = ada.get(&apps[(count - 1) % 3], "/counter").await;
        assert_eq!(
            (status, body),
            (200, count.to_string()),
            "ada's count {count}"
        );
    }
    assert_eq!(bob.get(&apps[2], "/counter").await.1, "1", "bob's count");
    for (app, node) in apps.iter().zip(["a", "b", "c"]) {
        assert_eq!(ada.get(app, "/read").await.1, "6", "ada's read on {node}");
    }
}

#[tokio::test]
async fn a_cluster_node_without_its_id_is_refused_naming_the_key() {
    let addrs = free_cluster_ports(1);
    let err = try_load(
        "cluster-3-nodes.toml",
        Figment::new()
            .merge(("store.listen", addrs[0].to_string()))
            .merge(("store.cluster_secret", CLUSTER_SECRET)),
    )
    .unwrap_err();
    assert_eq!(err.key(), "store.node_id", "{err}");
    assert!(err.to_string().contains("SESSION__STORE__NODE_ID"), "{err}");
}
