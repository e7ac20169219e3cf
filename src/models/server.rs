//! `docstream serve-models`: the local models behind the OpenAI-compatible
//! API (`/v1/embeddings`, `/v1/chat/completions`, `/v1/models`), like Ollama.

use std::sync::Arc;

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

struct Models(Vec<Served>);

pub async fn serve(listener: tokio::net::TcpListener, models: Vec<Served>) -> Result<()> {
    let state = Arc::new(Models(models));
    let app = Router::new()
        .route("/v1/models", get(list))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/chat/completions", post(chat))
        .with_state(state);
    axum::serve(listener, app).await?;
    Ok(())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": "invalid_request_error"}});
    (status, Json(body)).into_response()
}

fn failed(e: CallError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl Models {
    fn find(&self, id: Option<&str>, embedding: bool) -> Result<&Served, Box<Response>> {
        let fits = |m: &&Served| matches!(m.backend, Backend::LocalEmbed(..)) == embedding;
        let found = match id {
            Some(id) => self
                .0
                .iter()
                .filter(fits)
                .find(|m| m.id.eq_ignore_ascii_case(id)),
            None => self.0.iter().find(fits),
        };
        found.ok_or_else(|| {
            let ids: Vec<&str> = self.0.iter().filter(fits).map(|m| m.id.as_str()).collect();
            Box::new(error(
                StatusCode::NOT_FOUND,
                format!(
                    "model {id:?} is not served here; try one of: {}",
                    ids.join(", ")
                ),
            ))
        })
    }
}

async fn list(State(models): State<Arc<Models>>) -> Json<Value> {
    let data: Vec<Value> = models
        .0
        .iter()
        .map(|m| json!({"id": m.id, "object": "model", "owned_by": "docstream"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn embeddings(State(models): State<Arc<Models>>, body: Json<Value>) -> Response {
    let model = match models.find(body["model"].as_str(), true) {
        Ok(m) => m,
        Err(r) => return *r,
    };
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
    let model = match models.find(body["model"].as_str(), false) {
        Ok(m) => m,
        Err(r) => return *r,
    };
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
