//! Settings read from the environment, each checked with a one-line error naming the variable:
//! the one configuration style of the platform's services.
//!
//! Only the environment, never flags: secrets stay out of `ps` and shell history, and
//! `.env.example` is the complete list. An empty variable means unset (Compose passes `NAME=`
//! for a blank line of `.env`).

use std::env::{self, VarError};
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

/// A variable missing or wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set{1}")]
    Missing(&'static str, &'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// `var`'s value, `None` when unset or empty.
pub fn optional(var: &'static str) -> Result<Option<String>, ConfigError> {
    match env::var(var) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(ConfigError::Invalid {
            var,
            reason: "not valid UTF-8".into(),
        }),
    }
}

/// `var`'s value; `hint` follows "is not set" when it is missing.
pub fn required(var: &'static str, hint: &'static str) -> Result<String, ConfigError> {
    optional(var)?.ok_or(ConfigError::Missing(var, hint))
}

/// `var` parsed, or `default` when unset.
pub fn parse_or<T>(var: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match optional(var)? {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|e| ConfigError::Invalid {
            var,
            reason: format!("{value:?}: {e}"),
        }),
    }
}

/// `var` as a duration (`5s`, `2m`, `1h 30m`), or `default` when unset.
pub fn duration_or(var: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    optional_duration(var).map(|d| d.unwrap_or(default))
}

/// `var` as a duration, `None` when unset.
pub fn optional_duration(var: &'static str) -> Result<Option<Duration>, ConfigError> {
    optional(var)?
        .map(|value| {
            humantime::parse_duration(value.trim()).map_err(|e| ConfigError::Invalid {
                var,
                reason: format!("{value:?}: {e} (e.g. 5s, 2m)"),
            })
        })
        .transpose()
}

/// `var` as a yes/no (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`), or `default`.
pub fn flag_or(var: &'static str, default: bool) -> Result<bool, ConfigError> {
    let Some(value) = optional(var)? else {
        return Ok(default);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            var,
            reason: format!("{value:?}: expected true or false"),
        }),
    }
}
