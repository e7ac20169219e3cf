//! Delta transaction markers (`txn` actions): the version each application
//! id last committed to a table. deltalake records them but does not skip
//! replays; the writer that owns the ids (Kafka ingest's `offsets`) reads
//! them back and decides.

use std::collections::HashMap;

use anyhow::{Context, Result};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::Transaction;
use deltalake::protocol::{DeltaOperation, OutputMode};

use super::lake::Lake;

impl Lake {
    /// The version each app id last committed to `table`, read from the
    /// table's latest state. App ids without a marker are absent.
    pub async fn markers(
        &mut self,
        table: &str,
        app_ids: &[String],
    ) -> Result<HashMap<String, i64>> {
        self.refresh(table).await?;
        let mut found = HashMap::new();
        let Some(t) = self.table(table).await? else {
            return Ok(found);
        };
        let (snapshot, log) = (t.snapshot()?, t.log_store());
        for id in app_ids {
            let version = snapshot
                .transaction_version(log.as_ref(), id)
                .await
                .with_context(|| format!("cannot read transaction markers of table {table}"))?;
            if let Some(v) = version {
                found.insert(id.clone(), v);
            }
        }
        Ok(found)
    }

    /// A commit that only advances markers: the batch had no rows for `table`.
    pub(super) async fn commit_markers(
        &mut self,
        table: &str,
        markers: Vec<Transaction>,
    ) -> Result<()> {
        let epoch = markers.iter().map(|m| m.version).max().unwrap_or(0);
        self.table(table)
            .await?
            .with_context(|| format!("table {table} must exist before markers are committed"))?;
        let Some(t) = self.tables.get_mut(table) else {
            anyhow::bail!("table {table} vanished while committing");
        };
        let operation = DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id: "docstream".into(),
            epoch_id: epoch,
        };
        CommitBuilder::from(CommitProperties::default().with_application_transactions(markers))
            .build(Some(t.snapshot()?), t.log_store(), operation)
            .await
            .with_context(|| format!("cannot commit markers to table {table}"))?;
        t.update_incremental(None)
            .await
            .with_context(|| format!("cannot refresh table {table}"))
    }
}
