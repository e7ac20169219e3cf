//! `docstream optimize` and `docstream vacuum`.

use std::num::NonZeroU64;

use anyhow::Result;

use super::progress::tables_bar;
use super::resolved::Resolved;
use crate::lineage::superseded;
use crate::sinks::lake::Lake;
use crate::sinks::maintenance::CompactOptions;

/// Which tables of which lake.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Only these tables (comma-separated). Default: every table.
    #[arg(long, value_delimiter = ',', value_name = "TABLE,...")]
    pub tables: Vec<String>,
}

impl Target {
    async fn open(self, r: &Resolved) -> Result<(Lake, Vec<String>)> {
        let lake = Lake::open(&r.lake, &r.storage).await?;
        let all = lake.table_names().await?;
        if let Some(unknown) = self.tables.iter().find(|t| !all.contains(t)) {
            anyhow::bail!(
                "no table '{unknown}' in {}; tables: {}",
                lake.root(),
                all.join(", ")
            );
        }
        let tables = if self.tables.is_empty() {
            all
        } else {
            self.tables
        };
        Ok((lake, tables))
    }
}

/// Compact small files into large ones, optionally z-ordered by doc_id.
///
/// Safe while `ingest` and `backfill` write: compaction changes no rows,
/// and Delta's conflict check lets concurrent appends through. Readers of
/// older versions keep working until `vacuum` removes the replaced files.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream optimize\n  \
    docstream optimize --lake s3://lake/ --tables chunks,embeddings --zorder\n  \
    docstream optimize --target-size-mb 256 --checkpoint")]
pub struct OptimizeArgs {
    #[command(flatten)]
    pub target: Target,

    /// Cluster rows by doc_id across the rewritten files, so reading one
    /// document touches few files.
    #[arg(long)]
    pub zorder: bool,

    /// Target file size. Default: the table's delta.targetFileSize (100 MiB).
    #[arg(long, value_name = "MB")]
    pub target_size_mb: Option<NonZeroU64>,

    /// Also write a checkpoint of each table afterwards.
    #[arg(long)]
    pub checkpoint: bool,

    /// Leave the search indexes as they are. By default they are rebuilt
    /// when chunks, embeddings or documents were compacted.
    #[arg(long)]
    pub no_index: bool,
}

impl OptimizeArgs {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let (mut lake, tables) = self.target.open(&r).await?;
        let options = CompactOptions {
            zorder_by_doc_id: self.zorder,
            target_bytes: self
                .target_size_mb
                .and_then(|mb| NonZeroU64::new(mb.get() << 20)),
        };
        let bar = tables_bar(tables.len(), "compacting")?;
        let mut lines = Vec::new();
        for table in &tables {
            bar.set_message(table.clone());
            let done = lake.compact(table, options).await?;
            if self.checkpoint {
                lake.checkpoint(table).await?;
            }
            lines.push(format!(
                "{table}: {} files ({:.1} MiB) -> {} files ({:.1} MiB)",
                done.files_removed,
                done.bytes_removed as f64 / (1u64 << 20) as f64,
                done.files_added,
                done.bytes_added as f64 / (1u64 << 20) as f64,
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        for l in lines {
            println!("{l}");
        }
        println!("replaced files stay until `docstream vacuum` removes them");
        // A rebuilt index holds one segment per thread, not one per update.
        if !self.no_index
            && tables
                .iter()
                .any(|t| ["chunks", "documents", "embeddings"].contains(&t.as_str()))
        {
            eprintln!("rebuilding the search indexes");
            super::index::refresh(&r.lake, &r.storage, &r.pipeline.indexes, true).await;
        }
        Ok(())
    }
}

/// Delete data files that no table version within the retention still reads.
///
/// Run after optimize to reclaim space. Time travel to versions older than
/// the retention stops working for the files removed. Safe beside running
/// writers: only files a commit removed are deleted, and with --orphans
/// also unreferenced files older than an hour.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    docstream vacuum --dry-run\n  \
    docstream vacuum --retain-hours 168 --lake s3://lake/\n  \
    docstream vacuum --retain-hours 0 --force    # nobody reads old versions\n  \
    docstream vacuum --orphans                   # also files of killed writers\n  \
    docstream vacuum --superseded --dry-run      # rows of changed stages, kept for comparison")]
pub struct VacuumArgs {
    #[command(flatten)]
    pub target: Target,

    /// Keep files that versions of the last N hours still read.
    #[arg(long, value_name = "HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub retain_hours: u64,

    /// List what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Allow a retention under the table's deletedFileRetentionDuration (7 days).
    #[arg(long)]
    pub force: bool,

    /// Also delete files no version references (left by killed writers and
    /// lost commit races) once they are older than an hour, whatever
    /// --retain-hours says: younger ones may be a running writer's.
    #[arg(long)]
    pub orphans: bool,

    /// First delete the rows of superseded stage fingerprints: the rows a
    /// stage wrote before it changed and ran again on the same document
    /// version. Compare them with the new ones in history.<table> first.
    #[arg(long)]
    pub superseded: bool,
}

impl VacuumArgs {
    pub async fn run(self, r: Resolved) -> Result<()> {
        let (mut lake, tables) = self.target.open(&r).await?;
        if self.superseded {
            for s in superseded::find(&mut lake).await? {
                if !tables.contains(&s.table) {
                    continue;
                }
                let fp = match s.fingerprint.as_str() {
                    "" => "written before fingerprints",
                    fp => fp,
                };
                match self.dry_run {
                    true => println!(
                        "{}: would delete the rows of {} document versions by fingerprint {fp}",
                        s.table,
                        s.versions.len()
                    ),
                    false => {
                        let rows = superseded::delete(&mut lake, &s).await?;
                        println!(
                            "{}: deleted {rows} superseded rows by fingerprint {fp}",
                            s.table
                        );
                    }
                }
            }
        }
        let retain = chrono::Duration::hours(self.retain_hours as i64);
        let bar = tables_bar(tables.len(), "vacuuming")?;
        let mut lines = Vec::new();
        for table in &tables {
            bar.set_message(table.clone());
            let done = lake
                .vacuum(table, retain, self.dry_run, self.force, self.orphans)
                .await?;
            let verb = if self.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            lines.push(format!("{table}: {verb} {} files", done.files_deleted));
            bar.inc(1);
        }
        bar.finish_and_clear();
        for l in lines {
            println!("{l}");
        }
        Ok(())
    }
}
