//! Alerts: a real local HTTP receiver stands for the webhook and Slack; the test drives the
//! watcher's and the sender's clocks. One message per transition, signed; failures retried
//! with backoff and every attempt recorded; a receiver that stays down is given up on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use collector::watch::alerts::{Alerts, SIGNATURE_HEADER, WebhookBody, sign};
use serde_json::Value;

use crate::helpers::{Db, TestApp, on_both_backends};

const SECRET: &str = "webhook-secret";

#[derive(Default)]
pub(crate) struct Received {
    /// Answers 500 to this many requests first.
    fail_first: usize,
    requests: Vec<(HeaderMap, Bytes)>,
    /// When each request arrived.
    times: Vec<std::time::Instant>,
}

pub(crate) type Receiver = Arc<Mutex<Received>>;

async fn receive(State(state): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let mut state = state.lock().unwrap();
    state.requests.push((headers, body));
    state.times.push(std::time::Instant::now());
    if state.requests.len() <= state.fail_first {
        AxumStatus::INTERNAL_SERVER_ERROR
    } else {
        AxumStatus::OK
    }
}

/// A receiver on a random port that fails its first `fail_first` requests.
pub(crate) async fn receiver(fail_first: usize) -> (SocketAddr, Receiver) {
    let state: Receiver = Arc::new(Mutex::new(Received {
        fail_first,
        requests: Vec::new(),
        times: Vec::new(),
    }));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

fn alerts(addr: SocketAddr, kind: &str, give_up_after: &str) -> Alerts {
    Alerts::parse(&format!(
        r#"
        public_url = "https://ops.example.com"
        give_up_after = "{give_up_after}"
        [[routes]]
        name = "ops"
        type = "{kind}"
        url = "http://{addr}/hook"
        secret = "{SECRET}"
        kinds = ["failing"]
        "#
    ))
    .unwrap()
}

impl TestApp {
    /// (attempt, status code) of every attempt, in order.
    async fn attempts(&self) -> Vec<(i32, Option<i32>)> {
        self.db
            .rows("select attempt, status_code from alert_attempts order by id")
            .await
    }
}

pub(crate) fn bodies(state: &Receiver) -> Vec<(HeaderMap, Bytes)> {
    state.lock().unwrap().requests.clone()
}

async fn a_webhook_down_three_times_gets_its_alert_once_signed_with_four_attempts(db: Db) {
    let app = TestApp::spawn(db).await;
    let (addr, state) = receiver(3).await;
    let alerts = alerts(addr, "webhook", "24h");
    let store = app.db.store();
    let now = Utc::now();

    app.push(
        "nightly",
        now - TimeDelta::minutes(1),
        Some("step 1 ok\nTraceback:\n  boom"),
    )
    .await;
    app.watch_at(now).await;
    // Three failures, then delivered: each retry waits for its backoff (30 s, 1 min, 2 min).
    let mut at = now;
    for expected in [0, 0, 0, 1] {
        let sent = alerts.pass(&store, at).await.unwrap();
        assert_eq!(sent.delivered, expected, "at {at}");
        // Not yet due again: nothing is sent.
        let early = alerts
            .pass(&store, at + TimeDelta::seconds(1))
            .await
            .unwrap();
        assert_eq!(early.delivered + early.failed, 0);
        at += TimeDelta::minutes(5);
    }
    assert_eq!(
        app.attempts().await,
        [
            (1, Some(500)),
            (2, Some(500)),
            (3, Some(500)),
            (4, Some(200))
        ]
    );
    let received = bodies(&state);
    assert_eq!(received.len(), 4);
    // One delivery, retried: the same id on each attempt, for the receiver to drop repeats.
    let deliveries: std::collections::HashSet<&str> = received
        .iter()
        .map(|(headers, _)| headers["x-alert-delivery"].to_str().unwrap())
        .collect();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    for (headers, body) in &received {
        let signature = headers[SIGNATURE_HEADER].to_str().unwrap();
        assert_eq!(
            signature,
            sign(SECRET, body),
            "signed with the route's secret"
        );
    }
    let message: WebhookBody = serde_json::from_slice(&received[3].1).unwrap();
    assert_eq!(message.event, "opened");
    assert_eq!(message.incident.agent_name, "nightly");
    assert_eq!(message.incident.kind.as_str(), "failing");
    assert!(
        message.error.as_deref().unwrap().ends_with("boom"),
        "{message:?}"
    );
    assert_eq!(
        message.url.as_deref(),
        Some("https://ops.example.com/ui/agents/nightly")
    );
    let run: i64 = app.db.scalar("select max(id) from agent_runs").await;
    assert_eq!(
        message.run_url,
        Some(format!("https://ops.example.com/ui/runs/{run}"))
    );

    // Failing again continues the incident: nothing sent. A success resolves it: one message.
    app.push("nightly", now, Some("again")).await;
    app.watch_at(now + TimeDelta::seconds(1)).await;
    alerts.pass(&store, at).await.unwrap();
    assert_eq!(bodies(&state).len(), 4);
    app.push("nightly", now + TimeDelta::seconds(2), None).await;
    app.watch_at(now + TimeDelta::seconds(3)).await;
    alerts.pass(&store, at).await.unwrap();
    alerts.pass(&store, at + TimeDelta::hours(1)).await.unwrap();
    let received = bodies(&state);
    assert_eq!(received.len(), 5);
    let message: WebhookBody = serde_json::from_slice(&received[4].1).unwrap();
    assert_eq!(message.event, "resolved");
    assert!(message.incident.resolved_at.is_some());
}

async fn a_slack_route_gets_text_and_blocks(db: Db) {
    let app = TestApp::spawn(db).await;
    let (addr, state) = receiver(0).await;
    let alerts = alerts(addr, "slack", "24h");
    let now = Utc::now();
    app.push(
        "nightly",
        now - TimeDelta::minutes(1),
        Some("Traceback:\n  KeyError: 'price'"),
    )
    .await;
    app.watch_at(now).await;
    let sent = alerts.pass(&app.db.store(), now).await.unwrap();
    assert_eq!(sent.delivered, 1);
    let received = bodies(&state);
    let message: Value = serde_json::from_slice(&received[0].1).unwrap();
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .contains("nightly: failing opened"),
        "{message}"
    );
    let block = &message["blocks"][0];
    assert_eq!(
        (block["type"].as_str(), block["text"]["type"].as_str()),
        (Some("section"), Some("mrkdwn"))
    );
    let text = block["text"]["text"].as_str().unwrap();
    assert!(text.contains("*nightly*: failing since"), "{text}");
    assert!(
        text.contains("KeyError: 'price'"),
        "the error's last lines: {text}"
    );
    assert!(
        text.contains("<https://ops.example.com/ui/agents/nightly|"),
        "{text}"
    );
    let run: i64 = app.db.scalar("select max(id) from agent_runs").await;
    assert!(
        text.contains(&format!(
            "<https://ops.example.com/ui/runs/{run}|Open the run>"
        )),
        "{text}"
    );
}

