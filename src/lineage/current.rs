//! What queries see: each table's current rows. A table whose stage ran
//! under more than one fingerprint shows, per document version, the rows
//! of the fingerprint that ran last, and keeps every row under
//! `history.<table>` until `docstream vacuum --superseded` deletes the
//! superseded ones. `failures` hides a failure once a later run of the
//! same stage on the same version succeeded. Views are only made where
//! needed, so a lake that never changed a stage reads its tables directly.

use std::sync::Arc;

use anyhow::{Context, Result};
use deltalake::arrow::array::{Array, AsArray};
use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::prelude::SessionContext;

use super::ledger::{ADOPTED, OK};
use crate::contract::tables::FINGERPRINT;
use crate::sinks::lake::utf8;

/// The schema that holds every row of the tables with views.
pub const HISTORY: &str = "history";

/// For each table of `tables` that holds superseded rows, or resolved
/// failures: moves it to `history.<table>` on `ctx` and registers the
/// view of its current rows in its place. Returns the tables moved.
pub async fn register_views(ctx: &SessionContext, tables: &[String]) -> Result<Vec<String>> {
    if !tables.iter().any(|t| t == "lineage") {
        return Ok(Vec::new());
    }
    let mut moved = Vec::new();
    for table in superseded(ctx).await? {
        if !tables.contains(&table) || !has_column(ctx, &table, FINGERPRINT).await? {
            continue;
        }
        let sql = format!(
            "SELECT t.* FROM {history} t JOIN (
                SELECT doc_id, content_hash, {FINGERPRINT} AS fp_, status AS status_ FROM (
                    SELECT *, row_number() OVER (PARTITION BY doc_id, content_hash, stage ORDER BY computed_at DESC) AS rank_
                    FROM lineage WHERE output_table = {name} AND status IN ('{OK}', '{ADOPTED}')
                ) WHERE rank_ = 1
            ) l ON t.doc_id = l.doc_id AND t.content_hash = l.content_hash
               AND coalesce(t.{FINGERPRINT}, '') = CASE WHEN l.status_ = '{ADOPTED}' THEN '' ELSE l.fp_ END",
            history = history_name(&table),
            name = literal(&table),
        );
        move_to_history(ctx, &table, &sql).await?;
        moved.push(table);
    }
    if tables.iter().any(|t| t == "failures") && has_column(ctx, "failures", "stage").await? {
        let resolved = format!(
            "EXISTS (SELECT 1 FROM lineage l WHERE l.doc_id = f.doc_id AND l.content_hash = f.content_hash
             AND l.stage = f.stage AND l.status = '{OK}' AND l.computed_at >= f.failed_at)"
        );
        let any = format!("SELECT 1 FROM failures f WHERE {resolved} LIMIT 1");
        if !ctx
            .sql(&any)
            .await?
            .collect()
            .await?
            .iter()
            .all(|b| b.num_rows() == 0)
        {
            let history = history_name("failures");
            let sql = format!("SELECT f.* FROM {history} f WHERE NOT {resolved}");
            move_to_history(ctx, "failures", &sql).await?;
            moved.push("failures".into());
        }
    }
    Ok(moved)
}

/// `history.<table>` as it is written in SQL.
pub fn history_name(table: &str) -> String {
    format!("{HISTORY}.\"{}\"", table.replace('"', "\"\""))
}

/// Output tables some of whose versions ran under two fingerprints.
async fn superseded(ctx: &SessionContext) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT output_table FROM lineage WHERE status IN ('{OK}', '{ADOPTED}')
         GROUP BY output_table
         HAVING count(DISTINCT CASE WHEN status = '{ADOPTED}' THEN '' ELSE {FINGERPRINT} END) > 1"
    );
    let mut tables = Vec::new();
    for batch in ctx.sql(&sql).await?.collect().await? {
        let names = utf8(batch.column(0))?;
        let names = names.as_string::<i32>();
        tables.extend((0..names.len()).map(|i| names.value(i).to_string()));
    }
    Ok(tables)
}

/// Adds the `history` schema to `ctx` if it has none.
pub fn ensure_history(ctx: &SessionContext) -> Result<()> {
    let catalog = ctx
        .catalog("datafusion")
        .context("the session has no default catalog")?;
    if catalog.schema(HISTORY).is_none() {
        catalog.register_schema(HISTORY, Arc::new(MemorySchemaProvider::new()))?;
    }
    Ok(())
}

async fn move_to_history(ctx: &SessionContext, table: &str, view: &str) -> Result<()> {
    ensure_history(ctx)?;
    let raw = ctx
        .deregister_table(table)?
        .with_context(|| format!("table {table} is not registered"))?;
    ctx.register_table(format!("{HISTORY}.{table}").as_str(), raw)?;
    let current = ctx
        .sql(view)
        .await
        .with_context(|| format!("cannot make the view of {table}'s current rows"))?;
    ctx.register_table(table, current.into_view())?;
    Ok(())
}

/// Whether `table`, as registered on `ctx`, has `column`.
pub(crate) async fn has_column(ctx: &SessionContext, table: &str, column: &str) -> Result<bool> {
    Ok(ctx
        .table(table)
        .await?
        .schema()
        .has_column_with_unqualified_name(column))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
