//! What the platform makes for itself on this machine: the signing secret under the data
//! directory, and the built-in schedule of the example agents.

use std::path::Path;

use anyhow::Context;
use collector::auth::SecretKey;
use scheduler::schedule::{self, Job};

/// The jobs of `file` (which must exist), or the built-in dev schedules.
pub(crate) fn load_jobs(file: Option<&Path>, collector_url: &str) -> anyhow::Result<Vec<Job>> {
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

/// The signing secret of this machine's collector: read from `path`, or generated there (only
/// its owner may read it) on first start, so tokens stay valid across restarts.
pub(crate) fn local_secret(path: &Path) -> anyhow::Result<SecretKey> {
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
