//! `docstream serve`: the pipeline as a service. Uploads are made durable
//! in the spool before their 202, land in batches through the same
//! extraction, stages and commits as a backfill, and report each step to
//! their job. Documents, search, answers and SQL read the lake through a
//! session scoped to the caller's tenant. The OpenAPI document is built
//! from the handlers themselves.

pub mod api_error;
pub mod auth;
pub mod batch_upload;
pub mod config;
pub mod documents;
pub mod jobs;
pub mod ops;
pub mod page;
pub mod reads;
pub mod rows;
pub mod state;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::mpsc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::api_error::ApiError;
use self::state::AppState;
#[cfg(feature = "kafka")]
use crate::jobs::upload_publisher::UploadPublisher;
use crate::jobs::uploads::{Erase, Links, UploadLander};

/// Erasures waiting for the lander, at most; more wait to send.
const ERASE_QUEUE: usize = 64;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "docstream",
        description = "Upload documents, follow them through the pipeline, and read what it found: documents, search, answers with citations, and read-only SQL, each scoped to the caller's tenant."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "documents", description = "Uploads, documents and erasure"),
        (name = "jobs", description = "An upload's progress through the pipeline"),
        (name = "answers", description = "Search, ask and SQL"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "page", description = "The web page"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "A token from the server's tokens file; a server without one takes no token",
            ))
            .build();
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")),
    tag = "operations"
)]
async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    let json = state.openapi.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The web page.
#[utoipa::path(get, path = "/", responses((status = 200, content_type = "text/html", description = "OK")), tag = "page")]
async fn index() -> impl IntoResponse {
    page::index().await
}

/// The page's script.
#[utoipa::path(get, path = "/app.js", responses((status = 200, content_type = "text/javascript", description = "OK")), tag = "page")]
async fn script() -> impl IntoResponse {
    page::script().await
}

/// The page's style sheet.
#[utoipa::path(get, path = "/style.css", responses((status = 200, content_type = "text/css", description = "OK")), tag = "page")]
async fn style() -> impl IntoResponse {
    page::style().await
}

/// Every route, each documented in the OpenAPI document it serves.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.max_upload_bytes().saturating_add(1 << 20);
    // The innermost limit wins: batches get their own.
    let batches = OpenApiRouter::new()
        .routes(routes!(batch_upload::upload_batch))
        .layer(DefaultBodyLimit::max(state.config.max_batch_bytes()));
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(documents::upload, documents::list))
        .merge(batches)
        .routes(routes!(documents::get, documents::erase))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::job_events))
        .routes(routes!(reads::search))
        .routes(routes!(reads::ask))
        .routes(routes!(reads::query))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi))
        .routes(routes!(index))
        .routes(routes!(script))
        .routes(routes!(style))
        .split_for_parts();
    let json = api.to_pretty_json().unwrap_or_default();
    // Set once: a second router over the same state serves the same API.
    let _ = state.openapi.set(json);
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            time_limit,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such route",
        "the routes are listed in /openapi.json; the web page is at /",
    )
}

/// Answers 503 when a request's handler runs past the request time limit
/// (a stream that has started, like job events, goes on).
async fn time_limit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response =
        match tokio::time::timeout(state.config.request_timeout(), next.run(request)).await {
            Ok(response) => response,
            Err(_) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the request ran past the server's limit of {} s",
                        state.config.request_timeout_s
                    ),
                    "try again later, or raise [serve] request_timeout_s",
                )
            }
            .into_response(),
        };
    tracing::debug!(%method, %path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
    response
}

/// What takes accepted uploads from the spool.
pub enum Landing {
    /// Lands them in this process.
    InProcess(Box<UploadLander>),
    /// Publishes them for `ingest` workers (`serve --topic`).
    #[cfg(feature = "kafka")]
    Publish(UploadPublisher),
}

/// Lands uploads and serves requests on `listener` until `shutdown`
/// resolves or the lander fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    landing: Landing,
    erasures: mpsc::Receiver<Erase>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let fresh = state.clone();
    let mut landed = state.landed.subscribe();
    tokio::spawn(async move {
        while landed.changed().await.is_ok() {
            fresh.sessions.mark_stale();
        }
    });
    let links = Links {
        wake: state.wake.clone(),
        landed: state.landed.clone(),
        progress: state.jobs.clone(),
        erasures,
    };
    let landing = async move {
        match landing {
            Landing::InProcess(l) => (*l).run(links).await,
            #[cfg(feature = "kafka")]
            Landing::Publish(p) => p.run(links).await,
        }
    };
    state.ready.store(true, Ordering::Release);
    let app = router(state);
    let serving = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    tokio::select! {
        served = serving => served.context("the HTTP server stopped"),
        landed = landing => landed.context("the upload lander stopped"),
    }
}

/// The erasure channel between the API and the lander.
pub fn erasure_channel() -> (mpsc::Sender<Erase>, mpsc::Receiver<Erase>) {
    mpsc::channel(ERASE_QUEUE)
}
