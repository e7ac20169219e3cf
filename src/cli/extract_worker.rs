//! `docstream extract-worker`: the child process backfill and ingest run
//! extractions in. Hidden: nobody starts it by hand.

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Started by `backfill` and `ingest`, one per extraction slot; it reads length-prefixed requests on stdin until stdin closes.\n\nExample (what backfill runs):\n  docstream extract-worker --max-memory-mb 2048"
)]
pub struct Args {
    /// Allocations past this fail, which stops the worker (extract.max_memory_mb).
    #[arg(long, value_name = "MB")]
    pub max_memory_mb: u64,
}

impl Args {
    pub fn run(&self) -> Result<()> {
        crate::extract::worker::serve(self.max_memory_mb)
            .context("the extraction worker lost its parent's pipe")
    }
}
