//! The `Agent` trait and the registry that `register_agent!` fills at link time.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::context::RunContext;
use crate::wire::Metrics;

/// What an agent's run returns: its metrics, or why it failed.
pub type RunResult = Result<Metrics, AgentError>;

/// Any error; its message (with its chain of causes) becomes the failed run's `error`.
pub type AgentError = anyhow::Error;

/// One kind of scheduled work. Implementations must be cheap to share: the scheduler holds one
/// instance per agent and may run it concurrently.
#[async_trait::async_trait]
pub trait Agent: Send + Sync + 'static {
    /// Unique; the `agent_name` its runs are stored under (1–100 of `[A-Za-z0-9_.-]`).
    fn name(&self) -> &'static str;

    /// Cron expression (5 or 6 fields, UTC) used when the schedule file has no entry.
    fn default_schedule(&self) -> Option<&'static str> {
        None
    }

    /// The metric names it reports, for documentation and `scheduler list`.
    fn metric_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Does the work. Watch `ctx.cancelled()` in long runs: it fires on timeout and shutdown.
    async fn run(&self, ctx: &RunContext) -> RunResult;
}

/// One `register_agent!` entry: how to make the agent.
pub struct AgentRegistration {
    make: fn() -> Box<dyn Agent>,
}

impl AgentRegistration {
    #[doc(hidden)]
    pub const fn new(make: fn() -> Box<dyn Agent>) -> Self {
        Self { make }
    }
}

inventory::collect!(AgentRegistration);

/// Registers an agent so the scheduler finds it by name:
/// `register_agent!(Hello);` or `register_agent!(Probe::default());`.
#[macro_export]
macro_rules! register_agent {
    ($agent:expr) => {
        $crate::inventory::submit! {
            $crate::AgentRegistration::new(|| ::std::boxed::Box::new($agent))
        }
    };
}

/// No agent has this name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoSuchAgent {
    pub name: String,
    pub known: Vec<String>,
}

impl std::fmt::Display for NoSuchAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no agent named `{}`; known agents: ", self.name)?;
        if self.known.is_empty() {
            f.write_str("none (is the agent crate referenced from the scheduler?)")
        } else {
            f.write_str(&self.known.join(", "))
        }
    }
}

impl std::error::Error for NoSuchAgent {}

/// Two registered agents share a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateAgent(pub String);

impl std::fmt::Display for DuplicateAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "two agents are registered as `{}`", self.0)
    }
}

impl std::error::Error for DuplicateAgent {}

/// Agents by name.
#[derive(Clone, Default)]
pub struct Registry {
    agents: BTreeMap<String, Arc<dyn Agent>>,
}

impl Registry {
    /// Every agent registered with `register_agent!` in the linked crates.
    pub fn from_inventory() -> Result<Self, DuplicateAgent> {
        Self::from_agents(
            inventory::iter::<AgentRegistration>
                .into_iter()
                .map(|r| Arc::from((r.make)())),
        )
    }

    pub fn from_agents(
        agents: impl IntoIterator<Item = Arc<dyn Agent>>,
    ) -> Result<Self, DuplicateAgent> {
        let mut registry = Self::default();
        for agent in agents {
            let name = agent.name().to_owned();
            if registry.agents.insert(name.clone(), agent).is_some() {
                return Err(DuplicateAgent(name));
            }
        }
        Ok(registry)
    }

    pub fn get(&self, name: &str) -> Result<Arc<dyn Agent>, NoSuchAgent> {
        self.agents.get(name).cloned().ok_or_else(|| NoSuchAgent {
            name: name.to_owned(),
            known: self.agents.keys().cloned().collect(),
        })
    }

    /// Names in alphabetical order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Agent>> {
        self.agents.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);

    #[async_trait::async_trait]
    impl Agent for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn run(&self, _ctx: &RunContext) -> RunResult {
            Ok(Metrics::new())
        }
    }

    register_agent!(Named("registered_in_sdk_tests"));

    #[test]
    fn registered_agents_are_found_and_unknown_names_list_the_known() {
        let registry = Registry::from_inventory().unwrap();
        assert!(registry.get("registered_in_sdk_tests").is_ok());
        let err = registry.get("nope").err().unwrap();
        assert_eq!(err.known, ["registered_in_sdk_tests"]);
        assert_eq!(
            err.to_string(),
            "no agent named `nope`; known agents: registered_in_sdk_tests"
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err =
            Registry::from_agents([Arc::new(Named("a")) as Arc<dyn Agent>, Arc::new(Named("a"))])
                .err()
                .unwrap();
        assert_eq!(err, DuplicateAgent("a".into()));
    }
}
