//! A stage's providers in fallback order, and the two things stages ask of
//! them: embeddings for a column of texts, and structured output per text.
//! Batching, bisecting a rejected batch, caching, map-reduce over long
//! documents and schema validation with one repair attempt live here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{join, join_all, BoxFuture};
use futures::FutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use docstream_udfs::{chunk_text, ChunkParams, Encoding};

use super::endpoint::{ChatRequest, Endpoint, Outcome};
use super::error::{CallError, ModelFailure};
use super::estimate_tokens;
use super::provider::{LongInput, ProviderKind};
use super::schema::validate;
use super::tasks::Task;

pub type RowResult<T> = Result<T, ModelFailure>;

/// A response's identity in a cache: sha256(model ‖ prompt version ‖ input),
/// with separators that cannot occur in the first two.
pub type Key = [u8; 32];

pub fn key(model: &str, prompt_version: &str, input: &str) -> Key {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0]);
    h.update(prompt_version.as_bytes());
    h.update([0]);
    h.update(input.as_bytes());
    h.finalize().into()
}

/// What one request cost, for usage accounting.
pub struct Usage {
    /// HTTP requests (or local runs) made, retries included.
    pub attempts: u32,
    pub latency: Duration,
    /// Inputs in the request (texts embedded, or 1 for a chat call).
    pub inputs: usize,
    /// Token counts the provider reported, when it answered.
    pub reported: Option<(Option<u64>, Option<u64>)>,
    /// Input and output token estimates, for when it reported none.
    pub estimate: (u64, u64),
    pub error: Option<CallError>,
}

impl Usage {
    fn of<T>(outcome: &Outcome<T>, inputs: usize, estimate: (u64, u64)) -> Self {
        Self {
            attempts: outcome.attempts,
            latency: outcome.latency,
            inputs,
            reported: outcome
                .result
                .as_ref()
                .ok()
                .map(|r| (r.input_tokens, r.output_tokens)),
            estimate,
            error: outcome.result.as_ref().err().cloned(),
        }
    }
}

/// What a chain's owner adds around the calls. docstream keeps a response
/// cache, this run's failures, usage rows and grammars for its in-process
/// models; an Arroyo UDF keeps none of them (`NoHooks`).
pub trait ChainHooks: Send + Sync {
    /// Stored responses for `keys`, `None` where there is none.
    fn cached(&self, keys: &[Key]) -> Vec<Option<Vec<u8>>> {
        vec![None; keys.len()]
    }

    fn store(&self, _entries: &[(Key, Vec<u8>)]) {}

    /// Inputs that already failed: answered from here instead of calling again.
    fn failed(&self, keys: &[Key]) -> Vec<Option<ModelFailure>> {
        vec![None; keys.len()]
    }

    fn remember_failure(&self, _key: Key, _failure: &ModelFailure) {}

    fn record_usage(&self, _stage: &str, _endpoint: &Endpoint, _usage: Usage) {}

    /// `stage` is about to make `requests` more requests (a progress count:
    /// one per embeddings batch, one per text generated).
    fn planned(&self, _stage: &str, _requests: usize) {}

    /// One of them finished, answered or failed.
    fn finished(&self, _stage: &str) {}

    /// A grammar for endpoints whose backend `wants_grammar`.
    fn grammar(&self, task: &Task, _schema: &Value) -> Result<Arc<str>, String> {
        Err(format!("no grammar for the {} schema here", task.name()))
    }
}

pub struct NoHooks;

impl ChainHooks for NoHooks {}

/// Structured output and the model that produced it.
#[derive(Debug, Clone)]
pub struct Generated {
    pub value: Value,
    pub model: String,
}

/// Cache namespace for embeddings (they have no prompt).
const EMBEDDING_VERSION: &str = "embedding";
/// Tokens kept free for the chat template and instructions.
const PROMPT_OVERHEAD: usize = 160;
/// Map-reduce rounds before a long text is cut to fit instead.
const MAX_REDUCE_DEPTH: u32 = 3;

pub struct ModelChain {
    stage: String,
    endpoints: Vec<Arc<Endpoint>>,
    hooks: Arc<dyn ChainHooks>,
    /// A dry run's count of what it would send; `None` for a real chain.
    dry: Option<Mutex<DryRun>>,
}

