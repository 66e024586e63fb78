//! Charts as inline SVG, drawn on the server: no chart library, nothing to load, and a page
//! that reads without JavaScript. Each mark carries a `<title>`, which browsers show on hover.

use chrono::{DateTime, NaiveDate, Utc};
use maud::{Markup, html};

use crate::store::{MetricDay, RunDay};

const SPARK_WIDTH: f64 = 120.0;
const SPARK_HEIGHT: f64 = 24.0;

/// The agent's days from `first` over `span` days as bars, the latest on the right: each day
/// with runs its mean run duration against the longest mean, days with a failure in the
/// failure colour. Two paths and one title, not a mark per day: the overview draws a thousand.
pub(super) fn sparkline(days: &[RunDay], first: NaiveDate, span: u16) -> Markup {
    let in_span = |d: &&RunDay| (0..i64::from(span)).contains(&(d.day - first).num_days());
    let days: Vec<RunDay> = days.iter().filter(in_span).copied().collect();
    let longest = days.iter().map(RunDay::mean_ms).max().unwrap_or(0).max(1) as f64;
    let slot = SPARK_WIDTH / f64::from(span.max(1));
    let (mut ok, mut failed) = (String::new(), String::new());
    for day in &days {
        let index = (day.day - first).num_days();
        let height = (day.mean_ms() as f64 / longest * (SPARK_HEIGHT - 2.0)).max(1.0);
        let path = if day.failures > 0 {
            &mut failed
        } else {
            &mut ok
        };
        path.push_str(&format!(
            "M{} {SPARK_HEIGHT}v-{}h{}v{}z",
            fmt(index as f64 * slot + 0.5),
            fmt(height),
            fmt((slot - 1.0).max(1.0)),
            fmt(height),
        ));
    }
    let runs: i64 = days.iter().map(|d| d.runs).sum();
    let failures: i64 = days.iter().map(|d| d.failures).sum();
    let mean = days.iter().map(|d| d.total_ms).sum::<i64>() / runs.max(1);
    let mut label = format!(
        "mean run duration per day, last {span} days: {runs} runs, mean {}",
        duration(mean)
    );
    if let Some(latest) = days.last() {
        label.push_str(&format!(
            ", {} on {}",
            duration(latest.mean_ms()),
            latest.day
        ));
    }
    if failures > 0 {
        label.push_str(&format!(", {failures} failed"));
    }
    html! {
        svg class="spark" viewBox=(format!("0 0 {SPARK_WIDTH} {SPARK_HEIGHT}")) role="img" {
            title { (label) }
            @if !ok.is_empty() { path class="bar" d=(ok) {} }
            @if !failed.is_empty() { path class="bar failed" d=(failed) {} }
        }
    }
}

/// A run's duration for people: `850 ms`, `12.3 s`, `4 min 10 s`, `2 h 5 min`.
pub(super) fn duration(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// A chart's frame: times on x (from `start`, `span` seconds wide), values on y (between the
/// lowest and highest given, with room when they are equal).
struct Frame {
    start: DateTime<Utc>,
    span: f64,
    low: f64,
    high: f64,
}

impl Frame {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>, values: impl Iterator<Item = f64>) -> Self {
        let (mut low, mut high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !low.is_finite() || !high.is_finite() {
            (low, high) = (0.0, 1.0);
        }
        if (high - low).abs() < f64::EPSILON {
            // A flat line, drawn in the middle.
            let pad = if low == 0.0 { 1.0 } else { low.abs() / 2.0 };
            (low, high) = (low - pad, high + pad);
        }
        let span = ((end - start).num_milliseconds() as f64 / 1000.0).max(1.0);
        Self {
            start,
            span,
            low,
            high,
        }
    }

    fn x(&self, t: DateTime<Utc>) -> f64 {
        let seconds = (t - self.start).num_milliseconds() as f64 / 1000.0;
        LEFT + (seconds / self.span).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        TOP + (1.0 - (v - self.low) / (self.high - self.low)) * (HEIGHT - TOP - BOTTOM)
    }

    /// The SVG around `marks`: the x axis, the lowest and highest values, the first and last
    /// times (as given).
    fn draw(&self, label: &str, first: &str, last: &str, marks: Markup) -> Markup {
        html! {
            svg class="chart" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
                line class="axis" x1=(fmt(LEFT)) y1=(fmt(HEIGHT - BOTTOM)) x2=(fmt(WIDTH - RIGHT)) y2=(fmt(HEIGHT - BOTTOM)) {}
                text class="tick" x=(fmt(LEFT - 4.0)) y=(fmt(TOP + 8.0)) text-anchor="end" { (number(self.high)) }
                text class="tick" x=(fmt(LEFT - 4.0)) y=(fmt(HEIGHT - BOTTOM)) text-anchor="end" { (number(self.low)) }
                text class="tick" x=(fmt(LEFT)) y=(fmt(HEIGHT - 6.0)) { (first) }
                text class="tick" x=(fmt(WIDTH - RIGHT)) y=(fmt(HEIGHT - 6.0)) text-anchor="end" { (last) }
                (marks)
            }
        }
    }
}

