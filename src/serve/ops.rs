//! `/healthz`, `/readyz` and `/metrics` (Prometheus text), for load
//! balancers and monitoring; none needs a token or shows a tenant's data.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
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
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let running = state.gate.running();
    let series = [
        (
            "uploads_accepted_total",
            "counter",
            "Uploads answered 202.",
            count(&m.uploads_accepted),
        ),
        (
            "uploads_refused_total",
            "counter",
            "Uploads refused because the queue was full.",
            count(&m.uploads_refused),
        ),
        (
            "uploads_waiting",
            "gauge",
            "Accepted uploads not landed yet.",
            state.spool.waiting() as u64,
        ),
        (
            "queries_total",
            "counter",
            "SQL queries run.",
            count(&m.queries),
        ),
        (
            "searches_total",
            "counter",
            "Searches run.",
            count(&m.searches),
        ),
        (
            "asks_total",
            "counter",
            "Questions answered.",
            count(&m.asks),
        ),
        (
            "queries_running",
            "gauge",
            "Queries, searches and answers running now.",
            running as u64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP docstream_{name} {help}");
        let _ = writeln!(out, "# TYPE docstream_{name} {kind}");
        let _ = writeln!(out, "docstream_{name} {value}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
