//! Whole numbers as JSON Schema counts them: `76` and `76.0` alike (a generated client, or a
//! JavaScript one, may send either), refused with a clear message when they have a fraction or
//! do not fit.

use serde::{Deserialize, Deserializer, de::Error};

/// An optional `u32` field: absent or null is `None`.
pub(super) fn optional_u32<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| u32::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "expected a whole number from 0 to {}, got {number}",
                u32::MAX
            ))
        })
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Count {
        #[serde(default, deserialize_with = "super::optional_u32")]
        n: Option<u32>,
    }

    fn parse(json: &str) -> Result<Option<u32>, String> {
        serde_json::from_str::<Count>(json)
            .map(|c| c.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_taken_as_json_schema_counts_them() {
        assert_eq!(parse(r#"{"n": 76}"#), Ok(Some(76)));
        assert_eq!(parse(r#"{"n": 76.0}"#), Ok(Some(76)));
        assert_eq!(parse(r#"{"n": null}"#), Ok(None));
        assert_eq!(parse(r#"{}"#), Ok(None));
        for bad in [
            r#"{"n": 76.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": "3"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
