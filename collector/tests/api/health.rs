//! Liveness, readiness through a database outage, Prometheus, request ids.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use collector::config::HttpConfig;
use collector::store::Store;
use reqwest::StatusCode;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::AbortHandle;

use crate::helpers::{Db, TestApp, error_code, on_both_backends, report};

/// A TCP proxy in front of PostgreSQL that a test can cut (refusing new connections and
/// dropping open ones) and restore: the database "goes away" without touching the server.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accept_up, accept_connections) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed at once
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                accept_connections.lock().await.push(task.abort_handle());
            }
        });
        Self {
            port,
            up,
            connections,
        }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().await.drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn ready_status(app: &TestApp) -> StatusCode {
    app.get_with("/health/ready", None).await.0
}

/// Posts a report of `agent` and checks the answer: 503 `unavailable` with Retry-After.
async fn assert_unavailable(app: &TestApp, agent: &str) -> serde_json::Value {
    let response = app
        .client
        .post(app.url("/metrics"))
        .bearer_auth(&app.token)
        .json(&report(agent))
        .send()
        .await
        .unwrap();
    let retry_after = response.headers().get("retry-after").cloned();
    let (status, body) = crate::helpers::into_json(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "unavailable");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    body
}

/// SQLite only: its outage is another process holding the file's write lock past the busy
/// timeout. The report is answered 503 with Retry-After, nothing is half-written, and the
/// next one is stored once the lock is released.
#[sqlx::test(migrator = "collector::store::SQLITE_MIGRATOR")]
async fn a_sqlite_file_locked_by_another_writer_is_503_and_ingest_resumes(pool: sqlx::SqlitePool) {
    use sqlx::Connection;
    let app = TestApp::spawn(Db::Sqlite(pool.clone())).await;
    let mut other = sqlx::SqliteConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::raw_sql("begin immediate")
        .execute(&mut other)
        .await
        .unwrap();

    assert_unavailable(&app, "locked").await;

    sqlx::raw_sql("rollback").execute(&mut other).await.unwrap();
    assert_eq!(
        app.post_report(&report("locked")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(app.row_counts().await, (1, 3, 1, 2));
}

/// PostgreSQL only: the outage is a TCP proxy between the collector and its server.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn an_outage_is_503_with_retry_after_and_ingestion_resumes_without_restart(pool: PgPool) {
    let options = pool.connect_options();
    let proxy = Proxy::start(format!("{}:{}", options.get_host(), options.get_port())).await;
    let through_proxy = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with((*options).clone().host("127.0.0.1").port(proxy.port));
    let app = TestApp::spawn_on_store(
        Store::from(through_proxy),
        Db::Postgres(pool),
        HttpConfig::default(),
    )
    .await;

    assert_eq!(ready_status(&app).await, StatusCode::OK);
    assert_eq!(
        app.post_report(&report("outage")).await.0,
        StatusCode::CREATED
    );

    proxy.cut().await;
    let started = Instant::now();
    assert_eq!(ready_status(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    let body = assert_unavailable(&app, "outage").await;
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internals in the body: {body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered, not hung"
    );

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready_status(&app).await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "ready again after the database returns"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.post_report(&report("outage")).await.0,
        StatusCode::CREATED
    );
    let (runs, ..) = app.row_counts().await;
    assert_eq!(runs, 2, "the refused report was not half-written");
}

#[sqlx::test(migrations = false)]
async fn not_ready_before_migrations(pool: PgPool) {
    let app = TestApp::spawn(Db::Postgres(pool)).await;
    let (status, body) = app.get_with("/health/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not migrated"),
        "{body}"
    );
    assert_eq!(app.get_with("/health", None).await.0, StatusCode::OK);
}

async fn prometheus_reports_requests_runs_and_pool(db: Db) {
    let app = TestApp::spawn(db).await;
    app.post_report(&report("prom")).await;

    // The watcher's first pass runs at start-up, beside the report.
    let mut text = String::new();
    for _ in 0..100 {
        text = app
            .client
            .get(app.url("/prometheus"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("collector_watch_pass_seconds_count") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    for expected in [
        r#"collector_runs_stored_total{status="success"}"#,
        r#"http_requests_total{method="POST",path="/metrics",status="201"}"#,
        "http_request_duration_seconds_bucket",
        r#"collector_db_pool_connections{state="idle"}"#,
        "collector_db_pool_max_connections",
        "collector_watch_pass_seconds_count",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
}

async fn request_ids_are_generated_or_passed_through(db: Db) {
    let app = TestApp::spawn(db).await;
    let generated = app.client.get(app.url("/health")).send().await.unwrap();
    assert!(generated.headers().contains_key("x-request-id"));
    let passed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(passed.headers()["x-request-id"], "abc-123");
}

async fn a_client_trickling_its_headers_is_disconnected(db: Db) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(
        db,
        HttpConfig {
            header_read_timeout: Duration::from_millis(500),
            ..HttpConfig::default()
        },
    )
    .await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"POST /metrics HTTP/1.1\r\nHost: collector\r\n")
        .await
        .unwrap();

    // Meanwhile the server serves others.
    assert_eq!(app.get_with("/health", None).await.0, StatusCode::OK);

    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("the server closes the connection instead of waiting forever");
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => {
            let answer = String::from_utf8_lossy(&buf[..n]);
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
}

/// A failure that is not the client's is an opaque 500: no SQL, no table names, no trace.
async fn internal_errors_answer_opaquely(db: Db) {
    let app = TestApp::spawn(db.clone()).await;
    // Sabotage: the summary table is gone, so the ingest transaction fails half-way.
    app.db
        .execute("drop table agent_metric_daily_summaries")
        .await;

    let (status, body) = app.post_report(&report("sabotaged")).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(error_code(&body), "internal");
    let text = body.to_string().to_lowercase();
    for leak in [
        "agent_", "relation", "insert", "select", "sqlx", "panicked", ".rs",
    ] {
        assert!(!text.contains(leak), "{leak} in {body}");
    }
    let runs: i64 = app.db.scalar("select count(*) from agent_runs").await;
    assert_eq!(runs, 0, "the transaction rolled back whole");
}

/// The document's paths are the router's: each route is added with its handler's operation
/// (`routes!` in collector/src/http), never another way (no `.route(` there), and every
/// operation the document lists is served (none answers the router's 404 or 405).
async fn the_openapi_document_describes_every_endpoint(db: Db) {
    let app = TestApp::spawn(db).await;
    let (status, doc) = app.get_with("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let http = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut files = vec![http];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            for way in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                assert!(
                    !source.contains(way),
                    "{}: a route added with {way} is not in the document; use routes!",
                    path.display()
                );
            }
        }
    }

    let mut served = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = app.url(&path.replace("{id}", "1").replace("{name}", "someone"));
            let answer = app
                .client
                .request(method.to_uppercase().parse().unwrap(), url)
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
                || (status == StatusCode::NOT_FOUND
                    && body["error"]["code"] == "not_found"
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m == "no such endpoint"));
            assert!(!unrouted, "{method} {path}: {status} {body}");
            served += 1;
        }
    }
    for path in [
        "/metrics",
        "/metrics/batch",
        "/runs",
        "/runs/{id}",
        "/agents",
        "/agents/{name}/expectation",
        "/expectations",
        "/expectations/scheduler",
        "/missed",
        "/late",
        "/incidents",
        "/summaries",
        "/health",
        "/health/ready",
        "/prometheus",
        "/openapi.json",
        "/ui",
        "/ui/login",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(served >= 25, "{served} operations");
    assert!(doc["paths"]["/metrics"]["post"]["responses"]["201"].is_object());
    assert!(doc["paths"]["/metrics"]["get"]["responses"]["200"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["console_cookie"]["in"],
        "cookie"
    );
    assert!(doc["paths"]["/ui"]["get"]["responses"]["200"]["content"]["text/html"].is_object());
    // Every page documents the refusals it shares (the sign-in page, the database down).
    for page in ["/ui", "/ui/agents/{name}", "/ui/runs/{id}", "/ui/incidents"] {
        for status in ["401", "403", "503"] {
            let response = &doc["paths"][page]["get"]["responses"][status];
            assert!(
                response["content"]["text/html"].is_object(),
                "{page} {status}"
            );
        }
    }
    assert_eq!(
        doc["components"]["schemas"]["MetricValue"]["oneOf"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

on_both_backends!(
    prometheus_reports_requests_runs_and_pool,
    request_ids_are_generated_or_passed_through,
    a_client_trickling_its_headers_is_disconnected,
    internal_errors_answer_opaquely,
    the_openapi_document_describes_every_endpoint,
);
