//! The deployment files agree with the code: docker-compose.yml's services, networks and
//! variables, `.env.example`, and every environment variable the code reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) fn compose(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap()
}

/// Variables `.env.example` documents.
pub(crate) fn documented() -> BTreeSet<String> {
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
pub(crate) fn interpolated(text: &str) -> BTreeSet<String> {
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
        BTreeSet::from(["certbot", "collector", "nginx", "postgres", "scheduler"])
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
    assert_eq!(networks("certbot"), ["acme"], "certbot reaches no service");
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
