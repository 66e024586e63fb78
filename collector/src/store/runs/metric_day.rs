//! One agent's numeric metric over one UTC day, in exact decimal arithmetic: SQLite's
//! `agent_metric_daily_summaries` row, computed as PostgreSQL's NUMERIC computes it (sums keep
//! every digit and the larger scale: 0.1 + 0.20 is 0.30). PostgreSQL does this in SQL
//! (`STORE_BATCH`); SQLite has no decimal type.

use std::cmp::Ordering;
use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, Utc};

use crate::store::StoreError;

/// The aggregate of some values, or of a stored row.
#[derive(Debug, Clone)]
pub(super) struct MetricDay {
    pub(super) count: i64,
    sum: BigDecimal,
    min: Value,
    max: Value,
    last: String,
    pub(super) last_at: DateTime<Utc>,
}

/// A value as stored (its text keeps its scale) and as a number (to compare).
#[derive(Debug, Clone)]
struct Value {
    number: BigDecimal,
    text: String,
}

impl Value {
    fn parse(text: &str) -> Result<Self, StoreError> {
        let number = BigDecimal::from_str(text)
            .map_err(|e| StoreError::internal("reading a stored decimal", e))?;
        Ok(Self {
            number,
            text: text.to_owned(),
        })
    }
}

impl MetricDay {
    /// The aggregate of one value, recorded at `at`.
    pub(super) fn of(value: &str, at: DateTime<Utc>) -> Result<Self, StoreError> {
        let value = Value::parse(value)?;
        Ok(Self {
            count: 1,
            sum: value.number.clone(),
            min: value.clone(),
            max: value.clone(),
            last: value.text,
            last_at: at,
        })
    }

    /// A stored row, as read back.
    pub(super) fn stored(
        count: i64,
        sum: &str,
        min: &str,
        max: &str,
        last: String,
        last_at: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            count,
            sum: Value::parse(sum)?.number,
            min: Value::parse(min)?,
            max: Value::parse(max)?,
            last,
            last_at,
        })
    }

    /// Folds in `later`, an aggregate of values stored after these: the last value is the one
    /// recorded latest, the later one on a tie. An equal minimum or maximum keeps the earlier text.
    pub(super) fn merge(&mut self, later: Self) {
        self.count += later.count;
        self.sum += later.sum;
        if later.min.number.cmp(&self.min.number) == Ordering::Less {
            self.min = later.min;
        }
        if later.max.number.cmp(&self.max.number) == Ordering::Greater {
            self.max = later.max;
        }
        if later.last_at >= self.last_at {
            self.last = later.last;
            self.last_at = later.last_at;
        }
    }

    /// (sum, min, max, last) as stored: decimal text without exponent.
    pub(super) fn texts(&self) -> (String, &str, &str, &str) {
        (
            self.sum.to_plain_string(),
            &self.min.text,
            &self.max.text,
            &self.last,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn sums_are_exact_with_postgresqls_scale() {
        let t = at("2026-03-01T10:00:00Z");
        let mut day = MetricDay::of("0.1", t).unwrap();
        day.merge(MetricDay::of("0.20", t).unwrap());
        day.merge(MetricDay::of("9007199254740993", t).unwrap());
        assert_eq!(day.count, 3);
        assert_eq!(day.texts().0, "9007199254740993.30");

        let mut big = MetricDay::of("100000000000000000000000000000", t).unwrap();
        big.merge(MetricDay::of("-0.000000000000000000001", t).unwrap());
        assert_eq!(
            big.texts().0,
            "99999999999999999999999999999.999999999999999999999"
        );
    }

    #[test]
    fn min_max_and_last_follow_the_stored_rules() {
        let mut day = MetricDay::of("12.50", at("2026-03-01T10:00:00Z")).unwrap();
        day.merge(MetricDay::of("3", at("2026-03-01T09:00:00Z")).unwrap());
        day.merge(MetricDay::of("12.5", at("2026-03-01T09:30:00Z")).unwrap());
        let (_, min, max, last) = day.texts();
        assert_eq!(
            (min, max),
            ("3", "12.50"),
            "an equal maximum keeps the earlier text"
        );
        assert_eq!(
            last, "12.50",
            "a value recorded earlier does not become the last"
        );

        day.merge(MetricDay::of("7", at("2026-03-01T10:00:00Z")).unwrap());
        assert_eq!(
            day.texts().3,
            "7",
            "the later of two at the same time is the last"
        );
    }
}
