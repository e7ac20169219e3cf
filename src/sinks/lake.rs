//! A lake: Delta tables under one root, written with `deltalake`.
//!
//! Appends are idempotent per document version: rows whose version key
//! (doc_id, content_hash) already landed in a table are dropped before the
//! commit, including keys other writers committed meanwhile (see
//! `landed`). Each table commit is atomic, so after a crash between tables
//! a re-run fills in exactly the tables that missed the batch.

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

use super::landed::{append_actions, is_keyed, Landed, RowKey};
use crate::contract::identity::DocKey;
use crate::contract::tables::{self as contract, version_key};
use crate::storage::{as_directory, StorageOptions};

/// `[lake]` in pipeline files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeConfig {
    pub uri: String,
    /// Tables docstream creates write a Delta checkpoint every N commits.
    pub checkpoint_interval: u64,
    /// `ingest` and `serve` compact a table's small files every N of its
    /// commits, in the background (0 = never; run `docstream optimize`).
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

/// Tries of an append that keeps losing the race for the next table
/// version to other writers' appends.
const APPEND_ATTEMPTS: u32 = 50;

pub struct Lake {
    root: Url,
    storage: StorageOptions,
    /// The lake's object store and the root's path in it, for listings.
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    pub(super) tables: HashMap<String, DeltaTable>,
    /// Keys in each table, loaded on first write and kept current.
    pub(super) landed: HashMap<String, Landed>,
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
                .await;
            match created {
                Ok(created) => {
                    self.tables.insert(name.to_string(), created);
                }
                // Another writer created it first.
                Err(e) if self.has_log(name).await? => {
                    tracing::debug!(table = name, "created concurrently ({e})");
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create table {name}")),
            }
        }
        Ok(())
    }

    /// The table, or `None` when it has no commits yet.
    pub async fn table(&mut self, name: &str) -> Result<Option<&DeltaTable>> {
        if !self.tables.contains_key(name) {
            let table = self.open_table(name).await?;
            self.tables.insert(name.to_string(), table);
        }
        Ok(self.tables.get(name).filter(|t| t.version().is_some()))
    }

    /// Reads `name`'s log; a table without one yet is a handle its first
    /// write creates the table with.
    async fn open_table(&self, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(name)?;
        if let Ok(path) = url.to_file_path() {
            // deltalake refuses local table paths that do not exist yet.
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        let options = self.storage.delta_options();
        if self.has_log(name).await? {
            deltalake::open_table_with_storage_options(url, options).await
        } else {
            DeltaTableBuilder::from_url(url).and_then(|b| b.with_storage_options(options).build())
        }
        .with_context(|| format!("cannot open table {name}"))
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

    /// Registers `name` on `ctx` at its latest version, and returns that
    /// version; `None` when the table has no commits.
    pub async fn register_table(
        &mut self,
        ctx: &SessionContext,
        name: &str,
    ) -> Result<Option<u64>> {
        self.refresh(name).await?;
        let Some(table) = self.table(name).await? else {
            return Ok(None);
        };
        register(ctx, name, table).await?;
        Ok(table.version())
    }

    /// The version of `name` as last read, if it has commits.
    pub fn version(&self, name: &str) -> Option<u64> {
        self.tables.get(name).and_then(DeltaTable::version)
    }

    /// Registers every table of the lake on `ctx` under its own name.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn register_all(&mut self, ctx: &SessionContext) -> Result<Vec<String>> {
        let names = self.table_names().await?;
        // The logs are read side by side: one at a time, their round trips
        // to an object store add up.
        let unread: Vec<&String> = names
            .iter()
            .filter(|n| !self.tables.contains_key(n.as_str()))
            .collect();
        let opened =
            futures::future::try_join_all(unread.iter().map(|n| self.open_table(n))).await?;
        for (name, table) in unread.into_iter().zip(opened) {
            self.tables.insert(name.clone(), table);
        }
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
    ///
    /// An append that loses the race for the next version to another
    /// writer's append drops the keys that writer landed and tries again;
    /// when that writer advanced one of `markers`, it owns them now and
    /// this append fails.
    pub async fn append_marked(
        &mut self,
        table: &str,
        batches: Vec<RecordBatch>,
        markers: Vec<Transaction>,
    ) -> Result<usize> {
        let batches = batches
            .iter()
            .map(|b| conform(table, b))
            .collect::<Result<Vec<_>>>()?;
        for attempt in 1..=APPEND_ATTEMPTS {
            let advanced = self.catch_up(table).await?;
            if attempt > 1 {
                if let Some(m) = markers.iter().find(|m| advanced.contains(&m.app_id)) {
                    bail!(
                        "another writer advanced marker {} of table {table} while this one was committing; it owns that work now",
                        m.app_id
                    );
                }
            }
            let landed = self.landed.get(table);
            let read_version = landed.map(|l| l.version);
            let mut fresh = Vec::new();
            let mut keys = HashSet::new();
            let mut keyed = false;
            for batch in &batches {
                let (kept, batch_keys) = drop_landed(table, batch, landed.map(|l| &l.keys))?;
                keyed |= batch_keys.is_some();
                if kept.num_rows() > 0 {
                    fresh.push(kept);
                    keys.extend(batch_keys.unwrap_or_default());
                }
            }
            let rows: usize = fresh.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                if !markers.is_empty() {
                    self.commit_markers(table, markers).await?;
                }
                return Ok(0);
            }
            let keys: Vec<RowKey> = keys.into_iter().collect();
            let mut commit =
                CommitProperties::default().with_application_transactions(markers.clone());
            if keyed {
                let (txn, listed) = append_actions(read_version, &keys);
                commit = commit
                    .with_application_transaction(txn)
                    .with_metadata(listed);
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
                .clone()
                .write(fresh)
                .with_save_mode(SaveMode::Append)
                .with_writer_properties(layout)
                .with_configuration(self.properties.clone())
                .with_commit_properties(commit);
            if evolve {
                write = write.with_schema_mode(deltalake::operations::write::SchemaMode::Merge);
            }
            match write.await {
                Ok(written) => {
                    let version = written.version();
                    self.tables.insert(table.to_string(), written);
                    // Keys of a commit right after the known version are
                    // ours; otherwise the next catch-up reads them back.
                    if let Some(l) = self.landed.get_mut(table) {
                        if version == Some(l.version + 1) {
                            l.version += 1;
                            l.keys.extend(keys);
                        }
                    }
                    return Ok(rows);
                }
                Err(DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(e),
                }) => {
                    tracing::debug!(table, attempt, "append lost a race ({e}); catching up");
                    self.tables.insert(table.to_string(), current);
                }
                Err(e) => {
                    self.tables.insert(table.to_string(), current);
                    return Err(e).with_context(|| format!("cannot commit to table {table}"));
                }
            }
        }
        bail!("table {table} kept changing under this writer: {APPEND_ATTEMPTS} appends in a row lost the race to other writers; try again")
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
        self.delete_where(table, predicate, |k| doc_ids.contains(&k[0]))
            .await
            .with_context(|| format!("cannot delete documents from table {table}"))
    }

    /// Deletes the rows of `table` matching `predicate` (SQL), whose keys
    /// are those `forget` picks. Tables without a `doc_id` column are left
    /// alone. Returns rows deleted.
    pub async fn delete_where(
        &mut self,
        table: &str,
        predicate: String,
        forget: impl Fn(&RowKey) -> bool,
    ) -> Result<usize> {
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
                    return Err(e.into());
                }
            }
        };
        // Our own delete, right after the known version: drop its keys here
        // rather than reading the table again.
        if let Some(l) = self.landed.get_mut(table) {
            if deleted.version() == Some(l.version + 1) {
                l.version += 1;
                l.keys.retain(|k| !forget(k));
            }
        }
        self.tables.insert(table.to_string(), deleted);
        Ok(metrics.num_deleted_rows.unwrap_or(0))
    }
}

