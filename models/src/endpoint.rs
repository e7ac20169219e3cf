//! One provider with its limiter and breaker: every request goes through
//! `call`, which retries with backoff and adapts concurrency.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::CallError;
use super::limiter::{Breaker, Limiter};
use super::provider::ProviderConfig;

/// A chat request for structured output.
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    pub schema_name: &'static str,
    pub schema: Value,
    /// GBNF for in-process models, derived from `schema`.
    pub grammar: Option<Arc<str>>,
    pub max_tokens: usize,
}

/// A response with the token counts the provider reported, if any.
pub struct Reply<T> {
    pub value: T,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
}

/// What answers requests: an HTTP client, or a model in this process.
#[async_trait::async_trait]
pub trait ModelBackend: Send + Sync {
    async fn embed(&self, inputs: Vec<String>) -> Result<Reply<Vec<Vec<f32>>>, CallError>;

    async fn chat(&self, req: &ChatRequest) -> Result<Reply<String>, CallError>;

    /// Tokens of `text` for budgeting prompts.
    fn count_tokens(&self, text: &str) -> usize {
        super::estimate_tokens(text)
    }

    /// In-process chat models decode under a grammar instead of trusting
    /// `response_format`.
    fn wants_grammar(&self) -> bool {
        false
    }
}

pub struct Endpoint {
    pub name: String,
    pub config: ProviderConfig,
    pub backend: Box<dyn ModelBackend>,
    limiter: Arc<Limiter>,
    breaker: Breaker,
}

/// A finished request: its reply or last error, with what it cost.
pub struct Outcome<T> {
    pub result: Result<Reply<T>, CallError>,
    pub attempts: u32,
    pub latency: Duration,
}

impl Endpoint {
    pub fn new(name: &str, config: ProviderConfig, backend: Box<dyn ModelBackend>) -> Self {
        let limiter = Limiter::new(config.max_in_flight);
        let breaker = Breaker::new(
            config.circuit_failures,
            Duration::from_secs_f64(config.circuit_open_secs.max(0.0)),
        );
        Self {
            name: name.to_string(),
            config,
            backend,
            limiter,
            breaker,
        }
    }

    /// Runs `op` until it succeeds, fails for good, or retries run out.
    pub async fn call<T, F, Fut>(&self, op: F) -> Outcome<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Reply<T>, CallError>>,
    {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            if let Err(wait) = self.breaker.check() {
                return Outcome {
                    result: Err(CallError::CircuitOpen(wait)),
                    attempts,
                    latency: started.elapsed(),
                };
            }
            attempts += 1;
            let permit = self.limiter.acquire().await;
            let timeout = self.config.timeout();
            let result = match tokio::time::timeout(timeout, op()).await {
                Ok(r) => r,
                Err(_) => Err(CallError::Timeout(timeout)),
            };
            let error = match result {
                Ok(reply) => {
                    self.limiter.on_success();
                    self.breaker.record(true);
                    return Outcome {
                        result: Ok(reply),
                        attempts,
                        latency: started.elapsed(),
                    };
                }
                Err(e) => e,
            };
            if error.is_throttle() {
                self.limiter.on_throttle(&permit, error.retry_after());
            } else {
                self.limiter.on_error();
                // Only a dead or broken endpoint counts toward opening the circuit.
                self.breaker.record(!error.endpoint_down());
            }
            drop(permit);
            if !error.retryable() || attempts > self.config.retries {
                return Outcome {
                    result: Err(error),
                    attempts,
                    latency: started.elapsed(),
                };
            }
            let wait = error
                .retry_after()
                .unwrap_or_else(|| self.config.backoff(attempts));
            tracing::debug!(endpoint = %self.name, attempts, ?wait, "retrying: {error}");
            tokio::time::sleep(wait).await;
        }
    }
}
