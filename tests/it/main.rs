//! tuneserve's integration tests, as one test binary: it builds and links once
//! instead of once per file. Run one area with a filter, e.g.
//! `cargo test --release --test it service_` or `cargo test --release --test it model_parity`.

mod common;
mod support;

mod browser;
mod cli;
mod cli_train;
mod contract;
mod contract_fuzz;
mod data_dataset;
mod model_batching;
mod model_grad;
mod model_io;
mod model_parity;
mod openapi;
mod service_api;
mod service_connections;
mod service_crash;
mod service_e2e;
mod service_hardening;
mod service_limits;
mod service_logs;
mod service_queue;
mod service_retention;
mod train_loop;
mod train_parity;
