//! Stage selection and retries, shared by the commands that run stages.

use crate::lineage::ledger::Retry;

#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// Run only these stages (comma-separated), e.g. documents,chunks to skip model calls.
    #[arg(long, value_delimiter = ',', value_name = "STAGE,...")]
    pub stages: Vec<String>,
}

/// Which stage failures a run tries again.
#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs {
    /// Retry failed stages: `retryable` (rate limits, timeouts, unavailable
    /// endpoints; the default), `none`, or `all` (rejected inputs, invalid
    /// outputs and extraction failures too). A stage whose fingerprint
    /// changed runs again whatever this says.
    #[arg(long, value_name = "WHICH", default_value = "retryable", value_parser = ["retryable", "none", "all"])]
    pub retry_failed: String,

    /// Retry no failure: the same as --retry-failed=none.
    #[arg(long, conflicts_with = "retry_failed")]
    pub no_retry_failed: bool,
}

impl RetryArgs {
    pub fn retry(&self) -> Retry {
        match self.no_retry_failed {
            true => Retry::None,
            false => self.retry_failed.parse().unwrap_or_default(),
        }
    }
}

/// Which documents, by SQL over `documents`.
#[derive(Debug, Clone, clap::Args)]
pub struct WhereArgs {
    /// Only documents matching this SQL condition over the documents table,
    /// e.g. "tenant = 'acme'" or "mime = 'application/pdf'".
    #[arg(long = "where", value_name = "SQL")]
    pub condition: Option<String>,
}
