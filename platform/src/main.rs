//! `platform`: the whole platform on this machine, with one command and no infrastructure.
//!
//! The collector serves on a SQLite file (`data/dev.db`), the scheduler runs the example agents
//! on short schedules and delivers their reports to it over HTTP, as in production; a line is
//! printed for every run stored. Ctrl-C (or SIGTERM) stops the scheduler first (running agents
//! finish and deliver), then the collector: nothing is lost, and a report that could not be
//! delivered waits in `data/spool` for the next start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use agent_sdk::client::Spool;
use agent_sdk::telemetry::LogFormat;
use anyhow::Context;
use clap::Parser;
use collector::auth::{Scope, TokenKeys};
use collector::config::{DatabaseConfig, HttpConfig, SecretKey};
use collector::ingest::StoredRun;
use collector::startup::{Application, Services};
use collector::store::{PoolSettings, Store};
use scheduler::schedule::{self, Job};
use scheduler::settings::Settings;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "platform",
    version,
    about = "Runs the collector (on SQLite) and the scheduler with the example agents, on this machine"
)]
struct Cli {
    /// Holds the database, the generated secret and the scheduler's spool.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// The database; defaults to the SQLite file `<data-dir>/dev.db`. A postgres:// URL works too.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8000")]
    collector_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8001")]
    scheduler_addr: SocketAddr,
    /// A schedule file to run instead of the built-in one (the example agents every few seconds).
    #[arg(long)]
    schedules: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings only: stdout carries the URLs and one line per stored run. RUST_LOG=info for more.
    agent_sdk::telemetry::init_logging(LogFormat::Text, "warn");
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("platform: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    let keys = TokenKeys::new(&local_secret(&cli.data_dir.join("secret"))?);

    // The collector: migrated, bound, serving until told to stop.
    let database_url = cli
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", cli.data_dir.join("dev.db").display()));
    let shown_database = without_password(&database_url);
    // The binary's checks, on the platform's settings: a handful of agents on one machine, so
    // a small pool and one write transaction at a time.
    let database = DatabaseConfig::new(
        database_url.clone(),
        PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
        },
        1,
    )
    .context("--database-url")?;
    let store = Store::connect_lazy(database.url(), database.pool())
        .with_context(|| format!("opening {shown_database}"))?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {shown_database}"))?;
    let services = Services {
        store: store.clone(),
        tokens: keys.clone(),
        writers: database.writers(),
        watch: collector::watch::WatchRules::default(),
        alerts: None,
        retention: collector::store::Retention::default(),
    };
    let app = Application::bind(cli.collector_addr, services, &HttpConfig::default())
        .await
        .context("is a collector already running? (--collector-addr picks another address)")?;
    let stored_runs = app.ingest().subscribe();
    let collector_url = format!("http://{}", app.local_addr()?);
    let stop_collector = CancellationToken::new();
    let collector = tokio::spawn(app.run_until(stop_collector.clone().cancelled_owned()));

    let month = Duration::from_secs(30 * 24 * 3600);
    let token = keys
        .issue("dev", &[Scope::Ingest, Scope::Read], None, month)
        .context("signing the dev token")?;
    // The console's sign-in: read only, as an operator's own token would be.
    let console_token = keys
        .issue("dev-console", &[Scope::Read], None, month)
        .context("signing the console's token")?;
    let scheduler_token = keys
        .issue("dev-scheduler", &[Scope::Ingest], None, month)
        .context("signing the scheduler's token")?;

    // The scheduler: the same code as `scheduler serve`, delivering over HTTP.
    let jobs = load_jobs(cli.schedules.as_deref(), &collector_url)?;
    let settings = Settings {
        collector_url: collector_url.clone(),
        collector_token: Some(scheduler_token),
        collector_token_file: None,
        schedules_file: cli.schedules.clone().unwrap_or_default(),
        spool_dir: cli.data_dir.join("spool"),
        addr: cli.scheduler_addr,
        max_concurrent_runs: 4,
        shutdown_grace: Duration::from_secs(10),
        trigger_token: Some(token.clone()),
        high_availability: false,
        deadline_grace: Duration::from_secs(60),
        log_format: LogFormat::Text,
    };
    let job_names: Vec<String> = jobs
        .iter()
        .filter(|job| job.enabled)
        .map(|job| format!("{} ({})", job.name, job.cron.expression()))
        .collect();
    let stop_scheduler = CancellationToken::new();
    let mut scheduler = tokio::spawn({
        let settings = settings.clone();
        let stop = stop_scheduler.clone();
        async move { scheduler::service::serve(&settings, jobs, false, stop.cancelled_owned()).await }
    });

    print_banner(
        &collector_url,
        &settings,
        &shown_database,
        &token,
        &console_token,
        &job_names,
    );
    let printer = tokio::spawn(print_stored_runs(stored_runs));

    // Until Ctrl-C, or the scheduler failing to start (its address taken, say).
    let scheduler_result = tokio::select! {
        () = agent_sdk::shutdown::signal() => {
            println!("\nstopping: running agents finish and deliver…");
            stop_scheduler.cancel();
            scheduler.await
        }
        finished = &mut scheduler => finished,
    };
    stop_collector.cancel();
    let served = collector.await;
    store.close().await;
    // The collector has stopped, and its ingest service with it: the announcements end, and the
    // printer prints what is left and returns.
    if tokio::time::timeout(Duration::from_secs(2), printer)
        .await
        .is_err()
    {
        tracing::warn!("stored-run lines may be missing at the end");
    }

