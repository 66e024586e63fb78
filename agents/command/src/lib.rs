//! `command`: runs an external program and turns the JSON object it prints into metrics.
//!
//! Schedule it under any name with `agent = "command"`:
//!
//! ```toml
//! [agents.python_example]
//! agent = "command"
//! cron = "*/5 * * * *"
//! params = { program = "python3", args = ["agents/python/example.py"], input = { topic = "prices" } }
//! ```
//!
//! Parameters: `program` (required), `args`, `env` (a table), `cwd`, and `input` (any JSON,
//! written to the program's stdin). The program also gets `AGENT_NAME`, `AGENT_RUN_KEY` and
//! `AGENT_SCHEDULED_FOR` in its environment, but never the platform's tokens.
//!
//! It must print one JSON object of metric names to numbers, strings or booleans (the whole
//! stdout, or its last line). A non-zero exit fails the run with the tail of stderr; on
//! timeout or shutdown the program's whole process group is killed.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::process::Stdio;

use agent_sdk::anyhow::{Context, anyhow, bail};
use agent_sdk::wire::Metrics;
use agent_sdk::{Agent, RunContext, RunResult, async_trait, register_agent};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// Environment variables of the scheduler that a program must not see.
const WITHHELD_ENV: &[&str] = &["COLLECTOR_TOKEN", "SCHEDULER_TRIGGER_TOKEN"];
/// How much of stderr a failed run reports.
const STDERR_TAIL_BYTES: usize = 2000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    #[serde(default)]
    input: serde_json::Value,
}

pub struct Command;

