//! Jobs: one per accepted upload, with its state and the progress of each
//! stage, kept for the jobs of this process and rebuilt from the spool and
//! the lake for the others. `/v1/jobs/{id}/events` streams the steps.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

use super::api_error::{ApiError, ApiResult, ErrorBody};
use super::auth::Caller;
use super::rows::{rows, text};
use super::state::AppState;
use crate::analytics::query::Analytics;
use crate::jobs::uploads::{Progress, StageFailure, Step};
use crate::sources::spool::{parse_job_id, Upload};

/// Finished jobs remembered in memory; older ones are read from the lake.
const KEEP_FINISHED: usize = 10_000;
/// Steps a slow event stream may fall behind before it skips to the state.
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Landed,
    Failed,
}

impl JobState {
    pub fn finished(self) -> bool {
        matches!(self, JobState::Landed | JobState::Failed)
    }
}

/// The progress of one stage (or of extraction) for a job.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StageProgress {
    /// pending; running (its model requests under way); computed (its rows
    /// made, not yet committed); done.
    pub state: String,
    /// Model requests made for the job's batch, and planned so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_done: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_planned: Option<usize>,
    /// Rows the job's batch wrote to the stage's table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// The table's version after that commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl StageProgress {
    fn pending() -> Self {
        Self::at("pending", None, None)
    }

    fn done(rows: Option<usize>, version: Option<u64>) -> Self {
        Self::at("done", rows, version)
    }

    fn at(state: &str, rows: Option<usize>, version: Option<u64>) -> Self {
        Self {
            state: state.into(),
            calls_done: None,
            calls_planned: None,
            rows,
            version,
        }
    }
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub job_id: String,
    pub doc_id: String,
    pub tenant: String,
    pub name: Option<String>,
    pub state: JobState,
    /// `extract`, then each table the pipeline writes.
    pub stages: BTreeMap<String, StageProgress>,
    pub failures: Vec<StageFailure>,
    /// Why a failed job failed, or why a waiting one is being retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// One step of one job, as the event stream sends it.
#[derive(Debug, Clone)]
struct JobEvent {
    job_id: String,
    name: &'static str,
    step: serde_json::Value,
    job: Job,
}

pub struct JobBoard {
    /// The tables a job's batch writes, for its stage list.
    tables: Vec<String>,
    jobs: Mutex<Board>,
    events: broadcast::Sender<JobEvent>,
}

#[derive(Default)]
struct Board {
    jobs: HashMap<String, Job>,
    finished: VecDeque<String>,
}

