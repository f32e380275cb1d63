//! Every way a config can be wrong gets an error that names the key and says
//! what is wrong. Tests for a backend that is *not* compiled in run in
//! `scripts/test`'s feature matrix (`--no-default-features --features memory`).

// Some of these are used only by tests of backends this build may lack.
#[allow(unused_imports)]
use std::{io::Write, time::Duration};

use super::*;
#[allow(unused_imports)]
use crate::{cookie::CookieCodec, failover::FailoverMode, SessionId};

#[cfg(feature = "redis")]
fn redis(block: &StoreConfig) -> &session_redis::RedisConfig {
    match block {
        StoreConfig::Redis { config, .. } => config,
        other => panic!("not a redis block: {other:?}"),
    }
}

#[cfg(feature = "memcached")]
fn memcached(block: &StoreConfig) -> &session_memcached::MemcachedConfig {
    match block {
        StoreConfig::Memcached { config, .. } => config,
        other => panic!("not a memcached block: {other:?}"),
    }
}

#[cfg(feature = "postgres")]
fn postgres(block: &StoreConfig) -> &session_postgres::PostgresConfig {
    match block {
        StoreConfig::Postgres { config, .. } => config,
        other => panic!("not a postgres block: {other:?}"),
    }
}

#[cfg(feature = "cluster")]
fn cluster(block: &StoreConfig) -> &session_cluster::ClusterConfig {
    match block {
        StoreConfig::Cluster(config) => config,
        other => panic!("not a cluster block: {other:?}"),
    }
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

/// The error of reading `toml` (with a valid secret prepended unless the
/// text has its own `[cookie]`) and validating it.
fn error(toml: &str) -> ConfigError {
    let text = if toml.contains("[cookie]") {
        toml.to_owned()
    } else {
        format!("{toml}\n[cookie]\nsecret = \"{SECRET}\"\n")
    };
    match SessionConfig::from_toml(&text) {
        Ok(config) => config
            .validate()
            .expect_err("the config should have been refused"),
        Err(err) => err,
    }
}

#[track_caller]
fn assert_error(toml: &str, key: &str, reason_contains: &str) {
    let err = error(toml);
    assert_eq!(err.key(), key, "{err}");
    assert!(
        err.reason().contains(reason_contains),
        "`{}` does not contain `{reason_contains}`",
        err.reason()
    );
    assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
}

#[test]
fn an_empty_file_is_the_default() {
    assert_eq!(
        SessionConfig::from_toml("").unwrap(),
        SessionConfig::default()
    );
    assert_eq!(
        SessionConfig::default().cookie_config(),
        CookieConfig::default()
    );
}

#[cfg(all(feature = "redis", feature = "memcached"))]
#[test]
fn every_key_is_read() {
    let config = SessionConfig::from_toml(&format!(
        r#"
        idle_timeout = "10m"
        absolute_timeout = 7200
        operation_timeout = "1s 500ms"
        error_policy = "treat_as_empty"
        max_sessions_per_owner = 5

        [cookie]
        name = "sid"
        domain = "example.com"
        path = "/app"
        same_site = "strict"
        secure = true
        http_only = false
        persistent = true
        secret = "{SECRET}"
        previous_secrets = ["{SECRET}-old"]

        [store]
        kind = "redis"
        sentinels = ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"]
        service_name = "sessions"
        password = "master-pw"
        db = 3
        key_prefix = "shop:"
        operation_timeout = "250ms"
        connect_timeout = "2s"
        on_unreachable = "start_degraded"

        [failover]
        mode = "standby"
        call_timeout = "200ms"
        failure_threshold = 5
        open_for = "2s"
        max_open_for = "1m"
        probe_interval = "250ms"
        tombstone_ttl = "2d"
        max_pending = 10

        [failover.secondary]
        kind = "memcached"
        servers = ["10.0.0.7:11211"]
        pool_size = 4
        max_connections = 64
        item_size_limit = 65536
        commit_attempts = 8

        [near_cache]
        max_bytes = 1048576
        "#
    ))
    .unwrap();
    assert_eq!(config.idle_timeout, Duration::from_secs(600));
    assert_eq!(config.absolute_timeout, Duration::from_secs(7200));
    assert_eq!(config.operation_timeout, Duration::from_millis(1500));
    assert_eq!(config.error_policy, ErrorPolicy::TreatAsEmpty);
    assert_eq!(
        config.manager_config().max_sessions_per_owner,
        std::num::NonZeroUsize::new(5)
    );
    assert_eq!(config.cookie.name, "sid");
    assert_eq!(config.cookie.same_site, SameSite::Strict);
    assert!(!config.cookie.http_only);
    assert_eq!(config.keys().unwrap().len(), 2);
    assert_eq!(config.store.kind(), StoreKind::Redis);
    assert!(matches!(
        redis(&config.store).topology(),
        session_redis::Topology::Sentinel { db: 3, .. }
    ));
    assert_eq!(config.store.on_unreachable(), OnUnreachable::StartDegraded);
    let failover = config.failover.as_ref().unwrap();
    assert_eq!(failover.config.mode, FailoverMode::Standby);
    assert_eq!(failover.config.call_timeout, Duration::from_millis(200));
    assert_eq!(
        failover.config.tombstone_ttl,
        Duration::from_secs(2 * 86_400)
    );
    assert_eq!(failover.config.probe_interval, Duration::from_millis(250));
    assert_eq!(failover.secondary.kind(), StoreKind::Memcached);
    assert_eq!(memcached(&failover.secondary).commit_attempts(), 8);
    assert_eq!(config.near_cache.as_ref().unwrap().max_bytes, 1 << 20);
    #[cfg(feature = "memory")]
    config.validate().unwrap();
}

#[test]
fn an_unknown_kind_lists_the_known_ones() {
    assert_error("[store]\nkind = \"mongo\"", "store.kind", "found `mongo`");
    assert_error("[store]\nkind = \"mongo\"", "store.kind", "`memcached`");
}

#[test]
fn a_store_block_needs_a_kind() {
    assert_error(
        "[store]\nmax_capacity = 5",
        "store.kind",
        "missing field `kind`",
    );
}

#[test]
fn a_misspelt_key_is_named() {
    assert_error(
        "[store]\nkind = \"memory\"\nmax_capacty = 5",
        "store.max_capacty",
        "unknown field",
    );
    assert_error("idle_timout = \"5m\"", "idle_timout", "unknown field");
}

#[cfg(all(feature = "memory", feature = "redis", feature = "memcached"))]
#[test]
fn an_option_of_another_kind_is_refused() {
    assert_error(
        "[store]\nkind = \"memory\"\nservers = [\"a:1\"]",
        "store.servers",
        "is an option of store kind memcached, not of `memory`",
    );
    assert_error(
        "[store]\nkind = \"memory\"\nurl = \"redis://a\"",
        "store.url",
        "redis or memcached",
    );
}

#[test]
fn a_missing_secret_says_how_to_make_one() {
    assert_error("[cookie]\nname = \"sid\"", "cookie.secret", "is missing");
    assert_error(
        "[cookie]\nname = \"sid\"",
        "cookie.secret",
        "SESSION__COOKIE__SECRET",
    );
}

#[test]
fn a_short_secret_gives_its_length() {
    assert_error(
        "[cookie]\nsecret = \"hunter2\"",
        "cookie.secret",
        "is 7 bytes long; at least 32",
    );
    assert_error(
        &format!("[cookie]\nsecret = \"{SECRET}\"\nprevious_secrets = [\"{SECRET}\", \"old\"]"),
        "cookie.previous_secrets[1]",
        "is 3 bytes long",
    );
    // The secret itself is never repeated in the message.
    assert!(!error("[cookie]\nsecret = \"hunter2\"")
        .to_string()
        .contains("hunter2"));
}

#[test]
fn a_secret_has_exactly_one_source() {
    assert_error(
        &format!("[cookie]\nsecret = \"{SECRET}\"\ngenerate_secret = true"),
        "cookie.secret",
        "exactly one of",
    );
}

#[test]
fn a_secret_file_is_read_without_its_newline() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{SECRET}").unwrap();
    let toml = format!(
        "[cookie]\nsecret_file = {:?}",
        file.path().display().to_string()
    );
    let config = SessionConfig::from_toml(&toml).unwrap();
    let from_file = CookieCodec::new(CookieConfig::default(), config.keys().unwrap()).unwrap();
    let from_text = CookieCodec::new(
        CookieConfig::default(),
        KeyRing::new(Key::from_secret(SECRET).unwrap()),
    )
    .unwrap();
    let id = SessionId::generate();
    assert!(from_text.verify(&from_file.sign(&id)).is_some());

    assert_error(
        "[cookie]\nsecret_file = \"/nonexistent/session-secret\"",
        "cookie.secret_file",
        "cannot read `/nonexistent/session-secret`",
    );
}

