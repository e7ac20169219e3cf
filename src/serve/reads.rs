//! Search, ask and SQL, each in the caller's scoped session, under the
//! server's query limits: a number running at once, a time limit, and a
//! row cap.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use deltalake::arrow::array::RecordBatch;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::api_error::{ApiError, ApiResult, ErrorBody};
use super::auth::Caller;
use super::rows::{json_rows, Row};
use super::state::{AppState, Metrics};
use crate::analytics::ask::{ask as answer, AskOptions, Citation, Claim};
use crate::analytics::search::{search as find, Depth, Hit, Retrievers};
use crate::doors::gate::Refusal;
use crate::doors::plain_arrow::{plain_batch, plain_schema};
use crate::indexes::fresh::{parse_time, Scope};

/// The media type of Arrow IPC streams.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Runs `work` if a query slot is free, within the query time limit.
async fn limited<T>(state: &AppState, work: impl Future<Output = ApiResult<T>>) -> ApiResult<T> {
    let pass = state.gate.admit().map_err(refused)?;
    state.gate.within(&pass, work).await.map_err(refused)?
}

fn refused(r: Refusal) -> ApiError {
    let status = match r {
        Refusal::Busy(_) => return ApiError::busy(r.to_string(), r.hint(), 1),
        Refusal::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
        Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    ApiError::new(status, r.to_string(), r.hint())
}

/// The caller's scope, with the dates asked for. A tenant token is held
/// to its tenant; an admin may name one.
fn scope(
    caller: &Caller,
    tenant: Option<String>,
    since: Option<&str>,
    until: Option<&str>,
) -> ApiResult<Scope> {
    let time = |what: &str, v: Option<&str>| -> ApiResult<Option<DateTime<Utc>>> {
        v.filter(|s| !s.is_empty())
            .map(|s| {
                parse_time(s).map_err(|e| {
                    ApiError::bad_request(
                        format!("{what}: {e}"),
                        "give a date as YYYY-MM-DD or RFC 3339",
                    )
                })
            })
            .transpose()
    };
    Ok(Scope {
        tenant: caller.0.tenant().map(str::to_string).or(tenant),
        since: time("since", since)?,
        until: time("until", until)?,
    })
}

fn user_error(e: anyhow::Error) -> ApiError {
    ApiError::bad_request(format!("{e:#}"), "check the request against /openapi.json")
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to look for, in plain words.
    pub q: String,
    /// Chunks to return (1 to 100).
    pub k: Option<usize>,
    /// hybrid (default), keyword or vector.
    pub retrievers: Option<String>,
    /// Only documents dated on or after this (YYYY-MM-DD or RFC 3339).
    pub since: Option<String>,
    pub until: Option<String>,
    /// Admins: only this tenant's documents.
    pub tenant: Option<String>,
}

/// A search result: the chunks, best first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResult {
    #[schema(value_type = Vec<Object>)]
    pub hits: Vec<Hit>,
}

/// Hybrid search (vectors and BM25, fused by reciprocal rank) over the
/// current version of each document the caller may see.
#[utoipa::path(
    get,
    path = "/v1/search",
    params(SearchParams),
    responses(
        (status = 200, body = SearchResult, description = "Each hit has doc_id, chunk_idx, score, title, snippet and the parts of the score"),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 429, body = ErrorBody, description = "Busy"),
        (status = 504, body = ErrorBody, description = "Ran past the time limit"),
    ),
    security(("bearer" = [])),
    tag = "answers"
)]
pub async fn search(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(p): Query<SearchParams>,
) -> ApiResult<Json<SearchResult>> {
    if p.q.trim().is_empty() {
        return Err(ApiError::bad_request(
            "q is empty",
            "search with ?q=some+words",
        ));
    }
    let retrievers = match p.retrievers.as_deref().unwrap_or("hybrid") {
        "hybrid" => Retrievers::Hybrid,
        "keyword" => Retrievers::Keyword,
        "vector" => Retrievers::Vector,
        other => {
            return Err(ApiError::bad_request(
                format!("unknown retrievers '{other}'"),
                "use hybrid, keyword or vector",
            ))
        }
    };
    let k = p.k.unwrap_or(10).clamp(1, 100);
    let scope = scope(&caller, p.tenant, p.since.as_deref(), p.until.as_deref())?;
    Metrics::add(&state.metrics.searches);
    limited(&state, async {
        let session = state.session(&caller).await?;
        if !session.has_table("chunks") {
            return Ok(Json(SearchResult { hits: Vec::new() }));
        }
        let depth = Depth {
            k,
            candidates: 100.max(k),
            exact: false,
            retrievers,
        };
        let hits = find(&session, &p.q, depth, &scope)
            .await
            .map_err(user_error)?;
        Ok(Json(SearchResult { hits }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    pub question: String,
    /// Chunks to retrieve (1 to 50; default 8).
    pub k: Option<usize>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Admins: only this tenant's documents.
    pub tenant: Option<String>,
}

/// An answer: claims, each with the chunks it cites.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AskResponse {
    pub question: String,
    /// The claims as text, each followed by its citation tags.
    pub answer: String,
    /// False when the documents do not hold the answer.
    pub found: bool,
    #[schema(value_type = Vec<Object>)]
    pub claims: Vec<Claim>,
    /// Every chunk cited, once.
    #[schema(value_type = Vec<Object>)]
    pub citations: Vec<Citation>,
    pub model: Option<String>,
}

/// Answers a question from the caller's documents alone, citing the
/// chunks each claim comes from; says so when they do not hold the answer.
#[utoipa::path(
    post,
    path = "/v1/ask",
    request_body = AskRequest,
    responses(
        (status = 200, body = AskResponse, description = "OK"),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 429, body = ErrorBody, description = "Busy"),
        (status = 503, body = ErrorBody, description = "The server has no answer model"),
        (status = 504, body = ErrorBody, description = "Ran past the time limit"),
    ),
    security(("bearer" = [])),
    tag = "answers"
)]
pub async fn ask(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<AskRequest>,
) -> ApiResult<Json<AskResponse>> {
    let Some(answerer) = state.answerer.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server has no answer model",
            "set [analytics] answer_providers in the pipeline file and restart the server",
        ));
    };
    if request.question.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the question is empty",
            "send {\"question\": \"...\"}",
        ));
    }
    let filters = scope(
        &caller,
        request.tenant,
        request.since.as_deref(),
        request.until.as_deref(),
    )?;
    let options = AskOptions {
        k: request.k.unwrap_or(8).clamp(1, 50),
        min_similarity: state.min_similarity,
        filters,
    };
    Metrics::add(&state.metrics.asks);
    limited(&state, async {
        let session = state.session(&caller).await?;
        let found = answer(&session, &answerer, &request.question, &options)
            .await
            .map_err(user_error)?;
        let mut citations: Vec<Citation> = Vec::new();
        for c in found.claims.iter().flat_map(|c| &c.citations) {
            if !citations.iter().any(|x| x.tag() == c.tag()) {
                citations.push(c.clone());
            }
        }
        Ok(Json(AskResponse {
            answer: found.text(),
            question: request.question,
            found: found.found,
            claims: found.claims,
            citations,
            model: found.model,
        }))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Read-only SQL: SELECT, WITH, EXPLAIN, SHOW.
    pub sql: String,
}

/// Rows of a query, as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueryResult {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Row>,
    /// True when the rows were cut at the server's row limit.
    pub truncated: bool,
}

