//! The agent platform's SDK.
//!
//! - [`wire`]: the collector's JSON contract, the one definition of every type that crosses the
//!   HTTP boundary. Always available; pulls no HTTP client, so the collector uses it too.
//! - `runtime` (default feature): the [`Agent`] trait, [`register_agent!`], [`RunContext`] and
//!   [`execute`], which runs an agent and turns any outcome into a [`wire::RunReport`].
//! - `client` feature: [`client::Deliverer`], which delivers reports to the collector with
//!   retries and keeps undelivered ones in a disk spool.
//! - `cron` feature: [`cron::CronSchedule`], cron expressions in an IANA time zone, correct
//!   across DST changes (the scheduler's schedules, the collector's expectations).
//! - `telemetry` feature: logging, Prometheus set-up, the shutdown signal and settings read
//!   from the environment ([`env`]), shared by the platform's services.
//!
//! An agent crate:
//!
//! ```ignore
//! use agent_sdk::{Agent, RunContext, RunResult, async_trait, register_agent, wire::Metrics};
//!
//! struct Hello;
//!
//! #[async_trait]
//! impl Agent for Hello {
//!     fn name(&self) -> &'static str { "hello" }
//!     async fn run(&self, _ctx: &RunContext) -> RunResult {
//!         Ok(Metrics::from([("greetings", 1)]))
//!     }
//! }
//!
//! register_agent!(Hello);
//! ```

pub mod wire;

/// `err`'s message followed by each of its causes ("error sending request: connection
/// refused"): what a log line or a retry's reason needs from an HTTP client's error.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(feature = "runtime")]
mod agent;
#[cfg(feature = "runtime")]
mod context;
#[cfg(feature = "runtime")]
mod execute;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "cron")]
pub mod cron;
#[cfg(feature = "client")]
pub mod fs;

#[cfg(feature = "telemetry")]
pub mod env;
#[cfg(feature = "telemetry")]
pub mod shutdown;
#[cfg(feature = "telemetry")]
pub mod telemetry;

#[cfg(feature = "runtime")]
pub use agent::{
    Agent, AgentError, AgentRegistration, DuplicateAgent, NoSuchAgent, Registry, RunResult,
};
#[cfg(feature = "runtime")]
pub use context::RunContext;
#[cfg(feature = "runtime")]
pub use execute::{CANCEL_GRACE, execute, hostname};

// Re-exported so that agent crates need no direct dependency on them (and their versions match).
#[cfg(feature = "runtime")]
pub use anyhow;
#[cfg(feature = "runtime")]
pub use async_trait::async_trait;
#[doc(hidden)]
#[cfg(feature = "runtime")]
pub use inventory;
