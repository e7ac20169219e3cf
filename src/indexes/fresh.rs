//! What an index has not seen: the documents changed since the version it
//! covers (new versions and erasures) and the rows committed since (the
//! tail). Searches use the index for the rest, and these to stay exact.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::datafusion::prelude::{col, lit, DataFrame, ParquetReadOptions, SessionContext};
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use url::Url;

use super::delta_log::{self, Changes};
use super::published::IndexHome;
use crate::storage::{as_directory, StorageOptions};

/// The lake as a read session sees it: its root and the version of each
/// table registered in the session.
#[derive(Debug, Clone)]
pub struct LakeView {
    pub root: Url,
    pub storage: StorageOptions,
    pub versions: BTreeMap<String, u64>,
    /// Tables that hold rows of superseded stage fingerprints: the session
    /// reads them through views of their current rows, and searches scan
    /// those instead of the indexes until `vacuum --superseded`.
    pub superseded: BTreeSet<String>,
}

impl LakeView {
    pub fn table_url(&self, table: &str) -> Result<Url> {
        Ok(as_directory(as_directory(self.root.clone()).join(table)?))
    }

    /// The lake's object store, registered on `ctx` so it can read data
    /// files by URL.
    pub fn store(&self, ctx: &SessionContext) -> Result<Arc<dyn ObjectStore>> {
        let (store, _) = self.storage.object_store(&self.root)?;
        if self.root.scheme() != "file" {
            let bucket = Url::parse(&format!(
                "{}://{}",
                self.root.scheme(),
                self.root.host_str().unwrap_or_default()
            ))?;
            ctx.register_object_store(&bucket, store.clone());
        }
        Ok(store)
    }

    /// The changes to `table` after `from`, up to the session's version.
    pub async fn changes(
        &self,
        store: &Arc<dyn ObjectStore>,
        table: &str,
        from: Option<u64>,
    ) -> Result<Changes> {
        let Some(to) = self.versions.get(table).copied() else {
            return Ok(Changes::default());
        };
        delta_log::changes(store, &self.table_url(table)?, from, to).await
    }
}

/// Which documents a search may return.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub tenant: Option<String>,
    /// On the document's date: event_time, else ingest time.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl Scope {
    /// Whether a document of `tenant` dated `date` (microseconds) is in scope.
    pub fn admits(&self, tenant: &str, date: Option<i64>) -> bool {
        let within = |bound: Option<&DateTime<Utc>>, after: bool| match (bound, date) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(b), Some(d)) => (d >= b.timestamp_micros()) == after,
        };
        self.tenant.as_ref().is_none_or(|t| t == tenant)
            && within(self.since.as_ref(), true)
            && within(self.until.as_ref(), false)
    }

    pub fn admits_version(&self, v: &Version) -> bool {
        self.admits(&v.tenant, v.date)
    }
}

/// A time from the command line or SQL: YYYY-MM-DD (midnight UTC) or RFC 3339.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("'{s}' is not YYYY-MM-DD or an RFC 3339 time"))
}

/// A document's current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub content_hash: String,
    pub tenant: String,
    /// Event time, else ingest time, in microseconds.
    pub date: Option<i64>,
}

/// What an index covering `covers` misses of a table of per-chunk rows.
#[derive(Debug, Default)]
pub struct Tail {
    /// Documents with a new version or erased since the index was built:
    /// their indexed rows may no longer be current.
    pub changed: HashSet<String>,
    /// Files of rows committed since the index was built.
    pub files: Vec<Url>,
    /// Rows in `files`, as the writers recorded them.
    pub rows: u64,
    /// The current version of every changed document and every document
    /// with rows in `files`; absent when erased or not landed yet.
    pub current: HashMap<String, Version>,
}

impl Tail {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.files.is_empty()
    }

    /// Whether a row of `doc_id` at `content_hash` is current.
    pub fn is_current(&self, doc_id: &str, content_hash: &str) -> Option<&Version> {
        self.current
            .get(doc_id)
            .filter(|v| v.content_hash == content_hash)
    }
}

/// Document versions by (doc_id, content_hash): `Some` for the current
/// one, `None` for one a newer version replaced or a delete erased.
pub type Versions = HashMap<(String, String), Option<Version>>;

/// What a build indexes: a whole table, or the rows a tail holds.
pub enum Source<'a> {
    Table,
    Tail(&'a Tail),
}

