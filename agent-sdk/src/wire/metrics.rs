//! Metric values and the ordered name → value map a run reports.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON number kept exactly as it was written: `0.1` stays `0.1`, `9007199254740993` stays
/// exact. The collector stores the literal in a `NUMERIC` column without a round trip through
/// `f64`.
#[derive(Clone)]
pub struct Number(Box<RawValue>);

impl Number {
    /// The literal as written, e.g. `"0.1"` or `"-3e5"`.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The nearest `f64` (lossy for literals beyond its precision).
    pub fn to_f64(&self) -> f64 {
        // A JSON number literal always parses as f64 (out-of-range ones become infinite).
        self.as_str().parse().unwrap_or(f64::NAN)
    }

    /// A finite `f64`; `None` for NaN and infinities, which JSON cannot carry.
    pub fn from_f64(value: f64) -> Option<Self> {
        serde_json::Number::from_f64(value).map(|n| Self::from_literal(n.to_string()))
    }

    /// A number from its JSON literal (as PostgreSQL prints a `NUMERIC`); `None` if the text is
    /// not a JSON number.
    pub fn from_literal_checked(literal: String) -> Option<Self> {
        let starts_like_number = matches!(literal.as_bytes().first(), Some(b'-' | b'0'..=b'9'));
        if !starts_like_number || serde_json::from_str::<serde::de::IgnoredAny>(&literal).is_err() {
            return None;
        }
        RawValue::from_string(literal).ok().map(Self)
    }

    fn from_literal(literal: String) -> Self {
        // Only called with literals produced by serde_json or integer formatting.
        Self(RawValue::from_string(literal).expect("a formatted number is valid JSON"))
    }
}

macro_rules! number_from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Number {
            fn from(value: $t) -> Self {
                Self::from_literal(value.to_string())
            }
        }
        impl From<$t> for MetricValue {
            fn from(value: $t) -> Self {
                Self::Number(value.into())
            }
        }
    )*};
}
number_from_integer!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Number {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match MetricValue::deserialize(deserializer)? {
            MetricValue::Number(n) => Ok(n),
            other => Err(de::Error::custom(format_args!(
                "expected a number, found {}",
                other.kind()
            ))),
        }
    }
}

/// One metric's value: a number, a string or a boolean. Objects, arrays and null are refused.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    Number(Number),
    Text(String),
    Bool(bool),
}

impl MetricValue {
    fn kind(&self) -> &'static str {
        match self {
            Self::Number(_) => "a number",
            Self::Text(_) => "a string",
            Self::Bool(_) => "a boolean",
        }
    }
}

/// A finite float is a number; NaN and infinities, which JSON cannot carry, become the text
/// `"NaN"`, `"inf"` or `"-inf"` rather than being lost.
impl From<f64> for MetricValue {
    fn from(value: f64) -> Self {
        match Number::from_f64(value) {
            Some(number) => Self::Number(number),
            None => Self::Text(value.to_string()),
        }
    }
}

impl From<f32> for MetricValue {
    fn from(value: f32) -> Self {
        // Through its shortest decimal form, so 0.1f32 stays 0.1.
        value
            .to_string()
            .parse::<f64>()
            .map_or_else(|_| Self::Text(value.to_string()), Self::from)
    }
}

impl From<bool> for MetricValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<String> for MetricValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<&str> for MetricValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<Number> for MetricValue {
    fn from(value: Number) -> Self {
        Self::Number(value)
    }
}

impl Serialize for MetricValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => n.serialize(serializer),
            Self::Text(s) => serializer.serialize_str(s),
            Self::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Capture the raw text so that numbers keep every digit as written.
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str(text)
                .map(Self::Text)
                .map_err(de::Error::custom),
            Some(b't') => Ok(Self::Bool(true)),
            Some(b'f') => Ok(Self::Bool(false)),
            Some(b'-' | b'0'..=b'9') => Ok(Self::Number(Number(raw))),
            Some(b'n') => Err(de::Error::custom(
                "null is not a metric value: expected a number, string or boolean",
            )),
            Some(b'{') => Err(de::Error::custom(
                "an object is not a metric value: expected a number, string or boolean",
            )),
            Some(b'[') => Err(de::Error::custom(
                "an array is not a metric value: expected a number, string or boolean",
            )),
            _ => Err(de::Error::custom("expected a number, string or boolean")),
        }
    }
}

