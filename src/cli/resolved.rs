//! The global flags resolved once: the pipeline file loaded with `--set`
//! applied, `--lake` over `[lake] uri`, and the storage options. Every
//! command receives this instead of reading the file itself.

use std::path::Path;

use anyhow::{Context, Result};
use url::Url;

use crate::analytics::query::Models;
use crate::config::Pipeline;
use crate::jobs::extract_pool::Isolation;
use crate::models::hub::ModelHub;
use crate::stages::config::{select_stages, Stage};
use crate::stages::runner::StageRunner;
use crate::storage::{parse_location, StorageOptions};

pub struct Resolved {
    pub pipeline: Pipeline,
    /// Every stage of the pipeline, its SQL loaded and substituted.
    pub stages: Vec<Stage>,
    /// `--lake`, else the pipeline's `[lake] uri`, as a URL.
    pub lake: Url,
    pub storage: StorageOptions,
}

impl Resolved {
    pub fn new(
        pipeline: Option<&Path>,
        sets: &[String],
        lake: Option<&str>,
        storage: StorageOptions,
    ) -> Result<Self> {
        let (mut pipeline, stages) = Pipeline::load(pipeline, sets)?;
        if let Some(lake) = lake {
            pipeline.lake.uri = lake.to_string();
        }
        let lake = parse_location(&pipeline.lake.uri)
            .with_context(|| format!("--lake / [lake] uri '{}'", pipeline.lake.uri))?;
        Ok(Self {
            pipeline,
            stages,
            lake,
            storage,
        })
    }

    /// A runner for the stages named in `only` (all when empty), with the
    /// model providers they call.
    pub fn runner(&self, only: &[String]) -> Result<StageRunner> {
        let stages = select_stages(self.stages.clone(), only)?;
        let run_id = uuid::Uuid::new_v4().to_string();
        let p = &self.pipeline;
        StageRunner::open(stages, &p.providers, &p.models, &run_id)
    }

    /// A runner for the stages named in `only` with the query embedder and
    /// the answer model, all on one model hub, so a server loads each model
    /// once and shares one response cache. A query or answer model that
    /// cannot be opened is left out, with a warning: search falls back to
    /// keywords, and `ask` is off.
    pub fn runner_with_models(&self, only: &[String]) -> Result<(StageRunner, Models)> {
        let stages = select_stages(self.stages.clone(), only)?;
        let run_id = uuid::Uuid::new_v4().to_string();
        let p = &self.pipeline;
        let wanted = |providers: Result<Vec<String>>, off: &str| {
            providers.map_err(|e| tracing::warn!("{e:#}; {off}")).ok()
        };
        let embed = wanted(p.embed_providers(), "keyword search only");
        let answer = wanted(p.answer_providers(), "/v1/ask is off");
        let staged: Vec<String> = stages.iter().flat_map(|s| s.providers.clone()).collect();
        let tries = [(embed.clone(), answer.clone()), (embed, None), (None, None)];
        let mut failed = None;
        for (embed, answer) in tries {
            let used: Vec<String> = staged
                .iter()
                .chain(embed.iter().flatten())
                .chain(answer.iter().flatten())
                .cloned()
                .collect();
            if used.is_empty() {
                let models = Models {
                    embedder: None,
                    answerer: None,
                };
                return Ok((StageRunner::new(stages, None, &run_id)?, models));
            }
            match ModelHub::open(&p.providers, &p.models, &used) {
                Ok(hub) => {
                    let models = Models::on(&hub, embed, answer)?;
                    return Ok((StageRunner::new(stages, Some(hub), &run_id)?, models));
                }
                Err(e) => {
                    let off = match (&answer, &embed) {
                        (Some(_), _) => "/v1/ask is off",
                        (None, Some(_)) => "keyword search only",
                        (None, None) => "the stages' models cannot run",
                    };
                    tracing::warn!("{e:#}; {off}");
                    failed = Some(e);
                }
            }
        }
        Err(failed.unwrap_or_else(|| anyhow::anyhow!("no model provider could be opened")))
    }

    /// The query embedder (with `embed`; a pipeline without one, or one
    /// that cannot be opened, is an error unless `optional_embed`, and
    /// search falls back to keywords) and the
    /// answer model (with `answer`).
    #[tracing::instrument(level = "debug", skip_all)]
    pub fn models(&self, embed: bool, optional_embed: bool, answer: bool) -> Result<Models> {
        let p = &self.pipeline;
        let embed_providers = match (embed, p.embed_providers()) {
            (false, _) => None,
            (true, Ok(providers)) => Some(providers),
            (true, Err(e)) if optional_embed => {
                tracing::warn!("{e:#}; keyword search only");
                None
            }
            (true, Err(e)) => return Err(e),
        };
        let answer_providers = match answer {
            true => Some(p.answer_providers()?),
            false => None,
        };
        let optional = optional_embed && embed_providers.is_some();
        match Models::open(
            &p.providers,
            &p.models,
            embed_providers,
            answer_providers.clone(),
        ) {
            // A build without local models, or an endpoint's missing key,
            // leaves keyword search working.
            Err(e) if optional => {
                // Should the answer model fail too, its error is the one to see.
                let fallback = Models::open(&p.providers, &p.models, None, answer_providers)?;
                tracing::warn!("{e:#}; keyword search only");
                Ok(fallback)
            }
            opened => opened,
        }
    }
}

/// Extractions run in worker processes of this very binary (its hidden
/// `extract-worker` command), where a timeout or memory cap can stop them.
pub fn extraction_isolation() -> Isolation {
    match std::env::current_exe() {
        Ok(exe) => Isolation::Process(exe),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find the docstream binary; extracting in threads");
            Isolation::Thread
        }
    }
}
