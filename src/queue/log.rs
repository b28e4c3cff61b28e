//! A job's log: entries go to the database (for replay, and for readers in
//! other processes) and, as they are written, to a broadcast channel that live
//! readers (the SSE stream of `/jobs/{id}/events`) follow without polling.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::store::{EventRow, Fence, NewEvent, Store, StoreError};

/// The announcement that a job's log has a new entry (readers fetch it from
/// the store, in order).
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    /// The job whose log grew; a reader following another job ignores the announcement.
    pub job_id: String,
}

/// Writes job log entries and announces them to live readers.
#[derive(Debug, Clone)]
pub struct JobLog {
    store: Store,
    live: broadcast::Sender<Arc<LoggedEvent>>,
}

/// Entries a slow live reader may fall behind by before it must catch up
/// from the database.
const LIVE_CAPACITY: usize = 1024;

impl JobLog {
    /// A log over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            live: broadcast::channel(LIVE_CAPACITY).0,
        }
    }

    /// Appends `event` to `job_id`'s log (fenced by `fence` when a worker
    /// writes) and announces it; `None` when the fence no longer holds or the
    /// job does not exist.
    pub async fn write(
        &self,
        job_id: &str,
        fence: Option<&Fence>,
        event: NewEvent,
    ) -> Result<Option<EventRow>, StoreError> {
        let row = self.store.add_event(job_id, fence, event).await?;
        if row.is_some() {
            // No receiver is not an error: nobody is watching this job live.
            let _ = self.live.send(Arc::new(LoggedEvent {
                job_id: job_id.to_string(),
            }));
        }
        Ok(row)
    }

    /// Every entry written from now on, of every job.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LoggedEvent>> {
        self.live.subscribe()
    }
}
