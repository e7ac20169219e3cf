//! Building an index and reporting how far behind the tables it is.
//! A build reads the tables at their latest versions, writes a new
//! generation and publishes it; it never touches the generation readers use.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;
use url::Url;

use super::config::IndexesConfig;
use super::fresh::LakeView;
use super::keyword::{self, index_lake};
use super::published::{IndexHome, Manifest, FORMAT};
use super::text::TextWriter;
use crate::contract::tables;
use crate::sinks::lake::Lake;
use crate::storage::StorageOptions;

/// The tables the text index is built from.
const TEXT_TABLES: [&str; 2] = ["chunks", "documents"];

/// What `update` did.
#[derive(Debug)]
pub struct Updated {
    pub manifest: Manifest,
    /// Already covered the tables' latest versions: nothing was built.
    pub up_to_date: bool,
    pub secs: f64,
}

/// Opens the lake's text tables at their latest versions on a new session.
async fn open(root: &Url, storage: &StorageOptions) -> Result<Option<(SessionContext, LakeView)>> {
    let mut lake = Lake::open(root, storage).await?;
    let ctx = SessionContext::new();
    let mut versions = BTreeMap::new();
    for t in TEXT_TABLES {
        match lake.register_table(&ctx, t).await? {
            Some(v) => versions.insert(t.to_string(), v),
            None => return Ok(None),
        };
    }
    let view = ctx.sql(&tables::current_documents_sql()).await?.into_view();
    ctx.register_table("current_documents", view)?;
    let view = LakeView {
        root: lake.root().clone(),
        storage: storage.clone(),
        versions,
    };
    Ok(Some((ctx, view)))
}

/// Brings the text index up to the tables' latest versions (a new build
/// when they moved on, or always with `rebuild`). `progress` receives the
/// chunks read so far and the total. `None` when the lake has no chunks.
pub async fn update(
    root: &Url,
    storage: &StorageOptions,
    config: &IndexesConfig,
    rebuild: bool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Option<Updated>> {
    let started = Instant::now();
    let Some((ctx, lake)) = open(root, storage).await? else {
        return Ok(None);
    };
    let home = IndexHome::new(&lake.root, storage, keyword::NAME)?;
    let covers = keyword::covers(&lake);
    if let Some(manifest) = home.manifest().await? {
        if manifest.covers == covers && !rebuild {
            return Ok(Some(Updated {
                manifest,
                up_to_date: true,
                secs: started.elapsed().as_secs_f64(),
            }));
        }
    }
    let total = count(&ctx, "chunks").await?;
    let staged = tempfile::tempdir()?;
    let mut writer = TextWriter::create(
        Some(staged.path()),
        config.memory_mb.saturating_mul(1 << 20),
    )?;
    index_lake(&ctx, &mut writer, &|done| progress(done, total)).await?;
    let rows = writer.rows();
    let staged_path = staged.path().to_path_buf();
    tokio::task::spawn_blocking(move || writer.finish()).await??;
    let manifest = Manifest {
        format: FORMAT,
        generation: IndexHome::new_generation(),
        covers,
        rows,
        bytes: 0,
        built_at: Utc::now(),
    };
    let manifest = home.publish(&staged_path, manifest).await?;
    Ok(Some(Updated {
        manifest,
        up_to_date: false,
        secs: started.elapsed().as_secs_f64(),
    }))
}

/// `update` for writers that run it in the background: failures are
/// logged, never returned, since the tables already hold everything.
pub async fn update_in_background(root: Url, storage: StorageOptions, config: IndexesConfig) {
    match update(&root, &storage, &config, false, &|_, _| {}).await {
        Ok(Some(u)) if !u.up_to_date => {
            tracing::info!(rows = u.manifest.rows, secs = u.secs, "text index updated")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("the text index was not updated ({e:#}); searches stay exact"),
    }
}

async fn count(ctx: &SessionContext, table: &str) -> Result<u64> {
    Ok(ctx.table(table).await?.count().await? as u64)
}

/// One index's state.
#[derive(Debug, Serialize)]
pub struct Status {
    pub index: String,
    /// Table → version covered; empty before the first build.
    pub covers: BTreeMap<String, u64>,
    /// Table → latest version.
    pub latest: BTreeMap<String, u64>,
    /// Rows committed since the covered versions (`None`: unknown, the
    /// log no longer reaches back; rebuild).
    pub rows_behind: Option<u64>,
    pub rows: u64,
    pub bytes: u64,
    pub built_at: Option<DateTime<Utc>>,
}

/// The state of every index of the lake at `root`.
pub async fn status(root: &Url, storage: &StorageOptions) -> Result<Vec<Status>> {
    let Some((ctx, lake)) = open(root, storage).await? else {
        return Ok(Vec::new());
    };
    let home = IndexHome::new(&lake.root, storage, keyword::NAME)?;
    let manifest = home.manifest().await?;
    let rows_behind = match &manifest {
        None => Some(count(&ctx, "chunks").await?),
        Some(m) => {
            let store = lake.store(&ctx)?;
            let from = m.covers.get("chunks").copied();
            lake.changes(&store, "chunks", from)
                .await
                .ok()
                .map(|c| c.added_rows)
        }
    };
    Ok(vec![Status {
        index: home.name().to_string(),
        covers: manifest
            .as_ref()
            .map(|m| m.covers.clone())
            .unwrap_or_default(),
        latest: lake.versions.clone(),
        rows_behind,
        rows: manifest.as_ref().map_or(0, |m| m.rows),
        bytes: manifest.as_ref().map_or(0, |m| m.bytes),
        built_at: manifest.map(|m| m.built_at),
    }])
}
