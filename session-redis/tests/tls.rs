//! `rediss://` against real TLS-only Redis servers (feature `tls`): the
//! conformance suite on each topology, mutual TLS, and the failures an
//! operator meets first (wrong CA, expired certificate, TLS against a
//! plain-text port and back), each one an error that says what is wrong,
//! within seconds. Each topology's servers start once per test binary; the
//! suite's tests keep apart by key prefix.
//!
//! Filter by part: `cargo test -p session-redis --features tls --test tls failures::`.

mod support;

use std::{
    error::Error,
    future::Future,
    time::{Duration, Instant},
};

use session_conformance::testkit::{RedisServer, RedisTls, TlsFiles};
use session_core::{
    store::{Created, SessionStore},
    ErrorKind, StoreError,
};
use session_redis::{RedisConfig, RedisStore};

/// A config for a TLS deployment that trusts the kit's CA.
fn trusting_ca(config: RedisConfig, files: &TlsFiles) -> RedisConfig {
    config.with_tls_ca_cert_file(files.ca_cert())
}

mod standalone {
    use std::sync::OnceLock;

    use super::*;
    use crate::support::{standalone, RedisFactory};

    fn factory() -> RedisFactory {
        static SERVER: OnceLock<RedisServer> = OnceLock::new();
        let server = SERVER.get_or_init(|| RedisServer::start_tls(RedisTls::Server));
        let files = server.tls_files().expect("a TLS server");
        RedisFactory(trusting_ca(standalone(server.url()), &files))
    }

    session_conformance::store_suite!(factory());
    mod http {
        use super::factory;
        session_conformance::http_suite!(session_tower::conformance::AxumApp, factory());
    }
    mod http_actix {
        use super::factory;
        session_conformance::http_suite!(session_actix::conformance::ActixApp, factory());
    }
}

mod sentinel {
    use std::sync::OnceLock;

    use session_conformance::testkit::RedisSentinel;

    use super::*;
    use crate::support::RedisFactory;

    /// Mutual TLS, so the client certificate travels to the sentinels and
    /// the master alike.
    fn factory() -> RedisFactory {
        static GROUP: OnceLock<RedisSentinel> = OnceLock::new();
        let group = GROUP.get_or_init(|| RedisSentinel::start_tls(RedisTls::Mutual));
        let files = group.tls_files().expect("a TLS group");
        let config = RedisConfig::sentinel(group.sentinel_urls(), group.service_name())
            .with_tls_client_cert(files.client_cert(), files.client_key());
        RedisFactory(trusting_ca(config, &files))
    }

    session_conformance::store_suite!(factory());
}

