//! The schedule file: one `[agents.<name>]` table per scheduled job.
//!
//! ```toml
//! [agents.hello]
//! cron = "*/5 * * * *"          # 5 fields, or 6 with seconds first
//! timezone = "Europe/Madrid"    # IANA; default UTC
//! timeout = "30s"               # default 5m
//! concurrency_policy = "forbid" # forbid (default) | allow | replace
//! misfire_policy = "run_once"   # run_once (default) | skip
//! retries = 2                   # default 0
//! retry_backoff = "10s"         # doubles after each retry; default 30s
//! retry_on_timeout = true       # a run past its timeout is retried too; default true
//! enabled = true
//! params = { name = "Ada" }
//!
//! [agents.python_example]       # any name; `agent` says which registered agent runs
//! agent = "command"
//! cron = "0 * * * *"
//! params = { program = "python3", args = ["agents/python/example.py"] }
//! ```
//!
//! A file is the whole truth: only its jobs run. With no file at all, the registered agents
//! with a default schedule run on it (UTC); `make new-agent` writes a new agent's default into
//! the file.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::{Agent, Registry};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cron::CronSchedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyPolicy {
    /// Skip a tick while the previous run is still going (and count the skip).
    #[default]
    Forbid,
    /// Let runs overlap.
    Allow,
    /// Cancel the running one and start the new one.
    Replace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MisfirePolicy {
    /// After downtime, run once for the ticks that were missed.
    #[default]
    RunOnce,
    /// After downtime, wait for the next tick.
    Skip,
}

/// What a job does after downtime with the slots it missed (`catchup_window`, or the older
/// `misfire_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    /// None runs (`catchup_window = "0s"`, `misfire_policy = "skip"`): the collector records
    /// them missed.
    Skip,
    /// The latest runs, once (`"latest"`, `misfire_policy = "run_once"`: the default).
    Latest,
    /// Each slot missed within this long before the restart runs, oldest first, under its own
    /// key (at most `MAX_CATCHUP_SLOTS`).
    Window(Duration),
}

impl Catchup {
    fn parse(text: &str) -> Result<Self, String> {
        if text == "latest" {
            return Ok(Self::Latest);
        }
        match humantime::parse_duration(text) {
            Ok(window) if window.is_zero() => Ok(Self::Skip),
            Ok(window) => Ok(Self::Window(window)),
            Err(e) => Err(format!(
                "catchup_window {text:?}: {e} (a length such as 10m, \"0s\" to skip, or \"latest\")"
            )),
        }
    }

    /// As the schedule file says it.
    pub fn text(self) -> String {
        match self {
            Self::Skip => "0s".into(),
            Self::Latest => "latest".into(),
            Self::Window(window) => humantime::format_duration(window).to_string(),
        }
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(30);

/// One scheduled job, checked.
#[derive(Clone)]
pub struct Job {
    /// What its runs are reported as (`agent_name`).
    pub name: String,
    pub agent: Arc<dyn Agent>,
    pub cron: CronSchedule,
    pub timeout: Duration,
    pub concurrency: ConcurrencyPolicy,
    /// The slots missed while no scheduler ran.
    pub catchup: Catchup,
    /// Each slot's run starts up to this long after it, by an amount derived from the job and
    /// the slot (the same on every replica): jobs on one cron do not all start at once.
    pub jitter: Duration,
    /// After this many failed runs in a row the collector pauses the job (until resumed).
    pub pause_after_failures: Option<u32>,
    pub retries: u32,
    pub retry_backoff: Duration,
    /// Whether a run that timed out is retried like any failure (within `retries`).
    pub retry_on_timeout: bool,
    pub enabled: bool,
    pub params: Map<String, Value>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("agent", &self.agent.name())
            .field("cron", &self.cron.expression())
            .field("timezone", &self.cron.timezone())
            .finish_non_exhaustive()
    }
}

/// The file's keys besides its `[agents.*]` jobs: none (any other is a problem).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    agent: Option<String>,
    cron: Option<String>,
    timezone: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    concurrency_policy: ConcurrencyPolicy,
    misfire_policy: Option<MisfirePolicy>,
    catchup_window: Option<String>,
    jitter: Option<String>,
    pause_after_failures: Option<u32>,
    #[serde(default)]
    retries: u32,
    retry_backoff: Option<String>,
    #[serde(default = "yes")]
    retry_on_timeout: bool,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    params: toml::Table,
}

