//! The delivery client against a scripted HTTP peer: what is retried, what is not, and the
//! spool's order. (The real collector is exercised in the scheduler's end-to-end tests.)

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_sdk::client::{CollectorClient, Deliverer, Outcome, RetryPolicy, Spool};
use agent_sdk::wire::{Metrics, RunReport};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// A scripted answer: the status, and a `Retry-After` value.
type Answer = (u16, Option<&'static str>);

/// Answers each POST /metrics with the next scripted answer; 201 when the script is empty.
/// Records the run keys it received.
#[derive(Clone, Default)]
struct Peer {
    script: Arc<Mutex<VecDeque<Answer>>>,
    received: Arc<Mutex<Vec<String>>>,
}

async fn answer(State(peer): State<Peer>, body: String) -> (StatusCode, HeaderMap, String) {
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    peer.received
        .lock()
        .unwrap()
        .push(report["run_key"].as_str().unwrap_or_default().to_owned());
    let (status, retry_after) = peer
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((201, None));
    let mut headers = HeaderMap::new();
    if let Some(seconds) = retry_after {
        headers.insert("retry-after", seconds.parse().unwrap());
    }
    let body = if status < 300 {
        r#"{"run_id": 7}"#.to_owned()
    } else {
        r#"{"error":{"code":"x","message":"scripted","details":null}}"#.to_owned()
    };
    (StatusCode::from_u16(status).unwrap(), headers, body)
}

async fn serve_on(listener: tokio::net::TcpListener, peer: Peer) {
    let app = Router::new()
        .route("/metrics", post(answer))
        .with_state(peer);
    tokio::spawn(async move { axum::serve(listener, app).await });
}

async fn peer(script: Vec<Answer>) -> (String, Peer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let peer = Peer {
        script: Arc::new(Mutex::new(script.into())),
        ..Peer::default()
    };
    serve_on(listener, peer.clone()).await;
    (url, peer)
}

fn report() -> RunReport {
    let now = chrono::Utc::now();
    RunReport {
        agent_name: "sdk_test".into(),
        metrics: Metrics::from([("n", 1)]),
        started_at: now,
        finished_at: now,
        error: None,
        run_key: Some(uuid::Uuid::new_v4()),
        trigger: None,
        scheduled_for: None,
        host: None,
        cancelled: false,
    }
}

const FAST: RetryPolicy = RetryPolicy {
    attempts: 4,
    base_delay: Duration::from_millis(10),
    max_delay: Duration::from_secs(2),
};

fn deliverer(url: &str, spool: &std::path::Path) -> Deliverer {
    let client = CollectorClient::new(url, Some("token".into()))
        .unwrap()
        .with_retry(FAST);
    Deliverer::new(client, Spool::open(spool).unwrap())
}

#[tokio::test]
async fn server_errors_are_retried_until_stored() {
    let (url, peer) = peer(vec![(503, Some("0")), (500, None), (408, None)]).await;
    let dir = tempfile::tempdir().unwrap();

    let outcome = deliverer(&url, dir.path())
        .deliver(&report())
        .await
        .unwrap();

    assert_eq!(
        outcome,
        Outcome::Delivered {
            run_id: 7,
            created: true
        }
    );
    assert_eq!(peer.received.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn too_many_requests_waits_as_long_as_retry_after_says() {
    let (url, peer) = peer(vec![(429, Some("1"))]).await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();

    let outcome = deliverer(&url, dir.path())
        .deliver(&report())
        .await
        .unwrap();

    assert_eq!(
        outcome,
        Outcome::Delivered {
            run_id: 7,
            created: true
        }
    );
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "honoured Retry-After: 1"
    );
    assert_eq!(peer.received.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_report_is_not_retried_and_is_kept_in_rejected() {
    let (url, peer) = peer(vec![(422, None)]).await;
    let dir = tempfile::tempdir().unwrap();
    let deliverer = deliverer(&url, dir.path());

    let outcome = deliverer.deliver(&report()).await.unwrap();

    assert!(
        matches!(outcome, Outcome::Rejected { status: 422, .. }),
        "{outcome:?}"
    );
    assert_eq!(peer.received.lock().unwrap().len(), 1, "no retry");
    assert_eq!(
        deliverer.spool().depth().await.unwrap(),
        0,
        "not queued for redelivery"
    );
    let kept: Vec<String> = std::fs::read_dir(dir.path().join("rejected"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        kept.len(),
        2,
        "the report and the collector's answer: {kept:?}"
    );
    let answer = kept.iter().find(|n| n.ends_with(".answer.txt")).unwrap();
    assert!(
        std::fs::read_to_string(dir.path().join("rejected").join(answer))
            .unwrap()
            .starts_with("422 ")
    );
}

#[tokio::test]
async fn unreachable_means_spooled_then_redelivered_oldest_first() {
    // A port with nothing on it yet.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}");
    let dir = tempfile::tempdir().unwrap();
    let deliverer = deliverer(&url, dir.path());
    let reports: Vec<RunReport> = (0..3).map(|_| report()).collect();

    for report in &reports {
        assert_eq!(deliverer.deliver(report).await.unwrap(), Outcome::Spooled);
    }
    assert_eq!(deliverer.spool().depth().await.unwrap(), 3);
    assert_eq!(
        deliverer.redeliver_once().await.unwrap(),
        0,
        "still down: nothing leaves"
    );

    let peer = Peer::default();
    serve_on(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        peer.clone(),
    )
    .await;
    assert_eq!(deliverer.redeliver_once().await.unwrap(), 3);

    assert_eq!(deliverer.spool().depth().await.unwrap(), 0);
    let expected: Vec<String> = reports
        .iter()
        .map(|r| r.run_key.unwrap().to_string())
        .collect();
    assert_eq!(*peer.received.lock().unwrap(), expected, "oldest first");
}

#[tokio::test]
async fn a_corrupt_spool_file_is_set_aside_not_retried_forever() {
    let (url, peer) = peer(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let deliverer = deliverer(&url, dir.path());
    std::fs::write(
        dir.path().join("00000000000000000001-000000-x.json"),
        b"{ half a rep",
    )
    .unwrap();
    deliverer.spool().store(&report()).await.unwrap();

    assert_eq!(deliverer.redeliver_once().await.unwrap(), 1);

    assert_eq!(deliverer.spool().depth().await.unwrap(), 0);
    assert_eq!(peer.received.lock().unwrap().len(), 1);
    assert!(
        dir.path()
            .join("rejected/00000000000000000001-000000-x.json")
            .exists()
    );
}

/// A collector with `POST /metrics/batch`: answers each report of a batch with the next
/// scripted status (201 when the script is empty), and records the batch sizes it received.
#[derive(Clone, Default)]
struct BatchPeer {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    batches: Arc<Mutex<Vec<usize>>>,
}

async fn answer_batch(
    State(peer): State<BatchPeer>,
    body: String,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    let batch: agent_sdk::wire::BatchRequest = serde_json::from_str(&body).unwrap();
    peer.batches.lock().unwrap().push(batch.reports.len());
    let results: Vec<serde_json::Value> = batch
        .reports
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let status = peer.statuses.lock().unwrap().pop_front().unwrap_or(201);
            if status < 300 {
                serde_json::json!({"status": status, "run_id": i})
            } else {
                serde_json::json!({"status": status, "error": {"code": "x", "message": "scripted", "details": null}})
            }
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "results": results })),
    )
}

#[tokio::test]
async fn the_spool_is_redelivered_in_batches_each_report_settled_by_its_own_result() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let peer = BatchPeer {
        // The first batch: stored, refused, failed in the database, stored again (a repeat).
        statuses: Arc::new(Mutex::new(VecDeque::from([201, 422, 500, 200]))),
        ..BatchPeer::default()
    };
    let app = Router::new()
        .route("/metrics/batch", post(answer_batch))
        .with_state(peer.clone())
        .merge(
            Router::new()
                .route("/metrics", post(answer))
                .with_state(Peer::default()),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let deliverer = deliverer(&url, dir.path());
    let count = agent_sdk::client::REDELIVERY_BATCH + 3;
    for _ in 0..count {
        deliverer.spool().store(&report()).await.unwrap();
    }

    let first = deliverer.redeliver_once().await.unwrap();

    assert_eq!(
        *peer.batches.lock().unwrap(),
        [agent_sdk::client::REDELIVERY_BATCH, 3]
    );
    assert_eq!(first, count - 2, "all but the refused and the failed one");
    assert_eq!(
        deliverer.spool().depth().await.unwrap(),
        1,
        "the 500 waits for the next pass"
    );
    let rejected = std::fs::read_dir(dir.path().join("rejected"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    assert_eq!(rejected, 1, "the 422 is set aside");

    assert_eq!(deliverer.redeliver_once().await.unwrap(), 1);
    assert_eq!(deliverer.spool().depth().await.unwrap(), 0);
}
