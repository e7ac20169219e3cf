//! A model chain for callers outside docstream: the Arroyo UDFs. One provider
//! configured from environment variables, no cache and no usage rows, and
//! embeddings coalesced across concurrent one-row calls.
//!
//! `DOCSTREAM_EMBED_*` configures `embed`, `DOCSTREAM_CHAT_*` the structured
//! tasks. Each variable sets the provider field of the same name, as in a
//! pipeline file's `[providers.NAME]`: `DOCSTREAM_EMBED_MODEL=nomic-embed-text`,
//! `DOCSTREAM_CHAT_BASE_URL=http://ollama:11434/v1`,
//! `DOCSTREAM_CHAT_API_KEY_ENV=OPENAI_API_KEY` (the key itself stays in its own
//! variable), `DOCSTREAM_EMBED_MAX_INPUTS_PER_REQUEST=256`, ...

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::chain::{ModelChain, NoHooks, RowResult};
use super::coalesce::Coalescer;
use super::endpoint::Endpoint;
use super::openai::OpenAiClient;
use super::provider::ProviderConfig;
use super::tasks::Task;

/// How long coalesced calls wait for company before their batch is sent.
const LINGER: Duration = Duration::from_millis(20);
/// Requests a call may queue behind at the endpoint's concurrency limit.
const QUEUED_ROUNDS: u32 = 8;
/// Cap on a call's deadline; the UDFs' engine timeout is set above it (2 h).
pub const MAX_DEADLINE: Duration = Duration::from_secs(90 * 60);

/// Which provider a UDF uses: its environment variable prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Embed,
    Chat,
}

impl Purpose {
    pub fn prefix(self) -> &'static str {
        match self {
            Purpose::Embed => "DOCSTREAM_EMBED_",
            Purpose::Chat => "DOCSTREAM_CHAT_",
        }
    }
}

pub struct Standalone {
    chain: ModelChain,
    coalescer: Coalescer<Option<RowResult<Vec<f32>>>>,
    /// Every call answers within this, so the engine's own timeout (longer)
    /// never fires and restarts the pipeline.
    deadline: Duration,
}

impl Standalone {
    /// The provider described by `vars` (name → value) under `purpose`'s prefix.
    pub fn from_vars(
        purpose: Purpose,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, String> {
        let prefix = purpose.prefix();
        let fields: Map<String, Value> = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let field = k.strip_prefix(prefix)?.to_ascii_lowercase();
                // Numbers and booleans as such; everything else is text.
                let value = match serde_json::from_str::<Value>(&v) {
                    Ok(n @ (Value::Number(_) | Value::Bool(_))) => n,
                    _ => Value::String(v),
                };
                Some((field, value))
            })
            .collect();
        // serde does not say which field a type error is in; try each alone.
        for (field, value) in &fields {
            let one = Map::from_iter([(field.clone(), value.clone())]);
            if let Err(e) = serde_json::from_value::<ProviderConfig>(Value::Object(one)) {
                return Err(format!("{prefix}{}: {e}", field.to_ascii_uppercase()));
            }
        }
        let config: ProviderConfig = serde_json::from_value(Value::Object(fields))
            .map_err(|e| format!("{prefix}* variables: {e}"))?;
        if config.model.is_empty() {
            return Err(format!(
                "set {prefix}MODEL to the model the endpoint serves"
            ));
        }
        let api_key = match &config.api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .map_err(|_| format!("{prefix}API_KEY_ENV names ${var}, which is not set"))?,
            ),
            None => None,
        };
        let client = OpenAiClient::new(
            &config.base_url,
            api_key,
            &config.model,
            config.timeout(),
            config.json_schema,
        )
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        // A call may queue behind a few of the slowest requests.
        let deadline = (config.longest_request() * QUEUED_ROUNDS + LINGER).min(MAX_DEADLINE);
        let coalescer = Coalescer::new(
            config.max_inputs_per_request,
            config.max_tokens_per_request,
            LINGER,
        );
        let endpoint = Endpoint::new("arroyo", config, Box::new(client));
        let chain = ModelChain::new(
            purpose.prefix(),
            vec![Arc::new(endpoint)],
            Arc::new(NoHooks),
        )?;
        Ok(Self {
            chain,
            coalescer,
            deadline,
        })
    }

    /// The longest one call takes before it gives up with NULL.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// `text`'s embedding as a JSON array of floats; `None` if the model
    /// failed on it (the reason is logged).
    pub async fn embed(&self, text: &str) -> Option<String> {
        let call = self.coalescer.call(text.to_string(), |texts| async move {
            let refs: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
            self.chain.embed(&refs).await
        });
        match self.within_deadline(call).await? {
            Some(Ok(vector)) => serde_json::to_string(&vector).ok(),
            Some(Err(f)) => {
                eprintln!("docstream embed: {f}");
                None
            }
            None => None,
        }
    }

    /// The task's validated JSON object for `text`; `None` if the model failed.
    pub async fn generate(&self, task: &Task, text: &str) -> Option<String> {
        let texts = [Some(text)];
        match self
            .within_deadline(self.chain.generate(task, &texts))
            .await?
            .pop()
            .flatten()?
        {
            Ok(g) => Some(g.value.to_string()),
            Err(f) => {
                eprintln!("docstream {}: {f}", task.name());
                None
            }
        }
    }

    async fn within_deadline<T>(&self, call: impl std::future::Future<Output = T>) -> Option<T> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(v) => Some(v),
            Err(_) => {
                eprintln!(
                    "docstream: no model answer within {:?}; the row gets NULL",
                    self.deadline
                );
                None
            }
        }
    }
}

