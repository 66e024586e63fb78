//! `GET /openapi.json`: the API's OpenAPI document, generated from the handlers and the wire
//! types, so it cannot drift from the code. Its paths are the router's own (`http/mod.rs`
//! `api`: each route is added with its handler's operation); here, what the whole document
//! says besides.

use axum::Json;
use axum::extract::State;

use super::AppState;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Agent platform collector",
        description = "Stores agent runs and their metrics; serves runs, metrics and summaries."
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

/// The document [`super::router`] made with its routes.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub(super) async fn document(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(state.openapi.get().cloned().unwrap_or_else(ApiDoc::openapi))
}
