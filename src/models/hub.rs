//! The providers a pipeline uses, opened once per run, with the shared
//! response cache, usage log, and the failures already seen this run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use docstream_models::chain::{ChainHooks, Key, ModelChain, Usage};
use docstream_models::endpoint::Endpoint;
use docstream_models::error::ModelFailure;
use docstream_models::provider::ProviderConfig;
#[cfg(feature = "local-models")]
use docstream_models::tasks::Task;
#[cfg(feature = "local-models")]
use serde_json::Value;

use super::backend::Backend;
use super::cache::Cache;
use super::config::ModelsConfig;
use super::usage::UsageLog;

/// Who hears how far each stage's model requests got (a server's live
/// progress of a batch).
pub trait CallWatch: Send + Sync {
    /// `done` of the `planned` requests `stage` made since the watch began.
    fn calls(&self, stage: &str, done: usize, planned: usize);
}

/// The current watch and its counts per stage: (done, planned).
type Watching = Option<(Arc<dyn CallWatch>, HashMap<String, (usize, usize)>)>;

pub struct ModelHub {
    endpoints: HashMap<String, Arc<Endpoint>>,
    watch: Mutex<Watching>,
    cache: Cache,
    usage: UsageLog,
    /// Inputs that failed this run: a stage re-run row by row answers them
    /// from here instead of calling again.
    failed: Mutex<HashMap<Key, ModelFailure>>,
    #[cfg(feature = "local-models")]
    grammars: Mutex<HashMap<String, Arc<str>>>,
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
            endpoints.insert(
                name.clone(),
                Arc::new(Endpoint::new(name, config, Box::new(backend))),
            );
        }
        let cache = Cache::open(models.cache_path().as_deref())?;
        Ok(Arc::new(Self {
            endpoints,
            watch: Mutex::new(None),
            cache,
            usage: UsageLog::default(),
            failed: Mutex::new(HashMap::new()),
            #[cfg(feature = "local-models")]
            grammars: Mutex::new(HashMap::new()),
        }))
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
        ModelChain::new(stage, endpoints, self.clone()).map_err(|e| anyhow!(e))
    }

    /// Whether the response cache holds answers from earlier runs.
    pub fn caches_responses(&self) -> bool {
        self.cache.persistent
    }

    pub fn drain_usage(&self) -> Vec<super::usage::UsageRecord> {
        self.usage.drain()
    }

    /// Reports requests to `watch` from now on, counted from zero; `None`
    /// stops reporting.
    pub fn watch(&self, watch: Option<Arc<dyn CallWatch>>) {
        *self.watch.lock().unwrap_or_else(|p| p.into_inner()) = watch.map(|w| (w, HashMap::new()));
    }

    fn count(&self, stage: &str, done: usize, planned: usize) {
        let mut watching = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        let Some((watch, counts)) = watching.as_mut() else {
            return;
        };
        let count = counts.entry(stage.to_string()).or_default();
        count.0 += done;
        count.1 += planned;
        let (watch, (done, planned)) = (watch.clone(), *count);
        drop(watching);
        watch.calls(stage, done, planned);
    }
}

impl ChainHooks for ModelHub {
    fn cached(&self, keys: &[Key]) -> Vec<Option<Vec<u8>>> {
        self.cache.get_many(keys).unwrap_or_else(|e| {
            tracing::warn!("model cache read failed ({e:#}); calling the model");
            vec![None; keys.len()]
        })
    }

    fn store(&self, entries: &[(Key, Vec<u8>)]) {
        if let Err(e) = self
            .cache
            .put_many(entries.iter().map(|(k, v)| (k, v.as_slice())))
        {
            tracing::warn!("model cache write failed ({e:#}); results still land");
        }
    }

    fn failed(&self, keys: &[Key]) -> Vec<Option<ModelFailure>> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().map(|k| failed.get(k).cloned()).collect()
    }

    fn remember_failure(&self, key: Key, failure: &ModelFailure) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.insert(key, failure.clone());
    }

    fn record_usage(&self, stage: &str, endpoint: &Endpoint, usage: Usage) {
        self.usage.record(stage, endpoint, usage);
    }

    fn planned(&self, stage: &str, requests: usize) {
        self.count(stage, 0, requests);
    }

    fn finished(&self, stage: &str) {
        self.count(stage, 1, 0);
    }

    /// llama.cpp's grammar for the task's schema, made once per prompt version.
    #[cfg(feature = "local-models")]
    fn grammar(&self, task: &Task, schema: &Value) -> Result<Arc<str>, String> {
        let version = task.prompt_version();
        let mut grammars = self.grammars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = grammars.get(&version) {
            return Ok(g.clone());
        }
        let g: Arc<str> = super::grammar::from_schema(schema)
            .map_err(|e| format!("cannot turn the {} schema into a grammar: {e}", task.name()))?
            .into();
        grammars.insert(version, g.clone());
        Ok(g)
    }
}