/// The metrics of one run: names to values, in the order they were set or received.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Metrics(IndexMap<String, MetricValue>);

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing an earlier value of the same name in place.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<MetricValue>) -> &mut Self {
        self.0.insert(name.into(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&MetricValue> {
        self.0.get(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> indexmap::map::Iter<'_, String, MetricValue> {
        self.0.iter()
    }
}

impl<K: Into<String>, V: Into<MetricValue>> FromIterator<(K, V)> for Metrics {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut metrics = Self::new();
        for (name, value) in iter {
            metrics.set(name, value);
        }
        metrics
    }
}

impl<K: Into<String>, V: Into<MetricValue>, const N: usize> From<[(K, V); N]> for Metrics {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: Into<String>, V: Into<MetricValue>> From<Vec<(K, V)>> for Metrics {
    fn from(pairs: Vec<(K, V)>) -> Self {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Metrics {
    type Item = (String, MetricValue);
    type IntoIter = indexmap::map::IntoIter<String, MetricValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Metrics {
    type Item = (&'a String, &'a MetricValue);
    type IntoIter = indexmap::map::Iter<'a, String, MetricValue>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetricsVisitor;

        impl<'de> Visitor<'de> for MetricsVisitor {
            type Value = Metrics;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of metric names to numbers, strings or booleans")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metrics, A::Error> {
                let mut metrics = IndexMap::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(name) = map.next_key::<String>()? {
                    if metrics.contains_key(&name) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate metric name `{name}`"
                        )));
                    }
                    let value = map.next_value()?;
                    metrics.insert(name, value);
                }
                Ok(Metrics(metrics))
            }
        }

        deserializer.deserialize_map(MetricsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_literal() {
        let m: Metrics =
            serde_json::from_str(r#"{"a":0.1,"b":9007199254740993,"c":-1.50e3}"#).unwrap();
        let literals: Vec<_> = m
            .iter()
            .map(|(_, v)| match v {
                MetricValue::Number(n) => n.as_str().to_owned(),
                other => panic!("not a number: {other:?}"),
            })
            .collect();
        assert_eq!(literals, ["0.1", "9007199254740993", "-1.50e3"]);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"a":0.1,"b":9007199254740993,"c":-1.50e3}"#
        );
    }

    #[test]
    fn strings_and_booleans() {
        let m: Metrics =
            serde_json::from_str(r#"{"s":"ok \"quoted\"","t":true,"f":false}"#).unwrap();
        assert_eq!(m.get("s"), Some(&MetricValue::Text("ok \"quoted\"".into())));
        assert_eq!(m.get("t"), Some(&MetricValue::Bool(true)));
        assert_eq!(m.get("f"), Some(&MetricValue::Bool(false)));
    }

    #[test]
    fn null_objects_and_arrays_are_refused() {
        for (body, word) in [
            (r#"{"x":null}"#, "null"),
            (r#"{"x":{"a":1}}"#, "object"),
            (r#"{"x":[1]}"#, "array"),
        ] {
            let err = serde_json::from_str::<Metrics>(body)
                .unwrap_err()
                .to_string();
            assert!(err.contains(word), "{body}: {err}");
        }
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = serde_json::from_str::<Metrics>(r#"{"x":1,"x":2}"#).unwrap_err();
        assert!(
            err.to_string().contains("duplicate metric name `x`"),
            "{err}"
        );
    }

    #[test]
    fn builder_keeps_order_and_replaces_in_place() {
        let mut m = Metrics::from([("b", 1), ("a", 2)]);
        m.set("b", "now text").set("c", true);
        let names: Vec<_> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(m.get("b"), Some(&MetricValue::Text("now text".into())));
    }

    #[test]
    fn from_f64_refuses_non_finite() {
        assert_eq!(Number::from_f64(0.1).unwrap().as_str(), "0.1");
        assert!(Number::from_f64(f64::NAN).is_none());
        assert!(Number::from_f64(f64::INFINITY).is_none());
    }
}
