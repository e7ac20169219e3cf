//! A lake: Delta tables under one root, written with `deltalake`.
//!
//! Appends are idempotent per document version: rows whose (doc_id,
//! content_hash) already landed in a table are dropped before the commit.
//! Each table commit is atomic, so after a crash between tables a re-run
//! fills in exactly the tables that missed the batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Schema};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::kernel::Transaction;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Deserialize;
use url::Url;

use crate::contract::identity::DocKey;
use crate::contract::tables as contract;
use crate::storage::{as_directory, StorageOptions};

/// `[lake]` in pipeline files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    pub uri: String,
    /// Tables docstream creates write a Delta checkpoint every N commits.
    pub checkpoint_interval: u64,
    /// `ingest` compacts a table's small files every N of its commits, in
    /// the background (0 = never; run `docstream optimize` instead).
    pub compact_every_commits: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            uri: "lake".into(),
            checkpoint_interval: 100,
            compact_every_commits: 0,
        }
    }
}

/// Tries of a delete that conflicts with concurrent compactions.
const DELETE_ATTEMPTS: u32 = 5;

pub struct Lake {
    root: Url,
    storage: StorageOptions,
    /// The lake's object store and the root's path in it, for listings.
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    pub(super) tables: HashMap<String, DeltaTable>,
    /// Keys already in each table, loaded on first write to it.
    landed: HashMap<String, HashSet<DocKey>>,
    /// Table properties set on the tables this lake creates.
    properties: Vec<(String, Option<String>)>,
}

impl Lake {
    pub async fn open(root: &Url, storage: &StorageOptions) -> Result<Self> {
        if !matches!(
            root.scheme(),
            "file" | "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss"
        ) {
            bail!("a lake must be a local folder, s3://, gs:// or az:// (got {root})");
        }
        let root = as_directory(root.clone());
        if root.scheme() == "file" {
            if let Ok(path) = root.to_file_path() {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create lake folder {}", path.display()))?;
            }
        }
        let (store, prefix) = storage.object_store(&root)?;
        Ok(Self {
            root,
            store,
            prefix,
            storage: storage.clone(),
            tables: HashMap::new(),
            landed: HashMap::new(),
            properties: Vec::new(),
        })
    }

