//! JSON schemas for the wire types whose serde is written by hand (the rest derive them).

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::limits::{MAX_METRICS_PER_RUN, METRIC_NAME_MAX_CHARS};

/// Text without NUL characters (PostgreSQL's text cannot hold them).
const NO_NUL: &str = r"^[^\x00]*$";
/// Text without control characters (Unicode's Cc: what `char::is_control` refuses).
const NO_CONTROL_CHARACTERS: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
use super::{MetricValue, Metrics, Number};

impl PartialSchema for Number {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .description(Some(
                "A JSON number, stored exactly as written (0.1 stays 0.1)",
            ))
            .into()
    }
}

impl ToSchema for Number {}

impl PartialSchema for MetricValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NO_NUL)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .description(Some("A number, a string or a boolean (stored as 1/0)"))
            .into()
    }
}

impl ToSchema for MetricValue {}

impl PartialSchema for Metrics {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(MetricValue::schema()))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(METRIC_NAME_MAX_CHARS))
                    .pattern(Some(NO_CONTROL_CHARACTERS)),
            ))
            .max_properties(Some(MAX_METRICS_PER_RUN))
            .description(Some("Metric names (1 to 200 characters) to values"))
            .into()
    }
}

impl ToSchema for Metrics {}
