//! Steps several statements share — check (and lock) a fence, lock a job,
//! notify other nodes, run a fenced write — written once and implemented for
//! both backends by `steps!`, so each runs on concrete sqlx types.

use std::future::Future;

use sqlx::{Database, Pool, Postgres, Sqlite};

use super::dialect::{begin_write, Dialect};
use super::{Fence, JobStatus, StoreError};

/// A statement with its arguments, on backend `DB`.
pub(super) type Statement<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// What notifications say (see [`super::Notice`]).
pub(super) mod channel {
    /// A job was queued (submitted, requeued by the rescuer, handed back).
    pub const JOBS: &str = "tuneserve_jobs";
    /// A model was promoted (at registration or by hand); the payload is its id.
    pub const MODELS: &str = "tuneserve_models";
}

/// The shared steps, on one backend.
pub(super) trait Steps: Dialect {
    /// Whether `fence` holds, locking the job until the transaction ends.
    fn fence_held<'a>(
        conn: &'a mut Self::Connection,
        fence: &'a Fence,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a;

    /// Job `id`'s status, locking it until the transaction ends; `None` when
    /// there is no such job.
    fn lock_job<'a>(
        conn: &'a mut Self::Connection,
        id: &'a str,
    ) -> impl Future<Output = Result<Option<JobStatus>, StoreError>> + Send + 'a;

    /// Serialises promotions until the transaction ends (see
    /// [`Dialect::LOCK_PROMOTIONS`]).
    fn lock_promotions(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + '_;

    /// Tells other nodes on `channel` (at commit); nothing on SQLite.
    fn notify<'a>(
        conn: &'a mut Self::Connection,
        channel: &'static str,
        payload: &'a str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Runs `statement` (built with [`Fence::bind`]) in a write transaction
    /// while `fence` holds; `true` when it changed exactly one row.
    fn fenced_write<'a, 'q: 'a>(
        pool: &'a Pool<Self>,
        fence: &'a Fence,
        statement: Statement<'q, Self>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send + 'a;
}

macro_rules! steps {
    ($($db:ty),*) => {$(
        impl Steps for $db {
            async fn fence_held<'a>(
                conn: &'a mut <$db as Database>::Connection,
                fence: &'a Fence,
            ) -> Result<bool, StoreError> {
                let held = fence.bind::<$db>(<$db>::FENCE_HELD).fetch_optional(conn).await?;
                Ok(held.is_some())
            }

            async fn lock_job<'a>(
                conn: &'a mut <$db as Database>::Connection,
                id: &'a str,
            ) -> Result<Option<JobStatus>, StoreError> {
                Ok(sqlx::query_scalar(<$db>::LOCK_JOB).bind(id).fetch_optional(conn).await?)
            }

            async fn lock_promotions(
                conn: &mut <$db as Database>::Connection,
            ) -> Result<(), StoreError> {
                if let Some(sql) = <$db>::LOCK_PROMOTIONS {
                    sqlx::query(sql).execute(conn).await?;
                }
                Ok(())
            }

            async fn notify<'a>(
                conn: &'a mut <$db as Database>::Connection,
                channel: &'static str,
                payload: &'a str,
            ) -> Result<(), StoreError> {
                if let Some(sql) = <$db>::NOTIFY {
                    sqlx::query(sql).bind(channel).bind(payload).execute(conn).await?;
                }
                Ok(())
            }

            async fn fenced_write<'a, 'q: 'a>(
                pool: &'a Pool<$db>,
                fence: &'a Fence,
                statement: Statement<'q, $db>,
            ) -> Result<bool, StoreError> {
                let mut tx = begin_write(pool).await?;
                if !Self::fence_held(&mut tx, fence).await? {
                    return Ok(false);
                }
                let done = statement.execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok(done == 1)
            }
        }
    )*};
}

steps!(Sqlite, Postgres);
