//! `hello`: the smallest real agent. Copy this crate to start a new one (`make new-agent`).

use agent_sdk::wire::Metrics;
use agent_sdk::{Agent, RunContext, RunResult, async_trait, register_agent};

pub struct Hello;

#[async_trait]
impl Agent for Hello {
    fn name(&self) -> &'static str {
        "hello"
    }

    fn default_schedule(&self) -> Option<&'static str> {
        Some("0 * * * * *") // every minute, at second 0
    }

    fn metric_names(&self) -> &'static [&'static str] {
        &["greeting", "greeting_chars"]
    }

    async fn run(&self, ctx: &RunContext) -> RunResult {
        let name: String = ctx.param("name")?.unwrap_or_else(|| "world".to_owned());
        let greeting = format!("hello, {name}");
        let mut metrics = Metrics::new();
        metrics
            .set("greeting_chars", greeting.chars().count())
            .set("greeting", greeting);
        Ok(metrics)
    }
}

register_agent!(Hello);

#[cfg(test)]
mod tests {
    use super::*;
    use agent_sdk::wire::MetricValue;

    #[tokio::test]
    async fn greets_the_configured_name() {
        let params = serde_json::json!({"name": "Ada"})
            .as_object()
            .cloned()
            .unwrap();
        let metrics = Hello
            .run(&RunContext::new("hello").with_params(params))
            .await
            .unwrap();
        assert_eq!(
            metrics.get("greeting"),
            Some(&MetricValue::Text("hello, Ada".into()))
        );
        assert_eq!(metrics.get("greeting_chars"), Some(&MetricValue::from(10)));
    }
}
