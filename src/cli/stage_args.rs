//! Stage selection flags shared by `backfill` and `ingest`.

use std::path::Path;

use anyhow::Result;

use crate::models::hub::ModelHub;
use crate::stages::pipeline::{select_stages, Pipeline};
use crate::stages::runner::StageRunner;

#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// Override a stage parameter, e.g. chunks.max_tokens=256. Repeatable.
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub sets: Vec<String>,

    /// Run only these stages (comma-separated), e.g. documents,chunks to skip model calls.
    #[arg(long, value_delimiter = ',', value_name = "STAGE,...")]
    pub stages: Vec<String>,
}

impl StageArgs {
    /// The pipeline file with the overrides applied, and a runner for the
    /// selected stages (with the model providers they name).
    pub fn load(&self, pipeline: Option<&Path>) -> Result<(Pipeline, StageRunner)> {
        let (p, stages) = Pipeline::load(pipeline, &self.sets)?;
        let stages = select_stages(stages, &self.stages)?;
        let hub = ModelHub::for_stages(&p, &stages)?;
        let run_id = uuid::Uuid::new_v4().to_string();
        let runner = StageRunner::new(stages, hub, &run_id)?;
        Ok((p, runner))
    }
}
