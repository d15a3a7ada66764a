//! Cost distributions, as profiles write them, in milliseconds.
//!
//! Sampling never returns a negative duration (normal draws are truncated at 0). For a sum of
//! `n` independent draws the simulator uses [`Dist::sample_sum`]: `n·mean + √n·(x − mean)` for one
//! draw `x`, which keeps the sum's mean and variance exact at the cost of one draw.
//!
//! Every distribution is bounded ([`crate::limits`]): [`Dist::validate`] refuses a constant, an
//! empirical value, a normal mean or standard deviation, a log-normal median, or any mean beyond
//! [`MAX_COST_MS`] (one hour), so a cost can neither overflow nanoseconds nor become free. Draws
//! lie in `[0, max_ms]`: [`Dist::max_ms`] is the constant, the largest empirical value, or for
//! normal and log-normal costs the point [`TAIL_SIGMAS`] (8) standard deviations above the
//! centre (`mean + 8·std`, `median·e^(8σ)`; beyond it lies a probability of 6·10⁻¹⁶), at most
//! one hour. A measured log-normal with a heavy tail (a few noisy repeats) is accepted; its
//! draws beyond one hour, far rarer than one in a billion for any such fit, are truncated.

use crate::error::{Error, Result};
use crate::limits::{MAX_COST_MS, TAIL_SIGMAS};
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use serde::{Deserialize, Serialize};

/// A distribution of a duration in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Dist {
    /// Always the same value.
    Constant(f64),
    /// Normal, truncated at 0.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Log-normal: `ln X ~ Normal(ln median, sigma)`.
    LogNormal {
        /// Median.
        median: f64,
        /// Standard deviation of `ln X`.
        sigma: f64,
    },
    /// Measured percentiles `(p, value)`, p in [0, 100] rising, values non-decreasing; sampled by
    /// linear interpolation of the inverse CDF. Must include p = 0 and p = 100.
    Empirical(Vec<(f64, f64)>),
}

impl Dist {
    /// The mean, in milliseconds.
    pub fn mean(&self) -> f64 {
        match self {
            Dist::Constant(v) => *v,
            Dist::Normal { mean, std } => truncated_normal_mean(*mean, *std),
            Dist::LogNormal { median, sigma } => median * (sigma * sigma / 2.0).exp(),
            Dist::Empirical(points) => points
                .windows(2)
                .map(|w| (w[1].0 - w[0].0) / 100.0 * (w[0].1 + w[1].1) / 2.0)
                .sum(),
        }
    }

    /// The largest value a draw takes (see the module doc), milliseconds.
    pub fn max_ms(&self) -> f64 {
        let tail = match self {
            Dist::Constant(v) => *v,
            Dist::Normal { mean, std } => mean + TAIL_SIGMAS * std,
            Dist::LogNormal { median, sigma } => median * (TAIL_SIGMAS * sigma).exp(),
            Dist::Empirical(points) => points.last().map_or(0.0, |p| p.1),
        };
        tail.min(MAX_COST_MS)
    }

    /// Refuses parameters that cannot describe a duration, and durations beyond
    /// [`MAX_COST_MS`] (see the module doc); `field` names it in the message.
    pub fn validate(&self, field: &str) -> Result<()> {
        self.validate_shape(field)?;
        let (what, value) = match self {
            Dist::Constant(v) => ("its value", *v),
            Dist::Normal { mean, std } => ("its mean or std", mean.max(*std)),
            Dist::LogNormal { median, .. } => ("its median", *median),
            Dist::Empirical(points) => ("its largest value", points.last().map_or(0.0, |p| p.1)),
        };
        let (what, value) = if value > MAX_COST_MS {
            (what, value)
        } else {
            ("its mean", self.mean())
        };
        if value.is_nan() || value > MAX_COST_MS {
            return Err(Error::invalid(
                field,
                format!(
                    "{self:?}: {what} is {value:?} ms: a cost may take at most one hour ({MAX_COST_MS} ms)"
                ),
            ));
        }
        Ok(())
    }

