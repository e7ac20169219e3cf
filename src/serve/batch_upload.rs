//! Many documents in one request: a multipart form with a `file` field per
//! document, made durable together. A folder of small files costs one
//! request and one disk sync instead of one of each per file.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

use super::api_error::{ApiError, ApiResult, ErrorBody};
use super::auth::Caller;
use super::documents::{accept_uploads, admit, metadata, AcceptedUpload};
use super::state::AppState;
use crate::sources::spool::Upload;

/// A multipart batch of files.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct BatchForm {
    /// One field per document, each with its file name; the extension
    /// picks the format.
    #[schema(content_media_type = "application/octet-stream")]
    file: Vec<Vec<u8>>,
    /// A JSON object, landed in `documents.metadata` of every file.
    metadata: Option<String>,
    /// For admin tokens only: the tenant the documents land under.
    tenant: Option<String>,
}

/// What an accepted batch answers: one entry per file, in the form's order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedBatch {
    pub accepted: Vec<AcceptedFile>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedFile {
    pub name: String,
    #[serde(flatten)]
    pub upload: AcceptedUpload,
}

/// What the form held.
struct Files {
    files: Vec<(String, Vec<u8>)>,
    metadata: Map<String, Value>,
    tenant: Option<String>,
}

/// Accepts many files at once: every one is durable before the 202, or
/// none is answered as accepted. Each file keeps the single upload's
/// size limit; the whole body is limited by `[serve] max_batch_mb`.
#[utoipa::path(
    post,
    path = "/v1/documents/batch",
    request_body(content((BatchForm = "multipart/form-data"))),
    responses(
        (status = 202, body = AcceptedBatch, description = "Every file durably accepted; follow each job"),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 413, body = ErrorBody, description = "A file, the body or the number of files is too large"),
        (status = 429, body = ErrorBody, description = "The queue has no room for the files; retry after Retry-After"),
    ),
    security(("bearer" = [])),
    tag = "documents"
)]
pub async fn upload_batch(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    form: Multipart,
) -> ApiResult<(StatusCode, Json<AcceptedBatch>)> {
    let max = state.config.max_upload_bytes();
    let sent = read_files(form, max, state.config.max_batch_bytes()).await?;
    if sent.files.is_empty() {
        return Err(ApiError::bad_request(
            "the form has no field named file",
            "curl -F file=@a.pdf -F file=@b.docx http://HOST/v1/documents/batch",
        ));
    }
    let depth = state.config.queue_depth;
    if sent.files.len() > depth {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} files are more than the server queues ({depth})",
                sent.files.len()
            ),
            "send fewer files per request, or raise [serve] queue_depth",
        ));
    }
    admit(&state, sent.files.len()).await?;
    let tenant = caller.upload_tenant(sent.tenant.as_deref(), &state.default_tenant);
    let mut names = Vec::with_capacity(sent.files.len());
    let uploads = sent
        .files
        .into_iter()
        .map(|(name, bytes)| {
            let mut upload = Upload::new(&tenant, &name, &bytes);
            upload.metadata = sent.metadata.clone();
            names.push(name);
            (upload, bytes)
        })
        .collect();
    let accepted = accept_uploads(&state, uploads).await?;
    let accepted = names
        .into_iter()
        .zip(accepted)
        .map(|(name, upload)| AcceptedFile { name, upload })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(AcceptedBatch { accepted })))
}

/// Reads every field; a file over `max` bytes, or a body over `max_body`,
/// is refused whole.
async fn read_files(mut form: Multipart, max: usize, max_body: usize) -> ApiResult<Files> {
    let mut sent = Files {
        files: Vec::new(),
        metadata: Map::new(),
        tenant: None,
    };
    let too_large = |what: String, hint: &str| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, what, hint.to_string())
    };
    let body_too_large = || {
        too_large(
            format!(
                "the batch is over the server's limit of {} MiB",
                max_body >> 20
            ),
            "send the files in smaller batches, or raise [serve] max_batch_mb",
        )
    };
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large()
        } else {
            ApiError::bad_request(
                format!("cannot read the form: {}", e.body_text()),
                "send multipart/form-data with a field named file per document",
            )
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let Some(name) = field.file_name().map(str::to_string) else {
                    return Err(ApiError::bad_request(
                        "a file field has no file name",
                        "give each file its name, as curl -F file=@notes.md does",
                    ));
                };
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + chunk.len() > max {
                        return Err(too_large(
                            format!(
                                "{name} is over the server's limit of {} MiB per file",
                                max >> 20
                            ),
                            "leave it out of the batch, or raise [serve] max_upload_mb",
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                sent.files.push((name, bytes));
            }
            "tenant" => sent.tenant = Some(field.text().await.map_err(bad)?),
            "metadata" => sent.metadata = metadata(&field.text().await.map_err(bad)?)?,
            other => {
                return Err(ApiError::bad_request(
                    format!("unknown form field '{other}'"),
                    "the fields are file (one per document), metadata and tenant",
                ))
            }
        }
    }
    Ok(sent)
}