async fn an_alert_that_cannot_be_delivered_is_given_up_and_recorded(db: Db) {
    let app = TestApp::spawn(db).await;
    let (addr, _state) = receiver(usize::MAX).await;
    let alerts = alerts(addr, "webhook", "2m");
    let store = app.db.store();
    let now = Utc::now();
    app.push("nightly", now - TimeDelta::minutes(1), Some("boom"))
        .await;
    app.watch_at(now).await;
    assert_eq!(alerts.pass(&store, now).await.unwrap().failed, 1);
    let sent = alerts
        .pass(&store, now + TimeDelta::minutes(3))
        .await
        .unwrap();
    assert_eq!(sent.gave_up, 1);
    assert_eq!(app.attempts().await, [(1, Some(500)), (2, Some(500))]);
    let status: String = app.db.scalar("select status from alert_deliveries").await;
    assert_eq!(status, "gave_up");
    // Given up: never tried again.
    alerts
        .pass(&store, now + TimeDelta::hours(5))
        .await
        .unwrap();
    assert_eq!(app.attempts().await.len(), 2);
}

async fn a_silent_agent_opens_one_missed_alert_and_its_push_one_resolved(db: Db) {
    let app = TestApp::spawn(db).await;
    let (addr, state) = receiver(0).await;
    let alerts = Alerts::parse(&format!(
        "[[routes]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\nkinds = [\"missed\"]\n"
    ))
    .unwrap();
    let request = app
        .client
        .put(app.url("/agents/heartbeat/expectation"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(r#"{"every": "2s", "grace": "1s"}"#);
    let (status, body) = crate::helpers::into_json(request.send().await.unwrap()).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let t0: DateTime<Utc> = body["created_at"].as_str().unwrap().parse().unwrap();

    // Ten seconds without a push: slots missed, one incident, one message (this route takes
    // `missed` only: by now the agent is also `stale`, three periods without a success).
    let later = t0 + TimeDelta::seconds(10);
    app.watch_at(later).await;
    let missed: i64 = app.db.scalar("select count(*) from missed_slots").await;
    assert_eq!(missed, 4, "slots at +2, +4, +6 and +8 s");
    alerts.pass(&app.db.store(), later).await.unwrap();
    // A restarted collector (another store, the same database) sends nothing twice.
    app.watch_at(later).await;
    alerts.pass(&app.db.store(), later).await.unwrap();
    let received = bodies(&state);
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(
        headers[SIGNATURE_HEADER].to_str().unwrap(),
        sign(SECRET, body)
    );
    let message: WebhookBody = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (message.event.as_str(), message.incident.kind.as_str()),
        ("opened", "missed")
    );

    // A push resolves it: one message more.
    app.push("heartbeat", later + TimeDelta::milliseconds(500), None)
        .await;
    app.watch_at(later + TimeDelta::seconds(1)).await;
    alerts
        .pass(&app.db.store(), later + TimeDelta::seconds(1))
        .await
        .unwrap();
    alerts
        .pass(&app.db.store(), later + TimeDelta::seconds(2))
        .await
        .unwrap();
    let received = bodies(&state);
    assert_eq!(received.len(), 2);
    let message: WebhookBody = serde_json::from_slice(&received[1].1).unwrap();
    assert_eq!(
        (message.event.as_str(), message.incident.kind.as_str()),
        ("resolved", "missed")
    );
}

/// A receiver that accepts connections and never answers.
async fn hung_receiver() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// 8 incidents, three routes, one of whose receivers hangs: the server's own loop (a watcher
/// pass a second) gets the other two routes' 8 messages each to them within the watcher's
/// interval plus a second of the failed runs' reports; the hung route delays only itself.
/// (Before, delivery ran inline in the watcher's loop, one attempt after another, 10 s each.)
async fn a_hung_route_delays_only_itself(db: Db) {
    let hung = hung_receiver().await;
    let (a, state_a) = receiver(0).await;
    let (b, state_b) = receiver(0).await;
    let route = |name: &str, addr: SocketAddr| {
        format!(
            "[[routes]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"s\"\nkinds = [\"failing\"]\n"
        )
    };
    // The hung route first: it is not ahead of the others in any queue.
    let alerts = Alerts::parse(&format!(
        "{}{}{}",
        route("hung", hung),
        route("a", a),
        route("b", b)
    ))
    .unwrap();
    let every = std::time::Duration::from_secs(1);
    let rules = collector::watch::WatchRules {
        every,
        ..Default::default()
    };
    let app = TestApp::spawn_alerting(db, rules, alerts).await;
    let mut reported = Vec::new();
    for i in 0..8 {
        app.push(
            &format!("agent-{i}"),
            Utc::now() - TimeDelta::seconds(5),
            Some("boom"),
        )
        .await;
        reported.push(std::time::Instant::now());
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while (bodies(&state_a).len() < 8 || bodies(&state_b).len() < 8)
        && std::time::Instant::now() < until
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (name, state) in [("a", &state_a), ("b", &state_b)] {
        let received = state.lock().unwrap();
        assert_eq!(received.requests.len(), 8, "route {name}");
        // Each message after its own report (the latest report bounds them all).
        let last_report = reported[7];
        let slowest = received
            .times
            .iter()
            .map(|t| t.saturating_duration_since(last_report))
            .max()
            .unwrap();
        eprintln!(
            "route {name}: its 8 messages arrived at most {slowest:?} after the last report (watcher every {every:?}; one route hung)"
        );
        assert!(
            slowest <= every + std::time::Duration::from_secs(1),
            "route {name}: {slowest:?}"
        );
    }
}

/// A route's URL is a secret: an attempt that fails to connect is recorded (a row the
/// read-only role reads) with why, and without the URL.
async fn a_routes_url_is_never_recorded(db: Db) {
    let app = TestApp::spawn(db).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let alerts = Alerts::parse(&format!(
        "[[routes]]\nname = \"ops-slack\"\ntype = \"slack\"\nurl = \"http://{closed}/services/T000/B000/XOXBSECRET\"\n"
    ))
    .unwrap();
    let now = Utc::now();
    app.push("nightly", now - TimeDelta::minutes(1), Some("boom"))
        .await;
    app.watch_at(now).await;
    assert_eq!(alerts.pass(&app.db.store(), now).await.unwrap().failed, 1);
    let error: String = app.db.scalar("select error from alert_attempts").await;
    assert!(!error.is_empty());
    for secret in ["XOXBSECRET", "/services/", &closed.port().to_string()] {
        assert!(!error.contains(secret), "{secret} in {error:?}");
    }
    assert!(!format!("{alerts:?}").contains("XOXBSECRET"));
}

on_both_backends!(
    a_hung_route_delays_only_itself,
    a_routes_url_is_never_recorded,
    a_webhook_down_three_times_gets_its_alert_once_signed_with_four_attempts,
    a_slack_route_gets_text_and_blocks,
    an_alert_that_cannot_be_delivered_is_given_up_and_recorded,
    a_silent_agent_opens_one_missed_alert_and_its_push_one_resolved,
);

/// Two collector replicas on one PostgreSQL: their senders run at once, one message goes out.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn two_replicas_send_one_message_per_transition(pool: sqlx::PgPool) {
    let app = TestApp::spawn(Db::Postgres(pool.clone())).await;
    let (addr, state) = receiver(0).await;
    let (one, two) = (
        alerts(addr, "webhook", "24h"),
        alerts(addr, "webhook", "24h"),
    );
    let now = Utc::now();
    app.push("nightly", now - TimeDelta::minutes(1), Some("boom"))
        .await;
    app.watch_at(now).await;
    let (store_one, store_two) = (app.db.store(), app.db.store());
    for round in 0..5 {
        let at = now + TimeDelta::seconds(round);
        let (a, b) = tokio::join!(one.pass(&store_one, at), two.pass(&store_two, at));
        a.unwrap();
        b.unwrap();
    }
    assert_eq!(bodies(&state).len(), 1);
    assert_eq!(app.attempts().await, [(1, Some(200))]);
}
