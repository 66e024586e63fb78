//! Keyset pagination positions, as the read endpoints hand them out.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// A keyset position: the (time, id) of the last row of the previous page. Printed as
/// `<microseconds since epoch>_<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: i64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.at.timestamp_micros(), self.id)
    }
}

impl FromStr for Cursor {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const BAD: &str = "not a cursor returned by this API";
        let (micros, id) = s.split_once('_').ok_or(BAD)?;
        let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| BAD)?).ok_or(BAD)?;
        Ok(Self {
            at,
            id: id.parse().map_err(|_| BAD)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cursor = Cursor {
            at: "2026-02-19T10:00:00.123456Z".parse().unwrap(),
            id: 42,
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        assert!("nonsense".parse::<Cursor>().is_err());
        assert!("1_x".parse::<Cursor>().is_err());
    }
}