/// A secret file is read up to a cap, so `secret_file = "/dev/zero"` (or a
/// log file named by mistake) is a config error rather than a process that
/// reads until memory runs out.
#[test]
fn a_secret_file_larger_than_64_kib_is_refused_naming_the_key() {
    let sized = |len: usize| {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&vec![b's'; len]).unwrap();
        file
    };
    let at_the_cap = sized(session_core::config::MAX_SECRET_FILE_BYTES);
    // `keys`, not `validate`: the cap is the cookie block's business, and
    // `validate` would also need the default store kind compiled in.
    SessionConfig::from_toml(&format!(
        "[cookie]\nsecret_file = {:?}",
        at_the_cap.path().display().to_string()
    ))
    .unwrap()
    .keys()
    .unwrap();

    let past_the_cap = sized(session_core::config::MAX_SECRET_FILE_BYTES + 1);
    assert_error(
        &format!(
            "[cookie]\nsecret_file = {:?}",
            past_the_cap.path().display().to_string()
        ),
        "cookie.secret_file",
        "holds more than 64 KiB",
    );
    assert_error(
        "[cookie]\nsecret_file = \"/dev/zero\"",
        "cookie.secret_file",
        "`/dev/zero` holds more than 64 KiB",
    );
    assert_error(
        &format!("[cookie]\nsecret = \"{SECRET}\"\nprevious_secret_files = [\"/dev/zero\"]"),
        "cookie.previous_secret_files[0]",
        "holds more than 64 KiB",
    );
}

