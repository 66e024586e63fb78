//! Bearer tokens: HS256 JWTs signed with `COLLECTOR_SECRET_KEY`, carrying a scope and an
//! optional list of the agents the holder may write or read.

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use secrecy::{ExposeSecret, SecretString};

use crate::domain::AgentPattern;

/// The value `.env.example` ships for `COLLECTOR_SECRET_KEY`; the collector refuses to run with it.
pub const PLACEHOLDER_SECRET_KEY: &str = "change-me-run-openssl-rand-hex-32";

pub const MIN_SECRET_KEY_BYTES: usize = 32;

/// The HMAC key that signs and verifies bearer tokens. Never printed.
#[derive(Clone)]
pub struct SecretKey(SecretString);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// At least 32 bytes, and not the `.env.example` placeholder.
    pub fn parse(value: String) -> Result<Self, String> {
        if value == PLACEHOLDER_SECRET_KEY {
            return Err(
                "still the .env.example placeholder; generate one with: openssl rand -hex 32"
                    .into(),
            );
        }
        if value.len() < MIN_SECRET_KEY_BYTES {
            return Err(format!(
                "{} bytes long, at least {MIN_SECRET_KEY_BYTES} are needed (generate one with: openssl rand -hex 32)",
                value.len()
            ));
        }
        Ok(Self(value.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /metrics`.
    Ingest,
    /// The read endpoints.
    Read,
    /// Acting on jobs and runs: pause, resume, run now, cancel (`POST /jobs/...`,
    /// `POST /runs/{id}/cancel`).
    Operate,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Operate => "operate",
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingest" => Ok(Self::Ingest),
            "read" => Ok(Self::Read),
            "operate" => Ok(Self::Operate),
            other => Err(format!(
                "unknown scope {other:?}; expected ingest, read or operate"
            )),
        }
    }
}

/// The claims of a collector token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who holds the token (a scheduler, a script), for logs.
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Space-separated scopes, as in OAuth 2: `ingest`, `read`, `operate`, or several (`read operate`).
    pub scope: String,
    /// Agents the token is limited to; absent means every agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
}

/// A verified token: who, what it may do, and for which agents.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: String,
    scopes: Vec<Scope>,
    agents: Option<Vec<AgentPattern>>,
}

impl Grant {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn allows_agent(&self, agent: &str) -> bool {
        self.agents
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| p.matches(agent)))
    }

    /// Whether every agent `pattern` matches is one this token allows (a silence's patterns).
    pub fn covers(&self, pattern: &AgentPattern) -> bool {
        let Some(patterns) = &self.agents else {
            return true;
        };
        match pattern {
            AgentPattern::Exact(name) => self.allows_agent(name),
            AgentPattern::Prefix(prefix) => patterns.iter().any(|own| match own {
                AgentPattern::Prefix(own) => prefix.starts_with(own.as_str()),
                AgentPattern::Exact(_) => false,
            }),
        }
    }

    /// `None` when the token covers every agent.
    pub fn agent_patterns(&self) -> Option<&[AgentPattern]> {
        self.agents.as_deref()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{}", describe(.0))]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("invalid token claims: {0}")]
    Claims(String),
}

/// Says what is wrong with a token without echoing it.
fn describe(err: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidSignature => "the token's signature does not match",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not allowed (HS256 only)"
        }
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (sub, exp)",
        _ => "the token is malformed",
    }
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// HMAC-SHA256 keyed with the secret, for [`TokenKeys::form_key`].
    forms: Hmac<Sha256>,
}

impl TokenKeys {
    pub fn new(secret: &SecretKey) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            forms: <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
        }
    }

    /// The key of the console's forms for the session of `token` (an HMAC of it under the
    /// secret, in hex): a page of the console carries it in each form, and a form posted
    /// without it, as another site would post one (it cannot read the page), is refused.
    pub fn form_key(&self, token: &str) -> String {
        let mut mac = self.forms.clone();
        mac.update(b"console-form\0");
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Issues a token for `subject`, valid for `ttl`.
    pub fn issue(
        &self,
        subject: &str,
        scopes: &[Scope],
        agents: Option<&[AgentPattern]>,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: subject.to_owned(),
            exp: now.saturating_add(ttl),
            iat: Some(now),
            nbf: None,
            scope: scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            agents: agents.map(|patterns| patterns.iter().map(ToString::to_string).collect()),
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests use it for expired and not-yet-valid tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let claims =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?.claims;
        let scopes = claims
            .scope
            .split_whitespace()
            .map(Scope::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map_err(TokenError::Claims)?;
        let agents = claims
            .agents
            .map(|list| {
                list.iter()
                    .map(|p| p.parse())
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(TokenError::Claims)?;
        Ok(Grant {
            subject: claims.sub,
            scopes,
            agents,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&SecretKey::parse("k".repeat(32)).unwrap())
    }

    #[test]
    fn issued_token_verifies_with_its_grant() {
        let keys = keys();
        let patterns = ["billing_*".parse().unwrap(), "hello".parse().unwrap()];
        let token = keys
            .issue(
                "ci",
                &[Scope::Ingest],
                Some(&patterns),
                Duration::from_secs(60),
            )
            .unwrap();
        let grant = keys.verify(&token).unwrap();
        assert_eq!(grant.subject, "ci");
        assert!(grant.has_scope(Scope::Ingest));
        assert!(!grant.has_scope(Scope::Read));
        assert!(grant.allows_agent("billing_daily"));
        assert!(grant.allows_agent("hello"));
        assert!(!grant.allows_agent("hello2"));
        assert!(!grant.allows_agent("other"));
    }

    #[test]
    fn other_key_is_refused() {
        let token = keys()
            .issue("ci", &[Scope::Read], None, Duration::from_secs(60))
            .unwrap();
        let other = TokenKeys::new(&SecretKey::parse("o".repeat(32)).unwrap());
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn secret_key_rules() {
        assert!(SecretKey::parse("x".repeat(31)).is_err());
        assert!(SecretKey::parse("x".repeat(32)).is_ok());
        let placeholder = SecretKey::parse(PLACEHOLDER_SECRET_KEY.into()).unwrap_err();
        assert!(placeholder.contains("placeholder"), "{placeholder}");
    }

    #[test]
    fn secret_key_never_prints() {
        let key = SecretKey::parse("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t".into()).unwrap();
        assert!(!format!("{key:?}").contains("s3cr3t"));
    }
}
