//! What session-kit itself costs a request, with no store I/O: the CPU
//! floor under every store bench, and the figure to watch when the cookie
//! codec or the manager changes.
//!
//! - `cookie/*`: `CookieCodec::sign` and `verify` (one HMAC-SHA256 each), a
//!   forged value, and a cookie signed by the fallback key of a rotated
//!   `KeyRing` (two HMACs).
//! - `manager/*`: `SessionManager::start` then `Session::finish`, for a
//!   request that never touches its session (with and without a cookie) and
//!   for a new session given one value.
//! - `record/*`: a session record to its stored form and back, through the
//!   backends' `codec` features: the Redis hash fields (`redis_encode`, and
//!   `redis_decode` from an `HGETALL` reply) and the Memcached envelope
//!   (`memcached_encode`, `memcached_decode`), each for a `small` record (2
//!   values of 16 characters, 46 payload bytes) and a `large` one (16 values
//!   of 128 characters, 2 166 payload bytes).
//!
//! The cluster's wire messages are crate-private still, so they are not
//! measured here.
//!
//! `cargo bench -p session-bench --bench micro`

use std::{hint::black_box, time::SystemTime};

use criterion::{criterion_main, BatchSize, BenchmarkId, Criterion};
use session_bench::{payload_bytes, session_of};
use session_core::{
    cookie::CookieCodec, memory::MemoryStore, CookieConfig, Key, KeyRing, SessionId, SessionManager,
};
use session_memcached::codec as memcached_codec;
use session_redis::codec as redis_codec;

fn cookie(c: &mut Criterion) {
    let codec = CookieCodec::new(CookieConfig::default(), Key::generate().into())
        .expect("the default cookie config is valid");
    let id = SessionId::generate();
    let signed = codec.sign(&id);
    // A well-formed value with a wrong tag (made by a key we do not hold), so
    // `verify` pays for the full HMAC before refusing it: the most a forger
    // can make us spend per cookie.
    let forged = CookieCodec::new(CookieConfig::default(), Key::generate().into())
        .expect("the default cookie config is valid")
        .sign(&id);
    assert!(codec.verify(&forged).is_none());

    let old = Key::generate();
    let signed_by_old = CookieCodec::new(CookieConfig::default(), old.clone().into())
        .expect("the default cookie config is valid")
        .sign(&id);
    let rotated = CookieCodec::new(
        CookieConfig::default(),
        KeyRing::new(Key::generate()).with_fallback(old),
    )
    .expect("the default cookie config is valid");
    assert!(rotated
        .verify(&signed_by_old)
        .is_some_and(|v| v.needs_resign));

    let mut group = c.benchmark_group("cookie");
    group.bench_function("sign", |b| b.iter(|| codec.sign(black_box(&id))));
    group.bench_function("verify", |b| {
        b.iter(|| codec.verify(black_box(&signed)));
    });
    group.bench_function("verify_forged", |b| {
        b.iter(|| codec.verify(black_box(&forged)));
    });
    group.bench_function("verify_fallback_key", |b| {
        b.iter(|| rotated.verify(black_box(&signed_by_old)));
    });
    group.finish();
}

fn manager(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The untouched cases never call the store; the memory store is there
    // only because a manager needs one.
    let manager = SessionManager::builder(MemoryStore::new(), Key::generate())
        .build()
        .expect("the default manager config is valid");
    // The session need not exist: an untouched session never loads it.
    let cookie_header = format!(
        "{}={}",
        manager.codec().name(),
        manager.codec().sign(&SessionId::generate())
    );

    let mut group = c.benchmark_group("manager");
    group.bench_function("untouched_no_cookie", |b| {
        b.to_async(&runtime).iter(|| async {
            let session = manager.start(std::iter::empty());
            black_box(session.finish().await)
        });
    });
    group.bench_function("untouched_valid_cookie", |b| {
        b.to_async(&runtime).iter(|| async {
            let session = manager.start([black_box(cookie_header.as_bytes())]);
            black_box(session.finish().await)
        });
    });
    // This one includes `MemoryStore::create` (a moka insert, no I/O) and
    // rendering the `Set-Cookie` header. Every iteration adds a session; the
    // store's default capacity of 100 000 bounds the memory, so a long run
    // also pays for moka's evictions, as a busy server would.
    group.bench_function("insert_one_new_session", |b| {
        b.to_async(&runtime).iter(|| async {
            let session = manager.start(std::iter::empty());
            session
                .insert("user_id", 42_u64)
                .await
                .expect("the memory store does not fail");
            black_box(session.finish().await)
        });
    });
    group.finish();
}

fn record(c: &mut Criterion) {
    let records = [("small", session_of(2, 16)), ("large", session_of(16, 128))];
    assert_eq!(payload_bytes(&records[0].1), 46);
    assert_eq!(payload_bytes(&records[1].1), 2_166);
    let now = SystemTime::now();

    let mut group = c.benchmark_group("record");
    for (size, record) in &records {
        // The reply HGETALL would give for the hash `create` wrote.
        let reply: Vec<(Vec<u8>, Vec<u8>)> = redis_codec::encode(record)
            .chunks(2)
            .map(|pair| (pair[0].as_bytes().to_vec(), pair[1].as_bytes().to_vec()))
            .collect();
        let decoded = redis_codec::decode(record.id, reply.clone(), now)
            .expect("the record's own fields decode")
            .expect("the record has not expired");
        assert_eq!(
            (decoded.version, &decoded.data),
            (record.version, &record.data)
        );

        let envelope = memcached_codec::encode(
            record.version,
            record.created_at,
            record.owner.as_ref(),
            &record.data,
        );
        let decoded =
            memcached_codec::decode(&envelope).expect("the record's own envelope decodes");
        assert_eq!(
            (decoded.version, &decoded.data),
            (record.version, &record.data)
        );

        group.bench_with_input(
            BenchmarkId::new("redis_encode", size),
            record,
            |b, record| {
                b.iter(|| redis_codec::encode(black_box(record)));
            },
        );
        // `decode` takes the reply by value, as the store does; the copy it
        // consumes is made outside the measurement.
        group.bench_with_input(
            BenchmarkId::new("redis_decode", size),
            &reply,
            |b, reply| {
                b.iter_batched(
                    || reply.clone(),
                    |reply| redis_codec::decode(record.id, black_box(reply), now),
                    BatchSize::SmallInput,
                );
            },
        );
        group.bench_with_input(
            BenchmarkId::new("memcached_encode", size),
            record,
            |b, record| {
                b.iter(|| {
                    let record = black_box(record);
                    memcached_codec::encode(
                        record.version,
                        record.created_at,
                        record.owner.as_ref(),
                        &record.data,
                    )
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("memcached_decode", size),
            &envelope,
            |b, envelope| b.iter(|| memcached_codec::decode(black_box(envelope))),
        );
    }
    group.finish();
}

// criterion_group! expands to an undocumented `pub fn`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::cookie, super::manager, super::record);
}
use group::benches;

criterion_main!(benches);
