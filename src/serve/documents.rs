//! Documents: uploads (a file, or inline text), the list, one document with
//! what the stages found in it, and erasure.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::api_error::{ApiError, ApiResult, ErrorBody};
use super::auth::Caller;
use super::jobs::JobState;
use super::rows::{rows, Row};
use super::state::{AppState, Metrics};
use crate::analytics::query::quote;
use crate::jobs::uploads::Erase;
use crate::sources::object_reader::ObjectError;
use crate::sources::spool::{Accepted, Upload};

/// Names a document's file gets when the request gives none.
const INLINE_NAME: &str = "inline.txt";
/// How long an upload waits for room in a full spool before its 429.
const ADMISSION_WAIT: Duration = Duration::from_secs(2);
/// The longest Retry-After a full spool answers.
const MAX_RETRY_AFTER: u64 = 30;

/// A document in a JSON body: its text, or the URI of an object the
/// server reads (under a prefix in `[serve] allowed_objects`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineDocument {
    /// The document's text.
    pub text: Option<String>,
    /// An object to read instead, e.g. `s3://inbox/2026/contract.pdf`. Its
    /// URI is the document's identity, as in a backfill of the bucket.
    pub uri: Option<String>,
    /// Its file name; the extension picks the format (`.md`, `.html`, ...).
    /// The same name again makes a new version of the same document.
    pub name: Option<String>,
    pub title: Option<String>,
    /// Lands in `documents.metadata`.
    pub metadata: Option<Map<String, Value>>,
    /// For admin tokens only: the tenant the document lands under.
    pub tenant: Option<String>,
}

/// A multipart upload.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct UploadForm {
    /// The file; its name's extension picks the format.
    #[schema(content_media_type = "application/octet-stream")]
    file: Vec<u8>,
    title: Option<String>,
    /// A JSON object, landed in `documents.metadata`.
    metadata: Option<String>,
    /// For admin tokens only: the tenant the document lands under.
    tenant: Option<String>,
}

/// What an accepted upload answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedUpload {
    pub job_id: String,
    pub doc_id: String,
    pub state: JobState,
}

/// What a request carried, before it is an upload.
struct Sent {
    name: String,
    /// The object the bytes were read from, for uploads by URI.
    object: Option<String>,
    bytes: Vec<u8>,
    title: Option<String>,
    metadata: Map<String, Value>,
    tenant: Option<String>,
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is over the server's limit of {} MiB", max >> 20),
        "send a smaller file, or raise [serve] max_upload_mb in the pipeline file",
    )
}

/// A form's `metadata` field: a JSON object.
pub(super) fn metadata(text: &str) -> ApiResult<Map<String, Value>> {
    serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request(
            format!("metadata is not a JSON object: {e}"),
            "send metadata as a JSON object, e.g. {\"project\": \"apollo\"}",
        )
    })
}

async fn read_multipart(mut form: Multipart, max: usize) -> ApiResult<Sent> {
    let mut sent = Sent {
        name: String::new(),
        object: None,
        bytes: Vec::new(),
        title: None,
        metadata: Map::new(),
        tenant: None,
    };
    let mut has_file = false;
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(max)
        } else {
            ApiError::bad_request(
                format!("cannot read the form: {}", e.body_text()),
                "send multipart/form-data with a field named file",
            )
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" if has_file => {
                return Err(ApiError::bad_request(
                    "the form has more than one file",
                    "send one file per request, or POST them all to /v1/documents/batch",
                ))
            }
            "file" => {
                sent.name = field.file_name().unwrap_or(INLINE_NAME).to_string();
                has_file = true;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if sent.bytes.len() + chunk.len() > max {
                        return Err(too_large(max));
                    }
                    sent.bytes.extend_from_slice(&chunk);
                }
            }
            "title" => sent.title = Some(field.text().await.map_err(bad)?),
            "tenant" => sent.tenant = Some(field.text().await.map_err(bad)?),
            "metadata" => sent.metadata = metadata(&field.text().await.map_err(bad)?)?,
            other => {
                return Err(ApiError::bad_request(
                    format!("unknown form field '{other}'"),
                    "the fields are file, title, metadata and tenant",
                ))
            }
        }
    }
    if !has_file {
        return Err(ApiError::bad_request(
            "the form has no field named file",
            "curl -F file=@contract.pdf http://HOST/v1/documents",
        ));
    }
    Ok(sent)
}

