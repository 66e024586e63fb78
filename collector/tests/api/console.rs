//! The operator console over HTTP (the browser test is platform/tests/console.rs): sign-in and
//! its refusals, the cookie's attributes, every page on both backends with what the database
//! holds (escaped), a token limited to some agents, bad parameters, the security headers.

use chrono::{TimeDelta, Utc};
use collector::auth::Scope;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::helpers::{Db, TestApp, on_both_backends, report_at};

const MARKUP: &str = "<script>alert('x')</script> & <b>more</b>";

/// A console response: status, headers, body.
struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn cookie(&self) -> &str {
        self.headers
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A browser-like client that does not follow redirects.
fn client() -> reqwest::Client {
    crate::helpers::http_client();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn read(response: reqwest::Response) -> Page {
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// GET `path` with `token` in the console's cookie.
async fn page(app: &TestApp, path: &str, token: Option<&str>) -> Page {
    let mut request = client().get(app.url(path));
    if let Some(token) = token {
        request = request.header("cookie", format!("console_token={token}"));
    }
    read(request.send().await.unwrap()).await
}

/// The sign-in form posted with `token`, and extra headers.
async fn sign_in(app: &TestApp, token: &str, headers: &[(&str, &str)]) -> Page {
    let mut request = client()
        .post(app.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read(request.send().await.unwrap()).await
}

async fn signing_in_takes_a_read_token_and_keeps_it_in_a_strict_cookie(db: Db) {
    let app = TestApp::spawn(db).await;
    let read_token = app.token_for(&[Scope::Read], None);
    let ingest_only = app.token_for(&[Scope::Ingest], None);

    // Not signed in: every page answers the sign-in form, which needs no token.
    for path in ["/ui", "/ui/incidents", "/ui/agents/alpha", "/ui/runs/1"] {
        let answer = page(&app, path, None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(answer.body.contains("action=\"/ui/login\""), "{path}");
    }
    let form = page(&app, "/ui/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("name=\"token\""), "{}", form.body);

    // A forged token and an ingest-only one: the form again, saying why; no cookie set.
    let forged = sign_in(&app, "not.a.token", &[]).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(
        forged.body.contains("That token was refused"),
        "{}",
        forged.body
    );
    assert!(forged.cookie().contains("Max-Age=0"), "{}", forged.cookie());
    let ingest = sign_in(&app, &ingest_only, &[]).await;
    assert_eq!(ingest.status, StatusCode::FORBIDDEN);
    assert!(
        ingest
            .body
            .contains("neither the read nor the operate scope"),
        "{}",
        ingest.body
    );
    let empty = sign_in(&app, "", &[]).await;
    assert_eq!(empty.status, StatusCode::UNAUTHORIZED);
    assert!(empty.body.contains("Paste a token first"));
    let not_a_form = read(
        client()
            .post(app.url("/ui/login"))
            .header("content-type", "application/json")
            .body(r#"{"token":"x"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(not_a_form.status, StatusCode::BAD_REQUEST);
    // Such cookies, set by hand, open nothing either.
    assert_eq!(
        page(&app, "/ui", Some("forged")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        page(&app, "/ui", Some(&ingest_only)).await.status,
        StatusCode::FORBIDDEN
    );

    // A read token: to the overview, in an HttpOnly, SameSite=Strict cookie for /ui only.
    let signed = sign_in(&app, &read_token, &[]).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    assert_eq!(signed.location(), "/ui");
    let cookie = signed.cookie();
    assert!(
        cookie.starts_with(&format!("console_token={read_token};")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=604800"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    // Behind TLS (nginx says so), Secure too.
    let over_tls = sign_in(&app, &read_token, &[("x-forwarded-proto", "https")]).await;
    assert!(
        over_tls.cookie().contains("; Secure"),
        "{}",
        over_tls.cookie()
    );
    // The token is in no page and no URL.
    let overview = page(&app, "/ui", Some(&read_token)).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(!overview.body.contains(&read_token));

    // Another site's form cannot sign anyone in or out.
    let cross = sign_in(&app, &read_token, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(!cross.cookie().contains(&read_token));
    let cross = sign_in(&app, &read_token, &[("origin", "https://evil.example")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);

    // Signing out clears the cookie.
    let out = read(
        client()
            .post(app.url("/ui/logout"))
            .header("cookie", format!("console_token={read_token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/ui/login");
    assert!(
        out.cookie().starts_with("console_token=;"),
        "{}",
        out.cookie()
    );
    assert!(out.cookie().contains("Max-Age=0"), "{}", out.cookie());
}

/// `alpha`: three runs, the last failed with markup in its error and a text metric; `beta`
/// one run. Returns the failed run's id.
async fn seed(app: &TestApp) -> i64 {
    let now = Utc::now();
    for minutes in [30, 20] {
        let (status, _) = app
            .post_report(&report_at("alpha", now - TimeDelta::minutes(minutes), 2))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut failed = report_at("alpha", now - TimeDelta::minutes(10), 3);
    failed["error"] = json!(MARKUP);
    failed["metrics"]["status"] = json!(MARKUP);
    let (status, body) = app.post_report(&failed).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .post_report(&report_at("beta", now - TimeDelta::minutes(5), 1))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    body["run_id"].as_i64().unwrap()
}

async fn every_page_shows_the_database_escaped(db: Db) {
    let app = TestApp::spawn(db).await;
    let failed = seed(&app).await;
    let token = app.token_for(&[Scope::Read], None);
    // The server's watcher may open `failing` on alpha's failure first: this one replaces it
    // (one statement batch; one open incident per agent and kind). Written between passes: a
    // pass that read alpha's summaries before its failure landed and the open incidents after
    // this one would resolve it.
    app.db
        .execute_as_the_watcher(
            "delete from incidents where agent_name = 'alpha';
             insert into incidents (agent_name, kind, opened_at, summary)
             values ('alpha', 'failing', '2026-01-01T00:00:00Z', 'alpha <i>failed</i>')",
        )
        .await;

    // An agent expected that has never reported: listed as new, with its next slot.
    let expected = app
        .client
        .put(app.url("/agents/gamma/expectation"))
        .bearer_auth(&app.token)
        .json(&json!({"every": "1h", "grace": "10m"}))
        .send()
        .await
        .unwrap();
    assert!(expected.status().is_success());

    let overview = page(&app, "/ui", Some(&token)).await;
    assert_eq!(overview.status, StatusCode::OK);
    let gamma = &overview.body[overview.body.find(">gamma<").unwrap()..];
    let gamma = &gamma[..gamma.find("</tr>").unwrap()];
    assert!(
        gamma.contains("badge new") && gamma.contains("<time"),
        "{gamma}"
    );
    // Both agents, alpha first: it has a problem.
    let (alpha, beta) = (
        overview.body.find(">alpha<").unwrap(),
        overview.body.find(">beta<").unwrap(),
    );
    assert!(alpha < beta);
    assert!(overview.body.contains("badge failing"), "{}", overview.body);
    // alpha's sparkline: its days from the summaries, the day with a failure in red.
    let alpha_row = &overview.body[alpha..];
    let alpha_row = &alpha_row[..alpha_row.find("</tr>").unwrap()];
    assert!(
        alpha_row.contains("<svg class=\"spark\"")
            && alpha_row.contains("class=\"bar failed\"")
            && alpha_row.contains("last 14 days: 3 runs")
            && alpha_row.contains(", 1 failed"),
        "{alpha_row}"
    );

    let agent = page(&app, "/ui/agents/alpha", Some(&token)).await;
    assert_eq!(agent.status, StatusCode::OK);
    // A chart per numeric metric (items, ratio), with the latest values as points.
    assert_eq!(
        agent.body.matches("<figure class=\"metric\">").count(),
        2,
        "{}",
        agent.body
    );
    assert_eq!(agent.body.matches("<circle class=\"point\"").count(), 6);
    assert!(agent.body.contains(&format!("href=\"/ui/runs/{failed}\"")));
    assert!(agent.body.contains("alpha &lt;i&gt;failed&lt;/i&gt;"));

    let run = page(&app, &format!("/ui/runs/{failed}"), Some(&token)).await;
    assert_eq!(run.status, StatusCode::OK);
    let escaped = "&lt;script&gt;alert('x')&lt;/script&gt; &amp; &lt;b&gt;more&lt;/b&gt;";
    assert_eq!(
        run.body.matches(escaped).count(),
        2,
        "the error and the text metric"
    );
    // The metrics as stored: 0.1 stays 0.1.
    assert!(
        run.body.contains(">0.1<") && run.body.contains(">42<"),
        "{}",
        run.body
    );

    let incidents = page(&app, "/ui/incidents", Some(&token)).await;
    assert_eq!(incidents.status, StatusCode::OK);
    assert!(incidents.body.contains("alpha &lt;i&gt;failed&lt;/i&gt;"));
    assert!(
        incidents
            .body
            .contains("href=\"/ui/agents/alpha?from=2025-12-31T23:00:00Z\""),
        "{}",
        incidents.body
    );

    for answer in [&overview, &agent, &run, &incidents] {
        assert!(!answer.body.contains("<script>alert"), "{}", answer.body);
        assert!(!answer.body.contains("<i>failed"));
        let csp = answer.headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'") && csp.contains("script-src 'self'"));
        assert_eq!(answer.headers["cache-control"], "no-store");
        assert_eq!(answer.headers["x-frame-options"], "DENY");
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["referrer-policy"], "no-referrer");
    }

    // The filter and the run status tabs.
    let filtered = page(&app, "/ui?q=BET", Some(&token)).await;
    assert!(filtered.body.contains(">beta<") && !filtered.body.contains(">alpha<"));
    let failures = page(&app, "/ui/agents/alpha?status=failed", Some(&token)).await;
    assert_eq!(failures.body.matches("href=\"/ui/runs/").count(), 1);
}

async fn a_token_limited_to_some_agents_sees_only_those(db: Db) {
    let app = TestApp::spawn(db).await;
    seed(&app).await;
    let beta_run: i64 = app
        .db
        .scalar("select id from agent_runs where agent_name = 'beta'")
        .await;
    let token = app.token_for(&[Scope::Read], Some(&["alpha"]));
    let overview = page(&app, "/ui", Some(&token)).await;
    assert!(overview.body.contains(">alpha<") && !overview.body.contains("beta"));
    for path in ["/ui/agents/beta".to_owned(), format!("/ui/runs/{beta_run}")] {
        let answer = page(&app, &path, Some(&token)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!answer.body.contains("beta run"), "{path}");
    }
}

async fn bad_parameters_get_a_page_that_says_which(db: Db) {
    let app = TestApp::spawn(db).await;
    seed(&app).await;
    let token = app.token_for(&[Scope::Read], None);
    for (path, status, says) in [
        (
            "/ui/agents/alpha?status=bogus",
            StatusCode::BAD_REQUEST,
            "expected running",
        ),
        (
            "/ui/agents/alpha?from=yesterday",
            StatusCode::BAD_REQUEST,
            "RFC 3339",
        ),
        (
            "/ui/agents/alpha?cursor=x",
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        ("/ui/agents/alpha?nope=1", StatusCode::BAD_REQUEST, "nope"),
        (
            "/ui/agents/no%20such",
            StatusCode::NOT_FOUND,
            "no agent named",
        ),
        // A valid name nobody knows: no run, no expectation, no incident.
        (
            "/ui/agents/nobody_knows",
            StatusCode::NOT_FOUND,
            "no agent named &quot;nobody_knows&quot;",
        ),
        ("/ui/runs/abc", StatusCode::NOT_FOUND, "no run"),
        (
            "/ui/runs/999999",
            StatusCode::NOT_FOUND,
            "no run with id &quot;999999&quot;",
        ),
    ] {
        let answer = page(&app, path, Some(&token)).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.body.contains(says), "{path}: {}", answer.body);
        assert!(
            answer.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
}

async fn runs_page_through_older_links(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = Utc::now();
    for minutes in 1..=30 {
        app.push("paged", now - TimeDelta::minutes(minutes), None)
            .await;
    }
    let token = app.token_for(&[Scope::Read], None);
    let first = page(&app, "/ui/agents/paged", Some(&token)).await;
    assert_eq!(first.body.matches("href=\"/ui/runs/").count(), 25);
    let older = first
        .body
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|href| href.contains("cursor=")))
        .unwrap()
        .replace("&amp;", "&");
    let second = page(&app, &older, Some(&token)).await;
    assert_eq!(second.status, StatusCode::OK, "{older}");
    assert_eq!(second.body.matches("href=\"/ui/runs/").count(), 5);
    assert!(second.body.contains("newest"));
}

async fn pages_and_assets_are_compressed(db: Db) {
    let app = TestApp::spawn(db).await;
    seed(&app).await;
    let token = app.token_for(&[Scope::Read], None);
    for path in ["/ui", "/ui/assets/console.css", "/ui/assets/console.js"] {
        let answer = client()
            .get(app.url(path))
            .header("cookie", format!("console_token={token}"))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        assert_eq!(answer.headers()["content-encoding"], "gzip", "{path}");
    }
}

/// An agent known only by its expectation has a page (it is expected, it never ran); a name
/// nobody knows is a 404 (`bad_parameters_get_a_page_that_says_which`).
async fn an_agent_known_only_by_its_expectation_has_a_page(db: Db) {
    let app = TestApp::spawn(db).await;
    app.create_expectation("nightly", r#"{"every": "1h"}"#)
        .await;
    let token = app.token_for(&[Scope::Read], None);
    let answer = page(&app, "/ui/agents/nightly", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.body.contains("nightly"));
}

/// The forms that act, over HTTP: shown to an operate token only, refused without the page's
/// form key, from another site, or from a read token (nothing written), and with them the
/// API's own action, audited, answered by a redirect back.
async fn the_forms_that_act_need_the_operate_scope_and_the_sessions_key(db: Db) {
    let app = TestApp::spawn(db).await;
    let (status, _) = app
        .publish_jobs(
            json!([{"job": "etl", "cron": "0 3 * * *", "timezone": "UTC", "enabled": true}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let reader = app.token_for(&[Scope::Read], None);
    let operator = app.token_for(&[Scope::Operate], None);
    let read_view = page(&app, "/ui/agents/etl", Some(&reader)).await;
    assert_eq!(read_view.status, StatusCode::OK);
    assert!(
        read_view.body.contains("Runs on its schedule"),
        "{}",
        read_view.body
    );
    assert!(
        !read_view.body.contains("form_key"),
        "a read token sees no form"
    );
    let op_view = page(&app, "/ui/agents/etl", Some(&operator)).await;
    assert_eq!(op_view.status, StatusCode::OK, "an operate token may view");
    let key = op_view
        .body
        .split(r#"name="form_key" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(key.len(), 64, "{key}");

    let post = |token: String, key: String, origin: String, body: String| {
        let app = &app;
        async move {
            read(
                client()
                    .post(app.url("/ui/jobs/etl/pause"))
                    .header("cookie", format!("console_token={token}"))
                    .header("origin", origin)
                    .header("host", app.addr.to_string())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("form_key={key}&note={body}&for=2h"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let here = format!("http://{}", app.addr);
    let refused = [
        post(
            operator.clone(),
            "0".repeat(64),
            here.clone(),
            "forged".into(),
        )
        .await,
        post(operator.clone(), String::new(), here.clone(), "none".into()).await,
        post(
            operator.clone(),
            key.clone(),
            "https://evil.example".into(),
            "elsewhere".into(),
        )
        .await,
        // A read token cannot act, whatever key it sends.
        post(reader.clone(), key.clone(), here.clone(), "reader".into()).await,
    ];
    for answer in &refused {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    }
    let none: i64 = app.db.scalar("select count(*) from job_pauses").await;
    assert_eq!(none, 0);

    let done = post(operator.clone(), key.clone(), here.clone(), "deploy".into()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/ui/agents/etl");
    let (by, note): (String, Option<String>) =
        app.db.row("select paused_by, note from job_pauses").await;
    assert_eq!((by.as_str(), note.as_deref()), ("test", Some("deploy")));
    let audited: i64 = app
        .db
        .scalar("select count(*) from audit_log where action = 'pause'")
        .await;
    assert_eq!(audited, 1);
    let paused = page(&app, "/ui/agents/etl", Some(&operator)).await;
    assert!(paused.body.contains("Paused"), "{}", paused.body);
    assert!(paused.body.contains(r#"action="/ui/jobs/etl/resume""#));
    let audit = page(&app, "/ui/audit", Some(&reader)).await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(audit.body.contains("deploy"), "{}", audit.body);

    // Run now with params that are not a JSON object: a page saying so, nothing asked for.
    let refused = read(
        client()
            .post(app.url("/ui/jobs/etl/run"))
            .header("cookie", format!("console_token={operator}"))
            .header("origin", here.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("form_key={key}&params=%5B1%2C2%5D"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("not a JSON object"),
        "{}",
        refused.body
    );
    let asked: i64 = app.db.scalar("select count(*) from job_commands").await;
    assert_eq!(asked, 0);

    // A silence of two kinds, `paused` among them (every kind is a box of the form).
    let incidents = page(&app, "/ui/incidents", Some(&operator)).await;
    for kind in agent_sdk::wire::IncidentKind::ALL {
        assert!(
            incidents
                .body
                .contains(&format!(r#"name="kind" value="{}""#, kind.as_str())),
            "{}",
            kind.as_str()
        );
    }
    let silenced = read(
        client()
            .post(app.url("/ui/silences"))
            .header("cookie", format!("console_token={operator}"))
            .header("origin", here.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "form_key={key}&agents=etl&for=2h&kind=paused&kind=failing&kind=bogus"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(silenced.status, StatusCode::SEE_OTHER, "{}", silenced.body);
    let kinds: Option<String> = app.db.scalar("select kinds from silences").await;
    assert_eq!(kinds.as_deref(), Some(r#"["failing","paused"]"#));
}

on_both_backends!(
    the_forms_that_act_need_the_operate_scope_and_the_sessions_key,
    an_agent_known_only_by_its_expectation_has_a_page,
    signing_in_takes_a_read_token_and_keeps_it_in_a_strict_cookie,
    every_page_shows_the_database_escaped,
    a_token_limited_to_some_agents_sees_only_those,
    bad_parameters_get_a_page_that_says_which,
    runs_page_through_older_links,
    pages_and_assets_are_compressed,
);
