//! OpenAI's fine-tuning API under `/v1`, so that the official `openai` SDKs
//! (and tools built on them) drive tuneserve: files, fine-tuning jobs, their
//! events and checkpoints, models. These are views, not a second service:
//! a file is a dataset (`ds-…`), a fine-tuning job is a job (`job-…`, the
//! same one `/jobs` and the dashboard show), a model is a model, and every
//! handler calls what the tuneserve routes call. What differs is the shape:
//! OpenAI's object names (`object`), Unix seconds, list objects
//! (`{"object": "list", "data", "has_more"}`, newest first, paged with
//! `after` and `limit`) and its field names, mapped onto tuneserve's in
//! [`jobs`].

pub(super) mod files;
pub(super) mod job_records;
pub(super) mod jobs;
pub(super) mod models;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::paging::PageParams;
use crate::api::ApiError;

/// Unix milliseconds as OpenAI's Unix seconds.
pub(super) fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

/// A page of an OpenAI list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items after this id (the last id of the previous page), newest
    /// first; from the newest when absent.
    pub after: Option<String>,
    /// At most this many items (1–100, default 20).
    pub limit: Option<i64>,
}

impl ListParams {
    /// The page size, checked as every list's is ([`PageParams::limit`]).
    pub fn limit(&self) -> Result<i64, ApiError> {
        self.page().limit()
    }

    /// A 422 naming `after` when the store did not know its id
    /// ([`PageParams::unknown_after`]).
    pub fn unknown_after(&self, e: crate::store::StoreError) -> ApiError {
        self.page().unknown_after(e)
    }

    fn page(&self) -> PageParams {
        PageParams {
            limit: self.limit,
            after: self.after.clone(),
        }
    }
}

/// Defines an OpenAI list object, `$name`, of `$item`s (`{"object": "list",
/// "data", "has_more"}`), and `$name::page`, which makes one out of rows
/// fetched with `limit + 1`.
macro_rules! list_type {
    ($(#[$doc:meta])* $name:ident of $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            /// Always `list`.
            pub object: &'static str,
            /// Up to `limit` items, newest first.
            pub data: Vec<$item>,
            /// More follow: pass the last item's id as `after`.
            pub has_more: bool,
        }

        impl $name {
            /// The page out of `rows` (fetched with `limit + 1`).
            pub fn page(mut rows: Vec<$item>, limit: i64) -> Self {
                let has_more = rows.len() as i64 > limit;
                rows.truncate(limit as usize);
                Self { object: "list", data: rows, has_more }
            }
        }
    };
}
pub(crate) use list_type;

/// What a deletion answers: the id, the object's kind and `deleted: true`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// The deleted object's id.
    pub id: String,
    /// Its kind: `file` or `model`.
    pub object: &'static str,
    /// Always true (a failed deletion is an error answer).
    pub deleted: bool,
}
