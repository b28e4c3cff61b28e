//! The `datasets` table.

use std::collections::BTreeMap;

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{from_json, now_ms, Store, StoreError};

/// An uploaded dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRow {
    /// Its id (`ds-…`).
    pub id: String,
    /// An optional name given at upload.
    pub name: Option<String>,
    /// `jsonl` or `csv`, as uploaded.
    pub format: String,
    /// Number of examples.
    pub rows: i64,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// Examples per class.
    pub label_counts: BTreeMap<String, i64>,
    /// The normalised JSONL copy on disk.
    pub path: String,
    /// Upload time (Unix ms).
    pub created_at: i64,
}

/// What [`Store::insert_dataset`] records.
#[derive(Debug, Clone)]
pub struct NewDataset {
    /// Its id.
    pub id: String,
    /// An optional name.
    pub name: Option<String>,
    /// `jsonl` or `csv`.
    pub format: String,
    /// Number of examples.
    pub rows: i64,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// Examples per class.
    pub label_counts: BTreeMap<String, i64>,
    /// The normalised copy on disk.
    pub path: String,
}

const COLUMNS: &str = "id, name, format, rows, labels, label_counts, path, created_at";

fn dataset(row: &SqliteRow) -> Result<DatasetRow, StoreError> {
    Ok(DatasetRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        format: row.try_get("format")?,
        rows: row.try_get("rows")?,
        labels: from_json(row.try_get("labels")?)?,
        label_counts: from_json(row.try_get("label_counts")?)?,
        path: row.try_get("path")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Records an uploaded dataset.
    pub async fn insert_dataset(&self, new: NewDataset) -> Result<DatasetRow, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO datasets (id, name, format, rows, labels, label_counts, path, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        ))
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.format)
        .bind(new.rows)
        .bind(serde_json::to_string(&new.labels)?)
        .bind(serde_json::to_string(&new.label_counts)?)
        .bind(&new.path)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let out = dataset(&row)?;
        tx.commit().await?;
        Ok(out)
    }

    /// One dataset.
    pub async fn get_dataset(&self, id: &str) -> Result<DatasetRow, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM datasets WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "dataset",
                id: id.to_string(),
            })?;
        dataset(&row)
    }

    /// Datasets, newest first.
    pub async fn list_datasets(&self, limit: i64) -> Result<Vec<DatasetRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM datasets ORDER BY seq DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(dataset)
        .collect()
    }
}
