//! Table maintenance: compaction (optionally z-ordered by `doc_id`),
//! vacuum, and checkpoints.
//!
//! Compaction commits `dataChange = false`, so delta-rs lets it through
//! concurrent appends; when it does conflict (another compaction, a delete),
//! the caller retries later: ingest never fails because of one.

use std::num::NonZeroU64;

use anyhow::{Context, Result};
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::VacuumMode;

use super::lake::Lake;

/// What one table's compaction did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Compacted {
    pub files_removed: u64,
    pub files_added: u64,
    pub bytes_removed: i64,
    pub bytes_added: i64,
}

/// Unreferenced files younger than this may belong to a writer that has
/// not committed yet; vacuum never deletes them.
pub const ORPHAN_MIN_AGE: chrono::Duration = chrono::Duration::hours(1);

/// What one table's vacuum did (or would do, on a dry run).
#[derive(Debug, Default, Clone, Copy)]
pub struct Vacuumed {
    pub files_deleted: usize,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CompactOptions {
    /// Sort rows by `doc_id` across the rewritten files (z-order), so a
    /// lookup by document reads few files.
    pub zorder_by_doc_id: bool,
    /// Target file size; default: the table's `delta.targetFileSize`.
    pub target_bytes: Option<NonZeroU64>,
}

impl Lake {
    /// Compacts `table`'s small files into large ones.
    pub async fn compact(&mut self, table: &str, options: CompactOptions) -> Result<Compacted> {
        self.refresh(table).await?;
        if self.table(table).await?.is_none() {
            return Ok(Compacted::default());
        }
        let Some(current) = self.tables.remove(table) else {
            anyhow::bail!("table {table} vanished while compacting");
        };
        let kind = if options.zorder_by_doc_id && has_doc_id(&current) {
            OptimizeType::ZOrder(vec!["doc_id".into()])
        } else {
            OptimizeType::Compact
        };
        let layout = super::parquet_layout::writer_properties(
            &current.snapshot()?.snapshot().arrow_schema(),
        );
        let mut builder = current
            .clone()
            .optimize()
            .with_type(kind)
            .with_writer_properties(layout);
        if let Some(bytes) = options.target_bytes {
            builder = builder.with_target_size(bytes);
        }
        match builder.await {
            Ok((optimized, metrics)) => {
                self.tables.insert(table.to_string(), optimized);
                Ok(Compacted {
                    files_removed: metrics.num_files_removed,
                    files_added: metrics.num_files_added,
                    bytes_removed: metrics.files_removed.total_size,
                    bytes_added: metrics.files_added.total_size,
                })
            }
            Err(e) => {
                self.tables.insert(table.to_string(), current);
                Err(e).with_context(|| format!("cannot compact table {table}"))
            }
        }
    }

    /// Deletes files no version newer than `retain` still reads. Like Delta
    /// everywhere, a retention under the table's
    /// `delta.deletedFileRetentionDuration` (7 days) is refused unless
    /// `force`, because readers of older versions may still need the files.
    ///
    /// Only files the log removed are candidates, unless `orphans`: then
    /// files no version references (left by killed writers and lost commit
    /// races) go too, once older than [`ORPHAN_MIN_AGE`] whatever `retain`
    /// says, because a running writer's files are unreferenced until its
    /// commit.
    pub async fn vacuum(
        &mut self,
        table: &str,
        retain: chrono::Duration,
        dry_run: bool,
        force: bool,
        orphans: bool,
    ) -> Result<Vacuumed> {
        let mut done = self
            .vacuum_mode(table, retain, dry_run, force, VacuumMode::Lite)
            .await?;
        if orphans {
            let age = retain.max(ORPHAN_MIN_AGE);
            let full = self
                .vacuum_mode(table, age, dry_run, force, VacuumMode::Full)
                .await?;
            done.files_deleted += full.files_deleted;
        }
        Ok(done)
    }

    async fn vacuum_mode(
        &mut self,
        table: &str,
        retain: chrono::Duration,
        dry_run: bool,
        force: bool,
        mode: VacuumMode,
    ) -> Result<Vacuumed> {
        self.refresh(table).await?;
        if self.table(table).await?.is_none() {
            return Ok(Vacuumed::default());
        }
        let Some(current) = self.tables.remove(table) else {
            anyhow::bail!("table {table} vanished while vacuuming");
        };
        let result = current
            .clone()
            .vacuum()
            .with_retention_period(retain)
            .with_enforce_retention_duration(!force)
            .with_dry_run(dry_run)
            .with_mode(mode)
            .await;
        match result {
            Ok((vacuumed, metrics)) => {
                self.tables.insert(table.to_string(), vacuumed);
                Ok(Vacuumed {
                    files_deleted: metrics.files_deleted.len(),
                })
            }
            Err(e) => {
                self.tables.insert(table.to_string(), current);
                let hint = if e.to_string().contains("retention") {
                    " (pass --force to go under the table's deletedFileRetentionDuration; readers of older versions lose their files)"
                } else {
                    ""
                };
                Err(e).with_context(|| format!("cannot vacuum table {table}{hint}"))
            }
        }
    }

    /// Writes a checkpoint of `table`'s current version.
    pub async fn checkpoint(&mut self, table: &str) -> Result<()> {
        self.refresh(table).await?;
        if let Some(t) = self.table(table).await? {
            deltalake::checkpoints::create_checkpoint(t, None)
                .await
                .with_context(|| format!("cannot checkpoint table {table}"))?;
        }
        Ok(())
    }
}

fn has_doc_id(table: &deltalake::DeltaTable) -> bool {
    table
        .snapshot()
        .is_ok_and(|s| s.schema().field("doc_id").is_some())
}

/// Compacts `tables` on a lake handle of its own, retrying conflicts a
/// few times; failures are logged, never returned, so a writer that runs
/// this in the background is never stopped by it.
pub async fn compact_in_background(
    root: url::Url,
    storage: crate::storage::StorageOptions,
    tables: Vec<String>,
) {
    let mut lake = match Lake::open(&root, &storage).await {
        Ok(l) => l,
        Err(e) => return tracing::warn!("compaction skipped: {e:#}"),
    };
    for table in &tables {
        compact_with_retries(&mut lake, table).await;
    }
}

/// Attempts per table and run; a conflict is retried after a pause.
const COMPACT_ATTEMPTS: u32 = 3;

async fn compact_with_retries(lake: &mut Lake, table: &str) {
    for attempt in 1..=COMPACT_ATTEMPTS {
        match lake.compact(table, CompactOptions::default()).await {
            Ok(done) => {
                if done.files_removed > 0 {
                    tracing::info!(
                        table,
                        removed = done.files_removed,
                        added = done.files_added,
                        "compacted"
                    );
                }
                return;
            }
            Err(e) => {
                tracing::warn!(table, attempt, "compaction failed, will retry: {e:#}");
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt as u64)).await;
            }
        }
    }
    tracing::warn!(table, "compaction gave up until the next interval");
}
