//! Runs the pipeline's SQL stages on one micro-batch with DataFusion.

use std::sync::Arc;

use anyhow::{Context, Result};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

use super::extracted;
use super::pipeline::Stage;

/// Rows one stage produced for its table.
pub struct StageOutput {
    pub table: String,
    pub batches: Vec<RecordBatch>,
}

/// A stage that failed on one document.
pub struct StageFailure {
    pub stage: String,
    pub row: usize,
    pub error: String,
}

pub struct StageRunner {
    stages: Vec<Stage>,
    partitions: usize,
}

impl StageRunner {
    pub fn new(stages: Vec<Stage>) -> Self {
        let partitions = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { stages, partitions }
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Plans every stage once on an empty batch, so a broken SQL file fails
    /// the run at start instead of turning every document into a failure.
    pub async fn check(&self) -> Result<()> {
        let empty = RecordBatch::new_empty(extracted::schema());
        for stage in &self.stages {
            self.run_stage(stage, &empty)
                .await
                .with_context(|| format!("stage '{}' does not run; fix its SQL", stage.name))?;
        }
        Ok(())
    }

    /// Runs every stage on `batch`. A stage that fails on the whole batch is
    /// re-run one row at a time, so one bad document becomes one failure and
    /// the rest of the batch still lands.
    pub async fn run(&self, batch: &RecordBatch) -> (Vec<StageOutput>, Vec<StageFailure>) {
        let mut outputs = Vec::new();
        let mut failures = Vec::new();
        // One session for the whole batch; per-row sessions only on failure.
        let whole = self.context(batch).ok();
        for stage in &self.stages {
            let attempt = match &whole {
                Some(ctx) => run_sql(ctx, &stage.sql).await.ok(),
                None => None,
            };
            let batches = match attempt {
                Some(b) => b,
                None => {
                    let mut batches = Vec::new();
                    for row in 0..batch.num_rows() {
                        match self.run_stage(stage, &batch.slice(row, 1)).await {
                            Ok(b) => batches.extend(b),
                            Err(e) => failures.push(StageFailure {
                                stage: stage.name.clone(),
                                row,
                                error: format!("{e:#}"),
                            }),
                        }
                    }
                    batches
                }
            };
            outputs.push(StageOutput {
                table: stage.table.clone(),
                batches,
            });
        }
        (outputs, failures)
    }

    async fn run_stage(&self, stage: &Stage, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        run_sql(&self.context(batch)?, &stage.sql).await
    }

    /// A session with `batch` registered as the `extracted` table.
    fn context(&self, batch: &RecordBatch) -> Result<SessionContext> {
        let ctx = session(self.partitions);
        let table = MemTable::try_new(batch.schema(), split(batch, self.partitions))?;
        ctx.register_table("extracted", Arc::new(table))?;
        Ok(ctx)
    }
}

async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// A DataFusion session with docstream's UDFs.
pub fn session(partitions: usize) -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    super::udfs::register(&ctx);
    ctx
}

/// Splits a batch into one slice per partition so stages use every core.
fn split(batch: &RecordBatch, partitions: usize) -> Vec<Vec<RecordBatch>> {
    let rows = batch.num_rows();
    if rows == 0 {
        return vec![vec![batch.clone()]];
    }
    let per = rows.div_ceil(partitions.max(1));
    (0..rows)
        .step_by(per)
        .map(|start| vec![batch.slice(start, per.min(rows - start))])
        .collect()
}
