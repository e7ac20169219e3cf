//! `/healthz`, `/readyz` and `/metrics` (Prometheus text), for load
//! balancers and monitoring; none needs a token or shows a tenant's data.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use super::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = String, description = "OK")), tag = "operations")]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The server takes uploads and lands them: the upload lander is running.
#[utoipa::path(
    get,
    path = "/readyz",
    responses((status = 200, body = String, description = "OK"), (status = 503, body = String, description = "Unavailable")),
    tag = "operations"
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, &'static str) {
    match state.ready.load(Ordering::Acquire) {
        true => (StatusCode::OK, "ready"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
    }
}

/// Counters and gauges in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, body = String, content_type = "text/plain", description = "OK")),
    tag = "operations"
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let m = &state.metrics;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP docstream_{name} {help}");
        let _ = writeln!(out, "# TYPE docstream_{name} {kind}");
        let _ = writeln!(out, "docstream_{name} {value}");
    };
    let count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    put(
        "uploads_accepted_total",
        "counter",
        "Uploads answered 202.",
        count(&m.uploads_accepted),
    );
    put(
        "uploads_refused_total",
        "counter",
        "Uploads refused because the queue was full.",
        count(&m.uploads_refused),
    );
    put(
        "uploads_waiting",
        "gauge",
        "Accepted uploads not landed yet.",
        state.spool.waiting() as u64,
    );
    put(
        "queries_total",
        "counter",
        "SQL queries run.",
        count(&m.queries),
    );
    put(
        "searches_total",
        "counter",
        "Searches run.",
        count(&m.searches),
    );
    put(
        "asks_total",
        "counter",
        "Questions answered.",
        count(&m.asks),
    );
    let running = state.config.max_concurrent_queries
        - state
            .queries
            .available_permits()
            .min(state.config.max_concurrent_queries);
    put(
        "queries_running",
        "gauge",
        "Queries, searches and answers running now.",
        running as u64,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