impl JobBoard {
    pub fn new(tables: Vec<String>) -> Self {
        Self {
            tables,
            jobs: Mutex::default(),
            events: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    fn new_job(&self, upload: &Upload, state: JobState) -> Job {
        let mut stages = BTreeMap::new();
        stages.insert("extract".to_string(), StageProgress::pending());
        for t in &self.tables {
            stages.insert(t.clone(), StageProgress::pending());
        }
        Job {
            job_id: upload.job_id.clone(),
            doc_id: upload.doc_id.clone(),
            tenant: upload.tenant.clone(),
            name: Some(upload.name.clone()),
            state,
            stages,
            failures: Vec::new(),
            error: None,
            received_at: Some(upload.received_at),
            updated_at: Utc::now(),
        }
    }

    /// An upload was accepted (again, for a repeat of a waiting one).
    pub fn received(&self, upload: &Upload) {
        let mut board = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let job = board
            .jobs
            .entry(upload.job_id.clone())
            .or_insert_with(|| self.new_job(upload, JobState::Queued))
            .clone();
        drop(board);
        self.send(JobEvent {
            job_id: upload.job_id.clone(),
            name: "received",
            step: serde_json::json!({"step": "received"}),
            job,
        });
    }

    /// The job as this process knows it.
    pub fn get(&self, job_id: &str) -> Option<Job> {
        let board = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        board.jobs.get(job_id).cloned()
    }

    /// The jobs of this process that `caller` may see, newest first.
    pub fn list(&self, caller: &Caller, limit: usize) -> Vec<Job> {
        let board = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut jobs: Vec<Job> = board
            .jobs
            .values()
            .filter(|j| caller.sees(&j.tenant))
            .cloned()
            .collect();
        drop(board);
        jobs.sort_by(|a, b| (b.received_at, &b.job_id).cmp(&(a.received_at, &a.job_id)));
        jobs.truncate(limit);
        jobs
    }

    fn send(&self, event: JobEvent) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.events.send(event);
    }
}

impl Progress for JobBoard {
    fn step(&self, upload: &Upload, step: Step) {
        let mut board = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let job = board
            .jobs
            .entry(upload.job_id.clone())
            .or_insert_with(|| self.new_job(upload, JobState::Queued));
        let name = match &step {
            Step::Running => {
                job.state = JobState::Running;
                job.error = None;
                "running"
            }
            Step::Extracted { .. } => {
                job.stages
                    .insert("extract".into(), StageProgress::done(None, None));
                "extracted"
            }
            Step::Computed { stage, rows } => {
                let progress = job
                    .stages
                    .entry(stage.clone())
                    .or_insert_with(StageProgress::pending);
                progress.state = "computed".into();
                progress.rows = Some(*rows);
                "computed"
            }
            Step::Calls {
                stage,
                done,
                planned,
            } => {
                let progress = job
                    .stages
                    .entry(stage.clone())
                    .or_insert_with(StageProgress::pending);
                progress.state = "running".into();
                progress.calls_done = Some(*done);
                progress.calls_planned = Some(*planned);
                "calls"
            }
            Step::Committed {
                table,
                rows,
                version,
            } => {
                let mut progress = StageProgress::done(Some(*rows), *version);
                if let Some(before) = job.stages.get(table) {
                    progress.calls_done = before.calls_done;
                    progress.calls_planned = before.calls_planned;
                }
                job.stages.insert(table.clone(), progress);
                "stage"
            }
            Step::Landed { failures } => {
                job.state = JobState::Landed;
                job.failures = failures.clone();
                for s in job.stages.values_mut() {
                    if s.state == "pending" {
                        *s = StageProgress::done(None, None);
                    }
                }
                "landed"
            }
            Step::Failed { stage, error, .. } => {
                job.state = JobState::Failed;
                job.error = Some(format!("{stage}: {error}"));
                "failed"
            }
            Step::Published => {
                job.state = JobState::Running;
                "published"
            }
            Step::Retrying { error } => {
                job.state = JobState::Queued;
                job.error = Some(error.clone());
                "retrying"
            }
        };
        job.updated_at = Utc::now();
        let snapshot = job.clone();
        if snapshot.state.finished() {
            board.finished.push_back(upload.job_id.clone());
            while board.finished.len() > KEEP_FINISHED {
                if let Some(old) = board.finished.pop_front() {
                    board.jobs.remove(&old);
                }
            }
        }
        drop(board);
        self.send(JobEvent {
            job_id: upload.job_id.clone(),
            name,
            step: serde_json::to_value(&step).unwrap_or_default(),
            job: snapshot,
        });
    }
}

/// The job `job_id`, from this process, the spool or the lake; `None` when
/// it is unknown or belongs to a tenant `caller` may not see.
async fn find(state: &AppState, caller: &Caller, job_id: &str) -> ApiResult<Option<Job>> {
    let Some((doc_id, hash)) = parse_job_id(job_id) else {
        return Ok(None);
    };
    let known = state.jobs.get(job_id).or_else(|| {
        state
            .spool
            .get(job_id)
            .map(|u| state.jobs.new_job(&u, JobState::Queued))
    });
    if let Some(job) = known {
        return Ok(caller.sees(&job.tenant).then_some(job));
    }
    let session = state.session(caller).await?;
    if !session.has_table("documents") {
        return Ok(None);
    }
    // The scoped session answers only for the caller's own documents;
    // both ids are hex, checked by `parse_job_id`.
    let sql = format!(
        "SELECT tenant, source_uri, ingested_at FROM documents WHERE doc_id = '{doc_id}' AND starts_with(content_hash, '{hash}') LIMIT 1"
    );
    let found = rows(&session, &sql).await?;
    let Some(row) = found.first() else {
        return Ok(None);
    };
    let mut stages = BTreeMap::new();
    stages.insert("extract".to_string(), StageProgress::done(None, None));
    for t in &state.jobs.tables {
        stages.insert(t.clone(), StageProgress::done(None, None));
    }
    let failures = job_failures(&session, doc_id).await?;
    let landed_at = chrono::DateTime::parse_from_rfc3339(text(row, "ingested_at"));
    Ok(Some(Job {
        job_id: job_id.to_string(),
        doc_id: doc_id.to_string(),
        tenant: text(row, "tenant").to_string(),
        name: text(row, "source_uri")
            .rsplit('/')
            .next()
            .map(str::to_string),
        state: JobState::Landed,
        stages,
        failures,
        error: None,
        received_at: None,
        updated_at: landed_at.map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc)),
    }))
}

