//! `GET /jobs/{id}/events`: a job's log as JSON pages, or live as Server-Sent
//! Events with `Accept: text/event-stream` (resumable with `Last-Event-ID`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::ACCEPT;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::timestamp;
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json, Query};
use crate::store::EventRow;

/// A job log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEvent {
    /// Increasing id (also the SSE `id`).
    pub id: i64,
    /// The attempt it belongs to.
    pub attempt: i64,
    /// `info`, `warning` or `error`.
    pub level: String,
    /// `created`, `started`, `plan`, `step`, `eval`, `checkpoint`, `succeeded`, …
    pub kind: String,
    /// Human-readable text.
    pub message: String,
    /// Details.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// When (RFC 3339).
    pub created_at: String,
}

impl From<EventRow> for JobEvent {
    fn from(e: EventRow) -> Self {
        Self {
            id: e.seq,
            attempt: e.attempt,
            level: e.level.as_str().to_string(),
            kind: e.kind,
            message: e.message,
            data: e.data,
            created_at: timestamp(e.created_at),
        }
    }
}

/// A page of a job's log.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobEventList {
    /// Entries, oldest first.
    pub data: Vec<JobEvent>,
}

/// Log paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Entries after this event id.
    pub after: Option<i64>,
    /// At most this many (1–1000, default 1000).
    pub limit: Option<i64>,
}

/// The job's log; with `Accept: text/event-stream`, a live SSE stream that
/// ends once the job has finished.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "Job id"), EventParams),
    responses(
        (status = 200, description = "JSON page, or an SSE stream of JobEvent", body = JobEventList),
        (status = 404, body = ErrorBody),
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
        return Ok(Sse::new(event_stream(state, id, after))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let rows = state.store.list_events(&id, after, limit).await?;
    Ok(Json(JobEventList {
        data: rows.into_iter().map(Into::into).collect(),
    })
    .into_response())
}

fn event_stream(
    state: AppState,
    id: String,
    after: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = (state, id, after, Vec::<Event>::new().into_iter(), false);
    stream::unfold(
        start,
        |(state, id, mut after, mut pending, mut finished)| async move {
            loop {
                if let Some(event) = pending.next() {
                    return Some((Ok(event), (state, id, after, pending, finished)));
                }
                if finished || state.shutdown.is_cancelled() {
                    return None;
                }
                // Read the status first: events written before a terminal status are all seen.
                let done = match state.store.get_job(&id).await {
                    Ok(job) => job.status.is_terminal(),
                    Err(_) => true,
                };
                let rows = state
                    .store
                    .list_events(&id, after, 1000)
                    .await
                    .unwrap_or_default();
                if let Some(last) = rows.last() {
                    after = last.seq;
                }
                finished = done && rows.len() < 1000;
                let events: Vec<Event> = rows
                    .into_iter()
                    .map(|row| {
                        let kind = row.kind.clone();
                        let seq = row.seq;
                        Event::default()
                            .id(seq.to_string())
                            .event(kind)
                            .json_data(JobEvent::from(row))
                            .unwrap_or_default()
                    })
                    .collect();
                pending = events.into_iter();
                if pending.len() == 0 && !finished {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                        _ = state.shutdown.cancelled() => {}
                    }
                }
            }
        },
    )
}