/// Accepts a document: a multipart file upload (field `file`, with optional
/// `title`, `metadata` and, for admins, `tenant`), or JSON with inline
/// text. The upload is durable before the 202; the same bytes under the
/// same name are one document version, however often they are sent.
#[utoipa::path(
    post,
    path = "/v1/documents",
    request_body(content(
        (UploadForm = "multipart/form-data"),
        (InlineDocument = "application/json"),
    )),
    responses(
        (status = 202, body = AcceptedUpload, description = "Durably accepted; follow /v1/jobs/{job_id}/events"),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 403, body = ErrorBody, description = "The object's URI is not allowed"),
        (status = 413, body = ErrorBody, description = "Too large"),
        (status = 409, body = ErrorBody, description = "The object is being landed for another tenant"),
        (status = 415, body = ErrorBody, description = "Unsupported body type"),
        (status = 422, body = ErrorBody, description = "The object cannot be read"),
        (status = 429, body = ErrorBody, description = "The queue is full; see Retry-After"),
    ),
    security(("bearer" = [])),
    tag = "documents"
)]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    request: Request,
) -> ApiResult<(StatusCode, Json<AcceptedUpload>)> {
    let max = state.config.max_upload_bytes();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let sent = if content_type.starts_with("multipart/form-data") {
        let form = Multipart::from_request(request, &()).await.map_err(|e| {
            ApiError::bad_request(
                e.body_text(),
                "send multipart/form-data with a field named file",
            )
        })?;
        read_multipart(form, max).await?
    } else if content_type.starts_with("application/json") {
        let Json(doc) = Json::<InlineDocument>::from_request(request, &())
            .await
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => too_large(max),
                status => ApiError::new(
                    status,
                    e.body_text(),
                    "send {\"text\": \"...\", \"name\": \"notes.md\"}; title, metadata and tenant are optional",
                ),
            })?;
        let tenant = caller.upload_tenant(doc.tenant.as_deref(), &state.default_tenant);
        let (name, object, bytes) = match (doc.text, doc.uri) {
            (Some(text), None) => {
                let name = doc.name.unwrap_or_else(|| INLINE_NAME.to_string());
                (name, None, text.into_bytes())
            }
            (None, Some(uri)) => {
                // Before the object is read: a full queue costs no read.
                admit(&state, 1).await?;
                let bytes = read_object(&state, &uri, &tenant, max).await?;
                let name = uri.rsplit('/').next().unwrap_or_default().to_string();
                (name, Some(uri), bytes.to_vec())
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give either text or uri",
                    "send {\"text\": \"...\", \"name\": \"notes.md\"} or {\"uri\": \"s3://bucket/contract.pdf\"}",
                ))
            }
        };
        if bytes.len() > max {
            return Err(too_large(max));
        }
        Sent {
            name,
            object,
            bytes,
            title: doc.title,
            metadata: doc.metadata.unwrap_or_default(),
            tenant: doc.tenant,
        }
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("cannot take a body of type '{content_type}'"),
            "send multipart/form-data with a field named file, or application/json with text",
        ));
    };
    if sent.object.is_none() {
        admit(&state, 1).await?;
    }
    let tenant = caller.upload_tenant(sent.tenant.as_deref(), &state.default_tenant);
    let mut upload = match &sent.object {
        Some(uri) => Upload::of_object(&tenant, uri, &sent.bytes),
        None => Upload::new(&tenant, &sent.name, &sent.bytes),
    };
    if let Some(waiting) = state.spool.get(&upload.job_id) {
        if waiting.tenant != upload.tenant {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{} is being landed for another tenant", upload.source_uri),
                "give each tenant its own prefixes in [serve.tenant_objects]",
            ));
        }
    }
    upload.title = sent.title.filter(|t| !t.trim().is_empty());
    upload.metadata = sent.metadata;
    let mut accepted = accept_uploads(&state, vec![(upload, sent.bytes)]).await?;
    let accepted = accepted
        .pop()
        .ok_or_else(|| ApiError::internal(&anyhow::anyhow!("the spool accepted nothing")))?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Makes uploads durable together (one sync), registers their jobs and