/// A dry run's counts, and the inputs counted: SQL may evaluate a model
/// function more than once per row (once per field read from its result),
/// and a run sends each distinct input once.
#[derive(Default)]
struct DryRun {
    unsent: Unsent,
    seen: std::collections::HashSet<Key>,
}

/// What a dry run of a chain would send: answers the cache holds are used,
/// the other inputs are counted and come back NULL.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unsent {
    /// Requests for structured output, or texts to embed.
    pub calls: u64,
    /// Inputs the cache answered.
    pub cached: u64,
    /// cl100k tokens of the requests (prompts included).
    pub input_tokens: u64,
}

impl ModelChain {
    pub fn new(
        stage: &str,
        endpoints: Vec<Arc<Endpoint>>,
        hooks: Arc<dyn ChainHooks>,
    ) -> Result<Self, String> {
        if endpoints.is_empty() {
            return Err(format!(
                "stage '{stage}' calls a model but names no providers; add providers = [\"...\"]"
            ));
        }
        Ok(Self {
            stage: stage.to_string(),
            endpoints,
            hooks,
            dry: None,
        })
    }

    /// This chain for a dry run: it reads the cache and sends nothing.
    pub fn dry_run(&self) -> Self {
        Self {
            stage: self.stage.clone(),
            endpoints: self.endpoints.clone(),
            hooks: self.hooks.clone(),
            dry: Some(Mutex::new(DryRun::default())),
        }
    }

    /// What a dry run counted so far.
    pub fn unsent(&self) -> Option<Unsent> {
        let dry = self.dry.as_ref()?;
        Some(dry.lock().unwrap_or_else(|p| p.into_inner()).unsent)
    }

    /// Counts the input `key` once.
    fn count_unsent(&self, key: Key, f: impl FnOnce(&mut Unsent)) {
        if let Some(dry) = &self.dry {
            let mut dry = dry.lock().unwrap_or_else(|p| p.into_inner());
            if dry.seen.insert(key) {
                f(&mut dry.unsent);
            }
        }
    }

