//! What every request shares: the spool, the job board, the lake's query
//! sessions (reopened after each landing) and the limits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use docstream_models::chain::ModelChain;
use tokio::sync::{mpsc, watch, Notify};

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::config::ServeConfig;
use super::jobs::JobBoard;
use crate::analytics::query::Analytics;
use crate::doors::gate::Gate;
use crate::doors::sessions::Sessions;
use crate::doors::tokens::Tokens;
use crate::jobs::uploads::Erase;
use crate::sources::object_reader::ObjectReader;
use crate::sources::spool::Spool;

pub struct AppState {
    pub config: ServeConfig,
    /// `None`: no tokens file, every caller sees everything (loopback only).
    pub tokens: Option<Arc<Tokens>>,
    /// The tenant uploads land under when an admin names none.
    pub default_tenant: String,
    pub spool: Arc<Spool>,
    /// Reads objects that uploads name by URI.
    pub objects: ObjectReader,
    pub jobs: Arc<JobBoard>,
    /// Rung when an upload is accepted.
    pub wake: Arc<Notify>,
    /// Uploads that left the spool, changed by the lander after each batch.
    pub landed: watch::Sender<u64>,
    pub sessions: Arc<Sessions>,
    pub answerer: Option<Arc<ModelChain>>,
    pub min_similarity: f32,
    /// Queries, searches and answers running now, here and at the SQL
    /// doors.
    pub gate: Arc<Gate>,
    pub metrics: Metrics,
    /// Set once the upload lander is running.
    pub ready: AtomicBool,
    /// Erasures for the lander, which runs them between batches.
    pub erasures: mpsc::Sender<Erase>,
    /// The OpenAPI document, as served.
    pub openapi: OnceLock<String>,
}

impl AppState {
    /// The session `caller` may query.
    pub async fn session(&self, caller: &Caller) -> ApiResult<Arc<Analytics>> {
        self.sessions
            .open(&caller.0)
            .await
            .map_err(|e| ApiError::internal(&e))
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub uploads_accepted: AtomicU64,
    pub uploads_refused: AtomicU64,
    pub queries: AtomicU64,
    pub searches: AtomicU64,
    pub asks: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
