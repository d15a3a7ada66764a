//! Counters of the server, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Every HTTP response the server sends is counted once, by route and status: those of the
//! handlers, of the router (404, 405), of the guard (401, 403), of the body reader (408, 413)
//! and the ones hyper writes itself for requests it cannot parse (400, 414, 431, under the
//! route `protocol`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the latency histogram, milliseconds.
pub const LATENCY_BUCKETS_MS: [u64; 12] =
    [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// The routes responses are counted under: the API's three, `other` (any other path) and
/// `protocol` (requests hyper refused before routing).
pub const ROUTES: [&str; 5] = ["/v1/infer", "/v1/tenants", "/metrics", "other", "protocol"];

/// The HTTP statuses counted by name; any other is counted as `other`.
pub const STATUSES: [u16; 14] = [
    200, 400, 401, 403, 404, 405, 408, 413, 414, 429, 431, 500, 503, 505,
];

const SLOTS: usize = STATUSES.len() + 1;

/// The route a request path is counted under.
pub fn route_of(path: &str) -> usize {
    ROUTES[..3].iter().position(|r| *r == path).unwrap_or(3)
}

/// The index of `ROUTES` for requests refused by hyper before routing.
pub const PROTOCOL_ROUTE: usize = 4;

/// Everything `/metrics` shows. Updated with relaxed atomics: each counter is exact, a scrape
/// may see them at slightly different instants.
#[derive(Debug, Default)]
pub struct Metrics {
    responses: [[AtomicU64; SLOTS]; ROUTES.len()],
    /// Requests accepted into the queue.
    pub accepted: AtomicU64,
    /// Accepted requests answered with outputs.
    pub completed: AtomicU64,
    /// Switches performed (with a GPU pool: loads from the host cache, over PCIe).
    pub switches: AtomicU64,
    /// Cold loads performed (with a GPU pool: loads from the tenant's file).
    pub cold_loads: AtomicU64,
    /// Loads from the GPU weight pool (device to device).
    pub pool_loads: AtomicU64,
    /// Tenants evicted from the GPU weight pool.
    pub pool_evictions: AtomicU64,
    /// Batches run (requests that shared one executor's passes count once).
    pub batches: AtomicU64,
    /// Completed requests whose response time exceeded their deadline.
    pub overtimes: AtomicU64,
    /// Connections closed because their request header did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Accepted requests refused because the shutdown grace period ended before they ran.
    pub abandoned: AtomicU64,
    /// Requests waiting for an instance now.
    pub queue_depth: AtomicU64,
    /// Instances busy now.
    pub busy_instances: AtomicU64,
    /// Request records the coordinator holds (one per request since start until its
    /// per-request vectors are bounded).
    pub request_records: AtomicU64,
    /// Bytes of the coordinator's per-request records, by their sizes (see
    /// [`super::coordinator_record_bytes`]).
    pub request_record_bytes: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Counts one response with `status` on route `route` (an index of [`ROUTES`]).
    pub fn response(&self, route: usize, status: u16) {
        let slot = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        self.responses[route.min(ROUTES.len() - 1)][slot].fetch_add(1, Relaxed);
    }

    /// Responses counted so far on `route` with `status`.
    pub fn responses(&self, route: usize, status: u16) -> u64 {
        STATUSES
            .iter()
            .position(|&s| s == status)
            .map_or(0, |i| self.responses[route][i].load(Relaxed))
    }

    /// Records one completed request's response time against its deadline.
    pub fn completed(&self, latency_ns: u64, deadline_ns: u64) {
        let ms = latency_ns / 1_000_000;
        for (i, &le) in LATENCY_BUCKETS_MS.iter().enumerate() {
            if ms < le || (ms == le && latency_ns % 1_000_000 == 0) {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(latency_ns / 1000, Relaxed);
        self.completed.fetch_add(1, Relaxed);
        if latency_ns > deadline_ns {
            self.overtimes.fetch_add(1, Relaxed);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ptm_responses_total HTTP responses by route and status."
        );
        let _ = writeln!(out, "# TYPE ptm_responses_total counter");
        for (r, route) in ROUTES.iter().enumerate() {
            for (i, s) in STATUSES.iter().enumerate() {
                let n = self.responses[r][i].load(Relaxed);
                // The API's routes show their usual statuses even at zero.
                if n > 0 || (r == 0 && matches!(s, 200 | 400 | 404 | 429 | 500 | 503)) {
                    let _ = writeln!(
                        out,
                        "ptm_responses_total{{route=\"{route}\",code=\"{s}\"}} {n}"
                    );
                }
            }
            let n = self.responses[r][STATUSES.len()].load(Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "ptm_responses_total{{route=\"{route}\",code=\"other\"}} {n}"
                );
            }
        }
        let counters = [
            (
                "ptm_requests_accepted_total",
                "Requests accepted into the queue.",
                &self.accepted,
            ),
            (
                "ptm_requests_completed_total",
                "Accepted requests answered with outputs.",
                &self.completed,
            ),
            (
                "ptm_switches_total",
                "Switches to another tenant's weights (with a GPU pool: from the host cache).",
                &self.switches,
            ),
            (
                "ptm_cold_loads_total",
                "First loads of empty instances (with a GPU pool: reads of checkpoint files).",
                &self.cold_loads,
            ),
            (
                "ptm_pool_loads_total",
                "Loads from the GPU weight pool into an instance (device to device).",
                &self.pool_loads,
            ),
            (
                "ptm_pool_evictions_total",
                "Tenants evicted from the GPU weight pool.",
                &self.pool_evictions,
            ),
            (
                "ptm_batches_total",
                "Batches run: requests that shared an instance's passes count once.",
                &self.batches,
            ),
            (
                "ptm_overtimes_total",
                "Accepted requests completed over their deadline (admitted but late).",
                &self.overtimes,
            ),
            (
                "ptm_header_timeouts_total",
                "Connections closed because a request header did not arrive in time.",
                &self.header_timeouts,
            ),
            (
                "ptm_abandoned_total",
                "Accepted requests refused (503) because the shutdown grace period ended first.",
                &self.abandoned,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let completed = self.completed.load(Relaxed);
        let late = if completed == 0 {
            0.0
        } else {
            self.overtimes.load(Relaxed) as f64 / completed as f64
        };
        let _ = writeln!(
            out,
            "# HELP ptm_admitted_late_ratio Fraction of completed requests that missed their deadline.\n# TYPE ptm_admitted_late_ratio gauge\nptm_admitted_late_ratio {late}"
        );
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
            (
                "ptm_request_records",
                "Request records the coordinator holds.",
                &self.request_records,
            ),
            (
                "ptm_request_record_bytes",
                "Bytes of the coordinator's per-request records and timeline.",
                &self.request_record_bytes,
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
    fn histogram_is_cumulative_and_every_status_is_counted() {
        let m = Metrics::default();
        m.completed(3_000_000, 10_000_000);
        m.completed(40_000_000, 10_000_000);
        m.response(0, 200);
        m.response(0, 429);
        m.response(route_of("/nowhere"), 404);
        m.response(route_of("/v1/infer"), 405);
        m.response(PROTOCOL_ROUTE, 400);
        m.response(0, 418);
        let text = m.render();
        for want in [
            "ptm_latency_seconds_bucket{le=\"0.005\"} 1",
            "ptm_latency_seconds_bucket{le=\"0.05\"} 2",
            "ptm_latency_seconds_count 2",
            "ptm_responses_total{route=\"/v1/infer\",code=\"429\"} 1",
            "ptm_responses_total{route=\"/v1/infer\",code=\"200\"} 1",
            "ptm_responses_total{route=\"/v1/infer\",code=\"503\"} 0",
            "ptm_responses_total{route=\"/v1/infer\",code=\"405\"} 1",
            "ptm_responses_total{route=\"/v1/infer\",code=\"other\"} 1",
            "ptm_responses_total{route=\"other\",code=\"404\"} 1",
            "ptm_responses_total{route=\"protocol\",code=\"400\"} 1",
            "ptm_overtimes_total 1",
            "ptm_requests_completed_total 2",
            "ptm_admitted_late_ratio 0.5",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        assert_eq!(m.responses(0, 200), 1);
        assert_eq!(route_of("/metrics"), 2);
    }
}
