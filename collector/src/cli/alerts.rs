//! `collector alerts check|test`: the alerts file checked, or a test message sent to a route.

use crate::config;

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Read and check ALERTS_FILE: every problem on a line of its own.
    Check,
    /// Send a test message to the route named ROUTE.
    Test { route: String },
}

pub(super) async fn run(command: Command) -> anyhow::Result<()> {
    let alerts = config::alerts()?
        .ok_or_else(|| anyhow::anyhow!("ALERTS_FILE is not set: there is no alerts file to use"))?;
    match command {
        Command::Check => {
            for route in alerts.routes() {
                println!(
                    "route {}: {:?} to {}",
                    route.name,
                    route.kind,
                    route.url.host_str().unwrap_or("?")
                );
            }
            println!(
                "{} route(s): the alerts file is valid",
                alerts.routes().len()
            );
        }
        Command::Test { route } => {
            let status = alerts
                .send_test(&route)
                .await
                .map_err(|e| anyhow::anyhow!("route {route}: {e}"))?;
            println!("route {route}: test message delivered ({status})");
        }
    }
    Ok(())
}
