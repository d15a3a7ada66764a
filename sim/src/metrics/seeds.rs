//! Summaries over seeds: the mean of a metric and its 95 % confidence interval (Student's t),
//! and `ptm run`'s mean row per policy.
//!
//! With one seed there is no interval: the half-width is `None`, never 0.

use super::Report;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A mean over seeds and the half-width of its 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The mean.
    pub mean: f64,
    /// Half-width of the 95 % interval (Student's t); `None` with fewer than two samples.
    pub ci95: Option<f64>,
}

impl Estimate {
    /// The mean of `xs` and its interval. `xs` must not be empty.
    pub fn of(xs: &[f64]) -> Estimate {
        assert!(!xs.is_empty(), "an estimate needs at least one sample");
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Estimate { mean, ci95: None };
        }
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        // n ≥ 2, so the degrees of freedom are positive and the distribution exists.
        let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
            .map(|d| d.inverse_cdf(0.975))
            .unwrap_or(f64::NAN);
        Estimate {
            mean,
            ci95: Some(t * (var / n as f64).sqrt()),
        }
    }

    /// The interval `(low, high)` clamped to `[min, max]` (the metric's range: a share stays
    /// in [0, 1], a count in [0, requests]); the mean itself when there is no interval.
    pub fn band(&self, min: f64, max: f64) -> (f64, f64) {
        let h = self.ci95.unwrap_or(0.0);
        (
            (self.mean - h).clamp(min, max),
            (self.mean + h).clamp(min, max),
        )
    }

    /// `12.3 ± 0.4` or `12.3` (no interval), with `decimals` decimals.
    pub fn display(&self, decimals: usize) -> String {
        match self.ci95 {
            Some(h) => format!("{:.*} ± {:.*}", decimals, self.mean, decimals, h),
            None => format!("{:.*}", decimals, self.mean),
        }
    }
}

/// One policy's mean over the seeds of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedMean {
    /// The policy.
    pub policy: String,
    /// How many seeds.
    pub seeds: usize,
    /// Offered load, requests per second.
    pub offered_rps: Estimate,
    /// Throughput, requests per second.
    pub throughput_rps: Estimate,
    /// Switches.
    pub switches: Estimate,
    /// Cold loads.
    pub cold_loads: Estimate,
    /// Overtimes.
    pub overtimes: Estimate,
    /// SLO attainment.
    pub slo_attainment: Estimate,
    /// Mean response time, ms.
    pub latency_mean_ms: Estimate,
    /// p50 response time, ms.
    pub latency_p50_ms: Estimate,
    /// p99 response time, ms.
    pub latency_p99_ms: Estimate,
    /// Median wait, ms.
    pub wait_p50_ms: Estimate,
    /// GPU busy fraction.
    pub gpu_busy_frac: Estimate,
}

/// Per policy (in first-appearance order), the mean over its seeds of every headline metric.
pub fn over_seeds(reports: &[Report]) -> Vec<SeedMean> {
    let mut policies: Vec<&str> = Vec::new();
    for r in reports {
        if !policies.contains(&r.policy.as_str()) {
            policies.push(&r.policy);
        }
    }
    policies
        .into_iter()
        .map(|p| {
            let rs: Vec<&Report> = reports.iter().filter(|r| r.policy == p).collect();
            let e =
                |f: fn(&Report) -> f64| Estimate::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
            SeedMean {
                policy: p.to_string(),
                seeds: rs.len(),
                offered_rps: e(|r| r.offered_rps),
                throughput_rps: e(|r| r.throughput_rps),
                switches: e(|r| r.switches as f64),
                cold_loads: e(|r| r.cold_loads as f64),
                overtimes: e(|r| r.overtimes as f64),
                slo_attainment: e(|r| r.slo_attainment),
                latency_mean_ms: e(|r| r.latency_ms.mean),
                latency_p50_ms: e(|r| r.latency_ms.p50),
                latency_p99_ms: e(|r| r.latency_ms.p99),
                wait_p50_ms: e(|r| r.wait_ms.p50),
                gpu_busy_frac: e(|r| r.gpu_busy_frac),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_has_no_interval_and_bands_are_clamped() {
        let one = Estimate::of(&[5.0]);
        assert_eq!(one.ci95, None);
        assert_eq!(one.display(1), "5.0");
        assert_eq!(one.band(0.0, 10.0), (5.0, 5.0));
        let e = Estimate::of(&[0.98, 1.0, 1.0]);
        let (lo, hi) = e.band(0.0, 1.0);
        assert!(e.mean + e.ci95.unwrap() > 1.0, "the raw interval exceeds 1");
        assert_eq!(hi, 1.0, "a share never exceeds 1");
        assert!(lo < e.mean);
        // t(0.975, 2) = 4.3027; s = 1; half-width = 4.3027 / √3.
        let h = Estimate::of(&[1.0, 2.0, 3.0]).ci95.unwrap();
        assert!((h - 4.302_652_7 / 3f64.sqrt()).abs() < 1e-5, "{h}");
    }
}