/// The failure rows of a landed document and of its members.
async fn job_failures(session: &Analytics, doc_id: &str) -> ApiResult<Vec<StageFailure>> {
    if !session.has_table("failures") {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT doc_id, stage, error_kind, error FROM failures WHERE doc_id = '{doc_id}' OR doc_id IN (SELECT doc_id FROM documents WHERE parent_doc_id = '{doc_id}')"
    );
    Ok(rows(session, &sql)
        .await?
        .iter()
        .map(|r| StageFailure {
            doc_id: text(r, "doc_id").to_string(),
            stage: text(r, "stage").to_string(),
            error_kind: text(r, "error_kind").to_string(),
            error: text(r, "error").to_string(),
        })
        .collect())
}

fn unknown_job(job_id: &str) -> ApiError {
    ApiError::not_found(
        format!("no job {job_id}"),
        "use the job_id that POST /v1/documents answered; jobs of other tenants are not shown",
    )
}

/// A job's state, the progress of each stage, and its failure rows.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}",
    params(("job_id" = String, Path, description = "From POST /v1/documents")),
    responses(
        (status = 200, body = Job, description = "OK"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 404, body = ErrorBody, description = "Not found (or not the caller's)"),
    ),
    security(("bearer" = [])),
    tag = "jobs"
)]
pub async fn get_job(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> ApiResult<Json<Job>> {
    find(&state, &caller, &job_id)
        .await?
        .map(Json)
        .ok_or_else(|| unknown_job(&job_id))
}

/// The jobs of this server process that the caller may see, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    responses((status = 200, body = [Job], description = "OK"), (status = 401, body = ErrorBody, description = "No token, or an unknown one")),
    security(("bearer" = [])),
    tag = "jobs"
)]
pub async fn list_jobs(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Vec<Job>> {
    Json(state.jobs.list(&caller, 500))
}

/// Server-Sent Events, one per step: `state` first (the job as it is),
/// then `received`, `running` (or `published`, for ingest workers to
/// land), `extracted`, `computed` (a stage made its
/// rows: `chunks` is chunked), `calls` (a model stage's requests, done of
/// planned: embedding i/n), `stage` (a table committed, with its rows and
/// version), `retrying`, and `landed` or `failed` (with its error kind),
/// after which the stream ends.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}/events",
    params(("job_id" = String, Path, description = "From POST /v1/documents")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "One event per step; data is JSON with `step` and `job`"),
        (status = 401, body = ErrorBody, description = "No token, or an unknown one"),
        (status = 404, body = ErrorBody, description = "Not found (or not the caller's)"),
    ),
    security(("bearer" = [])),
    tag = "jobs"
)]
pub async fn job_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // Subscribed before the state is read, so no step falls between.
    let receiver = state.jobs.events.subscribe();
    let job = find(&state, &caller, &job_id)
        .await?
        .ok_or_else(|| unknown_job(&job_id))?;
    let first = event("state", &serde_json::json!({"step": "state"}), &job);
    let done = job.state.finished();
    let stream = futures::stream::unfold(
        (Some(first), receiver, done, state.clone(), job_id),
        |(first, mut receiver, done, state, job_id)| async move {
            if let Some(e) = first {
                return Some((Ok(e), (None, receiver, done, state, job_id)));
            }
            if done {
                return None;
            }
            loop {
                match receiver.recv().await {
                    Ok(e) if e.job_id == job_id => {
                        let finished = e.job.state.finished() && e.name != "retrying";
                        let out = event(e.name, &e.step, &e.job);
                        return Some((Ok(out), (None, receiver, finished, state, job_id)));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind: send the job as it is now.
                        let job = state.jobs.get(&job_id)?;
                        let finished = job.state.finished();
                        let out = event("state", &serde_json::json!({"step": "state"}), &job);
                        return Some((Ok(out), (None, receiver, finished, state, job_id)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn event(name: &str, step: &serde_json::Value, job: &Job) -> Event {
    let data = serde_json::json!({"step": step, "job": job});
    Event::default().event(name).data(data.to_string())
}