#[async_trait]
impl Agent for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    async fn run(&self, ctx: &RunContext) -> RunResult {
        let params: Params =
            serde_json::from_value(serde_json::Value::Object(ctx.params().clone()))
                .context("invalid command parameters (program, args, env, cwd, input)")?;
        let mut command = tokio::process::Command::new(&params.program);
        command
            .args(&params.args)
            .envs(&params.env)
            .env("AGENT_NAME", ctx.agent_name())
            .env("AGENT_RUN_KEY", ctx.run_key().to_string())
            .env(
                "AGENT_SCHEDULED_FOR",
                ctx.scheduled_for()
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout kills its children too.
            .process_group(0)
            .kill_on_drop(true);
        for name in WITHHELD_ENV {
            command.env_remove(name);
        }
        if let Some(cwd) = &params.cwd {
            command.current_dir(cwd);
        }

        let mut child = command.spawn().map_err(|e| match e.kind() {
            ErrorKind::NotFound => anyhow!("command not found: {}", params.program),
            ErrorKind::PermissionDenied => anyhow!("command not executable: {}", params.program),
            _ => anyhow!(e).context(format!("cannot start {}", params.program)),
        })?;
        let group = child.id().map(|pid| Pid::from_raw(pid as i32));
        if let Some(mut stdin) = child.stdin.take() {
            let input = if params.input.is_null() {
                "{}".to_owned()
            } else {
                params.input.to_string()
            };
            // A program that does not read its input closes the pipe: not an error.
            let _ = stdin.write_all(input.as_bytes()).await;
        }

        let output = tokio::select! {
            output = child.wait_with_output() => output.context("waiting for the program")?,
            () = ctx.cancelled() => {
                if let Some(group) = group {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                bail!("{} killed: the run was cancelled", params.program);
            }
        };

        if !output.status.success() {
            let tail = stderr_tail(&output.stderr);
            let reason = match output.status.code() {
                Some(127) => "command not found (exit 127)".to_owned(),
                Some(126) => "command not executable (exit 126)".to_owned(),
                Some(code) => format!("exited with status {code}"),
                None => "killed by a signal".to_owned(),
            };
            bail!(
                "{} {reason}{}",
                params.program,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            );
        }
        parse_metrics(&output.stdout)
            .with_context(|| format!("{} did not print a JSON object of metrics", params.program))
    }
}

register_agent!(Command);

/// The whole stdout as a JSON object, or else its last non-empty line (programs that log).
fn parse_metrics(stdout: &[u8]) -> Result<Metrics, agent_sdk::AgentError> {
    let text = String::from_utf8_lossy(stdout);
    let whole = serde_json::from_str::<Metrics>(text.trim());
    whole.or_else(|first| {
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        serde_json::from_str::<Metrics>(last.trim()).map_err(|_| anyhow!(first))
    })
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let mut start = text.len().saturating_sub(STDERR_TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_sdk::wire::MetricValue;
    use std::time::{Duration, Instant};

    fn ctx(params: serde_json::Value) -> RunContext {
        RunContext::new("command").with_params(params.as_object().cloned().unwrap())
    }

    async fn run(params: serde_json::Value) -> RunResult {
        Command.run(&ctx(params)).await
    }

    #[tokio::test]
    async fn stdout_json_becomes_metrics_and_input_arrives_on_stdin() {
        let metrics = run(serde_json::json!({
            "program": "sh",
            "args": ["-c", r#"echo starting; read input; case "$input" in *'"k":1'*) seen=true;; *) seen=false;; esac; echo "{\"input_seen\": $seen, \"n\": 0.1}""#],
            "input": {"k": 1},
        }))
        .await
        .unwrap();
        assert_eq!(metrics.get("input_seen"), Some(&MetricValue::Bool(true)));
        assert_eq!(
            metrics.get("n").map(|v| format!("{v:?}")),
            Some("Number(0.1)".into())
        );
    }

    #[tokio::test]
    async fn failures_say_why() {
        let err =
            run(serde_json::json!({"program": "sh", "args": ["-c", "echo boom >&2; exit 3"]}))
                .await
                .unwrap_err();
        assert_eq!(err.to_string(), "sh exited with status 3: boom");

        let err = run(serde_json::json!({"program": "no-such-program-xyz"}))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "command not found: no-such-program-xyz");

        let err = run(serde_json::json!({"program": "sh", "args": ["-c", "no-such-program-xyz"]}))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sh command not found (exit 127)"),
            "{err}"
        );

        let not_executable =
            std::env::temp_dir().join(format!("not-executable-{}", std::process::id()));
        std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
        let err = run(serde_json::json!({"program": not_executable}))
            .await
            .unwrap_err();
        std::fs::remove_file(&not_executable).unwrap();
        assert_eq!(
            err.to_string(),
            format!("command not executable: {}", not_executable.display())
        );

        let err = run(serde_json::json!({"program": "echo", "args": ["not json"]}))
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("did not print a JSON object"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn platform_tokens_never_reach_the_program() {
        let metrics = run(serde_json::json!({
            "program": "sh",
            "args": ["-c", "echo \"{\\\"has_token\\\": \\\"${COLLECTOR_TOKEN:+yes}\\\", \\\"name\\\": \\\"$AGENT_NAME\\\"}\""],
            "env": {"COLLECTOR_TOKEN": "would-leak"},
        }))
        .await
        .unwrap();
        assert_eq!(
            metrics.get("has_token"),
            Some(&MetricValue::Text(String::new()))
        );
        assert_eq!(
            metrics.get("name"),
            Some(&MetricValue::Text("command".into()))
        );
    }

    /// Whether process `pid` still runs (a zombie waiting to be reaped does not).
    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // `pid (comm) state ...`: the state follows the last `)`.
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().next().map(|state| state != "Z")
            })
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn cancellation_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let ctx = ctx(serde_json::json!({
            "program": "sh",
            "args": ["-c", format!("sleep 30 & echo $! > {}; wait; echo '{{}}'", pid_file.display())],
        }));
        let cancel = ctx.cancellation().clone();
        let watched = pid_file.clone();
        let grandchild = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            let pid = loop {
                if let Some(pid) = std::fs::read_to_string(&watched)
                    .ok()
                    .and_then(|text| text.trim().parse::<u32>().ok())
                {
                    break pid;
                }
                assert!(
                    Instant::now() < deadline,
                    "the program never started its child"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            cancel.cancel();
            pid
        });
        let started = Instant::now();
        let err = Command.run(&ctx).await.unwrap_err();
        assert!(err.to_string().contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let pid = grandchild.await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "the program's child {pid} outlived the cancelled run"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
