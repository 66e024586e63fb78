//! The collector's integration tests: a real server on a random port, a fresh PostgreSQL
//! database per test (`sqlx::test`), real HTTP. One test binary keeps link times down.

// A failed unwrap is a failed test, helpers included.
#![allow(clippy::unwrap_used)]

mod alerts;
mod auth;
mod batch;
mod cli;
mod cli_commands;
mod console;
mod expectations;
mod health;
mod helpers;
mod incidents;
mod ingest;
mod lifecycle;
mod operate;
mod overdue;
mod properties;
mod readonly;
mod reads;
mod retention;
mod schema;
mod silences;
mod summaries;
mod summaries_alike;
mod validation;
mod watcher;
