//! tuneserve: fine-tune GPT-2-family models for text classification and serve them.
//!
//! The crate is laid out by domain; each module owns one concern:
//!
//! * [`model`] — GPT-2 with a sequence-classification head in candle, its
//!   configuration, loading from local folders or the Hugging Face Hub, and export
//!   in Hugging Face's layout.
//! * [`data`] — labelled datasets (JSONL/CSV parsing and validation, label maps,
//!   seeded subsets, Hub splits), tokenization (GPT-2 byte-level BPE) and batching.
//! * [`infer`] — classifying texts with a loaded model.
//! * [`train`] — fine-tuning with the Hugging Face `Trainer`'s maths, checkpoints, resume.
//! * [`job`] — what a job is submitted with: the trainer's hyperparameters and
//!   the service's options (attempts, promotion, checkpoint retention).
//! * [`hub`] — the thin layer over `hf-hub` shared by models and datasets.
//! * [`api`] — the HTTP service (`tuneserve serve`): routes, errors, auth, OpenAPI.
//! * [`store`] — persistence on SQLite (one node) or PostgreSQL (many); the only
//!   module that speaks SQL.
//! * [`queue`] — the jobs table as a queue: claims, leases, workers on their own threads.
//! * [`integrations`] — what jobs tell the world outside: signed webhooks, MLflow runs.
//! * [`cluster`] — what makes nodes on one database one service: node identity and
//!   heartbeats, announcements from other nodes, `latest` followed across nodes.
//! * [`data_dir`] — the layout of the service's data folder.
//! * `atomic` — files and folders written all-or-nothing.
//! * [`fault`] — which failures may pass (retried) and which cannot (a job fails).
//! * [`simd`] — when the hand-written CPU kernels run, and [`simd::composed_ops`]
//!   to check the GPU's code path on a CPU.
//! * [`cli`] — the `tuneserve` command line; `main.rs` only calls into it.

pub mod api;
mod atomic;
pub mod cli;
pub(crate) mod cluster;
pub mod data;
pub mod data_dir;
pub mod fault;
pub(crate) mod host;
pub(crate) mod hub;
pub mod infer;
pub mod integrations;
pub mod job;
pub mod metric_names;
pub mod model;
pub(crate) mod queue;
pub mod simd;
pub mod store;
pub mod train;
