//! Client for OpenAI-compatible endpoints: `/embeddings` and `/chat/completions`.

use std::time::Duration;

use serde_json::{json, Value};

use super::endpoint::{ChatRequest, ModelBackend, Reply};
use super::error::CallError;

/// Larger responses are refused: the largest real one, 256 embeddings of
/// 3072 floats as JSON, is about 16 MiB.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub struct OpenAiClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    model: String,
    json_schema: bool,
    timeout: Duration,
}

impl OpenAiClient {
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        model: &str,
        timeout: Duration,
        json_schema: bool,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            model: model.to_string(),
            json_schema,
            timeout,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/{path}", self.base_url);
        let mut request = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let bytes = self.read_body(response).await?;
        if status != 200 {
            let mut body = redact(&String::from_utf8_lossy(&bytes), self.api_key.as_deref());
            body.truncate(body.floor_char_boundary(500));
            return Err(CallError::Status {
                status,
                body,
                retry_after,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError::Malformed(e.to_string()))
    }

    /// The response body, refused past [`MAX_RESPONSE_BYTES`].
    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, CallError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(CallError::Malformed(format!(
                    "the response is larger than {} MiB",
                    MAX_RESPONSE_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport(&self, e: reqwest::Error) -> CallError {
        if e.is_timeout() {
            CallError::Timeout(self.timeout)
        } else if e.is_decode() || e.is_body() {
            CallError::Malformed(e.to_string())
        } else {
            CallError::Connect(e.to_string())
        }
    }
}

#[async_trait::async_trait]
impl ModelBackend for OpenAiClient {
    async fn embed(&self, inputs: Vec<String>) -> Result<Reply<Vec<Vec<f32>>>, CallError> {
        let body = json!({"model": self.model, "input": inputs, "encoding_format": "float"});
        let reply = self.post("embeddings", &body).await?;
        let data = reply["data"]
            .as_array()
            .ok_or_else(|| CallError::Malformed("no data array".into()))?;
        if data.len() != inputs.len() {
            return Err(CallError::Malformed(format!(
                "{} embeddings for {} inputs",
                data.len(),
                inputs.len()
            )));
        }
        let mut out = vec![Vec::new(); inputs.len()];
        for (pos, item) in data.iter().enumerate() {
            let idx = item["index"].as_u64().map_or(pos, |i| i as usize);
            let vector = item["embedding"]
                .as_array()
                .ok_or_else(|| CallError::Malformed("embedding is not an array".into()))?
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| CallError::Malformed("embedding holds a non-number".into()))?;
            match out.get_mut(idx) {
                Some(slot) if slot.is_empty() => *slot = vector,
                _ => return Err(CallError::Malformed(format!("bad or repeated index {idx}"))),
            }
        }
        Ok(Reply {
            value: out,
            input_tokens: reply["usage"]["prompt_tokens"].as_u64(),
            output_tokens: None,
        })
    }

    async fn chat(&self, req: &ChatRequest) -> Result<Reply<String>, CallError> {
        let mut body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": req.system},
                {"role": "user", "content": req.user},
            ],
            "temperature": 0,
            "max_tokens": req.max_tokens,
        });
        if self.json_schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": req.schema_name, "schema": req.schema, "strict": true},
            });
        }
        let reply = self.post("chat/completions", &body).await?;
        let content = reply["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| CallError::Malformed("no choices[0].message.content".into()))?;
        Ok(Reply {
            value: content.to_string(),
            input_tokens: reply["usage"]["prompt_tokens"].as_u64(),
            output_tokens: reply["usage"]["completion_tokens"].as_u64(),
        })
    }
}

/// A `Retry-After` of seconds, capped at 10 minutes; `None` for what is no
/// number of seconds (an HTTP date, `nan`, `inf`, garbage).
fn retry_after(value: &str) -> Option<Duration> {
    let secs = value.trim().parse::<f64>().ok().filter(|s| s.is_finite())?;
    Some(Duration::from_secs_f64(secs.clamp(0.0, 600.0)))
}

/// An error body without the key it was sent with or any bearer token: some
/// endpoints echo the request's headers, and error bodies land in
/// `failures.error` and in logs.
fn redact(body: &str, key: Option<&str>) -> String {
    let mut out = match key.filter(|k| !k.is_empty()) {
        Some(k) => body.replace(k, "[redacted]"),
        None => body.to_string(),
    };
    let bearer = regex::Regex::new(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+").expect("a valid pattern");
    out = bearer.replace_all(&out, "${1}[redacted]").into_owned();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_only_finite_seconds() {
        assert_eq!(retry_after(" 2.5 "), Some(Duration::from_millis(2500)));
        assert_eq!(retry_after("-3"), Some(Duration::ZERO));
        assert_eq!(retry_after("1e9"), Some(Duration::from_secs(600)));
        for bad in [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "Wed, 21 Oct 2026 07:28:00 GMT",
            "",
        ] {
            assert_eq!(retry_after(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_bodies_lose_keys_and_bearer_tokens() {
        let body = r#"{"error":"bad","echo":{"authorization":"Bearer sk-live-123","x-key":"sk-live-123"}}"#;
        let clean = redact(body, Some("sk-live-123"));
        assert!(!clean.contains("sk-live-123"), "{clean}");
        assert!(clean.contains("Bearer [redacted]"), "{clean}");
        assert_eq!(
            redact("token bearer abc.def", None),
            "token bearer [redacted]"
        );
    }
}
