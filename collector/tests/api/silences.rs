//! Silences: alerts of matching incidents held while one is in force; a transition still open
//! when it ends sent then, the others never; who may silence what; bad input refused.

use chrono::{TimeDelta, Utc};
use collector::auth::Scope;
use collector::watch::alerts::{Alerts, WebhookBody};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::alerts::{bodies, receiver};
use crate::helpers::{Db, TestApp, error_field, into_json, on_both_backends};

async fn post(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    into_json(
        app.client
            .post(app.url("/silences"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn delete(app: &TestApp, token: &str, id: i64) -> (StatusCode, Value) {
    into_json(
        app.client
            .delete(app.url(&format!("/silences/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// (event, agent) of each message the receiver got.
fn messages(state: &crate::alerts::Receiver) -> Vec<(String, String)> {
    bodies(state)
        .iter()
        .map(|(_, body)| {
            let message: WebhookBody = serde_json::from_slice(body).unwrap();
            (message.event, message.incident.agent_name)
        })
        .collect()
}

async fn a_silence_holds_alerts_and_sends_what_is_still_open_when_it_ends(db: Db) {
    let app = TestApp::spawn(db).await;
    let (addr, state) = receiver(0).await;
    let alerts = Alerts::parse(&format!(
        r#"
        [[routes]]
        name = "ops"
        type = "webhook"
        url = "http://{addr}/hook"
        secret = "s"
        kinds = ["failing"]
        "#
    ))
    .unwrap();
    let store = app.db.store();
    let op = app.token_for(&[Scope::Operate, Scope::Read], None);
    let until = Utc::now() + TimeDelta::hours(1);
    let (status, silence) = post(
        &app,
        &op,
        json!({"agents": ["nightly", "flaky*"], "kinds": ["failing"], "until": until.to_rfc3339(), "note": "maintenance"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{silence}");
    assert_eq!(silence["active"], true);
    assert_eq!(silence["kinds"], json!(["failing"]));
    // From the silence on.
    let now = Utc::now();

    // During the silence: three agents fail; only the one it does not match is sent.
    for agent in ["nightly", "flaky_a", "other"] {
        app.push(agent, now - TimeDelta::minutes(1), Some("boom"))
            .await;
    }
    app.watch_at(now).await;
    alerts.pass(&store, now).await.unwrap();
    assert_eq!(
        messages(&state),
        [("opened".to_owned(), "other".to_owned())]
    );
    // flaky_a recovers during the silence: its transitions are never sent.
    app.push("flaky_a", now, None).await;
    app.watch_at(now + TimeDelta::seconds(1)).await;
    alerts
        .pass(&store, now + TimeDelta::seconds(2))
        .await
        .unwrap();
    assert_eq!(messages(&state).len(), 1);
    let held: i64 = app
        .db
        .scalar("select count(*) from alert_events where silenced_by is not null")
        .await;
    assert_eq!(held, 3, "nightly's opened, flaky_a's opened and resolved");
    // The incidents themselves open and resolve as usual.
    let open: i64 = app
        .db
        .scalar("select count(*) from incidents where resolved_at is null")
        .await;
    assert_eq!(open, 2);

    // The silence ends: nightly, still failing, is sent once; flaky_a never.
    alerts
        .pass(&store, until + TimeDelta::seconds(1))
        .await
        .unwrap();
    alerts
        .pass(&store, until + TimeDelta::minutes(1))
        .await
        .unwrap();
    assert_eq!(
        messages(&state),
        [
            ("opened".to_owned(), "other".to_owned()),
            ("opened".to_owned(), "nightly".to_owned())
        ]
    );
    let (_, listed) = app.get("/silences").await;
    assert_eq!(listed["silences"][0]["id"], silence["id"]);
}

async fn a_silence_ended_by_hand_releases_what_it_held(db: Db) {
    let app = TestApp::spawn(db).await;
    let (addr, state) = receiver(0).await;
    let alerts = Alerts::parse(&format!(
        "[[routes]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"s\"\n"
    ))
    .unwrap();
    let store = app.db.store();
    let op = app.token_for(&[Scope::Operate, Scope::Read], None);
    let (_, silence) = post(
        &app,
        &op,
        json!({"agents": ["*"], "until": (Utc::now() + TimeDelta::hours(8)).to_rfc3339()}),
    )
    .await;
    let id = silence["id"].as_i64().unwrap();
    let now = Utc::now();
    app.push("nightly", now - TimeDelta::minutes(1), Some("boom"))
        .await;
    app.watch_at(now).await;
    alerts.pass(&store, now).await.unwrap();
    assert!(messages(&state).is_empty());
    let (status, _) = delete(&app, &op, id).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = delete(&app, &op, id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    alerts
        .pass(&store, Utc::now() + TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        messages(&state),
        [("opened".to_owned(), "nightly".to_owned())]
    );
    let (_, listed) = app.get("/silences").await;
    assert_eq!(listed["silences"][0]["active"], false);
    assert!(listed["silences"][0]["ended_at"].is_string());
    // Listed for SILENCES_KEPT after it ended, then no more.
    let kept = collector::store::SILENCES_KEPT;
    let listed_at = |at| store.list_silences(at, |_| true);
    assert_eq!(
        listed_at(Utc::now() + kept - TimeDelta::minutes(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        listed_at(Utc::now() + kept + TimeDelta::minutes(1))
            .await
            .unwrap()
            .is_empty()
    );
    let (_, audit) = app.get("/audit").await;
    let actions: Vec<(&str, i64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["silence_id"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(actions, [("unsilence", id), ("silence", id)]);
}

async fn who_may_silence_what_and_bad_input(db: Db) {
    let app = TestApp::spawn(db).await;
    let op = app.token_for(&[Scope::Operate, Scope::Read], None);
    let team = app.token_for(&[Scope::Operate, Scope::Read], Some(&["team_a_*"]));
    let reader = app.token_for(&[Scope::Read], None);
    let until = (Utc::now() + TimeDelta::hours(1)).to_rfc3339();
    let count = "select (select count(*) from silences) + (select count(*) from audit_log)";
    // Refused, nothing written.
    let (status, _) = post(&app, &reader, json!({"agents": ["x"], "until": until})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for agents in [json!(["*"]), json!(["team_b_x"]), json!(["team_*"])] {
        let (status, body) = post(&app, &team, json!({"agents": agents, "until": until})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{agents}: {body}");
    }
    let past = (Utc::now() - TimeDelta::minutes(1)).to_rfc3339();
    let far = (Utc::now() + TimeDelta::days(91)).to_rfc3339();
    for (body, field) in [
        (json!({"agents": [], "until": until}), "agents"),
        (json!({"agents": ["bad name"], "until": until}), "agents[0]"),
        (json!({"agents": ["x"], "until": past}), "until"),
        (json!({"agents": ["x"], "until": far}), "until"),
        (
            json!({"agents": ["x"], "until": until, "kinds": ["sleepy"]}),
            "kinds[0]",
        ),
        (json!({"agents": ["x"]}), "until"),
        (
            json!({"agents": ["x"], "until": until, "note": "n".repeat(1001)}),
            "note",
        ),
    ] {
        let (status, answer) = post(&app, &op, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(error_field(&answer), field, "{body}: {answer}");
    }
    let none: i64 = app.db.scalar(count).await;
    assert_eq!(none, 0);

    // Within its agents, a limited token silences, sees, and ends its own; not another's.
    let (status, mine) = post(
        &app,
        &team,
        json!({"agents": ["team_a_etl", "team_a_x*"], "until": until}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let (_, everyone) = post(&app, &op, json!({"agents": ["*"], "until": until})).await;
    let (_, seen) = app.get_with("/silences", Some(&team)).await;
    assert_eq!(seen["silences"].as_array().unwrap().len(), 1, "{seen}");
    let (status, _) = delete(&app, &team, everyone["id"].as_i64().unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = delete(&app, &team, mine["id"].as_i64().unwrap()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = delete(&app, &op, 999_999).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

on_both_backends!(
    a_silence_holds_alerts_and_sends_what_is_still_open_when_it_ends,
    a_silence_ended_by_hand_releases_what_it_held,
    who_may_silence_what_and_bad_input,
);
