//! The operator console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `make test` installs where missing) driven over WebDriver against
//! `platform` running the example agents.
//!
//! Signs in with a read token, sees the agents, opens a failed run and reads its error (a
//! `<script>` in it shows as text), sees a chart with points, sees the page refresh itself,
//! signs out; a bad token and an ingest-only token get the sign-in page with a message. With an
//! operate token, pauses, runs, resumes and cancels through the console's forms, each checked in
//! the database, and a forged form is refused.
//! Screenshots of each page at desktop and phone width go to `target/console-screenshots/`, or
//! to `$CONSOLE_SCREENSHOTS` (`make screenshots` writes docs/console/).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use collector::auth::SecretKey;
use collector::auth::{Scope, TokenKeys};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::{Platform, free_port};
use tokio::process::{Child, Command};

const ERROR: &str = "<script>alert('x')</script> went wrong\nTraceback: line 2";
const DESKTOP: (u32, u32) = (1280, 860);
const PHONE: (u32, u32) = (390, 844);

/// `chromedriver` on a free port, or a clear failure saying how to get it.
async fn chromedriver() -> (Child, u16) {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "{binary}: {err}. The console's browser test needs Chromium and its driver: \
                 `make test` installs them (apt-get install chromium chromium-driver)"
            )
        });
    // Ready when it accepts connections.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port} within 10 s");
}

