//! tuneserve's integration tests, as one test binary: it builds and links once
//! instead of once per file. Run one area with a filter, e.g.
//! `cargo test --release --test it service_` or `cargo test --release --test it model_parity`.
//! Tests of the store run on SQLite and on PostgreSQL (see [`test_db`]).

mod fixtures;
mod integration_tools;
mod test_app;
mod test_db;

mod browser;
mod cli;
mod cli_train;
mod cluster_bench;
mod contract;
mod contract_fuzz;
mod data_dataset;
mod integrations_mlflow;
mod integrations_webhooks;
mod lora_parity;
mod lora_serving;
mod model_batching;
mod model_card;
mod model_grad;
mod model_int8;
mod model_io;
mod model_parity;
mod model_precision;
mod openapi;
mod openapi_tools;
mod processes;
mod protocol_inference;
mod protocol_openai;
mod readme_walkthrough;
mod service_api;
mod service_cluster;
mod service_connections;
mod service_crash;
mod service_devices;
mod service_disk_full;
mod service_e2e;
mod service_event_filters;
mod service_faults;
mod service_hardening;
mod service_limits;
mod service_logs;
mod service_lora;
mod service_nodes;
mod service_pg_outage;
mod service_queue;
mod service_retention;
mod store_contention;
mod store_copy;
mod train_loop;
mod train_parity;
