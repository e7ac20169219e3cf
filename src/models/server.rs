//! `docstream serve-models`: the local models behind the OpenAI-compatible
//! API (`/v1/embeddings`, `/v1/chat/completions`, `/v1/models`), like Ollama.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docstream_models::endpoint::{ChatRequest, ModelBackend};
use docstream_models::error::CallError;
use serde_json::{json, Value};

use super::backend::Backend;

/// A served model: its id and the in-process backend.
pub struct Served {
    pub id: String,
    pub backend: Backend,
    pub max_output_tokens: usize,
}

/// A served model and its turn: one request runs at a time; the others
/// wait, and are forgotten when their client hangs up.
struct Model {
    served: Served,
    turn: tokio::sync::Semaphore,
}

struct Models {
    list: Vec<Model>,
    /// How long a request may wait for its turn before it gets a 503.
    queue_timeout: Duration,
}

/// More inputs in one embeddings request are refused (413): docstream's
/// own client sends at most this many (`max_inputs_per_request`).
pub const MAX_EMBED_INPUTS: usize = 2048;

/// Serves `models`; with a `token`, every request needs
/// `Authorization: Bearer <token>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    models: Vec<Served>,
    token: Option<String>,
    queue_timeout: Duration,
) -> Result<()> {
    let turns = models
        .into_iter()
        .map(|served| Model {
            served,
            turn: tokio::sync::Semaphore::new(1),
        })
        .collect();
    let state = Arc::new(Models {
        list: turns,
        queue_timeout,
    });
    let app = Router::new()
        .route("/v1/models", get(list))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/chat/completions", post(chat))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ));
    axum::serve(listener, app).await?;
    Ok(())
}

async fn require_token(
    State(token): State<Arc<Option<String>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = token.as_deref() {
        let given = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_secret(given, token)) {
            return error(
                StatusCode::UNAUTHORIZED,
                "this server needs Authorization: Bearer <the token it was started with>",
            );
        }
    }
    next.run(request).await
}

/// Compares in time independent of where the strings differ, so timing
/// does not reveal the token a byte at a time.
fn same_secret(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request_error"}});
    (status, Json(body)).into_response()
}

fn failed(e: CallError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl Models {
    fn find(&self, id: Option<&str>, embedding: bool) -> Result<&Model, Box<Response>> {
        let fits = |m: &&Model| matches!(m.served.backend, Backend::LocalEmbed(..)) == embedding;
        let found = match id {
            Some(id) => self
                .list
                .iter()
                .filter(fits)
                .find(|m| m.served.id.eq_ignore_ascii_case(id)),
            None => self.list.iter().find(fits),
        };
        found.ok_or_else(|| {
            let ids: Vec<&str> = self
                .list
                .iter()
                .filter(fits)
                .map(|m| m.served.id.as_str())
                .collect();
            Box::new(error(
                StatusCode::NOT_FOUND,
                format!(
                    "model {id:?} is not served here; try one of: {}",
                    ids.join(", ")
                ),
            ))
        })
    }

    /// Waits for `model`'s turn, or answers 503 after the queue timeout.
    async fn turn<'a>(
        &self,
        model: &'a Model,
    ) -> Result<tokio::sync::SemaphorePermit<'a>, Box<Response>> {
        match tokio::time::timeout(self.queue_timeout, model.turn.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                let mut busy = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{} is busy: no turn within {:?}; retry later, or start serve-models with a longer --queue-timeout",
                        model.served.id, self.queue_timeout
                    ),
                );
                busy.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("5"),
                );
                Err(Box::new(busy))
            }
        }
    }
}

async fn list(State(models): State<Arc<Models>>) -> Json<Value> {
    let data: Vec<Value> = models
        .list
        .iter()
        .map(|m| json!({"id": m.served.id, "object": "model", "owned_by": "docstream"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn embeddings(State(models): State<Arc<Models>>, body: Json<Value>) -> Response {
    let queued = match models.find(body["model"].as_str(), true) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let model = &queued.served;
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => match items.iter().map(|v| v.as_str().map(String::from)).collect() {
            Some(v) => v,
            None => return error(StatusCode::BAD_REQUEST, "input must be strings"),
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "input must be a string or an array of strings",
            )
        }
    };
    if inputs.len() > MAX_EMBED_INPUTS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} inputs in one request; send at most {MAX_EMBED_INPUTS} per request",
                inputs.len()
            ),
        );
    }
    let _turn = match models.turn(queued).await {
        Ok(turn) => turn,
        Err(r) => return *r,
    };
    match model.backend.embed(inputs).await {
        Ok(reply) => {
            let data: Vec<Value> = reply
                .value
                .into_iter()
                .enumerate()
                .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
                .collect();
            let tokens = reply.input_tokens.unwrap_or(0);
            Json(json!({
                "object": "list",
                "model": model.id,
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }))
            .into_response()
        }
        Err(e) => failed(e),
    }
}

async fn chat(State(models): State<Arc<Models>>, body: Json<Value>) -> Response {
    let queued = match models.find(body["model"].as_str(), false) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let model = &queued.served;
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let content = |role: &str| -> String {
        messages
            .iter()
            .filter(|m| m["role"] == role)
            .filter_map(|m| m["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (system, user) = (content("system"), content("user"));
    if user.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages need a user message");
    }
    let schema = body["response_format"]["json_schema"]["schema"].clone();
    let grammar = if schema.is_object() {
        match llama_cpp_2::json_schema_to_grammar(&schema.to_string()) {
            Ok(g) => Some(g.into()),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unsupported json_schema: {e}"),
                )
            }
        }
    } else {
        None
    };
    let max_tokens = body["max_tokens"]
        .as_u64()
        .map_or(model.max_output_tokens, |m| {
            (m as usize).min(model.max_output_tokens)
        });
    let request = ChatRequest {
        system,
        user,
        schema_name: "response",
        schema,
        grammar,
        max_tokens,
    };
    let _turn = match models.turn(queued).await {
        Ok(turn) => turn,
        Err(r) => return *r,
    };
    match model.backend.chat(&request).await {
        Ok(reply) => {
            let (input, output) = (
                reply.input_tokens.unwrap_or(0),
                reply.output_tokens.unwrap_or(0),
            );
            Json(json!({
                "object": "chat.completion",
                "model": model.id,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.value},
                    "finish_reason": if output as usize >= max_tokens { "length" } else { "stop" },
                }],
                "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
            }))
            .into_response()
        }
        Err(e) => failed(e),
    }
}
