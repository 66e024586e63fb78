//! The operator console (`/ui`): server-rendered pages over the same reads as the API.
//!
//! Sign-in takes a token of scope `read` or `operate`, pasted into a form, and keeps it in an HttpOnly,
//! SameSite=Strict cookie scoped to `/ui` (Secure when the request came over TLS); every page
//! verifies it as the API verifies a bearer token, so a token limited to some agents shows
//! only those. No token ever appears in a URL or in a page. Pages are HTML from maud (escaped
//! by construction), work without JavaScript, and carry a Content-Security-Policy that allows
//! only this origin's stylesheet and script. A token of scope `operate` also gets the forms that
//! act (`actions.rs`): each is a POST from this origin carrying the session's form key.

mod actions;
mod chart;
pub(super) mod pages;
mod view;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, ORIGIN, REFERRER_POLICY,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, extract::rejection::FormRejection};
use serde::Deserialize;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::auth::{Grant, Scope};
use crate::store::AgentAccess;

/// The cookie that holds the signed-in token.
const COOKIE_NAME: &str = "console_token";
/// How long a browser keeps the cookie; the token's own expiry still applies on every page.
const COOKIE_MAX_AGE_SECS: u32 = 7 * 24 * 3600;
/// Only this origin's stylesheet and script; inline SVG needs nothing more.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// `/ui` and its pages, with the console's headers and compression.
pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pages::overview_page::overview))
        .routes(routes!(pages::agent_page::agent))
        .routes(routes!(pages::run_page::run))
        .routes(routes!(pages::incidents_page::incidents))
        .routes(routes!(pages::audit_page::audit))
        .routes(routes!(actions::pause))
        .routes(routes!(actions::resume))
        .routes(routes!(actions::run_now))
        .routes(routes!(actions::cancel))
        .routes(routes!(actions::silence))
        .routes(routes!(actions::end_silence))
        .routes(routes!(sign_in_page, sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(stylesheet))
        .routes(routes!(script))
        .layer(middleware::from_fn(console_headers))
        .layer(CompressionLayer::new().quality(CompressionLevel::Precise(2)))
}

/// The signed-in operator: the verified grant of the token in the console's cookie, and the
/// key its forms carry (`TokenKeys::form_key` of the token).
pub(super) struct Viewer {
    grant: Grant,
    form_key: String,
}

impl Viewer {
    pub(super) fn access(&self) -> AgentAccess {
        AgentAccess::new(self.grant.agent_patterns())
    }

    pub(super) fn allows_agent(&self, agent: &str) -> bool {
        self.grant.allows_agent(agent)
    }

    /// Whether the token may act (scope `operate`): the pages show the forms that do.
    pub(super) fn can_operate(&self) -> bool {
        self.grant.has_scope(Scope::Operate)
    }

    pub(super) fn form_key(&self) -> &str {
        &self.form_key
    }

    /// Whether `given` is this session's form key (compared in constant time).
    pub(super) fn form_key_matches(&self, given: &str) -> bool {
        let ours = self.form_key.as_bytes();
        given.len() == ours.len()
            && given
                .bytes()
                .zip(ours)
                .fold(0, |differ, (a, b)| differ | (a ^ b))
                == 0
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // Not signed in: the sign-in form, in place (401, as any request without a token).
        let Some(token) = cookie(&parts.headers, COOKIE_NAME) else {
            return Err((StatusCode::UNAUTHORIZED, view::sign_in(None)).into_response());
        };
        read_grant(state, token)
            .map(|grant| Self {
                grant,
                form_key: state.tokens.form_key(token),
            })
            .map_err(|(status, message)| refused(&parts.headers, status, &message))
    }
}