/// wakes the lander; what each answers, in order.
pub(super) async fn accept_uploads(
    state: &AppState,
    uploads: Vec<(Upload, Vec<u8>)>,
) -> ApiResult<Vec<AcceptedUpload>> {
    let spool = state.spool.clone();
    let (uploads, accepted) = tokio::task::spawn_blocking(move || {
        let all: Vec<(&Upload, &[u8])> = uploads.iter().map(|(u, b)| (u, b.as_slice())).collect();
        let accepted = spool.accept_all(&all);
        (uploads, accepted)
    })
    .await
    .map_err(|e| ApiError::internal(&anyhow::anyhow!("the spool writer stopped: {e}")))?;
    let accepted = accepted.map_err(|e| ApiError::internal(&e))?;
    for (upload, _) in &uploads {
        Metrics::add(&state.metrics.uploads_accepted);
        state.jobs.received(upload);
    }
    if accepted.contains(&Accepted::New) {
        state.wake.notify_one();
    }
    Ok(uploads
        .into_iter()
        .map(|(upload, _)| {
            let job = state.jobs.get(&upload.job_id);
            AcceptedUpload {
                job_id: upload.job_id,
                doc_id: upload.doc_id,
                state: job.map_or(JobState::Queued, |j| j.state),
            }
        })
        .collect())
}

/// The bytes of the object `uri`, read for `tenant` under `[serve]`'s
/// object policy.
async fn read_object(state: &AppState, uri: &str, tenant: &str, max: usize) -> ApiResult<Bytes> {
    match state.objects.read(uri, tenant, None, max as u64).await {
        Ok(bytes) => Ok(bytes),
        Err(ObjectError::TooLarge(_)) => Err(too_large(max)),
        Err(ObjectError::Refused(why)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("refused to read: {why}"),
            "upload the file itself, or ask an operator to allow its prefix",
        )),
        Err(ObjectError::Read(e)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e,
            "check the URI; the server reads it with its own credentials",
        )),
    }
}

/// Waits up to [`ADMISSION_WAIT`] for room for `n` uploads in the spool,
/// so a burst is paced by the lander instead of refused; past it, 429 with
/// a Retry-After from the pace the spool drained at meanwhile.
pub(super) async fn admit(state: &AppState, n: usize) -> ApiResult<()> {
    let depth = state.config.queue_depth;
    let mut landed = state.landed.subscribe();
    let before = *landed.borrow_and_update();
    let deadline = tokio::time::Instant::now() + ADMISSION_WAIT;
    loop {
        let waiting = state.spool.waiting();
        if waiting + n <= depth {
            return Ok(());
        }
        let drained = depth > 0
            && matches!(
                tokio::time::timeout_at(deadline, landed.changed()).await,
                Ok(Ok(()))
            );
        if drained {
            continue;
        }
        Metrics::add(&state.metrics.uploads_refused);
        let left = landed.borrow().saturating_sub(before);
        let retry_after = match left {
            0 => MAX_RETRY_AFTER,
            left => (ADMISSION_WAIT.as_secs() * (waiting + n - depth) as u64).div_ceil(left),
        };
        return Err(ApiError::busy(
            format!("{waiting} uploads are waiting to land, the server's limit"),
            "retry after the time in Retry-After, or raise [serve] queue_depth",
            retry_after.clamp(1, MAX_RETRY_AFTER),
        ));
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Documents per page (1 to 500).
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    /// Only titles or file names containing this (any case).
    pub q: Option<String>,
    /// Admins: only this tenant's documents.
    pub tenant: Option<String>,
}

/// A page of documents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentPage {
    /// Current versions of top-level documents, newest first.
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Row>,
    pub limit: usize,
    pub offset: usize,
}

