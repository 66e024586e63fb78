//! The scheduler: runs registered agents on cron schedules and delivers every report to the
//! collector. It never touches the database.

pub use agent_sdk::cron;
pub mod cli;
pub mod engine;
pub mod publish;
pub mod refusal;
pub mod schedule;
pub mod service;
pub mod settings;
pub mod status;
pub mod token_expiry;

// Every agent crate. A crate nothing references is dropped by the linker, and its
// `register_agent!` with it; `make new-agent` adds a line here (and a test checks that every
// crate under agents/ is registered).
use command as _;
use hello as _;
use http_probe as _;

/// Every agent linked into this binary.
pub fn registry() -> Result<agent_sdk::Registry, agent_sdk::DuplicateAgent> {
    agent_sdk::Registry::from_inventory()
}
