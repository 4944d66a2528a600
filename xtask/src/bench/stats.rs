//! Summaries of repeated measurements.

use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Value, json};

pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub(super) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A repeated measurement's spread: what a shared machine does to it. The mean's 95 %
/// interval (normal approximation) says whether a goal near the value is missed by more than
/// that noise.
pub(super) fn spread(values: &[f64]) -> Value {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let runs = values.len() as f64;
    let mean = values.iter().sum::<f64>() / runs;
    let variance = values
        .iter()
        .map(|value| (value - mean).powi(2))
        .sum::<f64>()
        / (runs - 1.0);
    let half_width = 1.96 * (variance / runs).sqrt();
    json!({
        "min": round3(min),
        "median": round3(median(values)),
        "max": round3(max),
        "runs": values.len(),
        "mean": round3(mean),
        "mean_95": [round3(mean - half_width), round3(mean + half_width)],
    })
}

pub(super) fn number(value: &Value, key: &str) -> anyhow::Result<f64> {
    value[key]
        .as_f64()
        .ok_or_else(|| anyhow!("no number `{key}` in {value}"))
}

pub(super) fn numbers(value: &Value, key: &str) -> anyhow::Result<Vec<f64>> {
    value[key]
        .as_array()
        .ok_or_else(|| anyhow!("no array `{key}` in {value}"))?
        .iter()
        .map(|item| item.as_f64().ok_or_else(|| anyhow!("`{key}` holds {item}")))
        .collect()
}

pub(super) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

pub(super) fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
