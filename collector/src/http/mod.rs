//! The HTTP API: one router, one middleware stack, one error shape.

mod agents;
mod api_error;
mod audit;
mod caller;
mod console;
mod expectations;
mod extract;
mod health;
mod incidents;
mod jobs;
mod openapi;
mod params;
pub mod prometheus;
mod refusals;
mod runs;
mod scheduler_commands;
mod silences;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use api_error::ApiError;
pub use extract::parse_json;

use crate::auth::TokenKeys;
use crate::config::HttpConfig;
use crate::ingest::Ingest;
use crate::store::Store;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<App>);

pub(crate) struct App {
    /// Reads, and the writes that are one store call (expectations).
    pub(crate) store: Store,
    /// Runs: stored and started.
    pub(crate) ingest: Ingest,
    pub(crate) tokens: TokenKeys,
    pub(crate) prometheus: PrometheusHandle,
    /// `GET /openapi.json`: the document of the routes [`router`] serves, made with them.
    pub(crate) openapi: std::sync::OnceLock<utoipa::openapi::OpenApi>,
}

impl AppState {
    pub(crate) fn new(store: Store, ingest: Ingest, tokens: TokenKeys) -> Self {
        Self(Arc::new(App {
            store,
            ingest,
            tokens,
            prometheus: prometheus::handle(),
            openapi: std::sync::OnceLock::new(),
        }))
    }
}

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// Every route with its handler and its OpenAPI operation, from the handler's
/// `#[utoipa::path]`: a route is served only as it is documented (`routes!`), so the document
/// cannot leave one out (collector/tests/api/health.rs checks that no route is added another
/// way).
fn api(config: &HttpConfig) -> OpenApiRouter<AppState> {
    let (schemas, paths, batch) = routes!(runs::post_batch);
    let batch = batch.layer(DefaultBodyLimit::max(config.batch_body_limit));
    let (schemas_s, paths_s, scheduled) = routes!(expectations::put_scheduled);
    // Up to 10 000 jobs, each with its longest strings, fits.
    let scheduled = scheduled.layer(DefaultBodyLimit::max(expectations::SCHEDULE_BODY_LIMIT));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(runs::list_metrics, runs::post_metrics))
        .routes((schemas, paths, batch))
        .routes(routes!(runs::list_runs, runs::post_start))
        .routes(routes!(runs::get_run))
        .routes(routes!(agents::list_agents))
        .routes(routes!(
            expectations::put_expectation,
            expectations::delete_expectation
        ))
        .routes(routes!(expectations::list_expectations))
        .routes((schemas_s, paths_s, scheduled))
        .routes(routes!(incidents::list_missed))
        .routes(routes!(incidents::list_late))
        .routes(routes!(incidents::list_incidents))
        .routes(routes!(agents::list_summaries))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::pause_job))
        .routes(routes!(jobs::resume_job))
        .routes(routes!(jobs::run_job))
        .routes(routes!(jobs::backfill_job))
        .routes(routes!(jobs::cancel_run))
        .routes(routes!(audit::list_audit))
        .routes(routes!(silences::create_silence, silences::list_silences))
        .routes(routes!(silences::end_silence))
        .routes(routes!(scheduler_commands::scheduler_commands))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(prometheus::render))
        .routes(routes!(openapi::document))
        .merge(console::router())
}

/// The whole API with its middleware, ready to serve.
pub(crate) fn router(state: AppState, config: &HttpConfig) -> Router {
    let request_timeout = config.request_timeout;
    let (routes, document) = api(config).split_for_parts();
    // Set once per state: a second router over the same state serves the same routes.
    let _ = state.openapi.set(document);
    routes
        .route_layer(middleware::from_fn(prometheus::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let request_id = req
                                .headers()
                                .get("x-request-id")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default();
                            tracing::info_span!(
                                "request",
                                method = %req.method(),
                                uri = %req.uri().path(),
                                request_id,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(|_panic| {
                    ApiError::Internal(anyhow::anyhow!("a request handler panicked"))
                        .into_response()
                }))
                .layer(middleware::from_fn(move |req: Request, next: Next| {
                    with_timeout(request_timeout, req, next)
                })),
        )
        .with_state(state)
}

/// A request that outlives `timeout` is dropped (rolling back any open transaction) and
/// answered 503, so a client never hangs on us.
///
/// Not tower-http's `TimeoutLayer`: it answers with an empty body, and every error of this API
/// is the JSON error shape with `Retry-After` on a 503 (`ApiError`), which clients parse.
async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::client(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request did not complete within {timeout:?}; retry later"),
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::client(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
