//! Stage selection, shared by the commands that run stages.

#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// Run only these stages (comma-separated), e.g. documents,chunks to skip model calls.
    #[arg(long, value_delimiter = ',', value_name = "STAGE,...")]
    pub stages: Vec<String>,
}
