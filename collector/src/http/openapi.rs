//! `GET /openapi.json`: the API's OpenAPI document, generated from the handlers and the wire
//! types, so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agent platform collector",
        description = "Stores agent runs and their metrics; serves runs, metrics and summaries."
    ),
    paths(
        super::runs::post_metrics,
        super::runs::post_batch,
        super::runs::post_start,
        super::runs::list_runs,
        super::runs::get_run,
        super::runs::list_metrics,
        super::agents::list_agents,
        super::agents::list_summaries,
        super::expectations::put_expectation,
        super::expectations::delete_expectation,
        super::expectations::list_expectations,
        super::expectations::put_scheduled,
        super::incidents::list_missed,
        super::incidents::list_late,
        super::incidents::list_incidents,
        super::health::live,
        super::health::ready,
        super::console::pages::overview_page::overview,
        super::console::pages::agent_page::agent,
        super::console::pages::run_page::run,
        super::console::pages::incidents_page::incidents,
        super::console::sign_in_page,
        super::console::sign_in,
        super::console::sign_out,
        super::console::stylesheet,
        super::console::script,
    ),
    modifiers(&BearerAuth)
)]
pub(super) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // The console's pages: the token a sign-in form took, in an HttpOnly cookie.
        components.add_security_scheme(
            "console_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("console_token"))),
        );
    }
}

pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
