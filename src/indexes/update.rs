//! Building an index and reporting how far behind the tables it is.
//! A build reads the tables at their latest versions, writes a new
//! generation and publishes it; it never touches the generation readers use.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use deltalake::datafusion::prelude::{col, lit, SessionContext};
use serde::Serialize;
use url::Url;

use super::config::IndexesConfig;
use super::fresh::LakeView;
use super::keyword::{self, index_lake};
use super::published::{IndexHome, Manifest, FORMAT};
use super::semantic;
use super::text::TextWriter;
use super::vector::VectorWriter;
use crate::contract::tables;
use crate::sinks::lake::Lake;
use crate::storage::StorageOptions;

/// An index the lake can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The full-text index of `chunks`.
    Text,
    /// The vector index of one embedding model's rows of `embeddings`.
    Vectors { model: String },
}

impl Kind {
    fn name(&self) -> String {
        match self {
            Kind::Text => keyword::NAME.to_string(),
            Kind::Vectors { model } => semantic::index_name(model),
        }
    }

    /// How people call it: "text index", "vector index (model)".
    pub fn label(&self) -> String {
        match self {
            Kind::Text => "text index".to_string(),
            Kind::Vectors { model } => format!("vector index ({model})"),
        }
    }

    /// The table of per-chunk rows it indexes.
    pub fn table(&self) -> &'static str {
        match self {
            Kind::Text => "chunks",
            Kind::Vectors { .. } => "embeddings",
        }
    }

    fn covers(&self, lake: &LakeView) -> BTreeMap<String, u64> {
        match self {
            Kind::Text => keyword::covers(lake),
            Kind::Vectors { .. } => semantic::covers(lake),
        }
    }

    /// The rows the build reads, for progress.
    async fn source_rows(&self, ctx: &SessionContext) -> Result<u64> {
        let frame = ctx.table(self.table()).await?;
        let frame = match self {
            Kind::Text => frame,
            Kind::Vectors { model } => frame.filter(col("model").eq(lit(model.as_str())))?,
        };
        Ok(frame.count().await? as u64)
    }

    /// Builds the index into `dir`; returns the rows indexed, or `None`
    /// when there is nothing to index.
    async fn build(
        &self,
        ctx: &SessionContext,
        dir: &std::path::Path,
        config: &IndexesConfig,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Option<u64>> {
        let memory = config.memory_mb.saturating_mul(1 << 20);
        match self {
            Kind::Text => {
                let mut writer = TextWriter::create(Some(dir), memory)?;
                index_lake(ctx, &mut writer, progress).await?;
                let rows = writer.rows();
                tokio::task::spawn_blocking(move || writer.finish()).await??;
                Ok(Some(rows))
            }
            Kind::Vectors { model } => {
                let Some(dims) = semantic::dims(ctx, model).await? else {
                    return Ok(None);
                };
                let writer = VectorWriter::create(dir, model, dims, memory)?;
                let writer = semantic::index_lake(ctx, model, writer, progress).await?;
                if writer.skipped() > 0 {
                    tracing::warn!(
                        model,
                        skipped = writer.skipped(),
                        "embeddings of another width, with no direction or with NaNs were left out of the vector index"
                    );
                }
                let rows = tokio::task::spawn_blocking(move || writer.finish()).await??;
                Ok(Some(rows))
            }
        }
    }
}

/// What `update` did to one index.
#[derive(Debug)]
pub struct Updated {
    pub kind: Kind,
    pub manifest: Manifest,
    /// Already covered the tables' latest versions: nothing was built.
    pub up_to_date: bool,
    pub secs: f64,
}

/// Opens the lake's tables at their latest versions on a new session,
/// with the indexes they can have. `None` when the lake has no documents.
async fn open(
    root: &Url,
    storage: &StorageOptions,
) -> Result<Option<(SessionContext, LakeView, Vec<Kind>)>> {
    let mut lake = Lake::open(root, storage).await?;
    let ctx = SessionContext::new();
    let mut versions = BTreeMap::new();
    for t in ["documents", "chunks", "embeddings"] {
        if let Some(v) = lake.register_table(&ctx, t).await? {
            versions.insert(t.to_string(), v);
        }
    }
    if !versions.contains_key("documents") {
        return Ok(None);
    }
    let view = ctx.sql(&tables::current_documents_sql()).await?.into_view();
    ctx.register_table("current_documents", view)?;
    let mut kinds = Vec::new();
    if versions.contains_key("chunks") {
        kinds.push(Kind::Text);
    }
    if versions.contains_key("embeddings") {
        for model in semantic::models(&ctx).await? {
            kinds.push(Kind::Vectors { model });
        }
    }
    let view = LakeView {
        root: lake.root().clone(),
        storage: storage.clone(),
        versions,
    };
    Ok(Some((ctx, view, kinds)))
}

