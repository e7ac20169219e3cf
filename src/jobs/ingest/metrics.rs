//! Prometheus metrics for long-running jobs, served as text on `/metrics`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, UInt64Type};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub consumer_lag: Family<Labels, Gauge>,
    pub events: Family<Labels, Counter>,
    pub batch_events: Histogram,
    pub batch_seconds: Histogram,
    pub rows: Family<Labels, Counter>,
    pub failures: Family<Labels, Counter>,
    pub model_requests: Family<Labels, Counter>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("docstream")),
            consumer_lag: Family::default(),
            events: Family::default(),
            batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            batch_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            rows: Family::default(),
            failures: Family::default(),
            model_requests: Family::default(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.register(
                "consumer_lag",
                "Messages behind the partition's end, by committed offset",
                m.consumer_lag.clone(),
            );
            r.register(
                "events",
                "Kafka messages read, by op or outcome",
                m.events.clone(),
            );
            r.register(
                "batch_events",
                "Events per micro-batch",
                m.batch_events.clone(),
            );
            r.register(
                "batch_seconds",
                "Time from a micro-batch closing to its last table commit",
                m.batch_seconds.clone(),
            );
            r.register("rows", "Rows committed, by table", m.rows.clone());
            r.register(
                "failures",
                "Failure rows, by stage and error kind",
                m.failures.clone(),
            );
            r.register(
                "model_requests",
                "Model requests, by provider and status",
                m.model_requests.clone(),
            );
        }
        m
    }
}

impl Metrics {
    pub fn set_lag(&self, topic: &str, lag: &std::collections::HashMap<i32, i64>) {
        self.consumer_lag.clear();
        for (p, l) in lag {
            self.consumer_lag
                .get_or_create(&labels(&[("topic", topic), ("partition", &p.to_string())]))
                .set(*l);
        }
    }

    pub fn count_event(&self, outcome: &str) {
        self.events
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }

    pub fn count_rows(&self, table: &str, rows: usize) {
        self.rows
            .get_or_create(&labels(&[("table", table)]))
            .inc_by(rows as u64);
    }

    pub fn count_failure(&self, stage: &str, kind: &str) {
        self.failures
            .get_or_create(&labels(&[("stage", stage), ("error_kind", kind)]))
            .inc();
    }

    /// Counts model requests from a batch of `usage` rows.
    pub fn count_usage(&self, batch: &RecordBatch) {
        let (Some(provider), Some(status), Some(requests)) = (
            batch.column_by_name("provider"),
            batch.column_by_name("status"),
            batch.column_by_name("requests"),
        ) else {
            return;
        };
        let (Ok(provider), Ok(status), Ok(requests)) = (
            cast(provider, &DataType::Utf8),
            cast(status, &DataType::Utf8),
            cast(requests, &DataType::UInt64),
        ) else {
            return;
        };
        let (provider, status) = (provider.as_string::<i32>(), status.as_string::<i32>());
        let requests = requests.as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            if provider.is_valid(i) && status.is_valid(i) && requests.is_valid(i) {
                self.model_requests
                    .get_or_create(&labels(&[
                        ("provider", provider.value(i)),
                        ("status", status.value(i)),
                    ]))
                    .inc_by(requests.value(i));
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }

    /// Serves `/metrics` on `addr` in the background.
    pub async fn serve(self: &Arc<Self>, addr: SocketAddr) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for metrics; pick another --metrics-addr")
        })?;
        let metrics = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("metrics server stopped: {e}");
            }
        });
        Ok(())
    }
}