/// Runs read-only SQL over the tables the caller may see: a tenant's token
/// sees its own rows in every table, whatever the SQL says. Answers JSON,
/// or an Arrow IPC stream when the request accepts
/// `application/vnd.apache.arrow.stream`.
#[utoipa::path(
    post,
    path = "/v1/query",
    request_body = QueryRequest,
    responses(
        (status = 200, body = QueryResult, content_type = "application/json", description = "OK"),
        (status = 200, content_type = "application/vnd.apache.arrow.stream", description = "The rows as an Arrow IPC stream"),
        (status = 400, body = ErrorBody, description = "SQL that does not plan, or that would change the lake"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 429, body = ErrorBody, description = "Busy"),
        (status = 504, body = ErrorBody, description = "Ran past the time limit"),
    ),
    security(("bearer" = [])),
    tag = "answers"
)]
pub async fn query(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    Json(request): Json<QueryRequest>,
) -> ApiResult<Response> {
    let arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(ARROW_STREAM));
    let max_rows = state.config.max_rows;
    Metrics::add(&state.metrics.queries);
    let (batches, truncated) = limited(&state, async {
        let session = state.session(&caller).await?;
        let mut stream = session.stream(&request.sql).await.map_err(user_error)?;
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut rows = 0;
        let mut truncated = false;
        let schema = stream.schema();
        loop {
            let next = stream
                .try_next()
                .await
                .map_err(|e| run_error(&caller, e.into()))?;
            let Some(batch) = next else { break };
            if rows + batch.num_rows() > max_rows {
                batches.push(batch.slice(0, max_rows - rows));
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok((batches, truncated))
    })
    .await?;
    if arrow {
        return arrow_stream(&batches, truncated);
    }
    let columns = batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let rows = json_rows(&batches).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(QueryResult {
        columns,
        rows,
        truncated,
    })
    .into_response())
}

/// An error while rows were read. Its text can quote values (a failed
/// cast names the value), and a tenant's query may be evaluated on rows
/// before the tenant filter drops them, so tenants get the kind only.
fn run_error(caller: &Caller, e: anyhow::Error) -> ApiError {
    let hint = "check types and casts in the query; TRY_CAST gives NULL instead of failing";
    match caller.0.tenant() {
        None => ApiError::bad_request(format!("the query failed: {e:#}"), hint),
        Some(_) => {
            tracing::info!(error = %format!("{e:#}"), "a tenant's query failed while running");
            ApiError::bad_request(
                "the query failed while reading rows (the details are in the server's log)",
                hint,
            )
        }
    }
}

fn arrow_stream(batches: &[RecordBatch], truncated: bool) -> ApiResult<Response> {
    let schema = Arc::new(plain_schema(&batches[0].schema()));
    let mut out = Vec::new();
    let mut writer = deltalake::arrow::ipc::writer::StreamWriter::try_new(&mut out, &schema)
        .map_err(|e| ApiError::internal(&e.into()))?;
    for b in batches {
        let b = plain_batch(b.clone(), &schema).map_err(|e| ApiError::internal(&e.into()))?;
        writer
            .write(&b)
            .map_err(|e| ApiError::internal(&e.into()))?;
    }
    writer.finish().map_err(|e| ApiError::internal(&e.into()))?;
    drop(writer);
    Ok((
        [
            (header::CONTENT_TYPE, ARROW_STREAM.to_string()),
            (
                header::HeaderName::from_static("x-docstream-truncated"),
                truncated.to_string(),
            ),
        ],
        Body::from(out),
    )
        .into_response())
}