thread_local! {
    // Arroyo drives each async UDF instance on its own single-threaded runtime,
    // so one client (and its connection pool) per thread is one per runtime.
    static STANDALONE: RefCell<HashMap<Purpose, Arc<Standalone>>> = RefCell::new(HashMap::new());
}

/// This thread's chain for `purpose`, configured from the environment once.
pub fn for_this_thread(purpose: Purpose) -> Result<Arc<Standalone>, String> {
    STANDALONE.with(|cell| {
        if let Some(s) = cell.borrow().get(&purpose) {
            return Ok(s.clone());
        }
        let s = Arc::new(Standalone::from_vars(purpose, std::env::vars())?);
        cell.borrow_mut().insert(purpose, s.clone());
        Ok(s)
    })
}

/// What the Arroyo `embed` UDF returns for `text`.
pub async fn embed(text: &str) -> Option<String> {
    match for_this_thread(Purpose::Embed) {
        Ok(s) => s.embed(text).await,
        Err(e) => {
            eprintln!("docstream embed: {e}");
            None
        }
    }
}

/// What the Arroyo `summarize` / `extract_*` UDFs return for `text`.
pub async fn generate(task: Task, text: &str) -> Option<String> {
    match for_this_thread(Purpose::Chat) {
        Ok(s) => s.generate(&task, text).await,
        Err(e) => {
            eprintln!("docstream {}: {e}", task.name());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn provider_fields_come_from_prefixed_variables() {
        let s = Standalone::from_vars(
            Purpose::Embed,
            vars(&[
                ("DOCSTREAM_EMBED_MODEL", "nomic-embed-text"),
                ("DOCSTREAM_EMBED_TIMEOUT_SECS", "2"),
                ("DOCSTREAM_EMBED_RETRIES", "1"),
                ("DOCSTREAM_EMBED_BACKOFF_BASE_SECS", "1"),
                ("DOCSTREAM_CHAT_MODEL", "ignored: another prefix"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        // Two 2 s attempts and a ≤1.25 s backoff, times the queued rounds.
        let d = s.deadline().as_secs_f64();
        assert!((5.25 * 8.0..=5.25 * 8.0 + 0.1).contains(&d), "{d}");
        assert_eq!(s.chain.primary_model(), "nomic-embed-text");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |pairs: &[(&str, &str)]| {
            Standalone::from_vars(Purpose::Chat, vars(pairs))
                .err()
                .unwrap()
        };
        assert!(err(&[]).contains("set DOCSTREAM_CHAT_MODEL"));
        assert!(err(&[
            ("DOCSTREAM_CHAT_MODEL", "m"),
            ("DOCSTREAM_CHAT_RETRYS", "2")
        ])
        .contains("unknown field `retrys`"));
        assert!(err(&[
            ("DOCSTREAM_CHAT_MODEL", "m"),
            ("DOCSTREAM_CHAT_TIMEOUT_SECS", "soon")
        ])
        .contains("DOCSTREAM_CHAT_TIMEOUT_SECS: invalid type"));
    }
}
