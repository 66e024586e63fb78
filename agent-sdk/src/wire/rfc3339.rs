//! The timestamps a client sends: what chrono accepts (RFC 3339, its offset included), and a
//! refusal that says what is expected, as chrono's own ("premature end of input") does not.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, Utc};
use serde::de::Error;
use serde::{Deserialize, Deserializer};

const EXPECTED: &str = "expected an RFC 3339 time with its offset, such as 2026-01-01T09:00:00Z or 2026-01-01T10:00:00+01:00";

fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    // chrono's own `Deserialize` parses the same way: nothing it took is refused now.
    text.parse::<DateTime<FixedOffset>>()
        .map(|at| at.to_utc())
        .map_err(|e| format!("{e}: {EXPECTED}"))
}

pub(super) fn required<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = Cow::<'de, str>::deserialize(d)?;
    parse(&text).map_err(D::Error::custom)
}

pub(super) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<Cow<'de, str>>::deserialize(d)?
        .map(|text| parse(&text))
        .transpose()
        .map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct At {
        #[serde(deserialize_with = "required")]
        at: DateTime<Utc>,
        #[serde(default, deserialize_with = "optional")]
        maybe: Option<DateTime<Utc>>,
    }

    #[test]
    fn what_chrono_takes_and_a_refusal_that_names_the_format() {
        let at: At = serde_json::from_str(
            r#"{"at": "2026-02-19T11:00:00.5+01:00", "maybe": "2026-02-19T10:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(at.at.to_rfc3339(), "2026-02-19T10:00:00.500+00:00");
        assert!(at.maybe.is_some());
        let none: At = serde_json::from_str(r#"{"at": "2026-02-19T10:00:00Z"}"#).unwrap();
        assert_eq!(none.maybe, None);
        let refused = serde_json::from_str::<At>(r#"{"at": "2026-02-19T10:00:00"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(refused.contains("with its offset"), "{refused}");
    }
}
