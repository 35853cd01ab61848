//! Vital signs and lab values over time: numeric Observation values grouped by code (and by
//! component, for blood pressure), drawn as an inline SVG line chart on the server.

use std::collections::BTreeMap;

use dehr_health::index::Version;
use serde_json::Value;

use crate::view;

/// One point of a series.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub(crate) when: String,
    /// `when` as shown.
    pub(crate) shown: String,
    pub(crate) micros: i64,
    pub(crate) value: f64,
    pub(crate) kind: String,
    pub(crate) id: String,
}

/// The values of one code over time.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    /// `system|code`, the URL key.
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) unit: String,
    pub(crate) points: Vec<Point>,
}

fn micros_of(date: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(date) {
        return Some(t.timestamp_micros());
    }
    let day = date.get(..10).unwrap_or(date);
    let padded = match day.len() {
        4 => format!("{day}-01-01"),
        7 => format!("{day}-01"),
        _ => day.to_owned(),
    };
    chrono::NaiveDate::parse_from_str(&padded, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

fn key_of(code: &Value) -> Option<String> {
    let coding = code.get("coding")?.as_array()?.first()?;
    Some(format!(
        "{}|{}",
        coding.get("system").and_then(Value::as_str).unwrap_or(""),
        coding.get("code").and_then(Value::as_str)?
    ))
}

/// Every series with numeric values among `versions` (Observations).
pub(crate) fn series<'a>(versions: impl Iterator<Item = &'a Version>) -> Vec<Series> {
    let mut by_key: BTreeMap<String, Series> = BTreeMap::new();
    for version in versions {
        let r = &*version.resource;
        if version.kind() != "Observation" {
            continue;
        }
        let when = view::when(r);
        let Some(micros) = micros_of(&when) else {
            continue;
        };
        let mut add = |code: &Value, quantity: &Value| {
            let (Some(key), Some(value)) =
                (key_of(code), quantity.get("value").and_then(Value::as_f64))
            else {
                return;
            };
            let series = by_key.entry(key.clone()).or_insert_with(|| Series {
                key,
                name: view::concept(code),
                unit: quantity
                    .get("unit")
                    .or_else(|| quantity.get("code"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                points: Vec::new(),
            });
            series.points.push(Point {
                shown: view::date(&when),
                when: when.clone(),
                micros,
                value,
                kind: version.kind().to_owned(),
                id: version.id().to_owned(),
            });
        };
        if let (Some(code), Some(q)) = (r.get("code"), r.get("valueQuantity")) {
            add(code, q);
        }
        if let Some(components) = r.get("component").and_then(Value::as_array) {
            for c in components {
                if let (Some(code), Some(q)) = (c.get("code"), c.get("valueQuantity")) {
                    add(code, q);
                }
            }
        }
    }
    let mut all: Vec<Series> = by_key.into_values().collect();
    for s in &mut all {
        s.points.sort_by_key(|p| p.micros);
    }
    all.sort_by(|a, b| {
        b.points
            .len()
            .cmp(&a.points.len())
            .then(a.name.cmp(&b.name))
    });
    all
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// An SVG line chart of `series` (the markup is built here, every text escaped).
pub(crate) fn svg(series: &Series) -> String {
    const W: f64 = 720.0;
    const H: f64 = 280.0;
    const LEFT: f64 = 64.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 40.0;
    let points = &series.points;
    if points.is_empty() {
        return String::new();
    }
    let (mut lo, mut hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.value), hi.max(p.value))
    });
    if (hi - lo).abs() < f64::EPSILON {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = (hi - lo) * 0.1;
    let (lo, hi) = (lo - pad, hi + pad);
    let t0 = points.first().map_or(0, |p| p.micros);
    let t1 = points.last().map_or(1, |p| p.micros).max(t0 + 1);
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"chart-title\">{} over time, {} values</title>",
        escape(&series.name),
        points.len()
    );
    // Axes and three horizontal guides with their values.
    for i in 0..=2 {
        let v = lo + (hi - lo) * f64::from(i) / 2.0;
        let yy = y(v);
        out.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#d0d7de\" stroke-width=\"1\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\" fill=\"#444\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            escape(&number(v))
        ));
    }
    let first = points
        .first()
        .map(|p| view::date(&p.when))
        .unwrap_or_default();
    let last = points
        .last()
        .map(|p| view::date(&p.when))
        .unwrap_or_default();
    out.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"12\" fill=\"#444\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\" fill=\"#444\">{}</text>\
         <text x=\"12\" y=\"{}\" font-size=\"12\" fill=\"#444\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>",
        H - 12.0,
        escape(first.get(..10).unwrap_or(&first)),
        W - RIGHT,
        H - 12.0,
        escape(last.get(..10).unwrap_or(&last)),
        H / 2.0,
        H / 2.0,
        escape(&series.unit)
    ));
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.micros), y(p.value)))
        .collect();
    out.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#0b5cad\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    ));
    for p in points {
        out.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#0b5cad\"><title>{}: {} {}</title></circle>",
            x(p.micros),
            y(p.value),
            escape(&view::date(&p.when)),
            escape(&number(p.value)),
            escape(&series.unit)
        ));
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_every_precision_are_placed_in_time() {
        assert!(micros_of("2020-03-01T10:15:00+01:00").is_some());
        assert!(micros_of("2020-03-01").is_some());
        assert!(micros_of("2020-03").is_some());
        assert!(micros_of("2020").is_some());
        assert!(micros_of("soon").is_none());
    }

    #[test]
    fn chart_text_is_escaped() {
        let series = Series {
            key: "x|1".into(),
            name: "<script>".into(),
            unit: "mg&".into(),
            points: vec![Point {
                when: "2020-01-01".into(),
                shown: "2020-01-01".into(),
                micros: 0,
                value: 1.0,
                kind: "Observation".into(),
                id: "a".into(),
            }],
        };
        let svg = svg(&series);
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }
}
