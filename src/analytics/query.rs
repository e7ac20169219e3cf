//! `docstream query`: read-only SQL over every table in the lake.

use anyhow::{bail, Result};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::execution::context::SQLOptions;
use url::Url;

use crate::sinks::lake::Lake;
use crate::storage::StorageOptions;

/// Runs `sql` against the lake at `root`. Statements that would change
/// anything (DDL, DML, SET) are refused.
pub async fn run(root: &Url, storage: &StorageOptions, sql: &str) -> Result<Vec<RecordBatch>> {
    let mut lake = Lake::open(root, storage).await?;
    let ctx =
        crate::stages::runner::session(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let tables = lake.register_all(&ctx).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = match ctx.sql_with_options(sql, options).await {
        Ok(df) => df,
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("not supported")
                && (msg.contains("DDL") || msg.contains("DML") || msg.contains("Statement"))
            {
                bail!("docstream query is read-only: only SELECT, WITH, EXPLAIN and SHOW run here. Tables change through `docstream backfill`.\n({msg})");
            }
            if msg.contains("table") && msg.contains("not found") {
                let known = if tables.is_empty() {
                    format!("the lake at {root} has no tables yet; run `docstream backfill` first")
                } else {
                    format!("tables in {root}: {}", tables.join(", "))
                };
                bail!("{msg}\n{known}");
            }
            return Err(e.into());
        }
    };
    Ok(df.collect().await?)
}