/// The current version of each top-level document the caller may see,
/// newest first, with its type and summary when the stages wrote them.
#[utoipa::path(
    get,
    path = "/v1/documents",
    params(ListParams),
    responses((status = 200, body = DocumentPage, description = "OK"), (status = 401, body = ErrorBody, description = "No token, or an unknown one")),
    security(("bearer" = [])),
    tag = "documents"
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<DocumentPage>> {
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    let offset = params.offset.unwrap_or(0);
    let session = state.session(&caller).await?;
    if !session.has_table("documents") {
        return Ok(Json(DocumentPage {
            documents: Vec::new(),
            limit,
            offset,
        }));
    }
    let mut filters = vec!["d.parent_doc_id IS NULL".to_string()];
    if let Some(q) = params.q.filter(|q| !q.is_empty()) {
        let like = quote(&format!("%{}%", q.to_lowercase()));
        filters.push(format!(
            "(lower(d.title) LIKE {like} OR lower(d.source_uri) LIKE {like})"
        ));
    }
    if let Some(t) = params.tenant {
        filters.push(format!("d.tenant = {}", quote(&t)));
    }
    let (mut columns, mut joins) = (String::new(), String::new());
    if session.has_table("doc_types") {
        columns.push_str(", t.doc_type");
        joins.push_str(
            " LEFT JOIN doc_types t ON t.doc_id = d.doc_id AND t.content_hash = d.content_hash",
        );
    }
    if session.has_table("summaries") {
        columns.push_str(", s.summary");
        joins.push_str(
            " LEFT JOIN summaries s ON s.doc_id = d.doc_id AND s.content_hash = d.content_hash",
        );
    }
    let sql = format!(
        "SELECT d.doc_id, d.tenant, d.title, d.source_uri, d.mime, d.n_chars, d.event_time, d.ingested_at{columns} \
         FROM current_documents d{joins} WHERE {} ORDER BY d.ingested_at DESC, d.doc_id LIMIT {limit} OFFSET {offset}",
        filters.join(" AND ")
    );
    let documents = rows(&session, &sql).await?;
    Ok(Json(DocumentPage {
        documents,
        limit,
        offset,
    }))
}

/// One document, with what the stages found in it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentView {
    /// Its current version's `documents` row.
    #[schema(value_type = Object)]
    pub document: Row,
    #[schema(value_type = Option<Object>)]
    pub summary: Option<Row>,
    #[schema(value_type = Option<Object>)]
    pub doc_type: Option<Row>,
    #[schema(value_type = Vec<Object>)]
    pub risks: Vec<Row>,
    #[schema(value_type = Vec<Object>)]
    pub action_items: Vec<Row>,
    /// Files found inside it (archive members, attachments).
    #[schema(value_type = Vec<Object>)]
    pub members: Vec<Row>,
    #[schema(value_type = Vec<Object>)]
    pub failures: Vec<Row>,
}

fn check_doc_id(doc_id: &str) -> ApiResult<()> {
    let hex = doc_id.len() == 32
        && doc_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match hex {
        true => Ok(()),
        false => Err(ApiError::bad_request(
            format!("'{}' is not a doc id", doc_id.escape_debug()),
            "a doc id is 32 hex digits, as /v1/documents and /v1/search return them",
        )),
    }
}

fn no_document(doc_id: &str) -> ApiError {
    ApiError::not_found(
        format!("no document {doc_id}"),
        "list the documents you can see with GET /v1/documents",
    )
}