impl Source<'_> {
    /// The rows of `table` (chunks, embeddings) to index.
    pub async fn frame(&self, ctx: &SessionContext, table: &str) -> Result<Option<DataFrame>> {
        match self {
            Source::Table => Ok(Some(ctx.table(table).await?)),
            Source::Tail(t) if t.files.is_empty() => Ok(None),
            Source::Tail(t) => Ok(Some(files_frame(ctx, &t.files).await?)),
        }
    }

    /// The versions the rows are checked against. A tail knows only the
    /// current ones: its other rows are indexed as not current, which is
    /// what an older version and one not landed yet both need.
    pub async fn versions(&self, ctx: &SessionContext) -> Result<Versions> {
        match self {
            Source::Table => versions(ctx).await,
            Source::Tail(t) => Ok(t
                .current
                .iter()
                .map(|(id, v)| ((id.clone(), v.content_hash.clone()), Some(v.clone())))
                .collect()),
        }
    }
}

/// The tail of `table` (chunks, embeddings) after the versions in `covers`,
/// as the session `ctx` (with `documents` and `current_documents`) sees it.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn tail(
    ctx: &SessionContext,
    lake: &LakeView,
    covers: &BTreeMap<String, u64>,
    table: &str,
) -> Result<Tail> {
    let store = lake.store(ctx)?;
    let version = |t: &str| covers.get(t).copied();
    let docs = lake
        .changes(&store, "documents", version("documents"))
        .await?;
    let rows = lake.changes(&store, table, version(table)).await?;
    if docs.is_empty() && rows.added.is_empty() {
        return Ok(Tail::default());
    }
    let mut changed = HashSet::new();
    let doc_files: Vec<Url> = docs.added.iter().chain(&docs.removed).cloned().collect();
    for b in read_files(ctx, &doc_files, &["doc_id"]).await? {
        changed.extend(strings(&b, 0)?);
    }
    let mut ids = changed.clone();
    for b in read_files(ctx, &rows.added, &["doc_id"]).await? {
        ids.extend(strings(&b, 0)?);
    }
    Ok(Tail {
        current: current_versions(ctx, &ids).await?,
        changed,
        files: rows.added,
        rows: rows.added_rows,
    })
}

/// Every document version in `ctx`'s `documents`, by (doc_id,
/// content_hash): its tenant and date when it is the current version,
/// `None` when a newer one replaced it or it was erased. A row whose
/// version is absent belongs to a version whose `documents` row has not
/// landed yet.
pub async fn versions(ctx: &SessionContext) -> Result<Versions> {
    let mut versions = HashMap::new();
    let sql = format!(
        "SELECT doc_id, content_hash, tenant, event_time, ingested_at, version_rank FROM ({})",
        crate::contract::tables::DOCUMENT_VERSIONS
    );
    for b in ctx.sql(&sql).await?.collect().await? {
        let (ids, hashes, tenants) = (strings(&b, 0)?, strings(&b, 1)?, strings(&b, 2)?);
        let (event, ingested, rank) = (ints(&b, 3)?, ints(&b, 4)?, ints(&b, 5)?);
        for i in 0..b.num_rows() {
            let current = (rank[i] == Some(1)).then(|| Version {
                content_hash: hashes[i].clone(),
                tenant: tenants[i].clone(),
                date: event[i].or(ingested[i]),
            });
            versions.insert((ids[i].clone(), hashes[i].clone()), current);
        }
    }
    Ok(versions)
}

/// An index's published layers, as local folders, and the tail of the
/// table they have not seen.
pub struct Published {
    /// Oldest first, each with the documents whose rows in it may no longer
    /// be current: those changed in later layers or in the tail. Their
    /// versions are in `tail.current`.
    pub layers: Vec<(PathBuf, HashSet<String>)>,
    pub tail: Tail,
}

/// The file in a layer that lists the documents changed since the layer
/// before it, one JSON object per line: the doc_id and its version when the
/// layer was built (`null` once erased). Recording the versions spares a
/// search from looking them up.
const CHANGED_FILE: &str = "changed.jsonl";

#[derive(Serialize, Deserialize)]
struct Changed {
    doc_id: String,
    version: Option<Version>,
}

/// Writes the documents `tail` changed, with their versions, into the
/// layer being built in `dir`.
pub fn write_changed(dir: &Path, tail: &Tail) -> Result<()> {
    let mut ids: Vec<&String> = tail.changed.iter().collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    for id in ids {
        let entry = Changed {
            doc_id: id.clone(),
            version: tail.current.get(id).cloned(),
        };
        serde_json::to_writer(&mut out, &entry)?;
        out.push(b'\n');
    }
    std::fs::write(dir.join(CHANGED_FILE), out)
        .with_context(|| format!("cannot write {}", dir.join(CHANGED_FILE).display()))
}

