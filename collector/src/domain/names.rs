//! Names and patterns the API accepts, each checked once when it is parsed.

use std::fmt;
use std::str::FromStr;

use agent_sdk::wire;
use validator::ValidationError;

/// 1–100 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentName(String);

impl AgentName {
    pub fn parse(name: impl Into<String>) -> Result<Self, ValidationError> {
        let name = name.into();
        wire::validate_agent_name(&name)?;
        Ok(Self(name))
    }

    /// A name `RunReport::check` has already validated (the ingest path checks it once).
    pub(super) fn checked(name: String) -> Self {
        Self(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for AgentName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A metric's name: 1–200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricName(String);

impl MetricName {
    pub fn parse(name: impl Into<String>) -> Result<Self, ValidationError> {
        let name = name.into();
        wire::validate_metric_name(&name)?;
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An agent name, or a prefix ending in `*` (`billing_*`; `*` alone allows every agent): what a
/// token may be limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentPattern {
    Exact(String),
    Prefix(String),
}

impl AgentPattern {
    pub fn matches(&self, agent: &str) -> bool {
        match self {
            Self::Exact(name) => name == agent,
            Self::Prefix(prefix) => agent.starts_with(prefix.as_str()),
        }
    }
}

impl FromStr for AgentPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (body, is_prefix) = match s.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (s, false),
        };
        let valid = body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid
            || (body.is_empty() && !is_prefix)
            || body.len() > wire::limits::AGENT_NAME_MAX_CHARS
        {
            return Err(format!(
                "invalid agent pattern {s:?}: an agent name, or a prefix followed by `*`"
            ));
        }
        Ok(if is_prefix {
            Self::Prefix(body.to_owned())
        } else {
            Self::Exact(body.to_owned())
        })
    }
}

impl fmt::Display for AgentPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// A PostgreSQL role name we create: lowercase letters, digits and `_`, at most 63 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "invalid role name {name:?}: lowercase letters, digits and `_`, at most 63 characters"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!("*".parse(), Ok(AgentPattern::Prefix(String::new())));
        assert!("a b".parse::<AgentPattern>().is_err());
        assert!("".parse::<AgentPattern>().is_err());
        assert!("a*b".parse::<AgentPattern>().is_err());
        let prefix: AgentPattern = "billing_*".parse().unwrap();
        assert!(prefix.matches("billing_daily"));
        assert!(!prefix.matches("billin"));
    }

    #[test]
    fn role_names() {
        assert!(RoleName::parse("webapp_readonly").is_ok());
        for bad in [
            "",
            "Webapp",
            "1abc",
            "a-b",
            "a;drop role x",
            &"a".repeat(64),
        ] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metric_names() {
        assert!(MetricName::parse("items").is_ok());
        assert!(MetricName::parse("").is_err());
        assert!(MetricName::parse("m".repeat(201)).is_err());
    }
}
