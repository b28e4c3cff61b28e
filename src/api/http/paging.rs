//! Paging of the lists (`/jobs`, `/datasets`, `/models`): `limit` and `after`
//! in, `data` and `has_more` out, one definition for all of them.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::ApiError;
use crate::store::StoreError;

/// A page of a list.
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