#[test]
fn zero_and_negative_timeouts_are_refused() {
    assert_error("idle_timeout = \"0s\"", "idle_timeout", "greater than zero");
    assert_error("idle_timeout = 0", "idle_timeout", "greater than zero");
    assert_error(
        "operation_timeout = \"0ms\"",
        "operation_timeout",
        "greater than zero",
    );
    assert_error(
        "idle_timeout = \"-5m\"",
        "idle_timeout",
        "must not be negative",
    );
    assert_error(
        "absolute_timeout = -60",
        "absolute_timeout",
        "must not be negative",
    );
    assert_error(
        "idle_timeout = \"5 parsecs\"",
        "idle_timeout",
        "is not a duration",
    );
    assert_error(
        "idle_timeout = \"2h\"\nabsolute_timeout = \"1h\"",
        "absolute_timeout",
        "at least idle_timeout",
    );
    // Deadlines are computed from these; a huge one must be refused, not
    // overflow on the first request.
    assert_error(
        "absolute_timeout = 9223372036854775807",
        "absolute_timeout",
        "at most 400 days",
    );
    assert_error(
        "idle_timeout = \"500y\"",
        "idle_timeout",
        "at most 400 days",
    );
}

#[test]
fn a_cap_of_zero_sessions_per_owner_names_its_key() {
    assert_error("max_sessions_per_owner = 0", "max_sessions_per_owner", "0");
}

#[test]
fn lifetime_maximums_are_read_and_checked() {
    let config =
        SessionConfig::from_toml("max_idle_timeout = \"14d\"\nmax_absolute_timeout = \"30d\"")
            .unwrap();
    assert_eq!(
        config.max_idle_timeout,
        Some(Duration::from_secs(14 * 86_400))
    );
    let manager = config.manager_config();
    assert_eq!(
        manager.effective_max_absolute_timeout(),
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        SessionConfig::default()
            .manager_config()
            .effective_max_idle_timeout(),
        ManagerConfig::DEFAULT_IDLE_TIMEOUT
    );
    assert_error(
        "max_idle_timeout = \"1m\"",
        "max_idle_timeout",
        "at least idle_timeout",
    );
    assert_error(
        "max_absolute_timeout = \"1h\"",
        "max_absolute_timeout",
        "at least absolute_timeout",
    );
    assert_error(
        "max_absolute_timeout = \"500d\"",
        "max_absolute_timeout",
        "at most 400 days",
    );
    assert_error(
        "max_idle_timeout = \"soon\"",
        "max_idle_timeout",
        "is not a duration",
    );
}

// A memory store with a Memcached secondary, as
// `failover_rules_tie_the_blocks_together` uses.
#[cfg(all(feature = "memory", feature = "memcached"))]
#[test]
fn tombstones_outlive_the_longest_lifetime_a_session_may_ask_for() {
    assert_error(
        "max_absolute_timeout = \"30d\"\n[failover]\ntombstone_ttl = \"24h\"\n[failover.secondary]\nkind = \"memcached\"\nservers = [\"a:1\"]",
        "failover.tombstone_ttl",
        "at least max_absolute_timeout",
    );
}

#[test]
fn the_header_transport_is_read_and_checked() {
    use session_core::{HeaderTransport, Transport};

    let bearer = SessionConfig::from_toml("transport = \"header\"").unwrap();
    assert_eq!(
        bearer.manager_config().transport,
        Transport::Header(HeaderTransport::bearer())
    );
    let custom =
        SessionConfig::from_toml("transport = \"header\"\n[header]\nname = \"X-Session-Token\"")
            .unwrap();
    assert_eq!(
        custom.manager_config().transport,
        Transport::Header(HeaderTransport::new("x-session-token"))
    );
    assert_eq!(
        SessionConfig::default().manager_config().transport,
        Transport::Cookie
    );
    assert_error(
        "[header]\nname = \"x-token\"",
        "header",
        "only with transport = \"header\"",
    );
    assert_error(
        "transport = \"header\"\n[header]\nname = \"cookie\"",
        "header.name",
        "already has a meaning",
    );
    assert_error(
        "transport = \"header\"\n[header]\nname = \"x token\"",
        "header.name",
        "HTTP header name",
    );
    assert_error(
        "transport = \"header\"\n[header]\nscheme = \"Bearer token\"",
        "header.scheme",
        "single word",
    );
    assert_error("transport = \"carrier-pigeon\"", "transport", "cookie");
    assert_error(
        "transport = \"header\"\n[header]\nprefix = \"x\"",
        "header.prefix",
        "unknown field",
    );
}

#[test]
fn an_unknown_policy_or_same_site_lists_the_known_ones() {
    assert_error(
        "error_policy = \"ignore\"",
        "error_policy",
        "`treat_as_empty`",
    );
    assert_error(
        &format!("[cookie]\nsecret = \"{SECRET}\"\nsame_site = \"sometimes\""),
        "cookie.same_site",
        "`strict`",
    );
}

#[test]
fn cookie_rules_of_the_core_name_their_keys() {
    assert_error(
        &format!("[cookie]\nsecret = \"{SECRET}\"\nsame_site = \"none\"\nsecure = false"),
        "cookie.same_site",
        "requires cookie.secure",
    );
    assert_error(
        &format!("[cookie]\nsecret = \"{SECRET}\"\nname = \"a b\""),
        "cookie.name",
        "HTTP token",
    );
}

