//! Validated types: holding one means the value meets the wire contract's rules.

mod decimal;
mod run;

pub use decimal::canonical_decimal;
pub use run::{AgentName, MAX_FUTURE_SKEW, NewMetric, NewRun, StoredValue};