/// A document's current version with its summary, key points, type, risks
/// with severity, action items with owners and due dates, members and
/// failure rows.
#[utoipa::path(
    get,
    path = "/v1/documents/{doc_id}",
    params(("doc_id" = String, Path, description = "32 hex digits")),
    responses(
        (status = 200, body = DocumentView, description = "OK"),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 404, body = ErrorBody, description = "Not found (or not the caller's)"),
    ),
    security(("bearer" = [])),
    tag = "documents"
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(doc_id): Path<String>,
) -> ApiResult<Json<DocumentView>> {
    check_doc_id(&doc_id)?;
    let session = state.session(&caller).await?;
    if !session.has_table("documents") {
        return Err(no_document(&doc_id));
    }
    let id = quote(&doc_id);
    let sql = format!("SELECT * FROM current_documents WHERE doc_id = {id}");
    let document = rows(&session, &sql)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| no_document(&doc_id))?;
    let hash = quote(super::rows::text(&document, "content_hash"));
    let version = format!("doc_id = {id} AND content_hash = {hash}");
    let of = |table: &str, columns: &str, order: &str| {
        session
            .has_table(table)
            .then(|| format!("SELECT {columns} FROM {table} WHERE {version}{order}"))
    };
    let mut found = Vec::new();
    for sql in [
        of("summaries", "summary, key_points, model", ""),
        of("doc_types", "doc_type, labels, confidence, model", ""),
        of(
            "risks",
            "title, description, category, severity, likelihood, mitigation, owner, evidence",
            " ORDER BY CASE lower(severity) WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, title",
        ),
        of("action_items", "task, owner, due_date, priority, evidence", " ORDER BY due_date NULLS LAST, task"),
    ] {
        found.push(match sql {
            Some(sql) => rows(&session, &sql).await?,
            None => Vec::new(),
        });
    }
    let members = rows(
        &session,
        &format!("SELECT doc_id, title, source_uri, mime, n_chars FROM current_documents WHERE parent_doc_id = {id} ORDER BY source_uri"),
    )
    .await?;
    let failures = match session.has_table("failures") {
        true => {
            let sql =
                format!("SELECT stage, error_kind, error, failed_at FROM failures WHERE {version}");
            rows(&session, &sql).await?
        }
        false => Vec::new(),
    };
    let mut found = found.into_iter();
    let mut next = || found.next().unwrap_or_default();
    Ok(Json(DocumentView {
        document,
        summary: next().into_iter().next(),
        doc_type: next().into_iter().next(),
        risks: next(),
        action_items: next(),
        members,
        failures,
    }))
}

/// What an erasure did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    pub doc_id: String,
    /// Versions of the document removed from `documents`; absent when a
    /// delete event was published for the ingest workers (202).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<usize>,
}

/// Erases a document, every version and every file found in it, from every
/// table, as a delete event does. Uploads of it accepted earlier land
/// first, and are erased with it.
#[utoipa::path(
    delete,
    path = "/v1/documents/{doc_id}",
    params(("doc_id" = String, Path, description = "32 hex digits")),
    responses(
        (status = 200, body = Erased, description = "Erased"),
        (status = 202, body = Erased, description = "A delete event was published for the ingest workers"),
        (status = 400, body = ErrorBody, description = "Bad request"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 404, body = ErrorBody, description = "Not found (or not the caller's)"),
    ),
    security(("bearer" = [])),
    tag = "documents"
)]
pub async fn erase(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(doc_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Erased>)> {
    check_doc_id(&doc_id)?;
    let session = state.session(&caller).await?;
    let id = quote(&doc_id);
    let sql = format!("SELECT doc_id FROM documents WHERE doc_id = {id} LIMIT 1");
    let theirs = session.has_table("documents") && !rows(&session, &sql).await?.is_empty();
    let waiting = state
        .spool
        .list()
        .into_iter()
        .any(|u| u.doc_id == doc_id && caller.sees(&u.tenant));
    if !theirs && !waiting {
        return Err(no_document(&doc_id));
    }
    let (done, answer) = oneshot::channel();
    let erase = Erase {
        doc_id: doc_id.clone(),
        done,
    };
    state
        .erasures
        .send(erase)
        .await
        .map_err(|_| ApiError::internal(&anyhow::anyhow!("the upload lander stopped")))?;
    let versions = answer
        .await
        .map_err(|_| ApiError::internal(&anyhow::anyhow!("the upload lander stopped")))?
        .map_err(|e| ApiError::internal(&e))?;
    let status = match versions {
        Some(_) => StatusCode::OK,
        None => StatusCode::ACCEPTED,
    };
    Ok((status, Json(Erased { doc_id, versions })))
}
