//! Human-readable tables of reports.

use ptm_sim::metrics::Report;
use std::fmt::Write as _;

/// One line of context per scenario configuration, then one row per (policy, seed).
pub fn reports(reports: &[Report]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "{}: {} requests, {} tenants, {} instances ({} loading) on {}",
        first.scenario, first.requests, first.tenants, first.instances, first.loading, first.gpu
    );
    let _ = writeln!(
        out,
        "{:<10} {:>5} {:>9} {:>9} {:>8} {:>5} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}",
        "policy",
        "seed",
        "thr req/s",
        "makespan",
        "switches",
        "cold",
        "overtimes",
        "SLO %",
        "mean ms",
        "p50 ms",
        "p99 ms",
        "wait p50",
        "busy %"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<10} {:>5} {:>9.3} {:>8.2}s {:>8} {:>5} {:>9} {:>7.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.1}",
            r.policy,
            r.seed,
            r.throughput_rps,
            r.makespan_s,
            r.switches,
            r.cold_loads,
            r.overtimes,
            100.0 * r.slo_attainment,
            r.latency_ms.mean,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.wait_ms.p50,
            100.0 * r.gpu_busy_frac,
        );
    }
    out
}
