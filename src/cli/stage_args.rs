//! Stage selection and retries, shared by the commands that run stages.

use std::collections::BTreeMap;
use std::sync::Arc;

use docstream_models::provider::ProviderConfig;

use crate::jobs::stage_runs::Policy;
use crate::lineage::budget::Budget;
use crate::lineage::ledger::Retry;
use crate::stages::runner::StageRunner;

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

/// Retries and a cost cap, for the commands that run model stages.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub retry: RetryArgs,

    /// Stop before a batch whose model calls would bring the run's
    /// estimated input cost (tokens × the providers' price_input_per_1m)
    /// past this many US dollars; what landed before it stays.
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
}

impl PolicyArgs {
    pub fn policy(
        &self,
        runner: &StageRunner,
        providers: &BTreeMap<String, ProviderConfig>,
    ) -> Policy {
        Policy {
            retry: self.retry.retry(),
            budget: self
                .max_cost_usd
                .map(|usd| Arc::new(Budget::new(usd, runner.stages(), providers))),
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
