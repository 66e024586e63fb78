//! What an agent knows about the run it is doing.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::wire::RunTrigger;

/// The run key, the slot it was scheduled for, its parameters and a cancellation signal.
#[derive(Debug, Clone)]
pub struct RunContext {
    run_key: Uuid,
    agent_name: String,
    trigger: RunTrigger,
    scheduled_for: Option<DateTime<Utc>>,
    params: Map<String, Value>,
    cancel: CancellationToken,
}

impl RunContext {
    /// A manual run of `agent_name` with a fresh run key and no parameters.
    pub fn new(agent_name: impl Into<String>) -> Self {
        Self {
            run_key: Uuid::new_v4(),
            agent_name: agent_name.into(),
            trigger: RunTrigger::Manual,
            scheduled_for: None,
            params: Map::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// A run of the cron slot `at`.
    pub fn scheduled(mut self, at: DateTime<Utc>) -> Self {
        self.trigger = RunTrigger::Schedule;
        self.scheduled_for = Some(at);
        self
    }

    /// What started the run, when not what [`RunContext::new`] or [`RunContext::scheduled`]
    /// say (a backfilled slot: `Backfill`).
    pub fn with_trigger(mut self, trigger: RunTrigger) -> Self {
        self.trigger = trigger;
        self
    }

    pub fn with_params(mut self, params: Map<String, Value>) -> Self {
        self.params = params;
        self
    }

    pub fn with_run_key(mut self, run_key: Uuid) -> Self {
        self.run_key = run_key;
        self
    }

    /// Cancelling `parent` (shutdown) cancels this run too.
    pub fn with_parent_cancellation(mut self, parent: &CancellationToken) -> Self {
        self.cancel = parent.child_token();
        self
    }

    /// One attempt of this run: the same run, with a cancellation of its own that cancelling
    /// the run still fires. A timeout ends the attempt, not the run, which may try again.
    pub fn attempt(&self) -> Self {
        Self {
            cancel: self.cancel.child_token(),
            ..self.clone()
        }
    }

    /// The report's idempotency key: retried deliveries of this run are stored once.
    pub fn run_key(&self) -> Uuid {
        self.run_key
    }

    /// The name the run is reported under.
    pub fn agent_name(&self) -> &str {
        &self.agent_name
    }

    pub fn trigger(&self) -> RunTrigger {
        self.trigger
    }

    pub fn scheduled_for(&self) -> Option<DateTime<Utc>> {
        self.scheduled_for
    }

    /// The `params` table of the agent's schedule entry (and `--param` overrides).
    pub fn params(&self) -> &Map<String, Value> {
        &self.params
    }

    /// One parameter, converted: `Ok(None)` when absent, an error naming it when mistyped.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, crate::AgentError> {
        self.params
            .get(name)
            .map(|value| {
                serde_json::from_value(value.clone())
                    .map_err(|e| anyhow::anyhow!("parameter `{name}`: {e}"))
            })
            .transpose()
    }

    /// Fires when the run times out or the scheduler shuts down.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}