/// Brings every index up to the tables' latest versions (a new build when
/// they moved on, or always with `rebuild`). `progress` receives the
/// index's label, the rows read so far and the total.
pub async fn update(
    root: &Url,
    storage: &StorageOptions,
    config: &IndexesConfig,
    rebuild: bool,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<Vec<Updated>> {
    let Some((ctx, lake, kinds)) = open(root, storage).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for kind in kinds {
        let started = Instant::now();
        let home = IndexHome::new(&lake.root, storage, &kind.name())?;
        let covers = kind.covers(&lake);
        if let Some(manifest) = home.manifest().await? {
            if manifest.covers == covers && !rebuild {
                out.push(Updated {
                    kind,
                    manifest,
                    up_to_date: true,
                    secs: started.elapsed().as_secs_f64(),
                });
                continue;
            }
        }
        let total = kind.source_rows(&ctx).await?;
        let label = kind.label();
        let staged = tempfile::tempdir()?;
        let built = kind
            .build(&ctx, staged.path(), config, &|done| {
                progress(&label, done, total)
            })
            .await?;
        let Some(rows) = built else { continue };
        let manifest = Manifest {
            format: FORMAT,
            generation: IndexHome::new_generation(),
            covers,
            rows,
            bytes: 0,
            built_at: Utc::now(),
        };
        let manifest = home.publish(staged.path(), manifest).await?;
        out.push(Updated {
            kind,
            manifest,
            up_to_date: false,
            secs: started.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

/// `update` for writers that run it in the background: failures are
/// logged, never returned, since the tables already hold everything.
pub async fn update_in_background(root: Url, storage: StorageOptions, config: IndexesConfig) {
    match update(&root, &storage, &config, false, &|_, _, _| {}).await {
        Ok(all) => {
            for u in all.iter().filter(|u| !u.up_to_date) {
                tracing::info!(
                    index = u.kind.label(),
                    rows = u.manifest.rows,
                    secs = u.secs,
                    "index updated"
                )
            }
        }
        Err(e) => {
            tracing::warn!("the search indexes were not updated ({e:#}); searches stay exact")
        }
    }
}

/// One index's state.
#[derive(Debug, Serialize)]
pub struct Status {
    pub index: String,
    /// Table → version covered; empty before the first build.
    pub covers: BTreeMap<String, u64>,
    /// Table → latest version.
    pub latest: BTreeMap<String, u64>,
    /// Rows committed to the indexed table since the covered version
    /// (`None`: unknown, the log no longer reaches back; rebuild).
    pub rows_behind: Option<u64>,
    pub rows: u64,
    pub bytes: u64,
    pub built_at: Option<DateTime<Utc>>,
}

/// The state of every index of the lake at `root`.
pub async fn status(root: &Url, storage: &StorageOptions) -> Result<Vec<Status>> {
    let Some((ctx, lake, kinds)) = open(root, storage).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for kind in kinds {
        let home = IndexHome::new(&lake.root, storage, &kind.name())?;
        let manifest = home.manifest().await?;
        let rows_behind = match &manifest {
            None => Some(kind.source_rows(&ctx).await?),
            Some(m) => {
                let store = lake.store(&ctx)?;
                let from = m.covers.get(kind.table()).copied();
                lake.changes(&store, kind.table(), from)
                    .await
                    .ok()
                    .map(|c| c.added_rows)
            }
        };
        out.push(Status {
            index: kind.label(),
            covers: manifest
                .as_ref()
                .map(|m| m.covers.clone())
                .unwrap_or_default(),
            latest: kind.covers(&lake),
            rows_behind,
            rows: manifest.as_ref().map_or(0, |m| m.rows),
            bytes: manifest.as_ref().map_or(0, |m| m.bytes),
            built_at: manifest.map(|m| m.built_at),
        });
    }
    Ok(out)
}