fn points_attr(points: impl Iterator<Item = (f64, f64)>) -> String {
    points
        .map(|(x, y)| format!("{},{}", fmt(x), fmt(y)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One metric per UTC day over `[first_day, last_day]`, from the daily aggregates: each day's
/// minimum to maximum as a band, its average as a line and a dot.
pub(super) fn daily_chart(
    name: &str,
    days: &[&MetricDay],
    first_day: NaiveDate,
    last_day: NaiveDate,
) -> Markup {
    let midnight = |day: NaiveDate| day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let frame = Frame::new(
        midnight(first_day),
        midnight(last_day) + chrono::TimeDelta::days(1),
        days.iter().flat_map(|d| [d.min, d.max]),
    );
    // A day's aggregate sits at its middle.
    let x = |day: NaiveDate| frame.x(midnight(day) + chrono::TimeDelta::hours(12));
    let band = points_attr(
        days.iter()
            .map(|d| (x(d.day), frame.y(d.max)))
            .chain(days.iter().rev().map(|d| (x(d.day), frame.y(d.min)))),
    );
    let average = points_attr(days.iter().map(|d| (x(d.day), frame.y(d.avg))));
    let marks = html! {
        @if days.len() > 1 {
            polygon class="band" points=(band) {}
            polyline class="avg" points=(average) {}
        }
        @for day in days {
            @if day.max > day.min {
                line class="range" x1=(fmt(x(day.day))) x2=(fmt(x(day.day))) y1=(fmt(frame.y(day.min))) y2=(fmt(frame.y(day.max))) {}
            }
            circle class="day" cx=(fmt(x(day.day))) cy=(fmt(frame.y(day.avg))) r="3" {
                title {
                    (day.day) ": min " (number(day.min)) ", avg " (number(day.avg))
                    ", max " (number(day.max)) " (" (day.count) " values)"
                }
            }
        }
    };
    frame.draw(
        &format!("{name}: daily minimum, average and maximum"),
        &first_day.to_string(),
        &last_day.to_string(),
        marks,
    )
}

/// A metric's latest raw values (given newest first), over the time they span.
pub(super) fn recent_chart(name: &str, points: &[(DateTime<Utc>, f64)]) -> Markup {
    let (Some(newest), Some(oldest)) = (points.first(), points.last()) else {
        return html! {};
    };
    let frame = Frame::new(oldest.0, newest.0, points.iter().map(|(_, v)| *v));
    let line = points_attr(points.iter().rev().map(|(t, v)| (frame.x(*t), frame.y(*v))));
    let within_a_day = newest.0 - oldest.0 < chrono::TimeDelta::days(1);
    let stamp = |t: DateTime<Utc>| {
        let format = if within_a_day {
            "%H:%M:%S UTC"
        } else {
            "%m-%d %H:%M UTC"
        };
        t.format(format).to_string()
    };
    let marks = html! {
        polyline class="recent" points=(line) {}
        @for (at, value) in points {
            circle class="point" cx=(fmt(frame.x(*at))) cy=(fmt(frame.y(*value))) r="2.5" {
                title { (number(*value)) " at " (at.format("%Y-%m-%d %H:%M:%S UTC")) }
            }
        }
    };
    frame.draw(
        &format!("{name}: the latest {} values", points.len()),
        &stamp(oldest.0),
        &stamp(newest.0),
        marks,
    )
}

/// A value for an axis or a tooltip: integers as such, others to four significant places.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{}", (value * 1e4).round() / 1e4)
    }
}

/// A coordinate, to a tenth of a pixel: short attributes.
fn fmt(value: f64) -> String {
    format!("{value:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Days;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(250_000), "4 min 10 s");
        assert_eq!(duration(7_500_000), "2 h 5 min");
    }

    #[test]
    fn a_sparkline_has_a_bar_per_day_in_place_and_marks_failed_days() {
        let first = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default();
        let day = |offset: u64, runs: i64, failures: i64, total_ms: i64| RunDay {
            day: first + Days::new(offset),
            runs,
            failures,
            total_ms,
        };
        // Day 0: a failure, mean 100 ms (the longest: full height); day 13: mean 50 ms; a day
        // outside the span is left out.
        let days = [day(0, 2, 1, 200), day(13, 1, 0, 50), day(14, 1, 0, 50)];
        let svg = sparkline(&days, first, 14).into_string();
        let path = |class: &str| {
            let from = svg
                .find(&format!("class=\"{class}\" d=\""))
                .unwrap_or_default();
            let d = &svg[from + class.len() + 12..];
            d[..d.find('"').unwrap_or_default()].to_owned()
        };
        // 14 slots of 120/14 px; each bar one px narrower than its slot, from the bottom.
        assert_eq!(path("bar failed"), "M0.5 24v-22.0h7.6v22.0z");
        assert_eq!(path("bar"), "M111.9 24v-11.0h7.6v11.0z");
        assert!(svg.contains("<title>mean run duration per day, last 14 days: 3 runs, mean 83 ms, 50 ms on 2026-12-14, 1 failed</title>"), "{svg}");
    }

    #[test]
    fn a_flat_metric_still_draws_inside_the_frame() {
        let day = MetricDay {
            metric_name: "m".into(),
            day: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
            count: 2,
            min: 5.0,
            avg: 5.0,
            max: 5.0,
        };
        let svg = daily_chart("m", &[&day], day.day, day.day).into_string();
        assert!(svg.contains("<circle class=\"day\""), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let at = day.day.and_hms_opt(1, 0, 0).unwrap_or_default().and_utc();
        let svg = recent_chart("m", &[(at, 5.0)]).into_string();
        assert_eq!(svg.matches("<circle class=\"point\"").count(), 1, "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }
}
