//! Bearer tokens: each way a token can be wrong gets 401 or 403, and writes nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use collector::auth::SecretKey;
use collector::auth::{Claims, Scope, TokenKeys};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Db, SECRET, TestApp, error_code, into_json, on_both_backends, report};

fn claims(exp_offset: i64) -> Claims {
    Claims {
        sub: "tester".into(),
        exp: Utc::now().timestamp() + exp_offset,
        iat: None,
        nbf: None,
        scope: "ingest read".into(),
        agents: None,
    }
}

fn unsigned(payload: serde_json::Value) -> String {
    with_header(r#"{"alg":"none","typ":"JWT"}"#, payload, "")
}

/// A token with any header and signature, as an attacker would make it.
fn with_header(header: &str, payload: serde_json::Value, signature: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(header);
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{header}.{body}.{signature}")
}

/// A private key made by openssl for this test alone, in DER: `openssl genpkey {args}`, then
/// `convert` (another openssl command reading DER) into the form jsonwebtoken reads.
fn private_key(args: &str, convert: &str) -> Vec<u8> {
    let output = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("openssl genpkey {args} -outform DER | openssl {convert}"),
        ])
        .output()
        .expect("openssl runs (.ci/run installs it)");
    assert!(
        output.status.success(),
        "openssl genpkey {args} | openssl {convert}"
    );
    output.stdout
}

/// PKCS#1, RSA's own form.
const TO_PKCS1: &str = "pkey -inform DER -outform DER -traditional";
/// PKCS#8.
const TO_PKCS8: &str = "pkcs8 -topk8 -nocrypt -inform DER -outform DER";

