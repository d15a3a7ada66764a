//! Human-readable tables of reports.

use ptm_sim::metrics::{over_seeds, Report, TenantReport};
use std::fmt::Write as _;

/// One line of context per scenario configuration (with the offered load), one row per
/// (policy, seed) with its worst tenant, and — for policies run with several seeds — a mean row
/// with the 95 % interval over seeds.
pub fn reports(reports: &[Report]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    let deadline = first
        .deadline_ms
        .map_or(String::new(), |d| format!(", deadline {d} ms"));
    let _ = writeln!(
        out,
        "{}: {} requests, {} tenants, {} instances ({} loading) on {}; offered load {:.3} req/s{deadline}",
        first.scenario,
        first.requests,
        first.tenants,
        first.instances,
        first.loading,
        first.gpu,
        first.offered_rps,
    );
    if !first.cost_model.is_empty() {
        let _ = writeln!(out, "costs: {}", first.cost_model);
    }
    // The policy column fits the longest name (`deadline-batch`), at least 10 wide.
    let w = reports
        .iter()
        .map(|r| r.policy.len())
        .max()
        .unwrap_or(0)
        .max(10);
    let _ = writeln!(
        out,
        "{:<w$} {:>5} {:>9} {:>9} {:>8} {:>5} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>6}  worst tenant (SLO %, p99 ms)",
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
        "busy %",
    );
    for r in reports {
        let worst = TenantReport::worst(&r.per_tenant, 1)
            .first()
            .map_or(String::new(), |t| {
                format!(
                    "{} ({:.1}, {:.1})",
                    t.tenant,
                    100.0 * t.slo_attainment,
                    t.p99_latency_ms
                )
            });
        let _ = writeln!(
            out,
            "{:<w$} {:>5} {:>9.3} {:>8.2}s {:>8} {:>5} {:>9} {:>7.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.1}  {worst}",
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
    let means: Vec<_> = over_seeds(reports)
        .into_iter()
        .filter(|m| m.seeds > 1)
        .collect();
    if !means.is_empty() {
        let _ = writeln!(out, "mean over seeds ± 95 % interval (Student's t):");
        let _ = writeln!(
            out,
            "{:<w$} {:>5} {:>15} {:>15} {:>13} {:>15} {:>17} {:>17}",
            "policy",
            "seeds",
            "offered req/s",
            "thr req/s",
            "switches",
            "SLO %",
            "mean ms",
            "p99 ms"
        );
        for m in means {
            let pct = |e: ptm_sim::metrics::Estimate| ptm_sim::metrics::Estimate {
                mean: 100.0 * e.mean,
                ci95: e.ci95.map(|h| 100.0 * h),
            };
            let _ = writeln!(
                out,
                "{:<w$} {:>5} {:>15} {:>15} {:>13} {:>15} {:>17} {:>17}",
                m.policy,
                m.seeds,
                m.offered_rps.display(3),
                m.throughput_rps.display(3),
                m.switches.display(1),
                pct(m.slo_attainment).display(2),
                m.latency_mean_ms.display(1),
                m.latency_p99_ms.display(1),
            );
        }
    }
    out
}