    scheduler_result
        .context("the scheduler task failed")?
        .context("the scheduler stopped (--scheduler-addr picks another address)")?;
    served
        .context("the collector task failed")?
        .context("serving HTTP")?;
    let waiting = Spool::open(&settings.spool_dir)
        .context("opening the spool")?
        .depth()
        .await
        .unwrap_or(0);
    if waiting > 0 {
        println!(
            "stopped. {waiting} reports wait in {} and are delivered at the next start.",
            settings.spool_dir.display()
        );
    } else {
        println!("stopped. Every run is stored in {shown_database}.");
    }
    Ok(())
}

/// The jobs of `file` (which must exist), or the built-in dev schedules.
fn load_jobs(file: Option<&Path>, collector_url: &str) -> anyhow::Result<Vec<Job>> {
    let (origin, text) = match file {
        Some(file) => (
            file.display().to_string(),
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
        ),
        None => (
            "the built-in dev schedules".to_owned(),
            dev_schedules(&format!("{collector_url}/health")),
        ),
    };
    schedule::parse(&origin, Some(&text), &scheduler::registry()?)
        .map_err(|errors| anyhow::anyhow!("{errors}"))
}

/// `url` with its password, if any, masked: it is printed.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The signing secret of this machine's collector: read from `path`, or generated there (only
/// its owner may read it) on first start, so tokens stay valid across restarts.
fn local_secret(path: &Path) -> anyhow::Result<SecretKey> {
    let secret = match std::fs::read_to_string(path) {
        Ok(secret) => secret.trim().to_owned(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            // Two v4 UUIDs: 244 random bits from the operating system's generator.
            let secret = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            write_private(path, &secret).with_context(|| format!("writing {}", path.display()))?;
            secret
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    SecretKey::parse(secret).map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

/// The example agents every few seconds: `hello`, the probe watching the collector itself, and
/// the Python agent through `command` where `python3` is installed.
fn dev_schedules(health_url: &str) -> String {
    let python = python_example();
    let mut text = format!(
        r#"
[agents.hello]
cron = "*/2 * * * * *"
params = {{ name = "dev" }}

[agents.http_probe]
cron = "*/5 * * * * *"
timeout = "10s"
params = {{ urls = ["{health_url}"], allow_hosts = ["127.0.0.1", "localhost"], timeout_ms = 2000 }}
"#
    );
    if let Some(script) = python {
        text.push_str(&format!(
            r#"
[agents.python_example]
agent = "command"
cron = "*/10 * * * * *"
timeout = "30s"
params = {{ program = "python3", args = [{script:?}], input = {{ topic = "prices" }} }}
"#
        ));
    }
    text
}

/// The example Python agent's path, when the script is there and `python3` runs.
fn python_example() -> Option<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agents/python/example.py");
    let runs = std::process::Command::new("python3")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    (runs && script.is_file()).then(|| script.display().to_string())
}

fn print_banner(
    collector_url: &str,
    settings: &Settings,
    database_url: &str,
    token: &str,
    console_token: &str,
    jobs: &[String],
) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let scheduler_url = format!("http://{}", settings.addr);
    println!(
        r#"
  console     {collector_url}/ui   (sign in with the read-only token below)
  collector   {collector_url}   (API docs: {collector_url}/openapi.json, metrics: {collector_url}/prometheus)
  scheduler   {scheduler_url}/jobs   (spool: {spool})
  database    {database_url}
  jobs        {jobs}

  export TOKEN={token}
  console token (read only): {console_token}

  curl -X POST {collector_url}/metrics \
    -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
    -d '{{"agent_name":"test","metrics":{{"x":1}},"started_at":"{now}","finished_at":"{now}","error":null}}'

  curl -H "Authorization: Bearer $TOKEN" {collector_url}/runs
  curl -X POST -H "Authorization: Bearer $TOKEN" {scheduler_url}/jobs/hello/run

  Every stored run prints a line below. Ctrl-C stops everything.
"#,
        spool = settings.spool_dir.display(),
        jobs = if jobs.is_empty() {
            "none enabled".to_owned()
        } else {
            jobs.join(", ")
        },
    );
}

/// One line per stored run, as the collector stores it.
async fn print_stored_runs(mut runs: broadcast::Receiver<StoredRun>) {
    loop {
        match runs.recv().await {
            Ok(run) => println!(
                "{}  run {:>6}  {:<20} {:<8} {:>3} metrics  {:>6} ms",
                chrono::Utc::now().format("%H:%M:%S"),
                run.run_id,
                run.agent_name,
                run.status.as_str(),
                run.metric_count,
                run.duration_ms,
            ),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                println!("          ({missed} more runs stored, not shown)");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn printed_database_urls_hide_the_password() {
        assert_eq!(
            without_password("postgres://app:s3cr@t@db:5432/metrics"),
            "postgres://app:***@db:5432/metrics"
        );
        assert_eq!(
            without_password("postgres://app@db/metrics"),
            "postgres://app@db/metrics"
        );
        assert_eq!(
            without_password("sqlite://data/dev.db"),
            "sqlite://data/dev.db"
        );
    }
}
