//! `collector`: serve (default), migrate, token, expect, grant-readonly. Settings come from the
//! environment (see `.env.example`); a missing or bad one stops start-up with one line.

use std::process::ExitCode;
use std::time::Duration;

use agent_sdk::wire::{ExpectationRequest, ExpectationSource};
use anyhow::Context;
use clap::{Parser, Subcommand};
use collector::auth::{Scope, TokenKeys};
use collector::config::{self, DatabaseConfig, SecretKey, ServeConfig};
use collector::domain::{AgentName, AgentPattern, NewExpectation, RoleName};
use collector::startup::{self, Application, Services};
use collector::store::{self, Store};
use collector::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "collector",
    version,
    about = "Stores agent runs and metrics in PostgreSQL and serves them over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default); applies pending migrations first.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print a bearer token signed with COLLECTOR_SECRET_KEY.
    Token {
        /// Who will use the token (a scheduler, a script), for logs.
        #[arg(long)]
        sub: String,
        /// What the token allows; repeat for both.
        #[arg(long = "scope", value_name = "ingest|read", default_value = "ingest")]
        scopes: Vec<Scope>,
        /// Limit the token to an agent, or to a prefix ending in `*`; repeatable.
        #[arg(long = "agent", value_name = "PATTERN")]
        agents: Vec<AgentPattern>,
        /// How long the token is valid (e.g. 30d, 12h).
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Declare what to expect of an agent (as PUT /agents/{name}/expectation does), or remove
    /// it with --delete; prints the stored expectation as JSON.
    Expect {
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
    },
    /// Run one pass of the watcher now (the service runs one every WATCH_EVERY, 10 s): expected slots judged,
    /// incidents opened and resolved; prints what it did and how long it took.
    Watch,
    /// Delete the runs and metric rows RETENTION_RUNS and RETENTION_METRICS no longer keep
    /// (the collector does it on its own every 10 s), or count them with --dry-run.
    Prune {
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the alerts file (ALERTS_FILE), or send a test message to one of its routes.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Create or update the dashboard's read-only role (password from WEBAPP_READONLY_PASSWORD).
    GrantReadonly {
        #[arg(long, default_value = "webapp_readonly", value_parser = RoleName::parse)]
        role: RoleName,
    },
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Read and check ALERTS_FILE: every problem on a line of its own.
    Check,
    /// Send a test message to the route named ROUTE.
    Test { route: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("collector: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(config::log_format()?);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => {
            let store = connect(&DatabaseConfig::from_env()?)?;
            startup::migrate_when_reachable(&store).await?;
            let latest = store
                .migrator()
                .iter()
                .map(|m| m.version)
                .max()
                .unwrap_or(0);
            tracing::info!(version = latest, "database schema is up to date");
            store.close().await;
            Ok(())
        }
        Command::Token {
            sub,
            scopes,
            agents,
            ttl,
        } => {
            let keys = TokenKeys::new(&SecretKey::from_env()?);
            let agents = (!agents.is_empty()).then_some(agents.as_slice());
            let token = keys
                .issue(&sub, &scopes, agents, ttl)
                .context("signing the token")?;
            println!("{token}");
            Ok(())
        }
        Command::Expect {
            name,
            cron,
            timezone,
            every,
            grace,
            delete,
        } => {
            let agent = AgentName::parse(name.as_str())
                .map_err(|e| anyhow::anyhow!("{name:?} is not an agent name: {e}"))?;
            let store = connect(&DatabaseConfig::from_env()?)?;
            startup::migrate_when_reachable(&store).await?;
            if delete {
                let removed = store.delete_expectation(&agent).await?;
                store.close().await;
                anyhow::ensure!(removed, "agent `{name}` has no expectation");
                println!("agent `{name}` is no longer expected");
                return Ok(());
            }
            let request = ExpectationRequest {
                cron,
                timezone,
                every,
                grace,
            };
            let expectation = NewExpectation::parse(agent, request, ExpectationSource::Api)
                .map_err(|errors| {
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
            let (stored, _) = store
                .put_expectation(&expectation, chrono::Utc::now())
                .await?;
            store.close().await;
            println!("{}", serde_json::to_string_pretty(&stored)?);
            Ok(())
        }
        Command::Watch => {
            let rules = config::watch_rules()?;
            let store = connect(&DatabaseConfig::from_env()?)?;
            startup::migrate_when_reachable(&store).await?;
            let started = std::time::Instant::now();
            let watched = collector::watch::Watcher::new(store.clone(), rules)
                .pass(chrono::Utc::now())
                .await;
            let elapsed = started.elapsed();
            store.close().await;
            match watched? {
                Some(w) => println!(
                    "watch: {} slots missed, {} late, {} incidents opened, {} resolved in {} ms",
                    w.missed,
                    w.late,
                    w.opened,
                    w.resolved,
                    elapsed.as_millis()
                ),
                None => println!("watch: another collector is running its pass; nothing done"),
            }
            Ok(())
        }
        Command::Prune { dry_run } => {
            let retention = config::retention()?;
            anyhow::ensure!(
                !retention.is_keep_all(),
                "RETENTION_METRICS and RETENTION_RUNS are unset: everything is kept"
            );
            let store = connect(&DatabaseConfig::from_env()?)?;
            startup::migrate_when_reachable(&store).await?;
            let now = chrono::Utc::now();
            let result = if dry_run {
                store.prunable(retention, now).await
            } else {
                store
                    .prune(retention, now, usize::MAX, store::PRUNE_BATCH)
                    .await
            };
            store.close().await;
            let pruned = result?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!(
                "{verb} {} runs (with their metrics) and {} metric rows",
                pruned.runs, pruned.metrics
            );
            Ok(())
        }
        Command::Alerts { command } => {
            let alerts = config::alerts()?.ok_or_else(|| {
                anyhow::anyhow!("ALERTS_FILE is not set: there is no alerts file to use")
            })?;
            match command {
                AlertsCommand::Check => {
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
                AlertsCommand::Test { route } => {
                    let status = alerts
                        .send_test(&route)
                        .await
                        .map_err(|e| anyhow::anyhow!("route {route}: {e}"))?;
                    println!("route {route}: test message delivered ({status})");
                }
            }
            Ok(())
        }
        Command::GrantReadonly { role } => {
            let store = connect(&DatabaseConfig::from_env()?)?;
            let password = config::readonly_password()?;
            store::grant_readonly(&store, &role, &password)
                .await
                .with_context(|| format!("granting read-only access to {role}"))?;
            tracing::info!(%role, "read-only role ready: CONNECT, USAGE and SELECT, now and on future tables");
            store.close().await;
            Ok(())
        }
    }
}

fn connect(config: &DatabaseConfig) -> anyhow::Result<Store> {
    Store::connect_lazy(config.url(), config.pool()).context("DATABASE_URL is invalid")
}

async fn serve() -> anyhow::Result<()> {
    let config = ServeConfig::from_env()?;
    let store = connect(&config.database)?;
    startup::migrate_when_reachable(&store).await?;
    let services = Services {
        store: store.clone(),
        tokens: TokenKeys::new(&config.secret_key),
        writers: config.database.writers(),
        watch: config.watch,
        alerts: config.alerts,
        retention: config.retention,
    };
    let app = Application::bind(config.addr, services, &config.http).await?;
    tracing::info!(addr = %app.local_addr()?, writers = app.ingest().writers(), "collector listening");
    app.run_until(async {
        agent_sdk::shutdown::signal().await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    })
    .await
    .context("serving HTTP")?;
    store.close().await;
    tracing::info!("collector stopped");
    Ok(())
}