pub(super) async fn register(ctx: &SessionContext, name: &str, table: &DeltaTable) -> Result<()> {
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// `array` cast to Utf8 strings.
pub(crate) fn utf8(array: &ArrayRef) -> Result<ArrayRef> {
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

/// Drops rows whose version key is in `landed`; returns the kept rows and
/// their distinct keys, or `None` for a table that is not keyed (no
/// version-key columns): those keep every row.
fn drop_landed(
    table: &str,
    batch: &RecordBatch,
    landed: Option<&HashSet<RowKey>>,
) -> Result<(RecordBatch, Option<HashSet<RowKey>>)> {
    let schema = batch.schema();
    if !is_keyed(|c| schema.column_with_name(c).is_some()) {
        return Ok((batch.clone(), None));
    }
    let columns = version_key(table)
        .iter()
        .map(|c| batch.column_by_name(c).map(utf8).transpose())
        .collect::<Result<Vec<_>>>()?;
    let mut keys = HashSet::new();
    let mask: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            let key: RowKey = columns
                .iter()
                .map(|c| match c {
                    Some(c) if c.is_valid(i) => c.as_string::<i32>().value(i).to_string(),
                    _ => String::new(),
                })
                .collect();
            let keep = !landed.is_some_and(|l| l.contains(&key));
            if keep {
                keys.insert(key);
            }
            Some(keep)
        })
        .collect();
    Ok((filter_record_batch(batch, &mask)?, Some(keys)))
}
