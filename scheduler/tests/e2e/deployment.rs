//! The deployment files agree with the code: docker-compose.yml's services, networks and
//! variables, `.env.example`, and every environment variable the code reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap()
}

/// Variables `.env.example` documents.
fn documented() -> BTreeSet<String> {
    read(".env.example")
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.starts_with('#') && !k.is_empty())
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env_keys(service: &Value) -> BTreeSet<String> {
    service["environment"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `${NAME}`, `${NAME:-default}`, `${NAME:?message}`.
fn interpolated(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[test]
fn compose_services_networks_and_volumes() {
    let file = compose("docker-compose.yml");
    let services = file["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["collector", "nginx", "postgres", "scheduler"])
    );

    let networks = |s: &str| strings(&file["services"][s]["networks"]);
    assert_eq!(networks("postgres"), ["db"]);
    assert_eq!(networks("collector"), ["db", "app"]);
    assert_eq!(
        networks("scheduler"),
        ["app"],
        "the scheduler cannot reach PostgreSQL"
    );
    assert_eq!(networks("nginx"), ["app"]);
    assert_eq!(file["networks"]["db"]["internal"], Value::Bool(true));

    for (name, service) in services {
        let name = name.as_str().unwrap();
        assert_eq!(
            service["restart"].as_str(),
            Some("unless-stopped"),
            "{name}: restart policy"
        );
        assert!(
            service["deploy"]["resources"]["limits"]["memory"].is_string(),
            "{name}: memory limit"
        );
        assert!(
            !service["logging"]["options"]["max-size"].is_null(),
            "{name}: log rotation"
        );
        let published = !service["ports"].is_null();
        assert_eq!(
            published,
            name == "nginx",
            "{name}: only nginx publishes ports"
        );
        assert!(
            service["container_name"].is_null(),
            "{name}: no fixed name, so it can scale"
        );
    }
    assert_eq!(
        file["services"]["collector"]["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert!(!file["services"]["postgres"]["healthcheck"].is_null());

    let volumes: Vec<String> = strings(&file["services"]["postgres"]["volumes"])
        .into_iter()
        .chain(strings(&file["services"]["scheduler"]["volumes"]))
        .collect();
    assert!(
        volumes.iter().any(|v| v.starts_with("pgdata:")),
        "{volumes:?}"
    );
    assert!(
        volumes.iter().any(|v| v.starts_with("spool:")),
        "{volumes:?}"
    );
    assert!(!file["volumes"]["pgdata"].is_null() && !file["volumes"]["spool"].is_null());

    let opt_in = compose("docker-compose.postgres-port.yml");
    assert!(
        !opt_in["services"]["postgres"]["ports"].is_null(),
        "the override publishes PostgreSQL"
    );
}

#[test]
fn compose_variables_match_the_binaries_and_env_example() {
    let file = compose("docker-compose.yml");
    let collector_env = env_keys(&file["services"]["collector"]);
    let scheduler_env = env_keys(&file["services"]["scheduler"]);
    let collector_reads: BTreeSet<String> = collector::config::ENV_VARS
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    let scheduler_reads: BTreeSet<String> = scheduler::settings::ENV_VARS
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    assert!(
        collector_env.is_subset(&collector_reads),
        "collector gets a variable it never reads: {:?}",
        collector_env
            .difference(&collector_reads)
            .collect::<Vec<_>>()
    );
    assert!(
        scheduler_env.is_subset(&scheduler_reads),
        "scheduler gets a variable it never reads: {:?}",
        scheduler_env
            .difference(&scheduler_reads)
            .collect::<Vec<_>>()
    );
    assert!(
        scheduler_env
            .iter()
            .all(|k| !k.contains("DATABASE") && !k.starts_with("POSTGRES")),
        "no database variable for the scheduler"
    );
    for required in ["DATABASE_URL", "COLLECTOR_SECRET_KEY"] {
        assert!(collector_env.contains(required), "{required}");
    }
    assert_eq!(
        file["services"]["scheduler"]["environment"]["COLLECTOR_URL"].as_str(),
        Some("http://collector:8000")
    );

    let documented = documented();
    for path in ["docker-compose.yml", "docker-compose.postgres-port.yml"] {
        for name in interpolated(&read(path)) {
            assert!(
                documented.contains(&name),
                "{path} uses ${{{name}}}, which .env.example does not list"
            );
        }
    }
}

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

/// `docker compose config` accepts the files with `.env.example`, where the tool exists.
#[test]
fn docker_compose_config_accepts_the_files() {
    let available = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("docker compose is not installed here: the file checks above stand in for it");
        return;
    }
    let output = std::process::Command::new("docker")
        .current_dir(root())
        .args([
            "compose",
            "--env-file",
            ".env.example",
            "-f",
            "docker-compose.yml",
            "config",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    let makefile = read("Makefile");
    let mut silent = Vec::new();
    for (name, comments) in documented_with_comments() {
        let used_by_make = makefile.contains(&format!("$({name})"));
        let marked = comments.contains("[local runs only");
        if reached.contains(&name) || used_by_make {
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
