//! `collector expect`: an agent's expectation declared (as `PUT /agents/{name}/expectation`
//! does) or removed, through the store as the API writes it.

use agent_sdk::wire::{ExpectationRequest, ExpectationSource};

use crate::domain::{AgentName, NewExpectation};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The agent's name.
    name: String,
    /// A cron expression (5 or 6 fields).
    #[arg(long, conflicts_with = "every")]
    cron: Option<String>,
    /// The cron expression's IANA time zone (UTC when absent).
    #[arg(long, requires = "cron")]
    timezone: Option<String>,
    /// A run at least this often (e.g. 1h).
    #[arg(long)]
    every: Option<String>,
    /// How late a run may start before its slot counts as missed (default 5m).
    #[arg(long)]
    grace: Option<String>,
    /// Remove the agent's expectation instead.
    #[arg(long, conflicts_with_all = ["cron", "every", "grace", "timezone"])]
    delete: bool,
}

pub(super) async fn run(args: Args) -> anyhow::Result<()> {
    let name = args.name;
    let agent = AgentName::parse(name.as_str())
        .map_err(|e| anyhow::anyhow!("{name:?} is not an agent name: {e}"))?;
    let store = super::migrated_store().await?;
    if args.delete {
        let removed = store.delete_expectation(&agent).await;
        store.close().await;
        anyhow::ensure!(removed?, "agent `{name}` has no expectation");
        println!("agent `{name}` is no longer expected");
        return Ok(());
    }
    let request = ExpectationRequest {
        cron: args.cron,
        timezone: args.timezone,
        every: args.every,
        grace: args.grace,
    };
    let expectation =
        NewExpectation::parse(agent, request, ExpectationSource::Api).map_err(|errors| {
            let mut lines: Vec<String> = errors
                .field_errors()
                .into_iter()
                .flat_map(|(field, errors)| {
                    errors.iter().map(move |e| {
                        format!("{field}: {}", e.message.as_deref().unwrap_or(&e.code))
                    })
                })
                .collect();
            lines.sort();
            anyhow::anyhow!("{}", lines.join("; "))
        })?;
    let stored = store
        .put_expectation(&expectation, chrono::Utc::now())
        .await;
    store.close().await;
    println!("{}", serde_json::to_string_pretty(&stored?.0)?);
    Ok(())
}
