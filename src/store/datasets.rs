//! The `datasets` table.

use std::collections::BTreeMap;

use sqlx::types::Json;

use super::dialect::begin_write;
use super::text_enum::text_enum;
use super::{now_ms, with_pool, Store, StoreError};
use crate::data::DatasetFormat;

text_enum!(impl DatasetFormat);

/// A dataset as stored: uploaded or imported, its rows parsed and copied as JSONL.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DatasetRow {
    /// `ds-` and 16 hex digits.
    pub id: String,
    /// The name given at upload; `None` when none was.
    pub name: Option<String>,
    /// The format it was uploaded in.
    pub format: DatasetFormat,
    /// Number of examples.
    pub rows: i64,
    /// Class names, by label id.
    #[sqlx(json)]
    pub labels: Vec<String>,
    /// Examples per class name.
    #[sqlx(json)]
    pub label_counts: BTreeMap<String, i64>,
    /// The normalised JSONL copy, relative to the data folder.
    pub path: String,
    /// The Hub dataset repository it was imported from (`owner/name`, no
    /// revision); `None` for an upload.
    pub hub_repo: Option<String>,
    /// Upload time (Unix ms).
    pub created_at: i64,
}

/// What [`Store::insert_dataset`] records.
#[derive(Debug, Clone)]
pub struct NewDataset {
    /// `ds-` and 16 hex digits, made by the API.
    pub id: String,
    /// The name given at upload; `None` when none was.
    pub name: Option<String>,
    /// The format it was uploaded in.
    pub format: DatasetFormat,
    /// Number of examples.
    pub rows: i64,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// Examples per class.
    pub label_counts: BTreeMap<String, i64>,
    /// The normalised JSONL copy, relative to the data folder.
    pub path: String,
    /// The Hub dataset repository it was imported from (`owner/name`, no
    /// revision); `None` for an upload.
    pub hub_repo: Option<String>,
}

const COLUMNS: &str = "id, name, format, rows, labels, label_counts, path, hub_repo, created_at";

impl Store {
    /// Records a dataset whose normalised copy is already written; the row as stored
    /// (`created_at` now).
    pub async fn insert_dataset(&self, new: NewDataset) -> Result<DatasetRow, StoreError> {
        let sql = format!(
            "INSERT INTO datasets (id, name, format, rows, labels, label_counts, path, hub_repo, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        );
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            let row = sqlx::query_as(&sql)
                .bind(&new.id)
                .bind(&new.name)
                .bind(new.format)
                .bind(new.rows)
                .bind(Json(&new.labels))
                .bind(Json(&new.label_counts))
                .bind(&new.path)
                .bind(&new.hub_repo)
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    /// The dataset `id`; [`StoreError::NotFound`] when there is none.
    pub async fn get_dataset(&self, id: &str) -> Result<DatasetRow, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM datasets WHERE id = $1");
        let row: Option<DatasetRow> = with_pool!(self, |pool, Db| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound {
            what: "dataset",
            id: id.to_string(),
        })
    }

    /// Datasets, newest first, after dataset `after` (a page of at most `limit`).
    pub async fn list_datasets(
        &self,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<DatasetRow>, StoreError> {
        let before = self.seq_of("datasets", "dataset", after).await?;
        let before = before.unwrap_or(i64::MAX);
        let sql =
            format!("SELECT {COLUMNS} FROM datasets WHERE seq < $1 ORDER BY seq DESC LIMIT $2");
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(&sql)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        })
    }

    /// Deletes dataset `id`'s record (its file is the caller's);
    /// [`StoreError::Conflict`] while a job (of any status) uses it.
    pub async fn delete_dataset(&self, id: &str) -> Result<DatasetRow, StoreError> {
        let select = format!("SELECT {COLUMNS} FROM datasets WHERE id = $1");
        const USERS: &str =
            "SELECT id FROM jobs WHERE train_dataset = $1 OR eval_dataset = $1 ORDER BY seq";
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            let row: DatasetRow = sqlx::query_as(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    what: "dataset",
                    id: id.to_string(),
                })?;
            let users: Vec<String> = sqlx::query_scalar(USERS)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "dataset `{id}` is used by job(s) {}; delete those first",
                    users.join(", ")
                )));
            }
            sqlx::query("DELETE FROM datasets WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        })
    }
}
