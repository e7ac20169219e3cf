//! One model behind one endpoint: an HTTP client or an in-process model.

#[cfg(feature = "local-models")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "local-models")]
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use docstream_models::endpoint::{ChatRequest, ModelBackend, Reply};
use docstream_models::error::CallError;
use docstream_models::openai::OpenAiClient;
#[cfg(feature = "local-models")]
use docstream_models::provider::LongInput;
use docstream_models::provider::{ProviderConfig, ProviderKind};

use super::config::ModelsConfig;
#[cfg(feature = "local-models")]
use super::local::{embedder::BackgroundEmbedder, generator::LocalGenerator, LocalModel};

pub enum Backend {
    OpenAi(OpenAiClient),
    // In-process models run one request at a time on a blocking thread.
    #[cfg(feature = "local-models")]
    LocalEmbed(Arc<BackgroundEmbedder>, LongInput),
    #[cfg(feature = "local-models")]
    LocalChat(Arc<Mutex<LocalGenerator>>),
}

impl Backend {
    pub fn open(
        name: &str,
        config: &ProviderConfig,
        #[cfg_attr(not(feature = "local-models"), allow(unused_variables))] models: &ModelsConfig,
    ) -> Result<Self> {
        match config.kind {
            ProviderKind::Openai => {
                let api_key = match &config.api_key_env {
                    Some(var) => Some(std::env::var(var).with_context(|| {
                        format!("provider '{name}' reads its API key from ${var}, which is not set")
                    })?),
                    None => None,
                };
                Ok(Backend::OpenAi(OpenAiClient::new(
                    &config.base_url,
                    api_key,
                    &config.model,
                    config.timeout(),
                    config.json_schema,
                )?))
            }
            #[cfg(not(feature = "local-models"))]
            ProviderKind::Local => bail!(
                "provider '{name}' is a local model, but this docstream was built without the \
                 local-models feature; rebuild with default features, or use an \
                 OpenAI-compatible provider (see pipelines/openai.toml)"
            ),
            #[cfg(feature = "local-models")]
            ProviderKind::Local => {
                let Some(known) = LocalModel::find(&config.model) else {
                    let names: Vec<&str> = super::local::KNOWN.iter().map(|m| m.name).collect();
                    bail!(
                        "provider '{name}': no local model '{}'; local models are: {}",
                        config.model,
                        names.join(", ")
                    );
                };
                let path = config
                    .path
                    .clone()
                    .unwrap_or_else(|| known.weights(&models.models_dir()));
                if known.embedding {
                    let model = BackgroundEmbedder::open(&path, config.context_tokens)?;
                    Ok(Backend::LocalEmbed(Arc::new(model), config.long_input))
                } else {
                    let model = LocalGenerator::load(&path, config.context_tokens)?;
                    Ok(Backend::LocalChat(Arc::new(Mutex::new(model))))
                }
            }
        }
    }

    /// The embedding dimension an in-process model reports.
    pub fn local_dims(&self) -> Option<usize> {
        match self {
            #[cfg(feature = "local-models")]
            Backend::LocalEmbed(m, _) => Some(m.dims()),
            _ => None,
        }
    }

    /// The context window an in-process chat model was loaded with.
    pub fn local_context(&self) -> Option<usize> {
        match self {
            #[cfg(feature = "local-models")]
            Backend::LocalChat(m) => m.lock().ok().map(|m| m.context_tokens()),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl ModelBackend for Backend {
    async fn embed(&self, inputs: Vec<String>) -> Result<Reply<Vec<Vec<f32>>>, CallError> {
        match self {
            Backend::OpenAi(client) => client.embed(inputs).await,
            #[cfg(feature = "local-models")]
            Backend::LocalEmbed(model, long) => {
                let (model, split) = (model.clone(), *long == LongInput::Split);
                let out = blocking(move || {
                    let model = model.get()?;
                    model.embed(&inputs, split).map_err(|e| format!("{e:#}"))
                })
                .await?;
                if out.truncated > 0 {
                    tracing::warn!(
                        inputs = out.truncated,
                        "embedding inputs longer than the model's context were truncated; set long_input = \"split\" to embed them whole"
                    );
                }
                Ok(Reply {
                    value: out.vectors,
                    input_tokens: Some(out.tokens),
                    output_tokens: None,
                })
            }
            #[cfg(feature = "local-models")]
            Backend::LocalChat(_) => Err(CallError::Local(
                "this is a chat model; name an embedding model for embed()".into(),
            )),
        }
    }

    async fn chat(&self, req: &ChatRequest) -> Result<Reply<String>, CallError> {
        match self {
            Backend::OpenAi(client) => client.chat(req).await,
            #[cfg(feature = "local-models")]
            Backend::LocalChat(model) => {
                let model = model.clone();
                let (system, user) = (req.system.clone(), req.user.clone());
                let (grammar, max_tokens) = (req.grammar.clone(), req.max_tokens);
                // Dropping this future (a timeout, a client that hung up)
                // stops the generation at its next token.
                let cancel = CancelOnDrop::default();
                let cancelled = cancel.0.clone();
                let out = blocking(move || {
                    let model = model.lock().map_err(|_| "generator poisoned".to_string())?;
                    model
                        .generate(&system, &user, grammar.as_deref(), max_tokens, &cancelled)
                        .map_err(|e| format!("{e:#}"))
                })
                .await?;
                Ok(Reply {
                    value: out.text,
                    input_tokens: Some(out.input_tokens),
                    output_tokens: Some(out.output_tokens),
                })
            }
            #[cfg(feature = "local-models")]
            Backend::LocalEmbed(..) => Err(CallError::Local(
                "this is an embedding model; name a chat model for this stage".into(),
            )),
        }
    }

    /// In the model's own vocabulary where it is in-process.
    fn count_tokens(&self, text: &str) -> usize {
        match self {
            #[cfg(feature = "local-models")]
            Backend::LocalChat(m) => m
                .lock()
                .map(|m| m.count_tokens(text))
                .unwrap_or_else(|_| docstream_models::estimate_tokens(text)),
            _ => docstream_models::estimate_tokens(text),
        }
    }

    fn wants_grammar(&self) -> bool {
        match self {
            #[cfg(feature = "local-models")]
            Backend::LocalChat(_) => true,
            _ => false,
        }
    }
}

/// Sets its flag when dropped.
#[cfg(feature = "local-models")]
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

#[cfg(feature = "local-models")]
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(feature = "local-models")]
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, String> + Send + 'static,
) -> Result<T, CallError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Local(e)),
        Err(panic) => Err(CallError::Local(format!("the model crashed: {panic}"))),
    }
}