    /// Tables this lake creates write a Delta checkpoint every `n` commits,
    /// so opening them reads one checkpoint plus at most `n` commits.
    pub fn with_checkpoint_interval(mut self, n: u64) -> Self {
        self.properties.push((
            "delta.checkpointInterval".into(),
            Some(n.max(1).to_string()),
        ));
        self
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    fn table_url(&self, name: &str) -> Result<Url> {
        Ok(as_directory(self.root.join(name)?))
    }

    /// Names of the Delta tables directly under the root.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .with_context(|| format!("cannot list the lake at {}", self.root))?;
        let mut names = Vec::new();
        for dir in listing.common_prefixes {
            if let Some(name) = dir.filename() {
                if self.has_log(name).await? {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Whether `table` has a Delta log, checked with one LIST call.
    async fn has_log(&self, table: &str) -> Result<bool> {
        let log = self.prefix.clone().join(table).join("_delta_log");
        Ok(self.store.list(Some(&log)).next().await.is_some())
    }

    /// Creates the contract tables that do not exist yet, empty, so every
    /// table can be queried (and read by other engines) from the first run.
    pub async fn create_contract_tables(&mut self, tables: &[&str]) -> Result<()> {
        for name in tables {
            let Some(schema) = contract::schema(name) else {
                continue;
            };
            if self.table(name).await?.is_some() {
                continue;
            }
            let Some(table) = self.tables.remove(*name) else {
                continue;
            };
            let created = table
                .write(vec![RecordBatch::new_empty(schema)])
                .with_save_mode(SaveMode::Append)
                .with_configuration(self.properties.clone())
                .await
                .with_context(|| format!("cannot create table {name}"))?;
            self.tables.insert(name.to_string(), created);
        }
        Ok(())
    }

    /// The table, or `None` when it has no commits yet.
    pub async fn table(&mut self, name: &str) -> Result<Option<&DeltaTable>> {
        if !self.tables.contains_key(name) {
            let url = self.table_url(name)?;
            if let Ok(path) = url.to_file_path() {
                // deltalake refuses local table paths that do not exist yet.
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
            }
            let options = self.storage.delta_options();
            let table = if self.has_log(name).await? {
                deltalake::open_table_with_storage_options(url, options).await
            } else {
                // Not created yet: a handle the first write creates the table with.
                DeltaTableBuilder::from_url(url)
                    .and_then(|b| b.with_storage_options(options).build())
            }
            .with_context(|| format!("cannot open table {name}"))?;
            self.tables.insert(name.to_string(), table);
        }
        Ok(self.tables.get(name).filter(|t| t.version().is_some()))
    }

    /// Re-reads `table`'s log, so reads and commits see other writers' commits.
    pub async fn refresh(&mut self, table: &str) -> Result<()> {
        match self.tables.get_mut(table) {
            Some(t) if t.version().is_some() => t
                .update_incremental(None)
                .await
                .with_context(|| format!("cannot refresh table {table}")),
            // Never committed when last seen: look again from scratch.
            _ => {
                self.tables.remove(table);
                Ok(())
            }
        }
    }

    /// Registers every table of the lake on `ctx` under its own name.
    pub async fn register_all(&mut self, ctx: &SessionContext) -> Result<Vec<String>> {
        let names = self.table_names().await?;
        for name in &names {
            if let Some(table) = self.table(name).await? {
                register(ctx, name, table).await?;
            }
        }
        Ok(names)
    }

    /// Distinct (doc_id, content_hash) pairs in `table` matching `filter` (SQL).
    pub async fn keys(&mut self, table: &str, filter: Option<&str>) -> Result<HashSet<DocKey>> {
        let Some(t) = self.table(table).await? else {
            return Ok(HashSet::new());
        };
        let ctx = SessionContext::new();
        register(&ctx, table, t).await?;
        // Tables without a version key (usage) are append-only logs.
        let schema = ctx.table(table).await?.schema().clone();
        if !schema.has_column_with_unqualified_name("doc_id")
            || !schema.has_column_with_unqualified_name("content_hash")
        {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT DISTINCT doc_id, content_hash FROM {table} WHERE {}",
            filter.unwrap_or("true")
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let mut keys = HashSet::new();
        for b in batches {
            let ids = utf8(b.column(0))?;
            let hashes = utf8(b.column(1))?;
            let (ids, hashes) = (ids.as_string::<i32>(), hashes.as_string::<i32>());
            for i in 0..b.num_rows() {
                keys.insert((ids.value(i).to_string(), hashes.value(i).to_string()));
            }
        }
        Ok(keys)
    }

    /// Appends `batches` to `table`, skipping document versions that already
    /// landed there. Returns the number of rows written.
    pub async fn append(&mut self, table: &str, batches: Vec<RecordBatch>) -> Result<usize> {
        self.append_marked(table, batches, Vec::new()).await
    }

    /// Like [`Lake::append`], in one commit with transaction markers. With
    /// markers, the commit happens even without rows, so the markers advance.
    pub async fn append_marked(
        &mut self,
        table: &str,
        batches: Vec<RecordBatch>,
        markers: Vec<Transaction>,
    ) -> Result<usize> {
        if !self.landed.contains_key(table) {
            let keys = self.keys(table, None).await?;
            self.landed.insert(table.to_string(), keys);
        }
        let landed = &self.landed[table];
        let mut fresh = Vec::new();
        let mut new_keys = Vec::new();
        for batch in batches {
            let batch = conform(table, &batch)?;
            let (kept, keys) = drop_landed(&batch, landed)?;
            if kept.num_rows() > 0 {
                fresh.push(kept);
                new_keys.extend(keys);
            }
        }
        let rows: usize = fresh.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            if !markers.is_empty() {
                self.commit_markers(table, markers).await?;
            }
            return Ok(0);
        }
        self.table(table).await?;
        let Some(current) = self.tables.remove(table) else {
            bail!("table {table} vanished while writing");
        };
        // A contract column the table lacks (added in a later release) is
        // added to the table by this commit.
        let evolve = match current.snapshot() {
            Ok(snapshot) => {
                let existing = snapshot.schema();
                fresh[0]
                    .schema()
                    .fields()
                    .iter()
                    .any(|f| existing.field(f.name()).is_none())
            }
            Err(_) => false,
        };
        let layout = super::parquet_layout::writer_properties(&fresh[0].schema());
        let mut write = current
            .write(fresh)
            .with_save_mode(SaveMode::Append)
            .with_writer_properties(layout)
            .with_configuration(self.properties.clone());
        if evolve {
            write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Merge);
        }
        let written = write
            .with_commit_properties(
                CommitProperties::default().with_application_transactions(markers),
            )
            .await
            .with_context(|| format!("cannot commit to table {table}"))?;
        self.tables.insert(table.to_string(), written);
        self.landed
            .entry(table.to_string())
            .or_default()
            .extend(new_keys);
        Ok(rows)
    }

    /// Deletes every row of these documents from `table` (right to erasure).
    /// Tables without a `doc_id` column are left alone. Returns rows deleted.
    pub async fn delete_documents(
        &mut self,
        table: &str,
        doc_ids: &HashSet<String>,
    ) -> Result<usize> {
        if doc_ids.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<&String> = doc_ids.iter().collect();
        ids.sort();
        let list: Vec<String> = ids
            .iter()
            .map(|id| format!("'{}'", id.replace('\'', "''")))
            .collect();
        let predicate = format!("doc_id IN ({})", list.join(", "));
        // A compaction that rewrote the files this delete read conflicts
        // with it; deleting again from the new version is the same delete.
        let mut attempt = 0;
        let (deleted, metrics) = loop {
            attempt += 1;
            let Some(t) = self.table(table).await? else {
                return Ok(0);
            };
            if t.snapshot()?.schema().field("doc_id").is_none() {
                return Ok(0);
            }
            let Some(current) = self.tables.remove(table) else {
                bail!("table {table} vanished while deleting");
            };
            match current
                .clone()
                .delete()
                .with_predicate(predicate.clone())
                .await
            {
                Ok(done) => break done,
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(e),
                }) if attempt < DELETE_ATTEMPTS => {
                    tracing::info!(table, attempt, "delete conflicted ({e}); retrying");
                    self.tables.insert(table.to_string(), current);
                    self.refresh(table).await?;
                }
                Err(e) => {
                    self.tables.insert(table.to_string(), current);
                    return Err(e)
                        .with_context(|| format!("cannot delete documents from table {table}"));
                }
            }
        };
        self.tables.insert(table.to_string(), deleted);
        if let Some(keys) = self.landed.get_mut(table) {
            keys.retain(|(doc, _)| !doc_ids.contains(doc));
        }
        Ok(metrics.num_deleted_rows.unwrap_or(0))
    }

    /// Forgets the landed keys loaded so far, so the next append re-reads
    /// them (another writer may have appended meanwhile).
    pub fn forget_landed(&mut self) {
        self.landed.clear();
    }
}

async fn register(ctx: &SessionContext, name: &str, table: &DeltaTable) -> Result<()> {
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    ctx.register_table(name, provider)?;
    Ok(())
}

fn utf8(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Utf8)?)
}

