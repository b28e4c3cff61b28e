//! Paging of the lists (`/jobs`, `/datasets`, `/models`): `limit` and `after`
//! in ([`PageParams`], or [`JobListParams`] for `/jobs`, which adds a status
//! filter), `data` and `has_more` out ([`page_type!`]), one definition for
//! all of them.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::ApiError;
use crate::store::StoreError;

/// The query of `GET /datasets` and `GET /models` (`/jobs` takes [`JobListParams`]).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// At most this many items (1–100, default 20).
    pub limit: Option<i64>,
    /// Items after this id (the last id of the previous page); from the start
    /// when absent.
    pub after: Option<String>,
}

/// `GET /jobs`'s query: a page of jobs, optionally of one status. (serde
/// cannot flatten [`PageParams`] into it: a flattened query reads its numbers
/// as strings, and refuses `deny_unknown_fields`.)
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    /// Only jobs in this status; an unknown one is a 422 that lists the
    /// known ones.
    #[param(value_type = Option<crate::store::JobStatus>)]
    pub status: Option<String>,
    /// At most this many jobs (1–100, default 20).
    pub limit: Option<i64>,
    /// Jobs submitted after this job id (the last id of the previous page);
    /// from the first when absent.
    pub after: Option<String>,
}

impl JobListParams {
    /// Its `limit` and `after`, checked and applied as for every other list.
    pub fn page(&self) -> PageParams {
        PageParams {
            limit: self.limit,
            after: self.after.clone(),
        }
    }
}

/// Defines a page of a list, `$name`, holding `$item`s: `data`, up to
/// `limit` of them in the list's order, and `has_more`.
macro_rules! page_type {
    ($(#[$doc:meta])* $name:ident of $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            /// Up to `limit` items, in the list's order.
            pub data: Vec<$item>,
            /// More follow: pass the last id as `after`.
            pub has_more: bool,
        }
    };
}
pub(crate) use page_type;

impl PageParams {
    /// The page size, checked.
    pub fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(20);
        match (1..=100).contains(&limit) {
            true => Ok(limit),
            false => Err(ApiError::invalid("limit", "must be between 1 and 100")),
        }
    }

    /// A 422 naming `after` when the store did not know its id.
    pub fn unknown_after(&self, e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { what, id } => {
                ApiError::invalid("after", format!("{what} `{id}` not found"))
            }
            other => other.into(),
        }
    }

    /// The page out of `rows` (fetched with `limit + 1`), and whether more
    /// follow.
    pub fn cut<T>(&self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let limit = self.limit.unwrap_or(20) as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        (rows, has_more)
    }
}
