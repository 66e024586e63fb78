//! Validated types: holding one means the value meets the API's rules.

mod cursor;
mod decimal;
mod names;
mod new_expectation;
mod new_run;
mod new_start;

pub use cursor::Cursor;
pub use decimal::canonical_decimal;
pub use names::{AgentName, AgentPattern, MetricName, RoleName};
pub use new_expectation::{Cadence, NewExpectation, human};
pub use new_run::{MAX_FUTURE_SKEW, NewMetric, NewRun, StoredValue};
pub use new_start::{DEFAULT_DEADLINE, MAX_DEADLINE, NewStart};

/// The fields `errors` names, sorted: what the domain's tests compare.
#[cfg(test)]
fn error_fields(errors: &validator::ValidationErrors) -> Vec<String> {
    let mut fields: Vec<String> = errors
        .field_errors()
        .keys()
        .map(|k| k.to_string())
        .collect();
    fields.sort_unstable();
    fields
}
