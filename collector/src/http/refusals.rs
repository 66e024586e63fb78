//! The refusals endpoints share, as `/openapi.json` documents them: each is answered by
//! `ApiError`, with its `{"error": …}` body.

use agent_sdk::wire::ErrorBody;

/// What a read endpoint may answer besides its result.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Documentation only: `ApiError` makes the answers.
pub(super) enum ReadRefusals {
    /// A bad parameter, named in details.fields
    #[response(status = 400)]
    BadParameter(ErrorBody),
    /// Missing or invalid token
    #[response(status = 401)]
    NoToken(ErrorBody),
    /// Wrong scope, or an agent outside the token's list
    #[response(status = 403)]
    NotAllowed(ErrorBody),
    /// Database unavailable; retry after Retry-After
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What an endpoint that takes a JSON body may answer besides its result and its own 400,
/// 409, 422 and 503.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Documentation only: `ApiError` makes the answers.
pub(super) enum BodyRefusals {
    /// Missing or invalid token
    #[response(status = 401)]
    NoToken(ErrorBody),
    /// Wrong scope, or an agent outside the token's list
    #[response(status = 403)]
    NotAllowed(ErrorBody),
    /// Body over the limit
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not JSON
    #[response(status = 415)]
    NotJson(ErrorBody),
}
