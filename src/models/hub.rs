//! The providers a pipeline uses, opened once per run, with the shared
//! response cache, usage log, and the failures already seen this run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use super::backend::Backend;
use super::cache::{Cache, Key};
use super::chain::ModelChain;
use super::config::{ModelsConfig, ProviderConfig};
use super::endpoint::Endpoint;
use super::error::ModelFailure;
use super::usage::UsageLog;

pub struct ModelHub {
    endpoints: HashMap<String, Arc<Endpoint>>,
    pub(super) cache: Cache,
    pub(super) usage: UsageLog,
    /// Inputs that failed this run: a stage re-run row by row answers them
    /// from here instead of calling again.
    pub(super) failed: Mutex<HashMap<Key, ModelFailure>>,
    pub(super) grammars: Mutex<HashMap<String, Arc<str>>>,
}

impl ModelHub {
    /// Opens the providers named in `used` (loading local weights once).
    pub fn open(
        providers: &BTreeMap<String, ProviderConfig>,
        models: &ModelsConfig,
        used: &[String],
    ) -> Result<Arc<Self>> {
        let mut endpoints = HashMap::new();
        for name in used {
            if endpoints.contains_key(name) {
                continue;
            }
            let Some(config) = providers.get(name) else {
                let known: Vec<&str> = providers.keys().map(String::as_str).collect();
                bail!(
                    "a stage names provider '{name}', but the pipeline defines only: {}",
                    known.join(", ")
                );
            };
            if config.model.is_empty() {
                bail!("provider '{name}' needs model = \"...\"");
            }
            let mut config = config.clone();
            let backend = Backend::open(name, &config, models)
                .with_context(|| format!("cannot open provider '{name}'"))?;
            if let Some(dims) = backend.local_dims() {
                config.dims = Some(dims);
            }
            if let Some(context) = backend.local_context() {
                config.context_tokens = context;
            }
            endpoints.insert(name.clone(), Arc::new(Endpoint::new(name, config, backend)));
        }
        let cache = Cache::open(models.cache_path().as_deref())?;
        Ok(Arc::new(Self {
            endpoints,
            cache,
            usage: UsageLog::default(),
            failed: Mutex::new(HashMap::new()),
            grammars: Mutex::new(HashMap::new()),
        }))
    }

    /// The hub for the providers `stages` name; `None` when no stage calls a model.
    pub fn for_stages(
        pipeline: &crate::stages::pipeline::Pipeline,
        stages: &[crate::stages::pipeline::Stage],
    ) -> Result<Option<Arc<Self>>> {
        let used: Vec<String> = stages.iter().flat_map(|s| s.providers.clone()).collect();
        if used.is_empty() {
            return Ok(None);
        }
        Self::open(&pipeline.providers, &pipeline.models, &used).map(Some)
    }

    /// The fallback chain a stage names, tried in order.
    pub fn chain(self: &Arc<Self>, stage: &str, names: &[String]) -> Result<ModelChain> {
        let endpoints = names
            .iter()
            .map(|n| {
                self.endpoints
                    .get(n)
                    .cloned()
                    .with_context(|| format!("provider '{n}' was not opened"))
            })
            .collect::<Result<Vec<_>>>()?;
        ModelChain::new(stage, endpoints, self.clone())
    }

    pub fn drain_usage(&self) -> Vec<super::usage::UsageRecord> {
        self.usage.drain()
    }
}
