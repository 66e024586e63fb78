//! `collector token`: a bearer token signed with `COLLECTOR_SECRET_KEY`, printed.

use std::time::Duration;

use anyhow::Context;

use crate::auth::{Scope, TokenKeys};
use crate::config;
use crate::domain::AgentPattern;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Who will use the token (a scheduler, a script), for logs.
    #[arg(long)]
    sub: String,
    /// What the token allows; repeat for several.
    #[arg(
        long = "scope",
        value_name = "ingest|read|operate",
        default_value = "ingest"
    )]
    scopes: Vec<Scope>,
    /// Limit the token to an agent, or to a prefix ending in `*`; repeatable.
    #[arg(long = "agent", value_name = "PATTERN")]
    agents: Vec<AgentPattern>,
    /// How long the token is valid (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let keys = TokenKeys::new(&config::secret_key()?);
    let agents = (!args.agents.is_empty()).then_some(args.agents.as_slice());
    let token = keys
        .issue(&args.sub, &args.scopes, agents, args.ttl)
        .context("signing the token")?;
    println!("{token}");
    Ok(())
}
