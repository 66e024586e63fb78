//! End to end: the scheduler (the real binary, or its engine in process) delivering to a real
//! collector on a real PostgreSQL database (a fresh one per test).

// A failed unwrap is a failed test, helpers included.
#![allow(clippy::unwrap_used)]

mod claims;
mod commands;
mod delivery;
mod deployment;
mod docs;
mod engine;
mod env_file;
mod helpers;
mod operate;
mod process;
