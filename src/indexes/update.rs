//! Building an index and reporting how far behind the tables it is.
//! An update reads the tables at their latest versions and publishes a new
//! generation; it never touches the generations readers use. Most updates
//! index only the rows committed since the last one, as a new layer on
//! top; the layers above the full build are merged once there are
//! `MAX_LAYERS`, and everything is rebuilt once they hold more rows than
//! the full build, so an update costs what changed, amortized.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Utc};
use deltalake::datafusion::prelude::{col, lit, SessionContext};
use serde::Serialize;
use url::Url;

use super::config::IndexesConfig;
use super::fresh::{self, LakeView, Source, Tail};
use super::keyword::{self, index_lake};
use super::published::{IndexHome, Layer, Manifest};
use super::semantic;
use super::text::TextWriter;
use super::vector::VectorWriter;
use crate::contract::tables;
use crate::lineage::current;
use crate::sinks::lake::Lake;
use crate::storage::StorageOptions;

/// Layers an index may have before the ones above its full build are
/// merged into one.
const MAX_LAYERS: usize = 8;

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

    /// Builds the index of `source` into `dir`; returns the rows indexed,
    /// or `None` when the lake has nothing to index.
    async fn build(
        &self,
        ctx: &SessionContext,
        dir: &std::path::Path,
        config: &IndexesConfig,
        source: &Source<'_>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Option<u64>> {
        let memory = config.memory_mb.saturating_mul(1 << 20);
        match self {
            Kind::Text => {
                let mut writer = TextWriter::create(Some(dir), memory)?;
                index_lake(ctx, source, &mut writer, progress).await?;
                let rows = writer.rows();
                tokio::task::spawn_blocking(move || writer.finish()).await??;
                Ok(Some(rows))
            }
            Kind::Vectors { model } => {
                let Some(dims) = semantic::dims(ctx, model).await? else {
                    return Ok(None);
                };
                let writer = VectorWriter::create(dir, model, dims, memory)?;
                let writer = semantic::index_lake(ctx, source, model, writer, progress).await?;
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
    /// Rows indexed by this update: all of them after a full build, the
    /// new layer's otherwise; 0 when it was up to date.
    pub indexed: u64,
    /// Already covered the tables' latest versions: nothing was built.
    pub up_to_date: bool,
    pub secs: f64,
}

/// The layers an update keeps, and the tail it indexes as a new layer on
/// top of them; `None` when a full build is due.
async fn plan(
    ctx: &SessionContext,
    lake: &LakeView,
    kind: &Kind,
    manifest: Manifest,
) -> Option<(Vec<Layer>, Tail)> {
    let mut keep = manifest.layers;
    if keep.len() >= MAX_LAYERS {
        keep.truncate(1);
    }
    let from = keep.last()?.covers.clone();
    let tail = match fresh::tail(ctx, lake, &from, kind.table()).await {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(index = kind.label(), "rebuilding: {e:#}");
            return None;
        }
    };
    let above: u64 = keep[1..].iter().map(|l| l.rows).sum();
    (above + tail.rows <= keep[0].rows).then_some((keep, tail))
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
    let mut registered: Vec<String> = versions.keys().cloned().collect();
    if lake.register_table(&ctx, "lineage").await?.is_some() {
        registered.push("lineage".into());
    }
    let superseded: BTreeSet<String> = current::register_views(&ctx, &registered)
        .await?
        .into_iter()
        .collect();
    let view = ctx.sql(&tables::current_documents_sql()).await?.into_view();
    ctx.register_table("current_documents", view)?;
    // A table with superseded rows is searched by scanning its current rows
    // (see `fresh::published`), so an index of it would go unused.
    let mut kinds = Vec::new();
    if versions.contains_key("chunks") && !superseded.contains("chunks") {
        kinds.push(Kind::Text);
    }
    if versions.contains_key("embeddings") && !superseded.contains("embeddings") {
        for model in semantic::models(&ctx).await? {
            kinds.push(Kind::Vectors { model });
        }
    }
    let view = LakeView {
        root: lake.root().clone(),
        storage: storage.clone(),
        versions,
        superseded,
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
        let previous = home.manifest().await?.filter(|_| !rebuild);
        if let Some(manifest) = previous.as_ref().filter(|m| m.covers() == covers) {
            out.push(Updated {
                kind,
                manifest: manifest.clone(),
                indexed: 0,
                up_to_date: true,
                secs: started.elapsed().as_secs_f64(),
            });
            continue;
        }
        let plan = match previous {
            Some(m) => plan(&ctx, &lake, &kind, m).await,
            None => None,
        };
        let (source, total) = match &plan {
            Some((_, tail)) => (Source::Tail(tail), tail.rows),
            None => (Source::Table, kind.source_rows(&ctx).await?),
        };
        let label = kind.label();
        let staged = tempfile::tempdir()?;
        let built = kind
            .build(&ctx, staged.path(), config, &source, &|done| {
                progress(&label, done, total)
            })
            .await?;
        let Some(rows) = built else { continue };
        let layer = Layer::new(covers, rows);
        let layers = match plan {
            Some((mut keep, tail)) => {
                fresh::write_changed(staged.path(), &tail)?;
                keep.push(layer);
                keep
            }
            None => vec![layer],
        };
        let manifest = home.publish(staged.path(), Manifest::new(layers)).await?;
        out.push(Updated {
            kind,
            manifest,
            indexed: rows,
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
                    indexed = u.indexed,
                    layers = u.manifest.layers.len(),
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
    /// Generations searched together: the full build, then one per update.
    pub layers: usize,
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
                let from = m.covers().get(kind.table()).copied();
                lake.changes(&store, kind.table(), from)
                    .await
                    .ok()
                    .map(|c| c.added_rows)
            }
        };
        out.push(Status {
            index: kind.label(),
            covers: manifest.as_ref().map(Manifest::covers).unwrap_or_default(),
            latest: kind.covers(&lake),
            rows_behind,
            layers: manifest.as_ref().map_or(0, |m| m.layers.len()),
            rows: manifest.as_ref().map_or(0, Manifest::rows),
            bytes: manifest.as_ref().map_or(0, Manifest::bytes),
            built_at: manifest.map(|m| m.built_at),
        });
    }
    Ok(out)
}