/// A failover over TLS: the store asks the sentinels again and connects to
/// the promoted replica with the same CA and client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed_over_tls() {
    use std::time::SystemTime;

    use session_conformance::{store::set, testkit::RedisSentinel};
    use session_core::store::Committed;

    let mut group = RedisSentinel::start_tls(RedisTls::Mutual);
    let files = group.tls_files().unwrap();
    let config = RedisConfig::sentinel(group.sentinel_urls(), group.service_name())
        .with_tls_client_cert(files.client_cert(), files.client_key());
    let store = support::connect(trusting_ca(config, &files)).await;
    let record = support::record(Duration::from_secs(600));
    let expiry = SystemTime::now() + Duration::from_secs(600);
    assert_eq!(store.create(&record).await.unwrap(), Created::Created);
    let master = group.master_port();
    assert_eq!(group.server(master).cli(&["WAIT", "1", "5000"]), "1");

    let killed = group.kill_master();
    let killed_at = Instant::now();
    loop {
        match store.commit(&record.id, &set("after", "1"), expiry).await {
            Ok(Committed::Applied { .. }) => break,
            Ok(Committed::Missing) => panic!("the promoted replica lost the session"),
            Err(err) => assert!(err.kind().is_transient(), "a non-transient {err}"),
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no commit succeeded within 30 s of the master's death"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(group.master_port(), killed);
    let loaded = store
        .load(&record.id)
        .await
        .unwrap()
        .expect("the session survived");
    assert_eq!(loaded.data["after"], "1");
}

mod cluster {
    use std::sync::OnceLock;

    use session_conformance::testkit::RedisCluster;

    use super::*;
    use crate::support::RedisFactory;

    fn factory() -> RedisFactory {
        static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
        let cluster = CLUSTER.get_or_init(|| RedisCluster::start_tls(RedisTls::Server));
        let files = cluster.tls_files().expect("a TLS cluster");
        RedisFactory(trusting_ca(
            RedisConfig::cluster(cluster.seed_urls()),
            &files,
        ))
    }

    session_conformance::store_suite!(factory());
}

mod failures {
    use std::fs;

    use super::*;
    use crate::support::record;

    /// How long a failed connect may take: the connect timeout (1 s) twice,
    /// and room for a loaded machine. A hang fails the test here.
    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mutual_tls_works_with_the_client_certificate_and_is_refused_without() {
        let server = RedisServer::start_tls(RedisTls::Mutual);
        let files = server.tls_files().unwrap();
        let with_ca = trusting_ca(RedisConfig::standalone(server.url()), &files);

        let store = RedisStore::connect(
            with_ca
                .clone()
                .with_tls_client_cert(files.client_cert(), files.client_key()),
        )
        .await
        .expect("the client certificate is accepted");
        let record = record(Duration::from_secs(60));
        assert_eq!(store.create(&record).await.unwrap(), Created::Created);
        assert_eq!(
            store.load(&record.id).await.unwrap().unwrap().data,
            record.data
        );

        let err = refused(RedisStore::connect(with_ca.clone())).await;
        assert_eq!(err.0.kind(), ErrorKind::Unavailable, "{}", err.1);

        let (cert, key) = files.other_client_cert_and_key();
        let err = refused(RedisStore::connect(with_ca.with_tls_client_cert(cert, key))).await;
        assert_eq!(err.0.kind(), ErrorKind::Unavailable, "{}", err.1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_signed_by_another_ca_is_refused_as_unknown_issuer() {
        let server = RedisServer::start_tls(RedisTls::Server);
        let files = server.tls_files().unwrap();
        let config =
            RedisConfig::standalone(server.url()).with_tls_ca_cert_file(files.other_ca_cert());
        let (err, chain) = refused(RedisStore::connect(config)).await;
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{chain}");
        assert!(
            chain.contains("invalid peer certificate: UnknownIssuer"),
            "{chain}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_server_certificate_is_refused_as_expired() {
        let server = RedisServer::start_tls(RedisTls::ExpiredCertificate);
        let files = server.tls_files().unwrap();
        let config = trusting_ca(RedisConfig::standalone(server.url()), &files);
        let (err, chain) = refused(RedisStore::connect(config)).await;
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{chain}");
        assert!(chain.contains("expired"), "{chain}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rediss_to_a_plain_text_server_fails_within_seconds() {
        let server = RedisServer::start();
        let url = server.url().replacen("redis://", "rediss://", 1);
        let (err, chain) = refused(RedisStore::connect(RedisConfig::standalone(url))).await;
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{chain}");
        assert!(chain.contains("no answer to the TLS handshake"), "{chain}");
        assert!(chain.contains("plain text"), "{chain}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_text_to_a_tls_only_server_fails_within_seconds() {
        let server = RedisServer::start_tls(RedisTls::Server);
        let url = server.url().replacen("rediss://", "redis://", 1);
        let (err, chain) = refused(RedisStore::connect(RedisConfig::standalone(url))).await;
        assert!(
            matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "{chain}"
        );
    }

    #[tokio::test]
    async fn a_missing_or_non_pem_file_is_a_config_error_naming_its_key() {
        let folder = tempfile::tempdir().unwrap();
        let not_pem = folder.path().join("not.pem");
        fs::write(&not_pem, "hello").unwrap();
        let missing = folder.path().join("missing.pem");
        let url = "rediss://127.0.0.1:1";

        let cases = [
            (
                RedisConfig::standalone(url).with_tls_ca_cert_file(&missing),
                "tls_ca_cert_file",
            ),
            (
                RedisConfig::standalone(url).with_tls_ca_cert_file(&not_pem),
                "tls_ca_cert_file",
            ),
            (
                RedisConfig::cluster([url]).with_tls_client_cert(&not_pem, &not_pem),
                "tls_cert_file",
            ),
        ];
        for (config, key) in cases {
            let err = RedisStore::connect(config).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config);
            let config_err = err
                .source()
                .and_then(|source| source.downcast_ref::<session_core::ConfigError>())
                .expect("a ConfigError source");
            assert_eq!(config_err.key(), key, "{config_err}");
        }
    }

    /// Awaits a connect that must fail within [`BOUND`]; returns the error
    /// and its whole chain of causes as one line.
    async fn refused(
        connect: impl Future<Output = Result<RedisStore, StoreError>>,
    ) -> (StoreError, String) {
        let started = Instant::now();
        let result = tokio::time::timeout(BOUND, connect)
            .await
            .unwrap_or_else(|_| panic!("no answer within {BOUND:?}: a hang"));
        let elapsed = started.elapsed();
        let Err(err) = result else {
            panic!("connected, but should have been refused")
        };
        let chain = chain(&err);
        eprintln!("refused after {elapsed:?}: {chain}");
        (err, chain)
    }

    fn chain(err: &(dyn Error + 'static)) -> String {
        let mut text = err.to_string();
        let mut next = err.source();
        let mut depth = 0;
        while let (Some(cause), true) = (next, depth < 16) {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
            depth += 1;
        }
        text
    }
}
