//! What other nodes announce through the database: PostgreSQL's
//! `LISTEN`/`NOTIFY` (sent by the store at commit: a job queued, a model
//! promoted). They only wake what would otherwise poll, so a lost one
//! costs a poll interval, never correctness; SQLite has none.

use sqlx::postgres::PgListener;

use super::steps::channel;
use super::{Backend, Store, StoreError};

/// An announcement from some node (this one included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A job was queued: idle workers should look.
    JobQueued,
    /// A model was promoted (its id): it is the new `latest`.
    ModelAdded(String),
    /// The connection was lost and is being made again: announcements may
    /// have been missed meanwhile, so look at everything.
    Missed,
}

/// A subscription to [`Notice`]s, on its own connection.
pub struct Notices {
    listener: PgListener,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices").finish_non_exhaustive()
    }
}

impl Store {
    /// Subscribes to other nodes' announcements; `None` on SQLite, where
    /// there are no other nodes.
    pub async fn listen(&self) -> Result<Option<Notices>, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await?;
        listener
            .listen_all([channel::JOBS, channel::MODELS])
            .await?;
        Ok(Some(Notices { listener }))
    }
}

impl Notices {
    /// Waits for the next announcement; [`Notice::Missed`] when the connection dropped
    /// (the next call connects again).
    pub async fn recv(&mut self) -> Result<Notice, StoreError> {
        let Some(n) = self.listener.try_recv().await? else {
            return Ok(Notice::Missed);
        };
        Ok(match n.channel() {
            channel::MODELS => Notice::ModelAdded(n.payload().to_string()),
            _ => Notice::JobQueued,
        })
    }
}
