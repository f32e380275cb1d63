//! The counter app of `axum_counter`, with every session-kit metric
//! exported for Prometheus by `metrics-exporter-prometheus`: store-call
//! latency by store kind and operation, store errors, sessions created,
//! ended and cycled, refused cookies, and, with a failover or tiered store,
//! breaker transitions, the replay backlog and near-cache hits. The full
//! table is in the `session_kit::telemetry` docs.
//!
//! ```text
//! cargo run --example axum_prometheus --features axum
//! curl -i http://127.0.0.1:3000/                 # count 1, and a Set-Cookie
//! curl -s http://127.0.0.1:9000/metrics | grep session_kit_
//! ```
//!
//! `METRICS_ADDR` sets the exporter's listen address (default
//! 127.0.0.1:9000); `ADDR` and `SESSION_SECRET` are read as in
//! `axum_counter`.

mod support;

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;
use session_kit::{memory::MemoryStore, telemetry, SessionManager};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    support::init_tracing();
    let metrics_addr: SocketAddr = std::env::var("METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9000".to_owned())
        .parse()?;
    // Seconds, as the metric's name says: Prometheus buckets sized for a
    // store call, from a fast in-memory hit to an operation timeout.
    PrometheusBuilder::new()
        .with_http_listener(metrics_addr)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(telemetry::STORE_CALL_DURATION.to_owned()),
            &[
                0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.0,
            ],
        )?
        .install()?;
    tracing::info!(%metrics_addr, "Prometheus metrics at /metrics");

    let manager = SessionManager::builder(MemoryStore::new(), support::key_from_env()?).build()?;
    support::axum::serve(manager, "axum_prometheus").await
}
