//! Prometheus metrics, kept in process and rendered as text at `/metrics`.
//!
//! A handful of counters and one latency histogram do not need a metrics framework; the map is
//! behind a mutex because requests on every worker thread update it, and no await happens while
//! it is held.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::workers::Workers;

const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    /// (method, route, status) → count and latency.
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    pub audit_events: AtomicU64,
    pub auth_failures: AtomicU64,
    /// Runs started in a container started ahead, and in one made for them.
    runs_started_ahead: AtomicU64,
    runs_started_made: AtomicU64,
    /// Runs ended, by outcome.
    runs_finished: Mutex<BTreeMap<String, u64>>,
    /// The background tasks, counted by kind when rendered.
    workers: Workers,
}

impl Metrics {
    pub fn new(workers: Workers) -> Metrics {
        Metrics {
            workers,
            ..Metrics::default()
        }
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = crate::lock(&self.requests);
        let h = map
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    pub fn run_started(&self, ahead: bool) {
        let c = if ahead {
            &self.runs_started_ahead
        } else {
            &self.runs_started_made
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn run_finished(&self, outcome: &str) {
        let mut map = crate::lock(&self.runs_finished);
        *map.entry(outcome.to_owned()).or_default() += 1;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        describe(
            &mut out,
            "vre_http_request_duration_seconds",
            "histogram",
            "Time to answer HTTP requests.",
        );
        let map = crate::lock(&self.requests);
        for ((method, route, status), h) in map.iter() {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                route.replace('"', "'")
            );
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "vre_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "vre_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "vre_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "vre_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        drop(map);
        counter(
            &mut out,
            "vre_audit_events_total",
            "Audit events appended by this process.",
            &self.audit_events,
        );
        counter(
            &mut out,
            "vre_auth_failures_total",
            "Requests refused for a missing or bad token.",
            &self.auth_failures,
        );
        describe(
            &mut out,
            "vre_runs_started_total",
            "counter",
            "Runs started, in a container started ahead or made for the run.",
        );
        for (container, c) in [
            ("ahead", &self.runs_started_ahead),
            ("made", &self.runs_started_made),
        ] {
            let _ = writeln!(
                out,
                "vre_runs_started_total{{container=\"{container}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        describe(
            &mut out,
            "vre_runs_finished_total",
            "counter",
            "Runs ended, by outcome.",
        );
        let map = crate::lock(&self.runs_finished);
        for (outcome, n) in map.iter() {
            let _ = writeln!(out, "vre_runs_finished_total{{outcome=\"{outcome}\"}} {n}");
        }
        drop(map);
        describe(
            &mut out,
            "vre_workers",
            "gauge",
            "Background tasks running, by kind.",
        );
        for (kind, n) in self.workers.running() {
            let _ = writeln!(out, "vre_workers{{name=\"{kind}\"}} {n}");
        }
        out
    }
}

/// Writes a metric's `# HELP` and `# TYPE` lines.
fn describe(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes a counter without labels: its description and its value.
fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    describe(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}