    /// Providers in order, e.g. `openai,local`.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.endpoints.iter().map(|e| e.name.as_str()).collect();
        names.join(",")
    }

    pub fn primary_model(&self) -> &str {
        &self.endpoints[0].config.model
    }

    /// The vector size every provider in the chain returns. Fallback for
    /// embeddings only makes sense between endpoints serving the same model.
    pub fn embedding_dims(&self) -> Result<usize, String> {
        let first = &self.endpoints[0];
        let Some(dims) = first.config.dims else {
            return Err(format!(
                "provider '{}' needs dims = N (the embedding size)",
                first.name
            ));
        };
        for e in &self.endpoints[1..] {
            if e.config.dims != Some(dims) || e.config.model != first.config.model {
                return Err(format!(
                    "stage '{}': fallback providers for embeddings must serve the same model and dims as '{}'",
                    self.stage,
                    first.name
                ));
            }
        }
        Ok(dims)
    }

    /// Input tokens one structured call to the first provider takes.
    pub fn input_budget(&self) -> usize {
        let first = &self.endpoints[0];
        first
            .config
            .context_tokens
            .saturating_sub(first.config.max_output_tokens + PROMPT_OVERHEAD)
            .max(64)
    }

    /// `text`'s tokens for the first provider's model.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.endpoints[0].backend.count_tokens(text)
    }

    /// Embeds a column: cached vectors are reused, the rest are sent in
    /// batches capped by count and tokens.
    pub async fn embed(&self, texts: &[Option<&str>]) -> Vec<Option<RowResult<Vec<f32>>>> {
        let model = self.primary_model();
        let keys: Vec<Option<Key>> = texts
            .iter()
            .map(|t| t.map(|t| key(model, EMBEDDING_VERSION, t)))
            .collect();
        let mut found = self.lookup(&keys);
        if self.dry.is_some() {
            return self.embed_dry(texts, &keys, &found);
        }
        // Unique inputs still to embed, in first-seen order.
        let mut todo: Vec<(Key, &str)> = Vec::new();
        let mut seen = HashMap::new();
        for (k, t) in keys.iter().zip(texts) {
            if let (Some(k), Some(t)) = (k, t) {
                if !found.contains_key(k) && seen.insert(*k, ()).is_none() {
                    todo.push((*k, t));
                }
            }
        }
        let windows: Vec<Vec<String>> = todo.iter().map(|(_, t)| self.windows(t)).collect();
        let flat: Vec<&String> = windows.iter().flatten().collect();
        let requests = self.plan(&flat);
        self.hooks.planned(&self.stage, requests.len());
        let results = join_all(requests.into_iter().map(|(range, tokens)| {
            let inputs = flat[range].iter().map(|s| s.to_string()).collect();
            async move {
                let vectors = self.embed_request(inputs, tokens).await;
                self.hooks.finished(&self.stage);
                vectors
            }
        }))
        .await;
        let mut vectors = results.into_iter().flatten();
        let mut fresh: Vec<(Key, Vec<u8>)> = Vec::new();
        for ((k, _), w) in todo.iter().zip(&windows) {
            let parts: Vec<RowResult<Vec<f32>>> = vectors.by_ref().take(w.len()).collect();
            let result = average(parts);
            match &result {
                Ok(v) => fresh.push((*k, v.iter().flat_map(|x| x.to_le_bytes()).collect())),
                Err(f) => self.hooks.remember_failure(*k, f),
            }
            found.insert(*k, result.map(Cached::Vector));
        }
        self.store(&fresh);
        keys.iter()
            .map(|k| {
                k.map(|k| match found.get(&k) {
                    Some(Ok(Cached::Vector(v))) => Ok(v.clone()),
                    Some(Ok(Cached::Bytes(b))) => Ok(vector(b)),
                    Some(Err(f)) => Err(f.clone()),
                    None => Err(self.internal("embedding result went missing")),
                })
            })
            .collect()
    }

    /// A dry run's embeddings: the cached ones; the others are counted.
    fn embed_dry(
        &self,
        texts: &[Option<&str>],
        keys: &[Option<Key>],
        found: &HashMap<Key, RowResult<Cached>>,
    ) -> Vec<Option<RowResult<Vec<f32>>>> {
        texts
            .iter()
            .zip(keys)
            .map(|(t, k)| {
                let (t, k) = (t.as_ref()?, k.as_ref()?);
                match found.get(k) {
                    Some(Ok(Cached::Bytes(b))) => {
                        self.count_unsent(*k, |u| u.cached += 1);
                        Some(Ok(vector(b)))
                    }
                    _ => {
                        self.count_unsent(*k, |u| {
                            u.calls += 1;
                            u.input_tokens += estimate_tokens(t) as u64;
                        });
                        None
                    }
                }
            })
            .collect()
    }

    /// One structured answer per text, concurrently (the limiter bounds it).
    pub async fn generate(
        &self,
        task: &Task,
        texts: &[Option<&str>],
    ) -> Vec<Option<RowResult<Generated>>> {
        if self.dry.is_some() {
            return texts
                .iter()
                .map(|t| self.generate_dry(task, (*t)?))
                .collect();
        }
        self.hooks
            .planned(&self.stage, texts.iter().flatten().count());
        join_all(texts.iter().map(|t| async move {
            let t = (*t)?;
            let generated = self.generate_one(task, t.to_string(), 0).await;
            self.hooks.finished(&self.stage);
            Some(generated)
        }))
        .await
    }

    /// A dry run's answer: the cached one, else `None`, counted. A text
    /// longer than one call takes is counted as its map-reduce parts.
    fn generate_dry(&self, task: &Task, text: &str) -> Option<RowResult<Generated>> {
        let version = task.prompt_version();
        for e in &self.endpoints {
            let k = key(&e.config.model, &version, text);
            if let Some(Ok(Cached::Bytes(b))) = self.lookup(&[Some(k)]).remove(&k) {
                if let Ok(value) = serde_json::from_slice(&b) {
                    self.count_unsent(k, |u| u.cached += 1);
                    return Some(Ok(Generated {
                        value,
                        model: e.config.model.clone(),
                    }));
                }
            }
        }
        let budget = self.input_budget();
        let parts = match estimate_tokens(text) {
            n if n <= budget => vec![text.to_string()],
            n => split(text, budget, n),
        };
        let system = estimate_tokens(&task.system_prompt()) as u64;
        let k = key(self.primary_model(), &version, text);
        self.count_unsent(k, |u| {
            for p in &parts {
                u.calls += 1;
                u.input_tokens += system + estimate_tokens(&task.user_prompt(p)) as u64;
            }
        });
        None
    }

    fn generate_one<'a>(
        &'a self,
        task: &'a Task,
        text: String,
        depth: u32,
    ) -> BoxFuture<'a, RowResult<Generated>> {
        async move {
            let version = task.prompt_version();
            let keys: Vec<Option<Key>> = self
                .endpoints
                .iter()
                .map(|e| Some(key(&e.config.model, &version, &text)))
                .collect();
            let found = self.lookup(&keys);
            for (e, k) in self.endpoints.iter().zip(&keys) {
                match k.and_then(|k| found.get(&k)) {
                    Some(Ok(Cached::Bytes(b))) => {
                        if let Ok(value) = serde_json::from_slice(b) {
                            return Ok(Generated {
                                value,
                                model: e.config.model.clone(),
                            });
                        }
                    }
                    Some(Err(f)) => return Err(f.clone()),
                    _ => {}
                }
            }
            let budget = self.input_budget();
            let tokens = self.count_tokens(&text);
            let result = if tokens <= budget {
                self.call_structured(task, &text).await
            } else {
                let parts = split(&text, budget, tokens);
                if depth >= MAX_REDUCE_DEPTH || parts.len() < 2 {
                    let head = parts.into_iter().next().unwrap_or_default();
                    self.call_structured(task, &head).await
                } else {
                    self.map_reduce(task, parts, depth).await
                }
            };
            match &result {
                Ok(g) => {
                    let k = key(&g.model, &version, &text);
                    self.store(&[(k, g.value.to_string().into_bytes())]);
                }
                Err(f) => {
                    if let Some(k) = keys[0] {
                        self.hooks.remember_failure(k, f);
                    }
                }
            }
            result
        }
        .boxed()
    }

    /// Long documents: each part on its own, then the summaries summarized,
    /// or the parts' lists merged and de-duplicated.
    async fn map_reduce(
        &self,
        task: &Task,
        parts: Vec<String>,
        depth: u32,
    ) -> RowResult<Generated> {
        let results = join_all(
            parts
                .into_iter()
                .map(|p| self.generate_one(task, p, depth + 1)),
        )
        .await;
        let parts: Vec<Generated> = results.into_iter().collect::<RowResult<_>>()?;
        let model = parts[0].model.clone();
        let values: Vec<Value> = parts.into_iter().map(|g| g.value).collect();
        if task.reduces_with_model() {
            self.generate_one(task, Task::reduce_input(&values), depth + 1)
                .await
        } else {
            Ok(Generated {
                value: task.merge(values),
                model,
            })
        }
    }

    /// Asks each provider in turn; invalid output gets one repair attempt.
    async fn call_structured(&self, task: &Task, text: &str) -> RowResult<Generated> {
        let schema = task.schema();
        let mut last = None;
        for ep in &self.endpoints {
            let grammar = if ep.backend.wants_grammar() {
                match self.hooks.grammar(task, &schema) {
                    Ok(g) => Some(g),
                    Err(e) => return Err(self.fail(ep, CallError::Local(e), 0)),
                }
            } else {
                None
            };
            let mut req = ChatRequest {
                system: task.system_prompt(),
                user: task.user_prompt(text),
                schema_name: task.name(),
                schema: schema.clone(),
                grammar,
                max_tokens: ep.config.max_output_tokens,
            };
            let mut attempts = 0;
            for repair in [false, true] {
                let outcome = ep.call(|| ep.backend.chat(&req)).await;
                let prompt = estimate_tokens(&req.system) + estimate_tokens(&req.user);
                let output = outcome
                    .result
                    .as_ref()
                    .map_or(0, |r| estimate_tokens(&r.value));
                self.hooks.record_usage(
                    &self.stage,
                    ep,
                    Usage::of(&outcome, 1, (prompt as u64, output as u64)),
                );
                attempts += outcome.attempts;
                let reply = match outcome.result {
                    Ok(reply) => reply.value,
                    Err(e) => {
                        let down = e.endpoint_down();
                        last = Some(self.fail(ep, e, attempts));
                        if down {
                            break;
                        }
                        return Err(last.unwrap_or_else(|| self.internal("no error")));
                    }
                };
                match parse_valid(&reply, &schema) {
                    Ok(value) => {
                        return Ok(Generated {
                            value,
                            model: ep.config.model.clone(),
                        })
                    }
                    Err(why) if repair => {
                        return Err(self.fail(ep, CallError::InvalidOutput(why), attempts))
                    }
                    Err(why) => {
                        let mut shown = reply;
                        shown.truncate(shown.floor_char_boundary(1000));
                        req.user = format!(
                            "{}\n\nYour previous reply was invalid ({why}):\n{shown}\nReply again with corrected JSON only.",
                            task.user_prompt(text)
                        );
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| self.internal("no provider answered")))
    }

    /// One embeddings request, falling back to the next provider when one is
    /// down, and bisecting a batch the endpoint rejects to isolate the input.
    /// `estimate` is the inputs' token estimate, for usage when the
    /// provider reports none.
    fn embed_request(
        &self,
        mut inputs: Vec<String>,
        estimate: usize,
    ) -> BoxFuture<'_, Vec<RowResult<Vec<f32>>>> {
        async move {
            let n = inputs.len();
            let mut last = None;
            for ep in &self.endpoints {
                let outcome = ep.call(|| ep.backend.embed(inputs.clone())).await;
                self.hooks.record_usage(
                    &self.stage,
                    ep,
                    Usage::of(&outcome, n, (estimate as u64, 0)),
                );
                let attempts = outcome.attempts;
                let checked = outcome
                    .result
                    .and_then(|r| check_dims(r.value, ep.config.dims));
                match checked {
                    Ok(vectors) => return vectors.into_iter().map(Ok).collect(),
                    Err(e) if e.is_rejection() && n > 1 => {
                        let right = inputs.split_off(n / 2);
                        let (a, b) =
                            join(self.embed_halves(inputs), self.embed_halves(right)).await;
                        return a.into_iter().chain(b).collect();
                    }
                    Err(e) => {
                        let down = e.endpoint_down();
                        last = Some(self.fail(ep, e, attempts));
                        if !down {
                            break;
                        }
                    }
                }
            }
            let failure = last.unwrap_or_else(|| self.internal("no provider answered"));
            vec![Err(failure); n]
        }
        .boxed()
    }

    /// A bisected half; only a rejected batch gets here, so re-counting is rare.
    fn embed_halves(&self, inputs: Vec<String>) -> BoxFuture<'_, Vec<RowResult<Vec<f32>>>> {
        let estimate = inputs.iter().map(|t| estimate_tokens(t)).sum();
        self.embed_request(inputs, estimate)
    }

    /// An input as the windows sent to the endpoint: one, unless it is
    /// longer than the model's context (HTTP providers; local models cut
    /// with their own tokenizer).
    fn windows(&self, text: &str) -> Vec<String> {
        let config = &self.endpoints[0].config;
        if config.kind == ProviderKind::Local || estimate_tokens(text) <= config.context_tokens {
            return vec![text.to_string()];
        }
        let params = ChunkParams {
            max_tokens: config.context_tokens,
            overlap: 0,
            encoding: Encoding::Cl100kBase,
        };
        let mut parts: Vec<String> = chunk_text(text, &params)
            .into_iter()
            .map(|c| c.text)
            .collect();
        if config.long_input == LongInput::Truncate {
            tracing::warn!(
                stage = %self.stage,
                tokens = estimate_tokens(text),
                context = config.context_tokens,
                "embedding input truncated to the model's context; set long_input = \"split\" to embed it whole"
            );
            parts.truncate(1);
        }
        if parts.is_empty() {
            parts.push(String::new());
        }
        parts
    }

    /// Request boundaries over `inputs`, with each request's token estimate:
    /// a request closes when it reaches the provider's input count or token
    /// budget.
    fn plan(&self, inputs: &[&String]) -> Vec<(std::ops::Range<usize>, usize)> {
        let config = &self.endpoints[0].config;
        let (max_inputs, max_tokens) = (
            config.max_inputs_per_request.max(1),
            config.max_tokens_per_request.max(1),
        );
        let mut ranges = Vec::new();
        let (mut start, mut tokens) = (0, 0);
        for (i, text) in inputs.iter().enumerate() {
            let t = estimate_tokens(text);
            if i > start && (i - start >= max_inputs || tokens + t > max_tokens) {
                ranges.push((start..i, tokens));
                start = i;
                tokens = 0;
            }
            tokens += t;
        }
        if start < inputs.len() {
            ranges.push((start..inputs.len(), tokens));
        }
        ranges
    }

    /// Cached answers and already known failures for `keys`.
    fn lookup(&self, keys: &[Option<Key>]) -> HashMap<Key, RowResult<Cached>> {
        let present: Vec<Key> = keys.iter().flatten().copied().collect();
        let mut found = HashMap::new();
        for (k, f) in present.iter().zip(self.hooks.failed(&present)) {
            if let Some(f) = f {
                found.insert(*k, Err(f));
            }
        }
        for (k, v) in present.iter().zip(self.hooks.cached(&present)) {
            if let Some(v) = v {
                found.entry(*k).or_insert(Ok(Cached::Bytes(v)));
            }
        }
        found
    }

    fn store(&self, entries: &[(Key, Vec<u8>)]) {
        if !entries.is_empty() {
            self.hooks.store(entries);
        }
    }

    fn fail(&self, ep: &Endpoint, error: CallError, attempts: u32) -> ModelFailure {
        ModelFailure {
            provider: ep.name.clone(),
            error,
            attempts,
        }
    }

    fn internal(&self, what: &str) -> ModelFailure {
        ModelFailure {
            provider: self.describe(),
            error: CallError::Local(what.to_string()),
            attempts: 0,
        }
    }
}

