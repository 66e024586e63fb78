//! Why a command stops before its work, and the exit status that says so: a refusal is raised
//! by the command line and by the service's start-up alike (`cli/`, `service.rs`), so it lives
//! below both.

use std::process::ExitCode;

/// The exit status of a command line that is wrong (sysexits' `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// The exit status of a setting or schedule file that is wrong (sysexits' `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Why a command stopped before its work, told apart by its exit status (README: the table of
/// exit statuses): every other error exits 1.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The command line: a bad argument (`--slot` not a slot, a job that is not in the file).
    #[error("{0}")]
    Usage(String),
    /// A variable or the schedule file: missing, invalid, contradicting another.
    #[error("{0}")]
    Config(String),
}

/// The exit status for `err`: [`EXIT_USAGE`], [`EXIT_CONFIG`], or 1.
pub fn exit_status(err: &anyhow::Error) -> ExitCode {
    match err.downcast_ref::<Refusal>() {
        Some(Refusal::Usage(_)) => ExitCode::from(EXIT_USAGE),
        Some(Refusal::Config(_)) => ExitCode::from(EXIT_CONFIG),
        None => ExitCode::FAILURE,
    }
}