#[cfg(feature = "memory")]
#[test]
fn a_memory_store_needs_room() {
    assert_error(
        "[store]\nkind = \"memory\"\nmax_capacity = 0",
        "store.max_capacity",
        "at least 1",
    );
}

#[cfg(feature = "memory")]
#[test]
fn a_near_cache_in_front_of_memory_is_refused() {
    assert_error("[near_cache]", "near_cache", "already in-process memory");
}

#[cfg(feature = "redis")]
#[test]
fn a_redis_block_reaches_the_redis_config() {
    let config = SessionConfig::from_toml(
        "[store]\nkind = \"redis\"\nsentinels = [\"redis://a:26379\"]\nservice_name = \"s\"\n\
         db = 2\npassword = \"pw\"\nkey_prefix = \"shop:\"\noperation_timeout = \"250ms\"\n\
         connect_timeout = \"3s\"",
    )
    .unwrap();
    let redis = redis(&config.store);
    assert_eq!(redis.key_prefix(), "shop:");
    assert_eq!(redis.operation_timeout(), Duration::from_millis(250));
    assert_eq!(redis.connect_timeout(), Duration::from_secs(3));
    assert!(matches!(
        redis.topology(),
        session_redis::Topology::Sentinel { db: 2, password: Some(pw), .. } if pw == "pw"
    ));
}

#[cfg(feature = "memcached")]
#[test]
fn a_memcached_block_reaches_the_memcached_config() {
    let config = SessionConfig::from_toml(
        "[store]\nkind = \"memcached\"\nurl = \"memcache://a:1,b:2\"\nkey_prefix = \"shop:\"\n\
         operation_timeout = \"250ms\"\nconnect_timeout = \"3s\"\npool_size = 3\n\
         max_connections = 9\nitem_size_limit = 65536\ncommit_attempts = 4",
    )
    .unwrap();
    let memcached = memcached(&config.store);
    assert_eq!(memcached.servers(), ["a:1", "b:2"]);
    assert_eq!(memcached.key_prefix(), "shop:");
    assert_eq!(memcached.operation_timeout(), Duration::from_millis(250));
    assert_eq!(memcached.connect_timeout(), Duration::from_secs(3));
    assert_eq!(memcached.pool_size(), 3);
    assert_eq!(memcached.max_connections(), Some(9));
    assert_eq!(memcached.item_size_limit(), Some(65536));
    assert_eq!(memcached.commit_attempts(), 4);
}

#[cfg(feature = "redis")]
#[test]
fn redis_blocks_are_checked_and_keyed_under_their_path() {
    assert_error(
        "[store]\nkind = \"redis\"",
        "store.url",
        "exactly one of url",
    );
    assert_error(
        "[store]\nkind = \"redis\"\nurl = \"redis://a\"\nnodes = [\"redis://b\"]",
        "store.url",
        "exactly one of url",
    );
    assert_error(
        "[store]\nkind = \"redis\"\nurl = \"mysql://a\"",
        "store.url",
        "unknown scheme `mysql`",
    );
    assert_error(
        "[store]\nkind = \"redis\"\nurl = \"redis://a\"\npassword = \"pw\"",
        "store.password",
        "applies only with sentinels",
    );
    assert_error(
        "[store]\nkind = \"redis\"\nsentinels = [\"redis://a:26379\"]",
        "store.service_name",
        "name the master",
    );
    assert_error(
        "[store]\nkind = \"redis\"\nurl = \"redis://a\"\noperation_timeout = 0",
        "store.operation_timeout",
        "longer than zero",
    );
}

