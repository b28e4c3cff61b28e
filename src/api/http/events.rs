//! `GET /jobs/{id}/events`: a job's log as JSON pages, or live as Server-Sent
//! Events with `Accept: text/event-stream` (resumable with `Last-Event-ID`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::ACCEPT;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use super::timestamp;
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json, Query};
use crate::queue::LoggedEvent;
use crate::store::{EventFilter, EventKind, EventRow, Level};

/// One entry of a job's log; over SSE, the `data` of an event named by its
/// `kind`. Its schema is one object per shape of `data`, by `kind`
/// ([`super::event_schema`]).
#[derive(Debug, Serialize)]
pub struct JobEvent {
    /// The fields every entry has.
    #[serde(flatten)]
    pub head: EventHead,
    /// What happened (also the SSE event's name).
    pub kind: EventKind,
    /// What the kind carries (a [`crate::store::event_data`] type, or the
    /// trainer's step log); null when nothing.
    pub data: Option<serde_json::Value>,
}

/// The fields of a log entry, whatever its kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventHead {
    /// Increasing id (also the SSE `id`).
    pub id: i64,
    /// The job's attempt when it was written (0 before the first start, as for `created`).
    pub attempt: i64,
    /// How much it matters.
    pub level: Level,
    /// Human-readable text.
    pub message: String,
    /// When (RFC 3339).
    pub created_at: String,
}

impl From<EventRow> for JobEvent {
    fn from(e: EventRow) -> Self {
        Self {
            head: EventHead {
                id: e.seq,
                attempt: e.attempt,
                level: e.level,
                message: e.message,
                created_at: timestamp(e.created_at),
            },
            kind: e.kind,
            data: e.data,
        }
    }
}

/// Up to `limit` entries of a job's log after `after`; an empty `data` means none yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEventList {
    /// Entries, oldest first.
    pub data: Vec<JobEvent>,
}

/// The query of `GET /jobs/{id}/events`; `after` also starts a live stream, ahead of
/// `Last-Event-ID`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Entries after this event id.
    pub after: Option<i64>,
    /// At most this many (1–1000, default 1000).
    pub limit: Option<i64>,
    /// Only entries of this kind (`eval` for the evaluations, …); every kind
    /// when absent. Also filters a live stream.
    pub kind: Option<EventKind>,
    /// Only entries of this level (`error` for the failures); every level
    /// when absent. Also filters a live stream.
    pub level: Option<Level>,
}

impl EventParams {
    fn filter(&self) -> EventFilter {
        EventFilter {
            kind: self.kind,
            level: self.level,
        }
    }
}

/// Reads a job's log.
///
/// A JSON page of entries by default. With `Accept: text/event-stream`, a live
/// Server-Sent Events stream instead: each entry is an event named by its
/// `kind` whose `data` is the entry as JSON and whose `id` is the entry's id
/// (send it back as `Last-Event-ID` to resume); the stream ends once the job
/// has finished.
#[utoipa::path(get, path = "/jobs/{id}/events", operation_id = "get_job_events", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), EventParams),
    responses(
        (status = 200, description = "A JSON page of entries or, with `Accept: text/event-stream`, a live stream",
            content(
                (JobEventList = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 404, description = "No job has this id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.store.get_job(&id).await?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let wants_sse = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let after = q.after.or(resume).unwrap_or(0);
    if wants_sse {
        return Ok(Sse::new(event_stream(state, id, after, q.filter()))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let rows = state
        .store
        .list_events(&id, after, limit, &q.filter())
        .await?;
    Ok(Json(JobEventList {
        data: rows.into_iter().map(Into::into).collect(),
    })
    .into_response())
}

/// How often a live stream looks at the database when nothing was announced:
/// entries written by other processes, and status changes that come without
/// a log entry, are seen within this.
const STREAM_POLL: Duration = Duration::from_secs(1);

/// The job's entries after `after`, then new ones as they are written, until
/// the job has finished (or the service shuts down, or the client leaves).
fn event_stream(
    state: AppState,
    id: String,
    after: i64,
    only: EventFilter,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // Subscribed before the first read: nothing written meanwhile is missed.
    let live = state.queue.log().subscribe();
    tokio::spawn(follow(state, (id, only), after, live, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok)
}

async fn follow(
    state: AppState,
    (id, only): (String, EventFilter),
    mut after: i64,
    mut live: broadcast::Receiver<Arc<LoggedEvent>>,
    tx: tokio::sync::mpsc::Sender<Event>,
) {
    loop {
        // Read the status first: entries written before a terminal status are all seen.
        let done = state
            .store
            .get_job(&id)
            .await
            .map_or(true, |job| job.status.is_terminal());
        let rows = state
            .store
            .list_events(&id, after, 1000, &only)
            .await
            .unwrap_or_default();
        let full_page = rows.len() == 1000;
        for row in rows {
            after = row.seq;
            if tx.send(sse(row)).await.is_err() {
                return; // the client went away
            }
        }
        if full_page {
            continue;
        }
        if done || !wait_for(&id, &mut live, &state, &tx).await {
            return;
        }
    }
}

/// Waits until an entry of job `id` is announced, or the poll interval passes;
/// `false` when the stream should end instead.
async fn wait_for(
    id: &str,
    live: &mut broadcast::Receiver<Arc<LoggedEvent>>,
    state: &AppState,
    tx: &tokio::sync::mpsc::Sender<Event>,
) -> bool {
    let poll = tokio::time::sleep(STREAM_POLL);
    tokio::pin!(poll);
    loop {
        tokio::select! {
            msg = live.recv() => match msg {
                Ok(logged) if logged.job_id == id => return true,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return true,
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            _ = &mut poll => return true,
            _ = state.shutdown.cancelled() => return false,
            _ = tx.closed() => return false,
        }
    }
}

fn sse(row: EventRow) -> Event {
    Event::default()
        .id(row.seq.to_string())
        .event(row.kind.as_str())
        .json_data(JobEvent::from(row))
        .unwrap_or_default()
}
