//! The collector: the platform's only database writer. It ingests run reports over HTTP and
//! serves runs, metrics and summaries. `main.rs` is the CLI; everything else lives here so that
//! tests can start the real server.

pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod startup;
pub mod store;
pub mod telemetry;
