//! `.env.example` against the code and Compose: every variable the code reads documented, and
//! each reaching its service as Compose interpolates it; both binaries start with what Compose
//! gives them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::deployment::{compose, documented, interpolated, read, root};

/// Every variable named in the code where it is read (`env = "…"` in clap settings,
/// `env::var("…")`, the collector's config constants) is documented.
#[test]
fn env_example_lists_every_variable_the_code_reads() {
    // Set by the operating system, not by the operator.
    let system = ["HOSTNAME"];
    let mut sources = Vec::new();
    for dir in ["collector/src", "scheduler/src", "agent-sdk/src", "agents"] {
        collect_rust_files(&root().join(dir), &mut sources);
    }
    let documented = documented();
    let mut read_somewhere = BTreeSet::new();
    for file in &sources {
        let text = std::fs::read_to_string(file).unwrap();
        for marker in ["env = \"", "env::var(\"", "env::var_os(\"", ": &str = \""] {
            for rest in text.split(marker).skip(1) {
                let name: String = rest.chars().take_while(|c| *c != '"').collect();
                let is_variable = name.len() > 2
                    && name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if is_variable && !system.contains(&name.as_str()) {
                    read_somewhere.insert((
                        name,
                        file.strip_prefix(root())
                            .unwrap_or(file)
                            .display()
                            .to_string(),
                    ));
                }
            }
        }
    }
    assert!(
        read_somewhere.iter().any(|(n, _)| n == "DATABASE_URL"),
        "the scan finds the collector's variables"
    );
    assert!(
        read_somewhere.iter().any(|(n, _)| n == "COLLECTOR_TOKEN"),
        "the scan finds the scheduler's variables"
    );
    for (name, file) in &read_somewhere {
        assert!(
            documented.contains(name),
            "{file} reads {name}, which .env.example does not list"
        );
    }
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each variable of `.env.example` with the comment lines right above it.
fn documented_with_comments() -> Vec<(String, String)> {
    let mut comments = String::new();
    let mut out = Vec::new();
    for line in read(".env.example").lines() {
        if let Some(comment) = line.strip_prefix('#') {
            comments.push_str(comment);
            comments.push(' ');
        } else if let Some((name, _)) = line.split_once('=') {
            out.push((name.trim().to_owned(), std::mem::take(&mut comments)));
        } else {
            comments.clear();
        }
    }
    out
}

#[test]
fn every_env_example_variable_reaches_a_service_or_says_it_does_not() {
    let mut reached = BTreeSet::new();
    for path in ["docker-compose.yml", "docker-compose.postgres-port.yml"] {
        reached.extend(interpolated(&read(path)));
    }
    // The Makefile reads .env only through deploy/ops.sh: as make syntax, `$` and `#` in a
    // password would be mangled.
    assert!(
        !read("Makefile")
            .lines()
            .any(|l| l.trim_start_matches(['-', 's']).starts_with("include")),
        "the Makefile includes a file (.env?) as make syntax"
    );
    let ops = read("deploy/ops.sh");
    let mut silent = Vec::new();
    for (name, comments) in documented_with_comments() {
        let used_by_make = ops.contains(&format!("env_get {name}"));
        // COMPOSE_FILE and the like: read by docker compose itself.
        let read_by_compose = name.starts_with("COMPOSE_");
        let marked = comments.contains("[local runs only");
        if reached.contains(&name) || used_by_make || read_by_compose {
            assert!(!marked, "{name} reaches a service but is marked local-only");
        } else if !marked {
            silent.push(name);
        }
    }
    assert!(
        silent.is_empty(),
        "in .env.example, neither passed by compose or the Makefile nor marked \
         [local runs only]: {silent:?}"
    );
}

/// `.env.example`'s values as docker compose would read them from a `.env` copied from it,
/// with the placeholders filled in as an operator would.
fn env_example_values() -> std::collections::BTreeMap<String, String> {
    read(".env.example")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let value = match k {
                "COLLECTOR_SECRET_KEY" => "compose-env-test-secret-compose-env-test-secret",
                _ if v.starts_with("change-me") => "0123456789abcdef",
                _ => v,
            };
            (k.trim().to_owned(), value.to_owned())
        })
        .collect()
}

