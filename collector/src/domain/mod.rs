//! Validated types: holding one means the value meets the wire contract's rules.

mod run;

pub use run::{AgentName, MAX_FUTURE_SKEW, NewMetric, NewRun, StoredValue};