fn yes() -> bool {
    true
}

/// Every problem in a schedule file, one line each: `<file>: agents.<name>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleErrors(pub Vec<String>);

impl std::fmt::Display for ScheduleErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for ScheduleErrors {}

/// Reads `path` (a missing file is no schedule at all) and resolves it against `registry`.
pub fn load(path: &Path, registry: &Registry) -> Result<Vec<Job>, ScheduleErrors> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ScheduleErrors(vec![format!("{file}: cannot read: {e}")])),
    };
    parse(&file, text.as_deref(), registry)
}

/// The `[agents.*]` tables of `text`, each read on its own, so that a mistyped one (a number
/// for a string, a key misspelt) is a problem of its own in `errors` while the others are
/// still checked; TOML that does not parse at all is the one problem.
fn entries_of(
    file: &str,
    text: &str,
    errors: &mut Vec<String>,
) -> Result<BTreeMap<String, EntryToml>, ScheduleErrors> {
    let line_of = |error: &toml::de::Error| {
        error
            .span()
            .map(|s| format!(" (line {})", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default()
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| {
        ScheduleErrors(vec![format!(
            "{file}{}: {}",
            line_of(&e),
            e.message().trim()
        )])
    })?;
    let agents = table.remove("agents");
    // What is left besides `agents`: FileToml's checks (unknown keys).
    if let Err(e) = toml::Table::try_into::<FileToml>(table) {
        errors.push(format!("{file}: {}", e.message().trim()));
    }
    let mut entries = BTreeMap::new();
    match agents {
        None => {}
        Some(toml::Value::Table(agents)) => {
            for (name, value) in agents {
                match value.try_into::<EntryToml>() {
                    Ok(entry) => {
                        entries.insert(name, entry);
                    }
                    Err(e) => errors.push(format!("{file}: agents.{name}: {}", e.message().trim())),
                }
            }
        }
        Some(_) => errors.push(format!(
            "{file}: `agents` must be a table of jobs ([agents.NAME])"
        )),
    }
    Ok(entries)
}

/// Parses schedule `text` (named `file` in errors); `None` means no file.
pub fn parse(
    file: &str,
    text: Option<&str>,
    registry: &Registry,
) -> Result<Vec<Job>, ScheduleErrors> {
    let mut errors = Vec::new();
    let entries = match text {
        None => BTreeMap::new(),
        Some(text) => entries_of(file, text, &mut errors)?,
    };

    let mut jobs = Vec::new();
    // Jobs with the same expression and zone share one parsed schedule.
    let mut crons = HashMap::new();
    for (name, entry) in &entries {
        match job_from_entry(name, entry, registry, &mut crons) {
            Ok(job) => jobs.push(job),
            Err(problem) => errors.push(format!("{file}: agents.{name}: {problem}")),
        }
    }
    // Without a file, the agents with a default schedule run on it; a file is the whole truth.
    let defaults = if text.is_none() {
        registry.iter().collect()
    } else {
        Vec::new()
    };
    for agent in defaults {
        let Some(cron) = agent.default_schedule() else {
            continue;
        };
        match CronSchedule::parse(cron, chrono_tz::UTC) {
            Ok(cron) => jobs.push(Job {
                name: agent.name().to_owned(),
                agent: agent.clone(),
                cron,
                timeout: DEFAULT_TIMEOUT,
                concurrency: ConcurrencyPolicy::default(),
                catchup: Catchup::Latest,
                jitter: Duration::ZERO,
                pause_after_failures: None,
                retries: 0,
                retry_backoff: DEFAULT_RETRY_BACKOFF,
                retry_on_timeout: true,
                enabled: true,
                params: Map::new(),
            }),
            Err(problem) => errors.push(format!(
                "agent {}: default schedule: {problem}",
                agent.name()
            )),
        }
    }
    if errors.is_empty() {
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(jobs)
    } else {
        Err(ScheduleErrors(errors))
    }
}

fn job_from_entry(
    name: &str,
    entry: &EntryToml,
    registry: &Registry,
    crons: &mut HashMap<(String, Tz), CronSchedule>,
) -> Result<Job, String> {
    agent_sdk::wire::validate_agent_name(name).map_err(|e| {
        format!(
            "the name is not a valid agent name: {}",
            e.message.unwrap_or_default()
        )
    })?;
    let agent = registry
        .get(entry.agent.as_deref().unwrap_or(name))
        .map_err(|e| e.to_string())?;
    let timezone = match &entry.timezone {
        None => chrono_tz::UTC,
        Some(tz) => Tz::from_str(tz).map_err(|_| {
            format!("unknown time zone {tz:?} (an IANA name such as Europe/Madrid)")
        })?,
    };
    let expression = entry
        .cron
        .as_deref()
        .or(agent.default_schedule())
        .ok_or("no `cron` and the agent has no default schedule")?;
    let cron = match crons.entry((expression.to_owned(), timezone)) {
        Entry::Occupied(shared) => shared.get().clone(),
        Entry::Vacant(slot) => slot
            .insert(CronSchedule::parse(expression, timezone)?)
            .clone(),
    };
    let duration = |field: &str, value: &Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("{field} {text:?}: {e} (e.g. 30s, 5m)"))
            .and_then(|d| {
                if d.is_zero() {
                    Err(format!("{field} must be more than zero"))
                } else {
                    Ok(d)
                }
            }),
    };
    let catchup = match (&entry.catchup_window, entry.misfire_policy) {
        (Some(_), Some(_)) => {
            return Err("give catchup_window or misfire_policy, not both (catchup_window = \"latest\" is misfire_policy = \"run_once\", \"0s\" is \"skip\")".into());
        }
        (Some(window), None) => Catchup::parse(window)?,
        (None, Some(MisfirePolicy::Skip)) => Catchup::Skip,
        (None, Some(MisfirePolicy::RunOnce) | None) => Catchup::Latest,
    };
    let jitter = match &entry.jitter {
        None => Duration::ZERO,
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("jitter {text:?}: {e} (e.g. 30s, 5m)"))?,
    };
    let params = match serde_json::to_value(&entry.params) {
        Ok(Value::Object(map)) => map,
        Ok(_) | Err(_) => return Err("params must be a table".into()),
    };
    Ok(Job {
        name: name.to_owned(),
        agent,
        cron,
        timeout: duration("timeout", &entry.timeout, DEFAULT_TIMEOUT)?,
        concurrency: entry.concurrency_policy,
        catchup,
        jitter,
        pause_after_failures: match entry.pause_after_failures {
            Some(n) if !(1..=1000).contains(&n) => {
                return Err(format!("pause_after_failures must be 1 to 1000, got {n}"));
            }
            n => n,
        },
        retries: entry.retries,
        retry_backoff: duration("retry_backoff", &entry.retry_backoff, DEFAULT_RETRY_BACKOFF)?,
        retry_on_timeout: entry.retry_on_timeout,
        enabled: entry.enabled,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_sdk::wire::Metrics;
    use agent_sdk::{RunContext, RunResult, async_trait};

    struct Stub(&'static str, Option<&'static str>);

    #[async_trait]
    impl Agent for Stub {
        fn name(&self) -> &'static str {
            self.0
        }
        fn default_schedule(&self) -> Option<&'static str> {
            self.1
        }
        async fn run(&self, _ctx: &RunContext) -> RunResult {
            Ok(Metrics::new())
        }
    }

    fn registry() -> Registry {
        Registry::from_agents([
            Arc::new(Stub("hello", Some("0 * * * * *"))) as Arc<dyn Agent>,
            Arc::new(Stub("command", None)),
        ])
        .unwrap()
    }

    #[test]
    fn a_full_entry_and_default_schedules() {
        let jobs = parse(
            "s.toml",
            Some(
                r#"
                [agents.py]
                agent = "command"
                cron = "30 2 * * *"
                timezone = "Europe/Madrid"
                timeout = "90s"
                concurrency_policy = "replace"
                misfire_policy = "skip"
                retries = 2
                retry_backoff = "5s"
                params = { program = "python3", args = ["x.py"] }
                "#,
            ),
            &registry(),
        )
        .unwrap();
        let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(
            names,
            ["py"],
            "a file is the whole truth: hello's default is not run"
        );
        let py = &jobs[0];
        assert_eq!(py.agent.name(), "command");
        assert_eq!(py.timeout, Duration::from_secs(90));
        assert_eq!(py.concurrency, ConcurrencyPolicy::Replace);
        assert_eq!(py.catchup, Catchup::Skip);
        assert_eq!(py.params["args"], serde_json::json!(["x.py"]));

        // No file: the default schedules run, with the default policies.
        let defaults = parse("s.toml", None, &registry()).unwrap();
        let names: Vec<_> = defaults.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["hello"]);
        assert_eq!(defaults[0].concurrency, ConcurrencyPolicy::Forbid);
        assert_eq!(defaults[0].catchup, Catchup::Latest);
    }

    #[test]
    fn after_downtime_jitter_and_pausing_are_read_and_checked() {
        let jobs = parse(
            "s.toml",
            Some(
                r#"
                [agents.a]
                agent = "hello"
                catchup_window = "10m"
                jitter = "30s"
                pause_after_failures = 3
                [agents.b]
                agent = "hello"
                catchup_window = "0s"
                [agents.c]
                agent = "hello"
                catchup_window = "latest"
                "#,
            ),
            &registry(),
        )
        .unwrap();
        assert_eq!(jobs[0].catchup, Catchup::Window(Duration::from_secs(600)));
        assert_eq!(jobs[0].jitter, Duration::from_secs(30));
        assert_eq!(jobs[0].pause_after_failures, Some(3));
        assert_eq!(jobs[1].catchup, Catchup::Skip);
        assert_eq!(jobs[2].catchup, Catchup::Latest);
        assert_eq!(
            (jobs[1].jitter, jobs[1].pause_after_failures),
            (Duration::ZERO, None)
        );
        for (entry, problem) in [
            (
                "catchup_window = \"10m\"\nmisfire_policy = \"skip\"",
                "not both",
            ),
            ("catchup_window = \"soon\"", "catchup_window \"soon\""),
            ("jitter = \"a bit\"", "jitter \"a bit\""),
            (
                "pause_after_failures = 0",
                "pause_after_failures must be 1 to 1000",
            ),
        ] {
            let errors = parse(
                "s.toml",
                Some(&format!("[agents.x]\nagent = \"hello\"\n{entry}\n")),
                &registry(),
            )
            .unwrap_err();
            assert!(
                errors.0.len() == 1 && errors.0[0].contains(problem),
                "{entry}: {errors}"
            );
        }
    }

    #[test]
    fn every_problem_is_one_line_naming_file_agent_and_problem() {
        let errors = parse(
            "schedules.toml",
            Some(
                r#"
                [agents.ghost]
                cron = "* * * * *"
                [agents.bad_cron]
                agent = "hello"
                cron = "61 * * * *"
                [agents.bad_tz]
                agent = "hello"
                timezone = "Mars/Olympus"
                [agents.no_cron]
                agent = "command"
                "#,
            ),
            &registry(),
        )
        .unwrap_err();
        let lines = errors.0;
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(
            lines[0].starts_with("schedules.toml: agents.bad_cron: invalid cron expression"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1]
                .starts_with("schedules.toml: agents.bad_tz: unknown time zone \"Mars/Olympus\""),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with(
                "schedules.toml: agents.ghost: no agent named `ghost`; known agents: command, hello"
            ),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("schedules.toml: agents.no_cron: no `cron`"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn typos_and_syntax_errors_are_caught() {
        let typo = parse(
            "s.toml",
            Some("[agents.hello]\ncorn = \"* * * * *\"\n"),
            &registry(),
        )
        .unwrap_err();
        assert!(
            typo.0[0].starts_with("s.toml: agents.hello: unknown field `corn`"),
            "{typo}"
        );
        let broken = parse("s.toml", Some("[agents.hello\n"), &registry()).unwrap_err();
        assert!(broken.0[0].starts_with("s.toml (line"), "{broken}");
    }
}