/// The grant of a token that may read or operate (an operator sees what they act on); else the
/// status to answer and why, for the operator. The one check of the console's token, at
/// sign-in and on every page.
fn read_grant(state: &AppState, token: &str) -> Result<Grant, (StatusCode, String)> {
    match state.tokens.verify(token) {
        Ok(grant) if grant.has_scope(Scope::Read) || grant.has_scope(Scope::Operate) => Ok(grant),
        Ok(_) => Err((
            StatusCode::FORBIDDEN,
            "That token has neither the read nor the operate scope: make one with `collector token --sub NAME --scope read`."
                .to_owned(),
        )),
        Err(err) => {
            tracing::info!(reason = %err, "console token refused");
            Err((
                StatusCode::UNAUTHORIZED,
                format!("That token was refused ({err}); sign in again with a valid one."),
            ))
        }
    }
}

/// The sign-in page with `message`, and the cookie cleared.
fn refused(headers: &HeaderMap, status: StatusCode, message: &str) -> Response {
    let mut response = (status, view::sign_in(Some(message))).into_response();
    set_cookie(&mut response, &clear_cookie(headers));
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

/// Whether the browser reached us over TLS: nginx says so in `X-Forwarded-Proto`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
}

fn cookie_attributes(headers: &HeaderMap) -> &'static str {
    if over_tls(headers) {
        "Path=/ui; HttpOnly; SameSite=Strict; Secure"
    } else {
        "Path=/ui; HttpOnly; SameSite=Strict"
    }
}

fn session_cookie(headers: &HeaderMap, token: &str) -> String {
    format!(
        "{COOKIE_NAME}={token}; Max-Age={COOKIE_MAX_AGE_SECS}; {}",
        cookie_attributes(headers)
    )
}

fn clear_cookie(headers: &HeaderMap) -> String {
    format!("{COOKIE_NAME}=; Max-Age=0; {}", cookie_attributes(headers))
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// A form posted from another site is refused: neither sign-in nor sign-out may be forced on
/// an operator by a page they visit. Browsers say where a request comes from in
/// `Sec-Fetch-Site`; older ones in `Origin` (which is `null` under `Referrer-Policy:
/// no-referrer`, so it is only the fallback).
fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = header("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    let Some(origin) = header(ORIGIN.as_str()) else {
        // Browsers send one or the other with every form POST; a client that sends neither is
        // not a page in a browser.
        return true;
    };
    // The whole origin, scheme, host and port, as browsers compare them: the request's scheme
    // is the one nginx answered on (`X-Forwarded-Proto`), plain HTTP without it; its host
    // and port are `Host` (nginx passes the browser's, port included).
    let scheme = header("x-forwarded-proto")
        .and_then(|p| p.split(',').next())
        .map_or("http", str::trim);
    let ours = header(HOST.as_str()).and_then(|host| web_origin(scheme, host));
    let theirs = origin
        .split_once("://")
        .and_then(|(scheme, authority)| web_origin(scheme, authority));
    theirs.is_some() && theirs == ours
}

/// (scheme, host, port) of `scheme://authority`, the port its scheme's when absent.
fn web_origin(scheme: &str, authority: &str) -> Option<(String, String, u16)> {
    let scheme = scheme.to_ascii_lowercase();
    let authority: axum::http::uri::Authority = authority.parse().ok()?;
    let port = match (authority.port_u16(), scheme.as_str()) {
        (Some(port), _) => port,
        (None, "https") => 443,
        (None, "http") => 80,
        (None, _) => return None,
    };
    Some((scheme, authority.host().to_ascii_lowercase(), port))
}

/// The console's sign-in form.
#[utoipa::path(get, path = "/ui/login", tag = "console",
    responses((status = 200, description = "The form", content_type = "text/html", body = String)))]