enum Cached {
    Bytes(Vec<u8>),
    Vector(Vec<f32>),
}

/// A cached embedding: little-endian f32s.
fn vector(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn check_dims(vectors: Vec<Vec<f32>>, dims: Option<usize>) -> Result<Vec<Vec<f32>>, CallError> {
    match (dims, vectors.iter().find(|v| Some(v.len()) != dims)) {
        (Some(d), Some(bad)) => Err(CallError::Malformed(format!(
            "embedding of {} dims, expected {d}",
            bad.len()
        ))),
        _ => Ok(vectors),
    }
}

/// One vector per input: the window's own, or the normalised mean of its windows.
fn average(parts: Vec<RowResult<Vec<f32>>>) -> RowResult<Vec<f32>> {
    let mut vectors = parts.into_iter().collect::<RowResult<Vec<_>>>()?;
    if vectors.len() == 1 {
        return Ok(vectors.remove(0));
    }
    let dims = vectors.first().map_or(0, Vec::len);
    let mut sum = vec![0f32; dims];
    for v in &vectors {
        sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        sum.iter_mut().for_each(|x| *x /= norm);
    }
    Ok(sum)
}

/// Cuts `text` into parts of about `budget` model tokens.
fn split(text: &str, budget: usize, model_tokens: usize) -> Vec<String> {
    let cl100k = estimate_tokens(text).max(1);
    let ratio = cl100k as f64 / model_tokens.max(1) as f64;
    let params = ChunkParams {
        max_tokens: ((budget as f64 * ratio * 0.9) as usize).max(64),
        overlap: 0,
        encoding: Encoding::Cl100kBase,
    };
    chunk_text(text, &params)
        .into_iter()
        .map(|c| c.text)
        .collect()
}

/// Parses a reply as JSON (tolerating a code fence around it) and validates it.
fn parse_valid(reply: &str, schema: &Value) -> Result<Value, String> {
    let body = match (reply.find('{'), reply.rfind('}')) {
        (Some(a), Some(b)) if a < b => &reply[a..=b],
        _ => reply,
    };
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    validate(&value, schema)?;
    Ok(value)
}
