//! What a near-cache saves in front of Redis: `RedisStore::load` (one
//! `HGETALL`) against `TieredStore::load` when the near copy is current
//! (one `HMGET` of the version and expiry), side by side in one run, for
//! three session sizes. Before the timings it prints the bytes Redis sends
//! per load for each, counted by Redis itself.
//!
//! `cargo bench -p session-bench --bench near_cache`

use std::{hint::black_box, time::Duration};

use criterion::{criterion_main, Criterion};
use session_bench::{payload_bytes, redis_bytes_sent, session_of};
use session_conformance::testkit::RedisServer;
use session_core::{
    memory::{NearCache, TieredStore},
    store::{Created, SessionStore},
};
use session_redis::{RedisConfig, RedisStore};

/// Loads per byte count: enough that the handful of bytes of the `INFO`
/// reply itself is noise.
const COUNTED_LOADS: u64 = 1_000;

fn near_cache(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = RedisServer::start();
    let redis = runtime
        .block_on(RedisStore::connect(
            RedisConfig::from_url(&server.url()).expect("the test kit's URL parses"),
        ))
        .expect("Redis answers");
    let tiered = TieredStore::new(NearCache::new(), redis.clone());

    for (label, keys, value_len) in [("small", 2, 16), ("2KiB", 16, 110), ("32KiB", 32, 1_000)] {
        let record = session_of(keys, value_len);
        let id = record.id;
        let created = runtime
            .block_on(redis.create(&record))
            .expect("the session is stored");
        assert_eq!(created, Created::Created);
        // The first tiered load fills the near-cache; every later one hits.
        runtime.block_on(tiered.load(&id)).expect("it loads");

        let bytes_per_load = |store: &dyn SessionStore| {
            let before = redis_bytes_sent(&server);
            for _ in 0..COUNTED_LOADS {
                runtime.block_on(store.load(&id)).expect("it loads");
            }
            (redis_bytes_sent(&server) - before) / COUNTED_LOADS
        };
        println!(
            "near_cache/{label}: payload {} B; Redis sent {} B per RedisStore load, {} B per TieredStore hit",
            payload_bytes(&record),
            bytes_per_load(&redis),
            bytes_per_load(&tiered),
        );

        let mut group = c.benchmark_group(format!("near_cache/{label}"));
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("RedisStore::load", |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(redis.load(&id).await) });
        });
        group.bench_function("TieredStore::load (hit)", |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(tiered.load(&id).await) });
        });
        group.finish();
    }
}

// criterion_group! expands to an undocumented `pub fn`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::near_cache);
}
use group::benches;

criterion_main!(benches);