/// Compose's interpolation of `text`: `${NAME}`, `${NAME:-default}`, `${NAME:?message}` (an
/// empty or unset NAME is an error), `$$`.
fn interpolate(
    text: &str,
    values: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body_end) = rest.strip_prefix("${").and_then(|r| r.find('}')) else {
            return Err(format!("unsupported interpolation in {text:?}"));
        };
        let body = &rest[2..2 + body_end];
        rest = &rest[3 + body_end..];
        let (name, op, arg) = match body.find(":-").or_else(|| body.find(":?")) {
            Some(i) => (&body[..i], &body[i..i + 2], &body[i + 2..]),
            None => (body, "", ""),
        };
        let value = values.get(name).filter(|v| !v.is_empty());
        match (value, op) {
            (Some(v), _) => out.push_str(v),
            (None, ":-") => out.push_str(arg),
            (None, ":?") => return Err(format!("{name}: {arg}")),
            (None, _) => {}
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A service's environment exactly as compose hands it over.
fn compose_env(service: &str) -> Vec<(String, String)> {
    let file = compose("docker-compose.yml");
    let values = env_example_values();
    file["services"][service]["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let raw = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("{service}: {k:?} = {other:?}"),
            };
            let value = interpolate(&raw, &values).unwrap_or_else(|e| panic!("{service}: {e}"));
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

#[test]
fn shutdown_grace_and_stop_grace_period_are_one_variable() {
    let file = compose("docker-compose.yml");
    let scheduler = &file["services"]["scheduler"];
    assert_eq!(
        scheduler["stop_grace_period"].as_str(),
        scheduler["environment"]["SHUTDOWN_GRACE"].as_str(),
        "compose stops the scheduler when SHUTDOWN_GRACE is over, not before or long after"
    );
    assert_eq!(
        interpolated(scheduler["stop_grace_period"].as_str().unwrap()),
        BTreeSet::from(["SHUTDOWN_GRACE".to_owned()])
    );
    // The replica count comes from .env, so every deploy keeps it.
    assert_eq!(
        file["services"]["collector"]["deploy"]["replicas"].as_str(),
        Some("${COLLECTOR_REPLICAS:-1}")
    );
}

#[test]
fn interpolation_reads_as_compose_does() {
    let values = std::collections::BTreeMap::from([
        ("SET".to_owned(), "v".to_owned()),
        ("EMPTY".to_owned(), String::new()),
    ]);
    let resolve = |t: &str| interpolate(t, &values);
    assert_eq!(resolve("a${SET}b").unwrap(), "avb");
    assert_eq!(resolve("${EMPTY:-d}/${UNSET:-}").unwrap(), "d/");
    assert_eq!(resolve("$${!}").unwrap(), "${!}");
    assert!(resolve("${EMPTY:?set it}").is_err());
}

/// The collector binary, beside this test's scheduler binary (built when `cargo test` ran
/// only the scheduler's tests).
fn collector_binary() -> PathBuf {
    let scheduler = Path::new(env!("CARGO_BIN_EXE_scheduler"));
    let collector = scheduler.with_file_name("collector");
    if !collector.exists() {
        let built = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "collector", "--bin", "collector"])
            .current_dir(root())
            .status()
            .unwrap();
        assert!(built.success());
    }
    collector
}

/// The binaries started with the environment docker-compose.yml gives them from a `.env` made
/// from `.env.example` (empty variables included): only the addresses, the database and the
/// paths inside the containers are replaced. Both start, the collector accepts the scheduler's
/// token, manual runs stay disabled, and logs are JSON without colour codes.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn both_binaries_run_with_the_environment_compose_gives_them(pool: sqlx::PgPool) {
    use crate::helpers::{free_port, http, runs_of, wait_for};
    use std::time::Duration;

    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    let database_url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let collector_addr = format!("127.0.0.1:{}", free_port());
    let scheduler_addr = format!("127.0.0.1:{}", free_port());

    let collector_env: Vec<(String, String)> = compose_env("collector")
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "DATABASE_URL" => (k, database_url.clone()),
            "COLLECTOR_ADDR" => (k, collector_addr.clone()),
            _ => (k, v),
        })
        .collect();
    let binary = collector_binary();
    let issue = tokio::process::Command::new(&binary)
        .args(["token", "--sub", "scheduler", "--ttl", "365d"])
        .env_clear()
        .envs(collector_env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap();
    assert!(issue.status.success(), "{issue:?}");
    let token_file = dir.path().join("collector-token");
    std::fs::write(&token_file, &issue.stdout).unwrap();

    let mut collector = tokio::process::Command::new(&binary)
        .arg("serve")
        .env_clear()
        .envs(collector_env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = http();
    wait_for("the collector", Duration::from_secs(20), || {
        let url = format!("http://{collector_addr}/health/ready");
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;

    let scheduler_env: Vec<(String, String)> = compose_env("scheduler")
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "COLLECTOR_URL" => (k, format!("http://{collector_addr}")),
            "COLLECTOR_TOKEN_FILE" => (k, token_file.display().to_string()),
            "SCHEDULES_FILE" => (k, root().join("schedules.toml").display().to_string()),
            "SPOOL_DIR" => (k, dir.path().join("spool").display().to_string()),
            "SCHEDULER_ADDR" => (k, scheduler_addr.clone()),
            _ => (k, v),
        })
        .collect();
    assert!(
        scheduler_env
            .iter()
            .any(|(k, v)| k == "SCHEDULER_TRIGGER_TOKEN" && v.is_empty()),
        "compose passes the blank trigger token of .env.example as an empty variable"
    );
    let scheduler = || {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_scheduler"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(scheduler_env.iter().map(|(k, v)| (k, v)))
            .current_dir(root());
        command
    };

    // A one-off run with that environment is delivered and stored.
    let once = scheduler().args(["run", "hello"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert_eq!(once.status.code(), Some(0), "{stderr}");
    assert_eq!(runs_of(&pool, "hello").await, 1);
    assert!(!stderr.contains('\u{1b}'), "colour codes in: {stderr}");

    // The service: healthy, the token's expiry shown, manual runs disabled (empty variable).
    let log = dir.path().join("serve.log");
    let mut serve = scheduler()
        .arg("serve")
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let health_url = format!("http://{scheduler_addr}/health");
    wait_for("the scheduler", Duration::from_secs(20), || {
        let client = client.clone();
        let url = health_url.clone();
        async move { client.get(url).send().await.is_ok() }
    })
    .await;
    let health: serde_json::Value = client
        .get(&health_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["token"]["expires_in_days"], 364, "{health}");
    assert!(health["token"]["warning"].is_null(), "{health}");
    let trigger = client
        .post(format!("http://{scheduler_addr}/jobs/hello/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 403, "manual runs are disabled, not open");

    let _ = serve.kill().await;
    let _ = collector.kill().await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("scheduler running"), "{logs}");
    for line in logs.lines() {
        assert!(!line.contains('\u{1b}'), "a colour code in: {line}");
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
}
