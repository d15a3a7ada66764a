//! The sweep's tables: `summary.csv` (one row per cell, every metric) and `seeds.csv` (per
//! configuration and policy: the mean over seeds and its 95 % confidence interval, Student's t;
//! the interval is left empty with one seed).

use super::{popularity_name, CellKey, CellReport};
use crate::metrics::Estimate;
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

/// One row per cell, in cell order.
pub fn summary_csv(cells: &[CellReport]) -> String {
    let mut out = String::from(
        "index,workload,profile,instances,loading,pet,gpu_pool,eviction,batching_wait_ms,offered_rps,tenants,popularity,policy,seed,\
         requests,completed,throughput_rps,makespan_s,switches,cold_loads,preloaded,overtimes,slo_attainment,\
         latency_mean_ms,latency_p50_ms,latency_p95_ms,latency_p99_ms,latency_max_ms,\
         wait_mean_ms,wait_p50_ms,wait_p95_ms,wait_p99_ms,wait_max_ms,gpu_busy_frac\n",
    );
    for c in cells {
        let (k, r) = (&c.cell, &c.report);
        let (l, w) = (&r.latency_ms, &r.wait_ms);
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            k.index,
            config_columns(k),
            k.seed,
            r.requests,
            r.completed,
            r.throughput_rps,
            r.makespan_s,
            r.switches,
            r.cold_loads,
            r.preloaded,
            r.overtimes,
            r.slo_attainment,
            l.mean,
            l.p50,
            l.p95,
            l.p99,
            l.max,
            w.mean,
            w.p50,
            w.p95,
            w.p99,
            w.max,
            r.gpu_busy_frac,
        );
    }
    out
}

/// workload,profile,instances,loading,pet,gpu_pool,eviction,batching_wait_ms,offered_rps,
/// tenants,popularity,policy (a serving field is empty where the cell has none: full
/// fine-tunes, no pool, no batching).
fn config_columns(k: &CellKey) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}",
        csv_field(&k.workload),
        csv_field(&k.profile),
        k.instances,
        k.loading.name(),
        opt(k.pet.map(|p| p.kind.key())),
        opt(k.gpu_pool.map(super::capacity_name)),
        opt(k.eviction.map(|e| e.name())),
        opt(k.batching.map(|b| b.max_wait_ms)),
        opt(k.offered_rps),
        opt(k.tenants),
        opt(k.popularity.as_ref().map(popularity_name)),
        k.policy
    )
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Mean and the half-width of its 95 % confidence interval (0 with one sample; see
/// [`Estimate`], which says "no interval" instead).
pub fn mean_ci95(xs: &[f64]) -> (f64, f64) {
    let e = Estimate::of(xs);
    (e.mean, e.ci95.unwrap_or(0.0))
}

/// Per (configuration, policy), in first-cell order: the mean over seeds and the 95 % interval
/// half-width of the headline metrics.
pub fn seeds_csv(cells: &[CellReport]) -> String {
    let mut groups: BTreeMap<(usize, &str), (&CellReport, Vec<&CellReport>)> = BTreeMap::new();
    let mut first_index: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for c in cells {
        let key = (c.cell.config(), c.cell.policy.as_str());
        let first = *first_index.entry(key).or_insert(c.cell.index);
        groups
            .entry((first, c.cell.policy.as_str()))
            .or_insert((c, Vec::new()))
            .1
            .push(c);
    }
    type Metric = (&'static str, fn(&CellReport) -> f64);
    let metrics: [Metric; 7] = [
        ("throughput_rps", |c| c.report.throughput_rps),
        ("switches", |c| c.report.switches as f64),
        ("overtimes", |c| c.report.overtimes as f64),
        ("slo_attainment", |c| c.report.slo_attainment),
        ("latency_mean_ms", |c| c.report.latency_ms.mean),
        ("latency_p99_ms", |c| c.report.latency_ms.p99),
        ("gpu_busy_frac", |c| c.report.gpu_busy_frac),
    ];
    let mut out = String::from(
        "workload,profile,instances,loading,pet,gpu_pool,eviction,batching_wait_ms,offered_rps,tenants,popularity,policy,seeds",
    );
    for (name, _) in &metrics {
        let _ = write!(out, ",{name},{name}_ci95");
    }
    out.push('\n');
    for (first, members) in groups.values() {
        let k = &first.cell;
        let _ = write!(out, "{},{}", config_columns(k), members.len());
        for (_, f) in &metrics {
            let xs: Vec<f64> = members.iter().map(|c| f(c)).collect();
            let e = Estimate::of(&xs);
            let _ = write!(out, ",{},{}", e.mean, opt(e.ci95));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_interval_uses_students_t() {
        let (m, h) = mean_ci95(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        // t(0.975, 2) = 4.3027; s = 1; half-width = 4.3027 / √3.
        assert!((h - 4.302_652_7 / 3f64.sqrt()).abs() < 1e-5, "{h}");
        assert_eq!(mean_ci95(&[5.0]), (5.0, 0.0));
    }
}