/// Casts a stage's output to the table's contract: same columns, same types.
fn conform(table: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let Some(schema) = contract::schema(table) else {
        return Ok(batch.clone());
    };
    let input = batch.schema();
    if let Some(extra) = input
        .fields()
        .iter()
        .find(|f| schema.field_with_name(f.name()).is_err())
    {
        bail!(
            "stage output has column '{}', which the {table} table does not have (see schemas/tables/{table}.schema.json)",
            extra.name()
        );
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
            Some(col) => cast(col, field.data_type())
                .with_context(|| format!("column {} of {table}", field.name())),
            None if field.is_nullable() => Ok(deltalake::arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
            None => bail!(
                "stage output lacks required column '{}' of {table}",
                field.name()
            ),
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new(Arc::new(Schema::clone(&schema)), columns)
        .with_context(|| format!("stage output does not fit the {table} contract"))
}

/// Drops rows of document versions already in `landed`; returns the kept rows
/// and their keys. Tables without doc_id and content_hash are kept whole.
fn drop_landed(
    batch: &RecordBatch,
    landed: &HashSet<DocKey>,
) -> Result<(RecordBatch, Vec<DocKey>)> {
    let (Some(ids), Some(hashes)) = (
        batch.column_by_name("doc_id"),
        batch.column_by_name("content_hash"),
    ) else {
        return Ok((batch.clone(), Vec::new()));
    };
    let (ids, hashes) = (utf8(ids)?, utf8(hashes)?);
    let (ids, hashes) = (ids.as_string::<i32>(), hashes.as_string::<i32>());
    let mut keys = Vec::new();
    let mask: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            if ids.is_null(i) || hashes.is_null(i) {
                return Some(true);
            }
            let key = (ids.value(i).to_string(), hashes.value(i).to_string());
            let keep = !landed.contains(&key);
            if keep {
                keys.push(key);
            }
            Some(keep)
        })
        .collect();
    Ok((filter_record_batch(batch, &mask)?, keys))
}
