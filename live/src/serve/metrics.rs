//! Counters of the server, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the latency histogram, milliseconds.
pub const LATENCY_BUCKETS_MS: [u64; 12] =
    [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// Everything `/metrics` shows. Updated with relaxed atomics: each counter is exact, a scrape
/// may see them at slightly different instants.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses by status: 200, 400, 404, 429, 500, 503.
    pub responses: [AtomicU64; 6],
    /// Requests accepted into the queue.
    pub accepted: AtomicU64,
    /// Switches performed.
    pub switches: AtomicU64,
    /// Cold loads performed.
    pub cold_loads: AtomicU64,
    /// Completed requests whose response time exceeded their deadline.
    pub overtimes: AtomicU64,
    /// Requests waiting for an instance now.
    pub queue_depth: AtomicU64,
    /// Instances busy now.
    pub busy_instances: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

/// The HTTP statuses counted, in the order of [`Metrics::responses`].
pub const STATUSES: [u16; 6] = [200, 400, 404, 429, 500, 503];

impl Metrics {
    /// Counts one response with `status`.
    pub fn response(&self, status: u16) {
        if let Some(i) = STATUSES.iter().position(|&s| s == status) {
            self.responses[i].fetch_add(1, Relaxed);
        }
    }

    /// Records one completed request's response time.
    pub fn latency(&self, ns: u64) {
        let ms = ns / 1_000_000;
        for (i, &le) in LATENCY_BUCKETS_MS.iter().enumerate() {
            if ms < le || (ms == le && ns % 1_000_000 == 0) {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(ns / 1000, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ptm_responses_total HTTP responses of /v1/infer by status."
        );
        let _ = writeln!(out, "# TYPE ptm_responses_total counter");
        for (i, s) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "ptm_responses_total{{code=\"{s}\"}} {}",
                self.responses[i].load(Relaxed)
            );
        }
        let counters = [
            (
                "ptm_requests_accepted_total",
                "Requests accepted into the queue.",
                &self.accepted,
            ),
            (
                "ptm_switches_total",
                "Switches to another tenant's weights.",
                &self.switches,
            ),
            (
                "ptm_cold_loads_total",
                "First loads of empty instances.",
                &self.cold_loads,
            ),
            (
                "ptm_overtimes_total",
                "Completed requests over their deadline.",
                &self.overtimes,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let gauges = [
            (
                "ptm_queue_depth",
                "Requests waiting for an instance.",
                &self.queue_depth,
            ),
            (
                "ptm_busy_instances",
                "Instances loading or inferring.",
                &self.busy_instances,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ptm_latency_seconds Response time of completed requests."
        );
        let _ = writeln!(out, "# TYPE ptm_latency_seconds histogram");
        for (i, le) in LATENCY_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "ptm_latency_seconds_bucket{{le=\"{}\"}} {}",
                *le as f64 / 1000.0,
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(out, "ptm_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "ptm_latency_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "ptm_latency_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.latency(3_000_000);
        m.latency(40_000_000);
        m.response(200);
        m.response(429);
        let text = m.render();
        assert!(
            text.contains("ptm_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ptm_latency_seconds_bucket{le=\"0.05\"} 2"),
            "{text}"
        );
        assert!(text.contains("ptm_latency_seconds_count 2"));
        assert!(text.contains("ptm_responses_total{code=\"429\"} 1"));
        assert!(text.contains("ptm_responses_total{code=\"200\"} 1"));
    }
}