/// The documents the layer in `dir` records as changed, with their versions
/// then; none for a full build.
fn read_changed(dir: &Path) -> Result<Vec<(String, Option<Version>)>> {
    let path = dir.join(CHANGED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let c: Changed = serde_json::from_str(l).with_context(|| {
                format!(
                    "{} is damaged; run `docstream index --rebuild`",
                    path.display()
                )
            })?;
            Ok((c.doc_id, c.version))
        })
        .collect()
}

/// The published layers of index `name`, with the tail of `table` they have
/// not seen. `None` when there are none, when they were built after the
/// session opened its tables, or when the log cannot say what they miss:
/// the caller scans instead.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn published(
    ctx: &SessionContext,
    lake: &LakeView,
    name: &str,
    table: &str,
) -> Result<Option<Published>> {
    if lake.superseded.contains(table) {
        tracing::info!(
            index = name,
            "{table} holds rows of superseded stage fingerprints: scanning its current rows; `docstream vacuum --superseded` lets searches use the index again"
        );
        return Ok(None);
    }
    let home = IndexHome::new(&lake.root, &lake.storage, name)?;
    let Some(manifest) = home.manifest().await? else {
        return Ok(None);
    };
    let newer = manifest
        .covers()
        .iter()
        .any(|(t, v)| lake.versions.get(t).is_some_and(|now| now < v));
    if newer {
        // It may hold rows the session cannot see.
        tracing::debug!(index = name, "the index is newer than the session's tables");
        return Ok(None);
    }
    let mut tail = match tail(ctx, lake, &manifest.covers(), table).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("the {name} index cannot be brought up to date ({e:#}): scanning instead; run `docstream index`");
            return Ok(None);
        }
    };
    let dirs = home.local_layers(&manifest).await?;
    // Going down from the newest layer, each layer's rows of documents
    // changed above it are re-checked against the versions recorded
    // above it: the newest record wins, and the tail's beats them all.
    let mut later = tail.changed.clone();
    let mut recorded: HashMap<String, Option<Version>> = HashMap::new();
    let mut layers = Vec::new();
    for dir in dirs.into_iter().rev() {
        let changed = read_changed(&dir)?;
        layers.push((dir, later.clone()));
        for (id, version) in changed {
            later.insert(id.clone());
            recorded.entry(id).or_insert(version);
        }
    }
    layers.reverse();
    for (id, version) in recorded {
        if tail.changed.contains(&id) || tail.current.contains_key(&id) {
            continue;
        }
        if let Some(v) = version {
            tail.current.insert(id, v);
        }
    }
    Ok(Some(Published { layers, tail }))
}

/// The rows in `files` (Parquet data files of one table).
pub async fn files_frame(ctx: &SessionContext, files: &[Url]) -> Result<DataFrame> {
    let paths: Vec<String> = files.iter().map(Url::to_string).collect();
    ctx.read_parquet(paths, ParquetReadOptions::default())
        .await
        .context("cannot read the files committed since the index was built")
}

/// `columns` of the rows in `files` (Parquet data files of one table).
pub async fn read_files(
    ctx: &SessionContext,
    files: &[Url],
    columns: &[&str],
) -> Result<Vec<RecordBatch>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let frame = files_frame(ctx, files).await?;
    Ok(frame.select_columns(columns)?.collect().await?)
}

/// The current version of each of `ids`, from `current_documents`.
async fn current_versions(
    ctx: &SessionContext,
    ids: &HashSet<String>,
) -> Result<HashMap<String, Version>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = ids.iter().map(|id| lit(id.as_str())).collect();
    let batches = ctx
        .table("current_documents")
        .await?
        .filter(col("doc_id").in_list(list, false))?
        .select_columns(&[
            "doc_id",
            "content_hash",
            "tenant",
            "event_time",
            "ingested_at",
        ])?
        .collect()
        .await?;
    let mut out = HashMap::new();
    for b in batches {
        let (ids, hashes, tenants) = (strings(&b, 0)?, strings(&b, 1)?, strings(&b, 2)?);
        let event = ints(&b, 3)?;
        let ingested = ints(&b, 4)?;
        for i in 0..b.num_rows() {
            out.insert(
                ids[i].clone(),
                Version {
                    content_hash: hashes[i].clone(),
                    tenant: tenants[i].clone(),
                    date: event[i].or(ingested[i]),
                },
            );
        }
    }
    Ok(out)
}

/// Column `c` as strings (nulls as empty).
pub fn strings(b: &RecordBatch, c: usize) -> Result<Vec<String>> {
    let a = cast(b.column(c), &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| {
            if a.is_valid(i) {
                a.value(i).to_string()
            } else {
                String::new()
            }
        })
        .collect())
}

/// Column `c` as integers (timestamps as microseconds).
pub fn ints(b: &RecordBatch, c: usize) -> Result<Vec<Option<i64>>> {
    let a = cast(b.column(c), &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect())
}