    fn validate_shape(&self, field: &str) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(field, m));
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        match self {
            Dist::Constant(v) if !ok(*v) => {
                bad(format!("Constant({v}): expected a finite value ≥ 0"))
            }
            Dist::Normal { mean, std } if !ok(*mean) || !ok(*std) => bad(format!(
                "Normal(mean: {mean}, std: {std}): expected finite values ≥ 0"
            )),
            Dist::LogNormal { median, sigma } if !(ok(*median) && *median > 0.0 && ok(*sigma)) => {
                bad(format!(
                    "LogNormal(median: {median}, sigma: {sigma}): expected median > 0, sigma ≥ 0"
                ))
            }
            Dist::Empirical(points) => {
                let rising = points
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
                let ends = points.first().map(|p| p.0) == Some(0.0)
                    && points.last().map(|p| p.0) == Some(100.0);
                if points.len() < 2 || !rising || !ends || !points.iter().all(|p| ok(p.1)) {
                    bad("Empirical: expected ≥ 2 points (p, value) with p rising from 0 to 100 and values non-decreasing and ≥ 0".into())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// One draw, in milliseconds, in `[0, max_ms]`.
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        self.sample_unbounded(rng).min(self.max_ms())
    }

    fn sample_unbounded(&self, rng: &mut impl Rng) -> f64 {
        match self {
            Dist::Constant(v) => *v,
            Dist::Normal { mean, std } => {
                if *std == 0.0 {
                    return *mean;
                }
                let d = Normal::new(*mean, *std).expect("validated");
                loop {
                    let x = d.sample(rng);
                    if x >= 0.0 {
                        return x;
                    }
                }
            }
            Dist::LogNormal { median, sigma } => LogNormal::new(median.ln(), *sigma)
                .expect("validated")
                .sample(rng),
            Dist::Empirical(points) => {
                let p = rng.random::<f64>() * 100.0;
                let i = points
                    .partition_point(|q| q.0 <= p)
                    .clamp(1, points.len() - 1);
                let (a, b) = (points[i - 1], points[i]);
                a.1 + (b.1 - a.1) * (p - a.0) / (b.0 - a.0)
            }
        }
    }

    /// The sum of `n` independent draws, approximated from one draw with the exact mean and
    /// variance (see the module doc), never below 0.
    pub fn sample_sum(&self, n: u32, rng: &mut impl Rng) -> f64 {
        if n == 0 {
            return 0.0;
        }
        if let Dist::Constant(v) = self {
            return v * n as f64;
        }
        let mean = self.mean();
        let x = self.sample(rng);
        (n as f64 * mean + (n as f64).sqrt() * (x - mean)).max(0.0)
    }
}

/// Mean of Normal(mu, sigma) truncated to [0, ∞) by rejection.
fn truncated_normal_mean(mu: f64, sigma: f64) -> f64 {
    if sigma == 0.0 {
        return mu;
    }
    let a = -mu / sigma;
    let pdf = (-0.5 * a * a).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let tail = 0.5 * erfc(a / std::f64::consts::SQRT_2);
    mu + sigma * pdf / tail
}

/// Complementary error function (Numerical Recipes' erfcc, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Stream};

    fn sample_mean(d: &Dist, n: usize) -> f64 {
        let mut rng = stream(1, Stream::Service);
        (0..n).map(|_| d.sample(&mut rng)).sum::<f64>() / n as f64
    }

    #[test]
    fn sample_means_match_declared_means() {
        for d in [
            Dist::Constant(3.0),
            Dist::Normal {
                mean: 10.0,
                std: 2.0,
            },
            Dist::Normal {
                mean: 1.0,
                std: 2.0,
            },
            Dist::LogNormal {
                median: 5.0,
                sigma: 0.5,
            },
            Dist::Empirical(vec![(0.0, 1.0), (50.0, 2.0), (100.0, 10.0)]),
        ] {
            d.validate("x").unwrap();
            let (m, s) = (d.mean(), sample_mean(&d, 200_000));
            assert!(
                (m - s).abs() < 0.01 * m.max(1.0),
                "{d:?}: mean {m} sampled {s}"
            );
        }
    }

    #[test]
    fn sums_keep_mean_and_variance() {
        let d = Dist::Normal {
            mean: 10.0,
            std: 2.0,
        };
        let mut rng = stream(2, Stream::Service);
        let xs: Vec<f64> = (0..100_000).map(|_| d.sample_sum(16, &mut rng)).collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64;
        assert!((m - 160.0).abs() < 0.2, "{m}");
        assert!((v - 64.0).abs() < 2.0, "{v}");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Dist::Constant(-1.0).validate("f").is_err());
        assert!(Dist::LogNormal {
            median: 0.0,
            sigma: 1.0
        }
        .validate("f")
        .is_err());
        let err = Dist::Empirical(vec![(0.0, 2.0), (100.0, 1.0)])
            .validate("a.b")
            .unwrap_err();
        assert!(err.to_string().starts_with("a.b: Empirical"), "{err}");
    }
}