/// Tokens of the asymmetric algorithms, signed with real keys, and an RS256 token whose
/// "signature" is an HMAC under the collector's secret (algorithm confusion): HS256 only, so
/// each is refused, and no RSA private-key operation ever runs on the server (which is why
/// deny.toml may ignore RUSTSEC-2023-0071 in the `rsa` crate).
async fn asymmetric_and_confused_tokens_are_401_and_write_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let claims = claims(3600);
    let signed = |algorithm, key: EncodingKey| {
        jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap()
    };
    let rsa = private_key("-algorithm RSA -pkeyopt rsa_keygen_bits:2048", TO_PKCS1);
    let ec = private_key("-algorithm EC -pkeyopt ec_paramgen_curve:P-256", TO_PKCS8);
    let ed = private_key("-algorithm ED25519", TO_PKCS8);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims).unwrap());
    let signing_input = format!("{header}.{payload}");
    let hmac = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .unwrap();
    let cases = [
        (
            "RS256",
            signed(Algorithm::RS256, EncodingKey::from_rsa_der(&rsa)),
        ),
        (
            "ES256",
            signed(Algorithm::ES256, EncodingKey::from_ec_der(&ec)),
        ),
        (
            "EdDSA",
            signed(Algorithm::EdDSA, EncodingKey::from_ed_der(&ed)),
        ),
        (
            "RS256 keyed with the HMAC secret",
            format!("{signing_input}.{hmac}"),
        ),
    ];
    for (case, token) in cases {
        let (status, body) = app
            .post_raw(
                &report("authz").to_string(),
                "application/json",
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{case}");
        let (status, _) = app.get_with("/runs", Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: reads too");
    }
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn bad_tokens_are_401_and_write_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let keys = &app.keys;
    let other_key =
        TokenKeys::new(&SecretKey::parse("another-secret-another-secret-0123".into()).unwrap());
    let mut not_yet = claims(3600);
    not_yet.nbf = Some(Utc::now().timestamp() + 600);
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims(3600),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let no_sub = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": Utc::now().timestamp() + 3600, "scope": "ingest"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let unknown_scope = keys
        .sign(&Claims {
            scope: "admin".into(),
            ..claims(3600)
        })
        .unwrap();

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("not bearer", Some(format!("Basic {}", app.token))),
        ("garbage", Some("Bearer not-a-jwt".into())),
        ("empty bearer", Some("Bearer ".into())),
        (
            "wrong key",
            Some(format!("Bearer {}", other_key.sign(&claims(3600)).unwrap())),
        ),
        (
            "expired",
            Some(format!("Bearer {}", keys.sign(&claims(-3600)).unwrap())),
        ),
        (
            "not yet valid",
            Some(format!("Bearer {}", keys.sign(&not_yet).unwrap())),
        ),
        (
            "alg none",
            Some(format!("Bearer {}", unsigned(json!(claims(3600))))),
        ),
        ("HS384", Some(format!("Bearer {hs384}"))),
        ("missing sub", Some(format!("Bearer {no_sub}"))),
        ("unknown scope", Some(format!("Bearer {unknown_scope}"))),
    ];
    for (case, header) in cases {
        let mut request = app
            .client
            .post(app.url("/metrics"))
            .header("content-type", "application/json")
            .body(report("authz").to_string());
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        let challenge = response.headers().get("www-authenticate").cloned();
        let (status, body) = crate::helpers::into_json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(error_code(&body), "unauthorized", "{case}");
        assert!(challenge.is_some(), "{case}: 401 carries WWW-Authenticate");
        assert!(
            !body.to_string().contains(SECRET),
            "{case}: the secret never leaks"
        );
    }
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn wrong_scope_is_403(db: Db) {
    let app = TestApp::spawn(db).await;
    let read_only = app.token_for(&[Scope::Read], None);
    let ingest_only = app.token_for(&[Scope::Ingest], None);

    let (status, body) = app
        .post_raw(
            &report("scoped").to_string(),
            "application/json",
            Some(&read_only),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "forbidden");
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));

    // The scope before the body: a read token gets 403 for a bad body too, on every write that
    // takes one, not the body's 400 or 422.
    for (method, path, body) in [
        (reqwest::Method::POST, "/metrics", "{not json"),
        (reqwest::Method::POST, "/metrics", r#"{"agent_name": 1}"#),
        (reqwest::Method::POST, "/runs", "{}"),
        (reqwest::Method::POST, "/metrics/batch", "[]"),
        (
            reqwest::Method::PUT,
            "/agents/scoped/expectation",
            r#"{"every": 5}"#,
        ),
        (reqwest::Method::PUT, "/expectations/scheduler", "{}"),
    ] {
        let answer = crate::helpers::http_client()
            .request(method.clone(), app.url(path))
            .bearer_auth(&read_only)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            StatusCode::FORBIDDEN,
            "{method} {path} {body}"
        );
    }
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));

    for path in ["/runs", "/metrics", "/agents", "/summaries", "/runs/1"] {
        let (status, _) = app.get_with(path, Some(&ingest_only)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let (status, _) = app.get_with(path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

async fn agent_allow_list_admits_exact_names_and_prefixes_only(db: Db) {
    let app = TestApp::spawn(db).await;
    let token = app.token_for(&[Scope::Ingest], Some(&["hello", "billing_*"]));

    for (agent, expected) in [
        ("hello", StatusCode::CREATED),
        ("billing_daily", StatusCode::CREATED),
        ("hello2", StatusCode::FORBIDDEN),
        ("billingXdaily", StatusCode::FORBIDDEN),
        ("other", StatusCode::FORBIDDEN),
    ] {
        let (status, body) = app
            .post_raw(&report(agent).to_string(), "application/json", Some(&token))
            .await;
        assert_eq!(status, expected, "{agent}: {body}");
    }
    let (runs, ..) = app.row_counts().await;
    assert_eq!(runs, 2);
}

async fn health_needs_no_token(db: Db) {
    let app = TestApp::spawn(db).await;
    for path in ["/health", "/health/ready"] {
        let (status, body) = app.get_with(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

/// Every write of the API, walked from the OpenAPI document (so a new one cannot be left
/// out: it fails here until it has a body below), with a token limited to `mine` against
/// `theirs`: each is refused with 403, and nothing is written, `theirs`'s expectation and
/// running run stay as they were.
async fn an_agent_limited_token_writes_nothing_of_another_agent(db: Db) {
    let app = TestApp::spawn(db).await;
    // theirs: an expectation of each source, a running run.
    let (status, _) = app
        .put_expectation("theirs", r#"{"every": "1h"}"#, Some(&app.token))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let answer = app
        .client
        .put(app.url("/expectations/scheduler"))
        .bearer_auth(&app.token)
        .json(&serde_json::json!({"jobs": [{"job": "theirs", "cron": "0 3 * * *", "timezone": "UTC", "enabled": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let key = uuid::Uuid::new_v4();
    let (status, started) = app
        .post_start(&crate::lifecycle::start("theirs", key, "scheduler-1"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let run_id = started["run_id"].as_i64().unwrap();
    let silence = app
        .db
        .store()
        .create_silence(
            &["theirs".parse().unwrap()],
            &[],
            chrono::Utc::now() + chrono::TimeDelta::hours(1),
            None,
            "them",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let operated = "select (select count(*) from job_pauses) + (select count(*) from job_commands) \
                    + (select count(*) from audit_log) + (select count(*) from silences where ended_at is null)";
    let before = (
        app.db.scalar::<i64>(operated).await,
        app.row_counts().await,
        app.db
            .rows::<(String, String, Option<String>)>(
                "select source, name, publisher from agent_expectations order by source",
            )
            .await,
    );

    let mine = app.token_for(
        &[Scope::Ingest, Scope::Read, Scope::Operate],
        Some(&["mine"]),
    );
    let theirs_report = crate::lifecycle::finished("theirs", key);
    let (_, doc) = app.get_with("/openapi.json", None).await;
    let mut walked = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if method == "get" || !bearer {
                continue;
            }
            let body = match (method.as_str(), path.as_str()) {
                ("post", "/metrics") => theirs_report.clone(),
                ("post", "/metrics/batch") => serde_json::json!({"reports": [theirs_report]}),
                ("post", "/runs") => crate::lifecycle::start("theirs", key, "intruder"),
                ("put", "/agents/{name}/expectation") => serde_json::json!({"every": "5m"}),
                ("delete", "/agents/{name}/expectation") => serde_json::Value::Null,
                ("put", "/expectations/scheduler") => serde_json::json!({"jobs": [
                    {"job": "theirs", "cron": "* * * * *", "timezone": "UTC", "enabled": true}]}),
                ("post", "/jobs/{job}/pause") => serde_json::json!({"note": "mine now"}),
                ("post", "/jobs/{job}/resume") => serde_json::json!({}),
                ("post", "/jobs/{job}/runs") => serde_json::json!({"params": {"n": 1}}),
                ("post", "/runs/{id}/cancel") => serde_json::json!({"note": "mine"}),
                ("post", "/silences") => serde_json::json!({"agents": ["theirs"],
                    "until": (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339()}),
                ("delete", "/silences/{id}") => serde_json::Value::Null,
                ("post", "/jobs/{job}/backfill") => serde_json::json!({
                    "from": (chrono::Utc::now() - chrono::TimeDelta::days(2)).to_rfc3339(),
                    "to": (chrono::Utc::now() - chrono::TimeDelta::days(1)).to_rfc3339()}),
                other => panic!("{other:?}: a write this test has no body for; add one"),
            };
            let url = app.url(
                &path
                    .replace("{name}", "theirs")
                    .replace("{job}", "theirs")
                    .replace(
                        "{id}",
                        &if path.starts_with("/silences") {
                            silence.id
                        } else {
                            run_id
                        }
                        .to_string(),
                    ),
            );
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), url)
                .bearer_auth(&mine);
            let request = if body.is_null() {
                request
            } else {
                request.json(&body)
            };
            let (status, answer) = into_json(request.send().await.unwrap()).await;
            let refused = match path.as_str() {
                // Refused report by report: the batch itself is answered.
                "/metrics/batch" => {
                    status == StatusCode::OK && answer["results"][0]["status"] == 403
                }
                _ => status == StatusCode::FORBIDDEN,
            };
            assert!(refused, "{method} {path}: {status} {answer}");
            walked.push(format!("{method} {path}"));
        }
    }
    assert_eq!(walked.len(), 13, "{walked:?}");
    let after = (
        app.db.scalar::<i64>(operated).await,
        app.row_counts().await,
        app.db
            .rows::<(String, String, Option<String>)>(
                "select source, name, publisher from agent_expectations order by source",
            )
            .await,
    );
    assert_eq!(before, after);
}

on_both_backends!(
    an_agent_limited_token_writes_nothing_of_another_agent,
    bad_tokens_are_401_and_write_nothing,
    asymmetric_and_confused_tokens_are_401_and_write_nothing,
    wrong_scope_is_403,
    agent_allow_list_admits_exact_names_and_prefixes_only,
    health_needs_no_token,
);