pub(super) async fn sign_in_page() -> Response {
    view::sign_in(None).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct SignIn {
    /// A token of scope `read` or `operate`.
    #[schema(min_length = 1)]
    token: String,
}

/// `POST /ui/login`: a token of scope `read` or `operate` sets the cookie and goes to the overview; any
/// other gets the sign-in page again with what was wrong.
#[utoipa::path(post, path = "/ui/login", tag = "console",
    request_body(content = SignIn, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: the cookie set, to /ui"),
        (status = 400, description = "Not a form: the form again, saying so", content_type = "text/html", body = String),
        (status = 401, description = "No token, or a refused one: the form again, saying why", content_type = "text/html", body = String),
        (status = 403, description = "A token with neither the read nor the operate scope, or a form from another site: the form again", content_type = "text/html", body = String),
    ))]
pub(super) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return refused(
            &headers,
            StatusCode::FORBIDDEN,
            "Sign-in is accepted from this site's own form only.",
        );
    }
    let Ok(Form(SignIn { token })) = form else {
        return refused(
            &headers,
            StatusCode::BAD_REQUEST,
            "The form did not arrive as sent; paste the token again.",
        );
    };
    let token = token.trim();
    if token.is_empty() {
        return refused(&headers, StatusCode::UNAUTHORIZED, "Paste a token first.");
    }
    match read_grant(&state, token) {
        Ok(grant) => {
            tracing::info!(subject = %grant.subject, "console sign-in");
            let mut response = Redirect::to("/ui").into_response();
            set_cookie(&mut response, &session_cookie(&headers, token));
            response
        }
        Err((status, message)) => refused(&headers, status, &message),
    }
}

/// `POST /ui/logout`: clears the cookie.
#[utoipa::path(post, path = "/ui/logout", tag = "console",
    responses(
        (status = 303, description = "The cookie cleared: to /ui/login"),
        (status = 403, description = "A form from another site"),
    ))]
pub(super) async fn sign_out(headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut response = Redirect::to("/ui/login").into_response();
    set_cookie(&mut response, &clear_cookie(&headers));
    response
}

#[utoipa::path(get, path = "/ui/assets/console.css", tag = "console",
    responses((status = 200, description = "The console's stylesheet", content_type = "text/css", body = String)))]
pub(super) async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

#[utoipa::path(get, path = "/ui/assets/console.js", tag = "console",
    responses((status = 200, description = "The console's script", content_type = "text/javascript", body = String)))]
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            // The pages link them with the collector's version in the query.
            (CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Every console answer: the CSP and the other security headers; pages are not cached.
async fn console_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; console_token=abc ; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE_NAME), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "console"), None);
    }

    #[test]
    fn an_empty_cookie_is_no_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("console_token="));
        assert_eq!(cookie(&headers, COOKIE_NAME), None);
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("ops.example.com"));
        assert!(same_origin(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        headers.insert(ORIGIN, HeaderValue::from_static("https://ops.example.com"));
        assert!(same_origin(&headers));
        // Plain HTTP without X-Forwarded-Proto: an https origin is another one.
        headers.insert(ORIGIN, HeaderValue::from_static("https://ops.example.com"));
        headers.remove("x-forwarded-proto");
        assert!(!same_origin(&headers));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(same_origin(&headers));
        // Another port of the same host is another origin.
        headers.insert(
            ORIGIN,
            HeaderValue::from_static("https://ops.example.com:8443"),
        );
        assert!(!same_origin(&headers));
        headers.insert(HOST, HeaderValue::from_static("ops.example.com:8443"));
        assert!(same_origin(&headers));
        headers.insert(
            ORIGIN,
            HeaderValue::from_static("http://ops.example.com:8443"),
        );
        assert!(!same_origin(&headers), "another scheme");
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
        // A browser's own word wins over an Origin hidden by the referrer policy.
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn the_cookie_is_secure_behind_tls() {
        let mut headers = HeaderMap::new();
        assert!(!session_cookie(&headers, "t").contains("Secure"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let cookie = session_cookie(&headers, "t");
        assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"));
        assert!(cookie.contains("SameSite=Strict") && cookie.contains("Path=/ui"));
    }
}