#[cfg(feature = "postgres")]
#[test]
fn a_postgres_block_reaches_the_postgres_config() {
    let config = SessionConfig::from_toml(
        "[store]\nkind = \"postgres\"\nurl = \"postgres://app@db/app\"\ntable = \"auth.sessions\"\n\
         pool_size = 3\nmigrate = false\nkey_prefix = \"shop:\"\noperation_timeout = \"250ms\"\n\
         on_unreachable = \"start_degraded\"",
    )
    .unwrap();
    let postgres = postgres(&config.store);
    assert_eq!(postgres.table(), "auth.sessions");
    assert_eq!(postgres.pool_size(), 3);
    assert!(!postgres.migrate());
    assert_eq!(postgres.key_prefix(), "shop:");
    assert_eq!(postgres.operation_timeout(), Duration::from_millis(250));
    assert_eq!(config.store.on_unreachable(), OnUnreachable::StartDegraded);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_blocks_are_checked_and_keyed_under_their_path() {
    assert_error(
        "[store]\nkind = \"postgres\"",
        "store.url",
        "missing field `url`",
    );
    assert_error(
        "[store]\nkind = \"postgres\"\nurl = \"postgres://db/app\"\ntable = \"Robert'); DROP\"",
        "store.table",
        "is not a table name",
    );
    assert_error(
        "[failover]\n[failover.secondary]\nkind = \"postgres\"\nurl = \"postgres://db/app\"\n\
         pool_size = 0",
        "failover.secondary.pool_size",
        "at least 1",
    );
}

#[cfg(feature = "memcached")]
#[test]
fn memcached_blocks_are_checked_and_keyed_under_their_path() {
    assert_error(
        "[store]\nkind = \"memcached\"",
        "store.servers",
        "exactly one of",
    );
    assert_error(
        "[store]\nkind = \"memcached\"\nservers = [\"no-port\"]",
        "store.servers",
        "no-port",
    );
    assert_error(
        "[store]\nkind = \"memcached\"\nservers = [\"a:1\"]\npool_size = 0",
        "store.pool_size",
        "at least 1",
    );
    assert_error(
        "[store]\nkind = \"memcached\"\nservers = [\"a:1\"]\nmax_connections = 9223372036854775807",
        "store.max_connections",
        "at most 65535",
    );
}

#[cfg(all(feature = "memory", feature = "memcached"))]
#[test]
fn failover_rules_tie_the_blocks_together() {
    let failover = |extra: &str| {
        format!(
            "[failover]\n{extra}\n[failover.secondary]\nkind = \"memcached\"\nservers = [\"a:1\"]"
        )
    };
    assert_error(
        &failover("call_timeout = \"1s\""),
        "failover.call_timeout",
        "at most a third of operation_timeout (2s)",
    );
    assert_error(
        &failover("tombstone_ttl = \"1h\""),
        "failover.tombstone_ttl",
        "at least absolute_timeout (1day)",
    );
    assert_error(
        &failover("call_timeout = 9223372036854775807"),
        "failover.call_timeout",
        "at most a third",
    );
    assert_error(
        &failover("max_open_for = \"1y\""),
        "failover.max_open_for",
        "at most a day",
    );
    assert_error(
        &failover("probe_interval = \"0s\""),
        "failover.probe_interval",
        "longer than zero",
    );
    assert_error(
        &failover("failure_threshold = 0"),
        "failover.failure_threshold",
        "at least 1",
    );
    assert_error(
        "[failover]\nmode = \"mirror\"",
        "failover.secondary",
        "missing field `secondary`",
    );
    assert_error(
        "[failover]\n[failover.secondary]\nkind = \"memcached\"\nurl = \"memcache://\"",
        "failover.secondary.servers",
        "at least one",
    );
}

/// Run by `scripts/test` with `--no-default-features --features memory`.
#[cfg(not(feature = "redis"))]
#[test]
fn a_backend_that_is_not_compiled_in_names_its_feature() {
    assert_error(
        "[store]\nkind = \"redis\"\nurl = \"redis://a\"",
        "store.kind",
        "store kind `redis` needs the Cargo feature `redis`",
    );
}

/// Run by `scripts/test` with `--no-default-features --features memory`.
#[cfg(all(feature = "memory", not(feature = "postgres")))]
#[test]
fn a_postgres_secondary_that_is_not_compiled_in_names_its_feature() {
    assert_error(
        "[failover]\n[failover.secondary]\nkind = \"postgres\"\nurl = \"postgres://db/app\"",
        "failover.secondary.kind",
        "store kind `postgres` needs the Cargo feature `postgres`",
    );
}

/// Run by `scripts/test` with `--no-default-features --features memory`.
#[cfg(all(feature = "memory", not(feature = "memcached")))]
#[test]
fn a_secondary_that_is_not_compiled_in_names_its_feature() {
    assert_error(
        "[failover]\n[failover.secondary]\nkind = \"memcached\"\nservers = [\"a:1\"]",
        "failover.secondary.kind",
        "store kind `memcached` needs the Cargo feature `memcached`",
    );
}

/// Run by `scripts/test` with `--no-default-features --features redis`.
#[cfg(all(feature = "redis", not(feature = "memory")))]
#[test]
fn a_near_cache_without_memory_names_the_feature() {
    assert_error(
        "[store]\nkind = \"redis\"\nurl = \"redis://a\"\n[near_cache]",
        "near_cache",
        "needs the Cargo feature `memory`",
    );
}

/// Run by `scripts/test` with `--no-default-features --features memory`.
#[cfg(not(feature = "cluster"))]
#[test]
fn a_cluster_without_its_feature_names_the_feature() {
    assert_error(
        "[store]\nkind = \"cluster\"\nnode_id = \"a\"",
        "store.kind",
        "store kind `cluster` needs the Cargo feature `cluster`",
    );
}

#[cfg(all(feature = "memory", feature = "cluster"))]
#[test]
fn a_cluster_option_on_another_kind_is_refused() {
    assert_error(
        "[store]\nkind = \"memory\"\nnode_id = \"a\"",
        "store.node_id",
        "is an option of store kind cluster, not of `memory`",
    );
    assert_error(
        "[store]\nkind = \"memory\"\nprobe_period = \"1s\"",
        "store.probe_period",
        "of store kind cluster",
    );
}

/// A valid cluster block, one key per line, for the tests to add to.
#[cfg(feature = "cluster")]
const CLUSTER: &str = "[store]\nkind = \"cluster\"\nnode_id = \"a\"\nlisten = \"127.0.0.1:7401\"\n\
     seeds = [\"127.0.0.1:7401\", \"127.0.0.1:7402\", \"127.0.0.1:7403\"]\n\
     cluster_secret = \"the cluster's own secret, thirty-two bytes or more\"";

/// [`CLUSTER`] with the line starting with `key = ` taken out.
#[cfg(feature = "cluster")]
fn cluster_without(key: &str) -> String {
    CLUSTER
        .lines()
        .filter(|line| !line.starts_with(&format!("{key} = ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_cluster_block_reaches_the_cluster_config() {
    let config = SessionConfig::from_toml(&format!(
        "{CLUSTER}\nadvertise = \"10.0.0.1:7401\"\nkey_prefix = \"shop:\"\n\
         operation_timeout = \"800ms\"\nconnect_timeout = \"200ms\"\nmax_capacity = 5000\n\
         replication_factor = 3\ncluster_size = 5\nmax_in_flight_per_peer = 64\n\
         settle_time = \"5s\"\nanti_entropy_interval = \"2m\"\nprobe_period = \"100ms\"\n\
         suspect_timeout = \"2s\"\n[cookie]\nsecret = \"{SECRET}\""
    ))
    .unwrap();
    config.validate().unwrap();
    let cluster = cluster(&config.store);
    assert_eq!(cluster.advertised_addr(), "10.0.0.1:7401".parse().unwrap());
    assert_eq!(cluster.expected_cluster_size(), 5);
    assert_eq!(cluster.quorum(), 3);
    let debug = format!("{cluster:?}");
    for expected in [
        "node_id: \"a\"",
        "replication_factor: 3",
        "operation_timeout: 800ms",
        "key_prefix: \"shop:\"",
    ] {
        assert!(debug.contains(expected), "{expected} not in {debug}");
    }
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_cluster_size_defaults_to_the_seeds() {
    let config = SessionConfig::from_toml(CLUSTER).unwrap();
    let cluster = cluster(&config.store);
    assert_eq!(
        cluster.expected_cluster_size(),
        3,
        "its own address is not counted"
    );
    assert_eq!(cluster.quorum(), 2);
}

#[cfg(feature = "cluster")]
#[test]
fn a_cluster_node_needs_a_name_an_address_and_a_secret() {
    assert_error(
        &cluster_without("node_id"),
        "store.node_id",
        "is missing: give this node a name",
    );
    assert_error(
        &cluster_without("node_id"),
        "store.node_id",
        "SESSION__STORE__NODE_ID",
    );
    assert_error(
        &cluster_without("listen"),
        "store.listen",
        "SESSION__STORE__LISTEN",
    );
    assert_error(
        &cluster_without("cluster_secret"),
        "store.cluster_secret",
        "SESSION__STORE__CLUSTER_SECRET",
    );
    assert_error(
        &format!("{}\nnode_id = \"\"", cluster_without("node_id")),
        "store.node_id",
        "non-empty",
    );
}

#[cfg(feature = "cluster")]
#[test]
fn a_cluster_secret_has_one_source_and_32_bytes() {
    assert_error(
        &format!(
            "{}\ncluster_secret = \"hunter2\"",
            cluster_without("cluster_secret")
        ),
        "store.cluster_secret",
        "must be at least 32 bytes, got 7",
    );
    assert!(!error(&format!(
        "{}\ncluster_secret = \"hunter2\"",
        cluster_without("cluster_secret")
    ))
    .to_string()
    .contains("hunter2"));

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "short").unwrap();
    let from_file = format!(
        "{}\ncluster_secret_file = {:?}",
        cluster_without("cluster_secret"),
        file.path().display().to_string()
    );
    assert_error(&from_file, "store.cluster_secret_file", "got 5");
    assert_error(
        &format!(
            "{CLUSTER}\ncluster_secret_file = {:?}",
            file.path().display().to_string()
        ),
        "store.cluster_secret",
        "exactly one of cluster_secret and cluster_secret_file",
    );
    assert_error(
        &format!(
            "{}\ncluster_secret_file = \"/nonexistent/cluster-secret\"",
            cluster_without("cluster_secret")
        ),
        "store.cluster_secret_file",
        "cannot read `/nonexistent/cluster-secret`",
    );
}

#[cfg(feature = "cluster")]
#[test]
fn a_cluster_secret_must_not_be_the_cookie_secret() {
    assert_error(
        &format!(
            "{}\ncluster_secret = \"{SECRET}\"",
            cluster_without("cluster_secret")
        ),
        "store.cluster_secret",
        "is the same secret as `cookie.secret`",
    );
}

/// A previous cookie secret still verifies cookies, so sharing it with the
/// cluster is as bad as sharing the current one, inline or from a file.
#[cfg(feature = "cluster")]
#[test]
fn a_cluster_secret_must_not_be_any_previous_cookie_secret() {
    const OLDER: &str = "an older cookie secret, still verifying, 32+ bytes";
    const OLDEST: &str = "the oldest cookie secret, still verifying, 32+ bytes";
    let mut oldest_file = tempfile::NamedTempFile::new().unwrap();
    writeln!(oldest_file, "{OLDEST}").unwrap();
    let cookie = format!(
        "[cookie]\nsecret = \"{SECRET}\"\nprevious_secrets = [\"{OLDER}\", \"{OLDEST}\"]\n\
         previous_secret_files = [{:?}]",
        oldest_file.path().display().to_string()
    );
    let with_cluster_secret = |secret: &str| {
        format!(
            "{}\ncluster_secret = \"{secret}\"\n{cookie}",
            cluster_without("cluster_secret")
        )
    };
    assert_error(
        &with_cluster_secret(OLDER),
        "store.cluster_secret",
        "is the same secret as `cookie.previous_secrets[0]`",
    );
    assert_error(
        &with_cluster_secret(OLDEST),
        "store.cluster_secret",
        "is the same secret as `cookie.previous_secrets[1]`",
    );

    // Only in a file on the cookie side, and in a file on the cluster side.
    let cookie = format!(
        "[cookie]\nsecret = \"{SECRET}\"\nprevious_secret_files = [{:?}]",
        oldest_file.path().display().to_string()
    );
    assert_error(
        &format!(
            "{}\ncluster_secret_file = {:?}\n{cookie}",
            cluster_without("cluster_secret"),
            oldest_file.path().display().to_string()
        ),
        "store.cluster_secret_file",
        "is the same secret as `cookie.previous_secret_files[0]`",
    );

    // A cluster secret of its own passes with all of them configured.
    let config = SessionConfig::from_toml(&format!(
        "{CLUSTER}\n[cookie]\nsecret = \"{SECRET}\"\nprevious_secrets = [\"{OLDER}\"]\n\
         previous_secret_files = [{:?}]",
        oldest_file.path().display().to_string()
    ))
    .unwrap();
    config.validate().unwrap();
}

#[cfg(feature = "cluster")]
#[test]
fn cluster_values_out_of_range_name_their_keys() {
    assert_error(
        &format!("{CLUSTER}\nprobe_period = \"5 parsecs\""),
        "store.probe_period",
        "is not a duration",
    );
    assert_error(
        &format!("{CLUSTER}\nsuspect_timeout = \"-1s\""),
        "store.suspect_timeout",
        "must not be negative",
    );
    assert_error(
        &format!("{CLUSTER}\nsettle_time = 0"),
        "store.settle_time",
        "longer than zero",
    );
    // The cluster's `request_timeout` is the block's `operation_timeout`.
    assert_error(
        &format!("{CLUSTER}\noperation_timeout = \"2d\""),
        "store.operation_timeout",
        "at most 24h",
    );
    assert_error(
        &format!("{CLUSTER}\nreplication_factor = 0"),
        "store.replication_factor",
        "between 1 and 16",
    );
    assert_error(
        &format!("{CLUSTER}\nmax_capacity = 0"),
        "store.max_capacity",
        "at least 1",
    );
    assert_error(
        &format!("{}\nlisten = \"localhost:7401\"", cluster_without("listen")),
        "store.listen",
        "is not an IP address and port",
    );
    assert_error(
        &format!("{}\nlisten = \"0.0.0.0:7401\"", cluster_without("listen")),
        "store.advertise",
        "is required when listen is a wildcard address",
    );
    assert_error(
        &format!("{}\nseeds = [\"10.0.0.2\"]", cluster_without("seeds")),
        "store.seeds",
        "`10.0.0.2` is not host:port",
    );
}

#[cfg(all(feature = "cluster", feature = "redis", feature = "memcached"))]
#[test]
fn options_of_other_kinds_are_refused_on_a_cluster() {
    let url_kinds = if cfg!(feature = "postgres") {
        "redis or memcached or postgres"
    } else {
        "redis or memcached"
    };
    assert_error(
        &format!("{CLUSTER}\nurl = \"redis://a\""),
        "store.url",
        &format!("is an option of store kind {url_kinds}, not of `cluster`"),
    );
    assert_error(
        &format!("{CLUSTER}\npool_size = 4"),
        "store.pool_size",
        "of store kind memcached",
    );
    assert_error(
        &format!("{CLUSTER}\non_unreachable = \"start_degraded\""),
        "store.on_unreachable",
        "a cluster node always starts",
    );
}

#[cfg(all(feature = "memory", feature = "cluster"))]
#[test]
fn a_near_cache_in_front_of_a_cluster_is_refused() {
    assert_error(
        &format!("{CLUSTER}\n[near_cache]"),
        "near_cache",
        "save nothing",
    );
}

#[cfg(all(feature = "memory", feature = "cluster"))]
#[test]
fn a_cluster_secondary_is_keyed_under_its_path() {
    assert_error(
        "[failover]\n[failover.secondary]\nkind = \"cluster\"\nlisten = \"127.0.0.1:7401\"",
        "failover.secondary.node_id",
        "SESSION__FAILOVER__SECONDARY__NODE_ID",
    );
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn seed_host_names_count_once_each_and_an_unresolvable_one_fails_start_up() {
    let config = SessionConfig::from_toml(&format!(
        "{}\nseeds = [\"localhost:7402\", \"127.0.0.1:7403\"]",
        cluster_without("seeds")
    ))
    .unwrap();
    let node = cluster(&config.store);
    assert_eq!(
        node.expected_cluster_size(),
        3,
        "localhost counts once, whatever address families it has: {node:?}"
    );

    let config = SessionConfig::from_toml(&format!(
        "{}\nseeds = [\"node-b.invalid:7402\"]\n[cookie]\nsecret = \"{SECRET}\"",
        cluster_without("seeds").replace("127.0.0.1:7401", "127.0.0.1:0")
    ))
    .unwrap();
    config.validate_stores().unwrap();
    let Err(crate::BuildError::Config(err)) = crate::build_store(&config).await else {
        panic!("an unresolvable seed must fail start-up")
    };
    assert_eq!(err.key(), "store.seeds", "{err}");
    assert!(err.reason().contains("`node-b.invalid:7402`"), "{err}");
}

#[cfg(feature = "cluster")]
#[tokio::test]
async fn a_taken_cluster_port_fails_start_up_naming_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = SessionConfig::from_toml(&format!(
        "{}\nlisten = \"{}\"",
        cluster_without("listen"),
        taken.local_addr().unwrap()
    ))
    .unwrap();
    let err = crate::build_store(&config).await.unwrap_err();
    assert!(matches!(err, crate::BuildError::Start { .. }), "{err:?}");
    assert_eq!(err.key(), "store.listen");
    assert!(
        err.to_string()
            .contains("the cluster store could not start (cannot listen on"),
        "{err}"
    );
}

#[cfg(all(feature = "memory", feature = "cluster"))]
#[tokio::test]
async fn only_a_cluster_config_builds_a_cluster_manager() {
    let config = SessionConfig::from_toml(&format!("[cookie]\nsecret = \"{SECRET}\"")).unwrap();
    let err = crate::cluster::build_manager(&config).await.unwrap_err();
    assert_eq!(err.key(), "store.kind", "{err}");
}

#[cfg(feature = "redis")]
#[test]
fn debug_output_shows_no_secret_and_no_password() {
    let config = SessionConfig::from_toml(&format!(
        "[cookie]\nsecret = \"{SECRET}\"\n[store]\nkind = \"redis\"\nurl = \"redis://app:hunter2@10.0.0.5:6379\""
    ))
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("10.0.0.5:6379"), "{debug}");
}

/// The only test here that reads the process environment; the names are
/// its own, so it cannot disturb or be disturbed by the others.
#[cfg(feature = "cluster")]
#[test]
fn environment_variables_override_the_file_and_are_named_in_errors() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "idle_timeout = \"5m\"\n[cookie]\nsecret = \"{SECRET}\"\n[store]\nkind = \"cluster\"\n\
         cluster_secret = \"{SECRET}-for-the-cluster\""
    )
    .unwrap();
    std::env::set_var("SESSION__IDLE_TIMEOUT", "7m");
    std::env::set_var("SESSION__COOKIE__NAME", "from-env");
    std::env::set_var(
        "SESSION__COOKIE__PREVIOUS_SECRETS",
        format!("[{SECRET}-a, {SECRET}-b]"),
    );
    // How a cluster node is told who it is: a numeric id arrives as a
    // number, an address as text, a list in brackets.
    std::env::set_var("SESSION__STORE__NODE_ID", "7");
    std::env::set_var("SESSION__STORE__LISTEN", "127.0.0.1:7401");
    std::env::set_var("SESSION__STORE__SEEDS", "[127.0.0.1:7402,node-c:7403]");
    let config = SessionConfig::load(file.path());
    std::env::set_var("SESSION__STORE__MAX_CAPACITY", "lots");
    let bad = SessionConfig::load(file.path());
    for var in [
        "SESSION__IDLE_TIMEOUT",
        "SESSION__COOKIE__NAME",
        "SESSION__COOKIE__PREVIOUS_SECRETS",
        "SESSION__STORE__MAX_CAPACITY",
        "SESSION__STORE__NODE_ID",
        "SESSION__STORE__LISTEN",
        "SESSION__STORE__SEEDS",
    ] {
        std::env::remove_var(var);
    }

    let config = config.unwrap();
    assert_eq!(config.idle_timeout, Duration::from_secs(7 * 60));
    assert_eq!(config.cookie.name, "from-env");
    assert_eq!(config.keys().unwrap().len(), 3, "a list from one variable");
    {
        let node = cluster(&config.store);
        let debug = format!("{node:?}");
        assert!(debug.contains("node_id: \"7\""), "{debug}");
        assert_eq!(node.advertised_addr(), "127.0.0.1:7401".parse().unwrap());
        assert!(
            debug.contains("127.0.0.1:7402") && debug.contains("node-c"),
            "{debug}"
        );
    }

    let err = bad.unwrap_err();
    assert_eq!(err.key(), "store.max_capacity");
    assert!(
        err.reason()
            .contains("from the environment variable SESSION__STORE__MAX_CAPACITY"),
        "{err}"
    );

    let err = SessionConfig::load("/nonexistent/session.toml").unwrap_err();
    assert_eq!(err.key(), "config_file");
}

#[test]
fn a_type_error_in_a_file_names_the_file() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(file, "[store]\nkind = \"memory\"\nmax_capacity = \"many\"").unwrap();
    let err = SessionConfig::load(file.path()).unwrap_err();
    assert_eq!(err.key(), "store.max_capacity");
    assert!(
        err.reason().contains(&file.path().display().to_string()),
        "{err}"
    );
}

/// Found by the `config` fuzz target (`fuzz/artifacts/config/crash-149ba5dd…`,
/// the input ` "" =9`): an unknown key that is empty was named as the empty
/// string. Keys that are not bare TOML keys are quoted now.
#[test]
fn an_unknown_key_that_is_not_a_bare_key_is_named_quoted() {
    assert_eq!(
        SessionConfig::from_toml(r#" "" =9"#).unwrap_err().key(),
        r#""""#
    );
    assert_eq!(
        SessionConfig::from_toml("[store]\n\"a b\" = 1\n")
            .unwrap_err()
            .key(),
        r#"store."a b""#
    );
    assert_error("[store]\nnope = 1", "store.nope", "unknown field");
}
