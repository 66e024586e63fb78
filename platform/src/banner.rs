//! What the platform prints: its addresses, tokens and curl lines, then a line per run stored.

use collector::ingest::StoredRun;
use scheduler::settings::Settings;
use tokio::sync::broadcast;

pub(crate) fn print_banner(
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
pub(crate) async fn print_stored_runs(mut runs: broadcast::Receiver<StoredRun>) {
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

/// `url` with its password, if any, masked: it is printed.
pub(crate) fn without_password(url: &str) -> String {
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
