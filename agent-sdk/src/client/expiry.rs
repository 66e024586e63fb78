//! When a bearer token expires, read from the token itself: a JWT's payload is base64url JSON,
//! and its `exp` claim needs no secret to read. For warnings only, never for trust: the
//! collector alone checks signatures.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// The `exp` claim of `token`, or `None` when it is not a JWT or has no expiry.
pub fn token_expires_at(token: &str) -> Option<DateTime<Utc>> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // Some issuers pad; the JWT spec does not.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    DateTime::from_timestamp(exp, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "eyJhbGciOiJIUzI1NiJ9.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn reads_exp_without_the_secret() {
        let at = token_expires_at(&jwt(r#"{"sub":"scheduler","exp":1893456000}"#));
        assert_eq!(
            at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2030-01-01T00:00:00+00:00")
        );
    }

    #[test]
    fn no_expiry_when_not_a_jwt_or_no_exp() {
        assert_eq!(token_expires_at("opaque-token"), None);
        assert_eq!(token_expires_at(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(token_expires_at(&jwt(r#"{"exp":"soon"}"#)), None);
        assert_eq!(token_expires_at("a.!!!.c"), None);
        assert_eq!(token_expires_at("a.b.c.d"), None);
    }
}
