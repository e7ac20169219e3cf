//! What every request shares: the spool, the job board, the lake's query
//! session (reopened after each landing) and the limits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::Result;
use docstream_models::chain::ModelChain;
use tokio::sync::{mpsc, watch, Mutex, Notify, Semaphore};
use url::Url;

use super::api_error::{ApiError, ApiResult};
use super::auth::Caller;
use super::config::ServeConfig;
use super::jobs::JobBoard;
use super::tokens::{Access, Tokens};
use crate::analytics::config::AnalyticsConfig;
use crate::analytics::query::Analytics;
use crate::jobs::uploads::Erase;
use crate::sources::object_reader::ObjectReader;
use crate::sources::spool::Spool;
use crate::storage::StorageOptions;

pub struct AppState {
    pub config: ServeConfig,
    /// `None`: no tokens file, every caller sees everything (loopback only).
    pub tokens: Option<Tokens>,
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
    pub sessions: Sessions,
    pub answerer: Option<Arc<ModelChain>>,
    pub min_similarity: f32,
    /// Queries, searches and answers running now.
    pub queries: Semaphore,
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

/// The lake's analytics session, opened once and again only after the
/// tables changed, with a scoped copy per tenant on demand.
pub struct Sessions {
    pub root: Url,
    pub storage: StorageOptions,
    pub embedder: Option<Arc<ModelChain>>,
    pub config: AnalyticsConfig,
    current: Mutex<Option<Arc<Analytics>>>,
    stale: AtomicBool,
}

impl Sessions {
    pub fn new(
        root: Url,
        storage: StorageOptions,
        embedder: Option<Arc<ModelChain>>,
        config: AnalyticsConfig,
    ) -> Self {
        Self {
            root,
            storage,
            embedder,
            config,
            current: Mutex::new(None),
            stale: AtomicBool::new(true),
        }
    }

    /// The tables changed: the next request reads their new versions.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// The session `access` may query.
    pub async fn open(&self, access: &Access) -> Result<Arc<Analytics>> {
        let all = {
            let mut current = self.current.lock().await;
            match (&*current, self.stale.swap(false, Ordering::AcqRel)) {
                (Some(a), false) => a.clone(),
                _ => {
                    let opened = Analytics::open(
                        &self.root,
                        &self.storage,
                        self.embedder.clone(),
                        &self.config,
                    )
                    .await;
                    if opened.is_err() {
                        self.stale.store(true, Ordering::Release);
                    }
                    let opened = Arc::new(opened?);
                    *current = Some(opened.clone());
                    opened
                }
            }
        };
        match access {
            Access::All => Ok(all),
            Access::Tenant(t) => Ok(Arc::new(all.scoped(t).await?)),
        }
    }
}
