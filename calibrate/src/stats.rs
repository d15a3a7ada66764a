//! Statistics of measured repeats (with `statrs`): summary, and the distribution to sample.

use ptm_sim::profile::{Dist, Measured};
use statrs::distribution::{Continuous, LogNormal, Normal};
use statrs::statistics::{Data, Distribution as _, OrderStatistics};

/// The median of `samples` (ms).
pub fn median(samples: &[f64]) -> f64 {
    Data::new(samples.to_vec()).median()
}

/// Median, mean, standard deviation and tail percentiles of `samples` (ms), with the fit.
pub fn summarise(samples: &[f64]) -> Measured {
    let mut data = Data::new(samples.to_vec());
    let (_, why) = fit_with_reason(samples);
    Measured {
        n: samples.len(),
        median_ms: data.median(),
        mean_ms: data.mean().unwrap_or(f64::NAN),
        std_ms: data.std_dev().unwrap_or(0.0),
        p5_ms: data.percentile(5),
        p95_ms: data.percentile(95),
        p99_ms: data.percentile(99),
        fit: why,
    }
}

/// The distribution the simulator should sample for `samples` (ms).
pub fn fit(samples: &[f64]) -> Dist {
    fit_with_reason(samples).0
}

fn fit_with_reason(samples: &[f64]) -> (Dist, String) {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let std = var.sqrt();
    if samples.len() < 2 || std <= 1e-9 * mean.abs().max(1e-12) {
        return (
            Dist::Constant(mean),
            "constant: no spread was measured".into(),
        );
    }
    let normal_ll: f64 = Normal::new(mean, std).map_or(f64::NEG_INFINITY, |d| {
        samples.iter().map(|&x| d.ln_pdf(x)).sum()
    });
    let positive = samples.iter().all(|&x| x > 0.0);
    let (mu, sigma) = if positive {
        let logs: Vec<f64> = samples.iter().map(|x| x.ln()).collect();
        let mu = logs.iter().sum::<f64>() / n;
        let s = (logs.iter().map(|l| (l - mu).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        (mu, s)
    } else {
        (0.0, 0.0)
    };
    let lognormal_ll: f64 = if positive && sigma > 0.0 {
        LogNormal::new(mu, sigma).map_or(f64::NEG_INFINITY, |d| {
            samples.iter().map(|&x| d.ln_pdf(x)).sum()
        })
    } else {
        f64::NEG_INFINITY
    };
    if lognormal_ll > normal_ll {
        (
            Dist::LogNormal {
                median: mu.exp(),
                sigma,
            },
            format!("log-normal: log-likelihood {lognormal_ll:.1} > normal {normal_ll:.1}"),
        )
    } else {
        (
            Dist::Normal { mean, std },
            format!("normal: log-likelihood {normal_ll:.1} ≥ log-normal {lognormal_ll:.1}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_and_fits() {
        let xs: Vec<f64> = (1..=100).map(|i| i as f64).collect();
        let m = summarise(&xs);
        assert_eq!((m.n, m.median_ms), (100, 50.5));
        assert!(
            (m.p95_ms - 95.0).abs() < 1.0 && (m.p5_ms - 5.0).abs() < 1.0,
            "{m:?}"
        );
        assert!(
            matches!(fit(&xs), Dist::Normal { .. }),
            "a flat spread is closer to normal"
        );
        let skewed: Vec<f64> = (1..=200).map(|i| (i as f64 / 40.0).exp()).collect();
        assert!(
            matches!(fit(&skewed), Dist::LogNormal { .. }),
            "exponential growth is log-normal"
        );
        assert_eq!(fit(&[3.0, 3.0, 3.0]), Dist::Constant(3.0));
    }
}