async fn browser(driver_port: u16) -> Client {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--hide-scrollbars", format!("--window-size={},{}", DESKTOP.0, DESKTOP.1)],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .unwrap()
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("CONSOLE_SCREENSHOTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The page at desktop and phone width: `NAME.png` and `NAME-phone.png`.
async fn screenshots(client: &Client, name: &str) {
    let dir = screenshot_dir();
    for (suffix, (width, height)) in [("", DESKTOP), ("-phone", PHONE)] {
        client.set_window_size(width, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}{suffix}.png")), png).unwrap();
    }
    client.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();
}

async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

async fn sign_in(client: &Client, platform: &Platform, token: &str) {
    client.goto(&platform.url("/ui")).await.unwrap();
    // Not signed in: the sign-in form.
    let field = client
        .find(Locator::Css("textarea[name=token]"))
        .await
        .unwrap();
    field.send_keys(token).await.unwrap();
    click(client, Locator::Css("form[action='/ui/login'] button")).await;
}

async fn fill(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("{css}: {err}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// The text of the first element `css` finds, waiting for it up to 10 s. The page refreshes
/// its `<main>` every 10 s: an element replaced between finding and reading (Chromium says
/// "stale element", or that the node "does not belong to the document") is found again.
async fn text_of(client: &Client, css: &str) -> String {
    let mut last = String::new();
    for _ in 0..5 {
        let element = client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("{css}: {err}"));
        match element.text().await {
            Ok(text) => return text,
            Err(err) => {
                let message = err.to_string();
                let replaced = message.contains("stale element")
                    || message.contains("does not belong to the document");
                assert!(replaced, "{css}: {message}");
                last = message;
            }
        }
    }
    panic!("{css}: replaced by every refresh while read: {last}")
}

#[tokio::test]
async fn the_console_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::start(dir.path()).await;
    // Each example agent has run, a few times, so that charts have points.
    platform.wait_for_runs(12).await;

    // An agent expected hourly whose run failed, with markup in its error (the watcher opens
    // `failing` on it); and an ingest-only token.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let expected = http
        .put(platform.url("/agents/nightly_report/expectation"))
        .bearer_auth(&platform.token)
        .json(&json!({"every": "1h", "grace": "10m"}))
        .send()
        .await
        .unwrap();
    assert!(expected.status().is_success(), "{}", expected.status());
    let now = chrono::Utc::now();
    let pushed = http
        .post(platform.url("/metrics"))
        .bearer_auth(&platform.token)
        .json(&json!({
            "agent_name": "nightly_report", "metrics": {"rows": 120, "note": "<b>bold</b>"},
            "started_at": (now - chrono::TimeDelta::seconds(42)).to_rfc3339(),
            "finished_at": now.to_rfc3339(), "error": ERROR
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    let secret = std::fs::read_to_string(dir.path().join("data/secret")).unwrap();
    let keys = TokenKeys::new(&SecretKey::parse(secret.trim().to_owned()).unwrap());
    let ingest_only = keys
        .issue("pusher", &[Scope::Ingest], None, Duration::from_secs(600))
        .unwrap();

    let (_driver, driver_port) = chromedriver().await;
    let client = browser(driver_port).await;

    // A forged token: the sign-in page again, saying so.
    sign_in(&client, &platform, "not.a.token").await;
    let message = text_of(&client, "p.error").await;
    assert!(message.contains("refused"), "{message}");
    screenshots(&client, "sign-in").await;
    // An ingest-only token: refused too.
    sign_in(&client, &platform, &ingest_only).await;
    let message = text_of(&client, "p.error").await;
    assert!(message.contains("read nor the operate scope"), "{message}");

    // The read token: the overview, every agent, the failing one first.
    sign_in(&client, &platform, &platform.console_token).await;
    let agents: Vec<String> = {
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("table.agents"))
            .await
            .unwrap();
        let mut names = Vec::new();
        for cell in client
            .find_all(Locator::Css("table.agents td[data-label=Agent] a"))
            .await
            .unwrap()
        {
            names.push(cell.text().await.unwrap());
        }
        names
    };
    for agent in ["hello", "http_probe", "python_example", "nightly_report"] {
        assert!(agents.iter().any(|a| a == agent), "{agent} in {agents:?}");
    }
    assert_eq!(
        agents.first().map(String::as_str),
        Some("nightly_report"),
        "problems first: {agents:?}"
    );
    assert!(
        !client
            .find_all(Locator::Css("svg.spark path"))
            .await
            .unwrap()
            .is_empty(),
        "sparklines of recent durations"
    );
    // Times in the browser's timezone, UTC on hover: the script keeps the server's UTC text
    // as the title and writes the local time, which differs from it.
    let times = client
        .execute(
            "return [...document.querySelectorAll('time[datetime]')].map(t => [t.title, t.textContent])",
            vec![],
        )
        .await
        .unwrap();
    let times = times.as_array().unwrap();
    assert!(!times.is_empty());
    for time in times {
        let (title, text) = (time[0].as_str().unwrap(), time[1].as_str().unwrap());
        assert!(title.ends_with(" UTC") && text != title, "{time}");
    }
    // The cookie is not readable by scripts.
    let cookies = client
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert_eq!(
        cookies,
        json!(""),
        "the token must not be visible to scripts"
    );

    // The page refreshes itself without a reload, keeping the scroll position (at phone
    // width, where the overview is longer than the window).
    client.set_window_size(PHONE.0, PHONE.1).await.unwrap();
    client
        .execute(
            "window.__marker = 1; document.documentElement.dataset.refreshed = ''; window.scrollTo(0, 300)",
            vec![],
        )
        .await
        .unwrap();
    let mut refreshed = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let state = client
            .execute(
                "return [window.__marker === 1, document.documentElement.dataset.refreshed !== '', window.scrollY]",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            state[0],
            json!(true),
            "the page was reloaded, not refreshed"
        );
        if state[1] == json!(true) {
            assert_eq!(state[2], json!(300), "the scroll position after a refresh");
            refreshed = true;
            break;
        }
    }
    assert!(refreshed, "the overview refreshed itself within 15 s");
    client.set_window_size(DESKTOP.0, DESKTOP.1).await.unwrap();

    // The failed run and its error, shown as text.
    click(&client, Locator::LinkText("nightly_report")).await;
    text_of(&client, "table.runs").await;
    click(&client, Locator::Css("table.runs td[data-label=Run] a")).await;
    let error = text_of(&client, "pre.error-message").await;
    assert_eq!(error, ERROR);
    let note = text_of(&client, "td.text").await;
    assert_eq!(note, "<b>bold</b>");
    assert!(
        client
            .find_all(Locator::Css("main script, main b"))
            .await
            .unwrap()
            .is_empty(),
        "stored markup must not become elements"
    );
    screenshots(&client, "run").await;

    // An agent with numbers: a chart with points.
    client
        .goto(&platform.url("/ui/agents/http_probe"))
        .await
        .unwrap();
    text_of(&client, "figure.metric").await;
    let points = client
        .find_all(Locator::Css("figure.metric svg.chart circle.point"))
        .await
        .unwrap();
    assert!(points.len() >= 2, "{} points", points.len());
    screenshots(&client, "agent").await;

    // The watcher's pass (every 10 s) opens `failing`: the incidents page shows it, linked to
    // the agent's runs; the overview shows the state.
    let mut opened = false;
    for _ in 0..40 {
        client.goto(&platform.url("/ui/incidents")).await.unwrap();
        text_of(&client, "h1").await;
        if !client
            .find_all(Locator::Css("table.incidents tr.open"))
            .await
            .unwrap()
            .is_empty()
        {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(opened, "a failing incident within 20 s");
    let kind = text_of(&client, "table.incidents tr.open td[data-label=Kind]").await;
    assert_eq!(kind, "failing");
    screenshots(&client, "incidents").await;
    client.goto(&platform.url("/ui")).await.unwrap();
    let state = text_of(&client, "table.agents tr:first-child td[data-label=State]").await;
    assert!(state.starts_with("failing"), "{state}");
    screenshots(&client, "overview").await;

    // A read token sees a job's state and no form that acts.
    client
        .goto(&platform.url("/ui/agents/hello"))
        .await
        .unwrap();
    text_of(&client, "section.job").await;
    assert!(
        client
            .find_all(Locator::Css("section.job form"))
            .await
            .unwrap()
            .is_empty(),
        "a read token sees no button"
    );
    operate(&client, &platform, &keys, dir.path()).await;

    // Sign out: the sign-in page, and the console is closed again.
    click(&client, Locator::Css("form.signout button")).await;
    text_of(&client, "section.signin").await;
    client.goto(&platform.url("/ui")).await.unwrap();
    text_of(&client, "section.signin").await;
    assert!(
        client
            .find_all(Locator::Css("table.agents"))
            .await
            .unwrap()
            .is_empty()
    );

    client.close().await.unwrap();
}

/// Signed in with an operate token: pause, run now, resume and cancel through the forms, each
/// checked in the database; the audit page lists them; a form without the session's key is
/// refused.
async fn operate(client: &Client, platform: &Platform, keys: &TokenKeys, dir: &Path) {
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("data/dev.db").display()
    ))
    .await
    .unwrap();
    let operator = keys
        .issue(
            "alice",
            &[Scope::Operate, Scope::Read],
            None,
            Duration::from_secs(600),
        )
        .unwrap();
    click(client, Locator::Css("form.signout button")).await;
    sign_in(client, platform, &operator).await;
    text_of(client, "table.agents").await;
    client
        .goto(&platform.url("/ui/agents/hello"))
        .await
        .unwrap();

    fill(client, "form#pause [name=note]", "deploying v2").await;
    // What the operator typed survives the page's refresh, focused or not.
    click(client, Locator::Css("h1")).await;
    client
        .execute("document.documentElement.dataset.refreshed = ''", vec![])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let kept = client
        .execute(
            "return [document.querySelector('form#pause [name=note]').value, document.documentElement.dataset.refreshed]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        kept,
        json!(["deploying v2", ""]),
        "a filled form is not refreshed away"
    );
    fill(client, "form#pause [name=for]", "1h").await;
    click(client, Locator::Css("form#pause button")).await;
    let paused = text_of(client, "section.job p.paused").await;
    assert!(paused.contains("Paused by alice"), "{paused}");
    let pause: (String, Option<String>) = sqlx::query_as(
        "select paused_by, note from job_pauses where job = 'hello' and resumed_at is null",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(pause, ("alice".to_owned(), Some("deploying v2".to_owned())));
    screenshots(client, "agent-operate").await;

    // Paused (no run of its own in flight from 2 s on): run it now, with params.
    tokio::time::sleep(Duration::from_secs(3)).await;
    fill(
        client,
        "form#run-now [name=params]",
        r#"{"greeting": "hi"}"#,
    )
    .await;
    fill(client, "form#run-now [name=note]", "by hand").await;
    click(client, Locator::Css("form#run-now button")).await;
    text_of(client, "section.job").await;
    let (asked,): (i64,) = sqlx::query_as(
        "select count(*) from job_commands where kind = 'run' and job = 'hello' \
         and params = '{\"greeting\":\"hi\"}'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(asked, 1);
    let mut ran = false;
    for _ in 0..50 {
        let (manual,): (i64,) = sqlx::query_as(
            "select count(*) from agent_runs where agent_name = 'hello' and trigger = 'manual'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if manual == 1 {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ran, "the run asked for ran, while the job is paused");

    click(client, Locator::Css("form#resume button")).await;
    text_of(client, "form#pause").await;
    let (resumed_by,): (Option<String>,) =
        sqlx::query_as("select resumed_by from job_pauses where job = 'hello'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(resumed_by.as_deref(), Some("alice"));

    // A running run (announced over the API): its page has a Cancel form that asks to confirm.
    let now = chrono::Utc::now();
    let started: serde_json::Value = reqwest::Client::new()
        .post(platform.url("/runs"))
        .bearer_auth(&platform.token)
        .json(&json!({
            "agent_name": "hello", "run_key": "7d1c1e0e-7c6a-4f0e-9a51-000000000033",
            "started_at": now.to_rfc3339(), "claimant": "elsewhere",
            "deadline": (now + chrono::TimeDelta::hours(1)).to_rfc3339()
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["run_id"].as_i64().unwrap();
    client
        .goto(&platform.url(&format!("/ui/runs/{id}")))
        .await
        .unwrap();
    fill(client, "form#cancel [name=note]", "stuck").await;
    click(client, Locator::Css("form#cancel input[name=confirm]")).await;
    screenshots(client, "run-cancel").await;
    click(client, Locator::Css("form#cancel button")).await;
    text_of(client, "h1").await;
    let (reason,): (Option<String>,) =
        sqlx::query_as("select reason from job_commands where kind = 'cancel' and job = 'hello'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("cancelled by alice: stuck"));

    // A silence, from the incidents page, then ended there.
    client.goto(&platform.url("/ui/incidents")).await.unwrap();
    fill(client, "form#silence [name=agents]", "hello, team_a_*").await;
    fill(client, "form#silence [name=for]", "2h").await;
    click(
        client,
        Locator::Css("form#silence [name=kind][value=failing]"),
    )
    .await;
    fill(client, "form#silence [name=note]", "deploying").await;
    click(client, Locator::Css("form#silence button")).await;
    let listed = text_of(client, "table.silences td[data-label=Agents]").await;
    assert_eq!(listed, "hello, team_a_*");
    let silence: (String, Option<String>, Option<String>) =
        sqlx::query_as("select agents, kinds, note from silences")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        silence,
        (
            r#"["hello","team_a_*"]"#.to_owned(),
            Some(r#"["failing"]"#.to_owned()),
            Some("deploying".to_owned())
        )
    );
    screenshots(client, "incidents-silence").await;
    click(client, Locator::Css("table.silences form button")).await;
    text_of(client, "h1").await;
    let (ended_by,): (Option<String>,) = sqlx::query_as("select ended_by from silences")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(ended_by.as_deref(), Some("alice"));

    // Every action on the audit page.
    client.goto(&platform.url("/ui/audit")).await.unwrap();
    text_of(client, "table.audit").await;
    let mut actions = Vec::new();
    for cell in client
        .find_all(Locator::Css("table.audit td[data-label=Did]"))
        .await
        .unwrap()
    {
        actions.push(cell.text().await.unwrap());
    }
    assert_eq!(
        actions,
        ["unsilence", "silence", "cancel", "resume", "run", "pause"]
    );
    screenshots(client, "audit").await;

    // A form posted without the session's key (as another page would) is refused.
    let status = client
        .execute_async(
            "const done = arguments[0]; fetch('/ui/jobs/hello/pause', {method: 'POST', \
             body: new URLSearchParams({form_key: 'forged', note: 'x'})}).then(r => done(r.status))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    let (pauses,): (i64,) = sqlx::query_as("select count(*) from job_pauses")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(pauses, 1);
}
