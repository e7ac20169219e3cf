//! The lake's query session for every door: opened once, reopened only
//! after the tables changed, and scoped to a caller's tenant on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use docstream_models::chain::ModelChain;
use tokio::sync::Mutex;
use url::Url;

use super::tokens::Access;
use crate::analytics::config::AnalyticsConfig;
use crate::analytics::query::Analytics;
use crate::storage::StorageOptions;

/// A tenant's session, and the session it was scoped from.
struct Scoped {
    of: Arc<Analytics>,
    session: Arc<Analytics>,
}

pub struct Sessions {
    pub root: Url,
    pub storage: StorageOptions,
    pub embedder: Option<Arc<ModelChain>>,
    pub config: AnalyticsConfig,
    current: Mutex<Option<Arc<Analytics>>>,
    /// Per tenant, its scoped copy of a session in `current` (tenants come
    /// from the tokens file, so there are few).
    scoped: Mutex<HashMap<String, Scoped>>,
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
            scoped: Mutex::new(HashMap::new()),
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
        let Access::Tenant(tenant) = access else {
            return Ok(all);
        };
        let mut scoped = self.scoped.lock().await;
        if let Some(s) = scoped.get(tenant) {
            if Arc::ptr_eq(&s.of, &all) {
                return Ok(s.session.clone());
            }
        }
        let session = Arc::new(all.scoped(tenant).await?);
        scoped.insert(
            tenant.clone(),
            Scoped {
                of: all,
                session: session.clone(),
            },
        );
        Ok(session)
    }
}
