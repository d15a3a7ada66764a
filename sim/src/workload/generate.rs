//! Seeded workload generators.
//!
//! Arrival gaps come from the [`Stream::Arrivals`] stream and tenant choices (and sequence
//! shuffles) from [`Stream::Mix`], so changing the popularity keeps the arrival times, and
//! changing the arrival process keeps the tenant sequence. The first request arrives at 0 and
//! request i at the sum of the gaps before it, as FastPTM's sender does.
//!
//! Bounds ([`crate::limits`]): at most 10,000,000 requests and 1,000,000 tenants; a mean gap of
//! at most 10 years; a request that would arrive after 10 years is refused, naming it.

use super::{check_request_count, numbered_tenants, Request, RequestDefaults, Workload};
use crate::error::{Error, Result};
use crate::limits::{self, MAX_TIME_MS, MAX_TIME_NS};
use crate::rng::{stream, Stream};
use crate::time::{ms_to_ns, Nanos, NS_PER_S};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_distr::{Distribution, Exp, Gamma, Normal, Zipf};
use serde::{Deserialize, Serialize};

/// Most tenants a generator makes (the bound of every workload).
pub use crate::limits::MAX_TENANTS;

/// An arrival process: how long the sender sleeps between requests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Arrivals {
    /// FastPTM's: gaps ~ Normal(mu, mu/3), non-positive draws rejected (CV ≈ 0.33).
    FastPtm {
        /// Mean gap, seconds.
        mu_s: f64,
    },
    /// Poisson arrivals: exponential gaps.
    Poisson {
        /// Mean rate, requests per second.
        rate_rps: f64,
    },
    /// Gamma-distributed gaps with a given coefficient of variation (> 1 = bursts).
    Gamma {
        /// Mean rate, requests per second.
        rate_rps: f64,
        /// Coefficient of variation of the gaps.
        cv: f64,
    },
    /// A constant gap.
    Fixed {
        /// Gap, milliseconds.
        gap_ms: f64,
    },
}

impl Arrivals {
    /// Mean offered rate in requests per second.
    pub fn rate_rps(&self) -> f64 {
        match *self {
            Arrivals::FastPtm { mu_s } => 1.0 / mu_s,
            Arrivals::Poisson { rate_rps } | Arrivals::Gamma { rate_rps, .. } => rate_rps,
            Arrivals::Fixed { gap_ms } => 1000.0 / gap_ms,
        }
    }

    /// Refuses parameters that are not positive, a mean gap beyond 10 years
    /// ([`limits::MAX_TIME_MS`]) and a coefficient of variation above [`MAX_CV`].
    fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("workload.arrivals.{name}"),
                    format!("expected a positive number, got {v}"),
                ))
            }
        };
        match *self {
            Arrivals::FastPtm { mu_s } => positive("mu_s", mu_s),
            Arrivals::Poisson { rate_rps } => positive("rate_rps", rate_rps),
            Arrivals::Gamma { rate_rps, cv } => {
                positive("rate_rps", rate_rps).and(positive("cv", cv))?;
                if cv > MAX_CV {
                    return Err(Error::invalid(
                        "workload.arrivals.cv",
                        format!("{cv:?}: expected at most {MAX_CV}"),
                    ));
                }
                Ok(())
            }
            Arrivals::Fixed { gap_ms } => positive("gap_ms", gap_ms),
        }?;
        let mean_gap_ms = 1000.0 / self.rate_rps();
        if mean_gap_ms > MAX_TIME_MS {
            return Err(Error::invalid(
                "workload.arrivals",
                format!(
                    "a mean gap of {mean_gap_ms:?} ms ({:?} requests per second): expected at most 10 years ({MAX_TIME_MS} ms)",
                    self.rate_rps()
                ),
            ));
        }
        Ok(())
    }

    /// A sampler of gaps in nanoseconds.
    fn sampler(&self) -> Result<GapSampler> {
        self.validate()?;
        let bad = |e: &dyn std::fmt::Display| Error::invalid("workload.arrivals", e.to_string());
        Ok(match *self {
            Arrivals::FastPtm { mu_s } => {
                GapSampler::TruncNormal(Normal::new(mu_s, mu_s / 3.0).map_err(|e| bad(&e))?)
            }
            Arrivals::Poisson { rate_rps } => {
                GapSampler::Exp(Exp::new(rate_rps).map_err(|e| bad(&e))?)
            }
            Arrivals::Gamma { rate_rps, cv } => {
                let shape = 1.0 / (cv * cv);
                let scale = (1.0 / rate_rps) / shape;
                GapSampler::Gamma(Gamma::new(shape, scale).map_err(|e| bad(&e))?)
            }
            Arrivals::Fixed { gap_ms } => GapSampler::Fixed(ms_to_ns(gap_ms)),
        })
    }
}

/// Largest coefficient of variation of Gamma gaps.
pub const MAX_CV: f64 = 1000.0;

enum GapSampler {
    TruncNormal(Normal<f64>),
    Exp(Exp<f64>),
    Gamma(Gamma<f64>),
    Fixed(Nanos),
}

impl GapSampler {
    /// The next gap; `Nanos::MAX` for a draw too long for nanoseconds (the caller refuses it).
    fn gap_ns(&self, rng: &mut impl Rng) -> Nanos {
        let s = match self {
            GapSampler::TruncNormal(d) => loop {
                let g = d.sample(rng);
                if g > 0.0 {
                    break g;
                }
            },
            GapSampler::Exp(d) => d.sample(rng),
            GapSampler::Gamma(d) => d.sample(rng),
            GapSampler::Fixed(g) => return *g,
        };
        let ns = (s * NS_PER_S as f64).round();
        if (0.0..Nanos::MAX as f64).contains(&ns) {
            ns as Nanos
        } else {
            Nanos::MAX
        }
    }
}

/// `arrival_ns + gap_ns` for request `index` of `count`, refused beyond 10 years.
fn next_arrival(arrival_ns: Nanos, gap_ns: Nanos, index: usize, count: usize) -> Result<Nanos> {
    match arrival_ns.checked_add(gap_ns) {
        Some(t) if t <= MAX_TIME_NS => Ok(t),
        _ => Err(Error::invalid(
            "workload.arrivals",
            format!(
                "request {index} of {count} would arrive after {}, beyond the bound of 10 years: raise the rate or generate fewer requests",
                limits::human_ns(arrival_ns as f64 + gap_ns as f64)
            ),
        )),
    }
}

/// How requests spread over tenants.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Popularity {
    /// Every tenant equally likely (FastPTM).
    #[default]
    Uniform,
    /// Zipf with exponent `s`: tenant 0 is the most popular.
    Zipf {
        /// Exponent (> 0; 1.0 is classic Zipf).
        s: f64,
    },
}

/// Checks a generator's parameters without generating (what [`generate`] refuses before it
/// draws anything); returns its Zipf sampler, if any.
pub fn check_generate(
    count: usize,
    arrivals: &Arrivals,
    tenants: u32,
    popularity: &Popularity,
) -> Result<Option<Zipf<f64>>> {
    check_counts(count, tenants)?;
    arrivals.validate()?;
    match *popularity {
        Popularity::Uniform => Ok(None),
        Popularity::Zipf { s } if s > 0.0 && s <= MAX_ZIPF_S => Zipf::new(tenants as f64, s)
            .map(Some)
            .map_err(|e| Error::invalid("workload.popularity.s", format!("{s:?}: {e}"))),
        Popularity::Zipf { s } => Err(Error::invalid(
            "workload.popularity.s",
            format!("{s:?}: expected an exponent in (0, {MAX_ZIPF_S}]"),
        )),
    }
}

/// Largest Zipf exponent (at 100 the first tenant takes all but 10⁻³⁰ of the requests).
pub const MAX_ZIPF_S: f64 = 100.0;

/// Generates `count` requests over `tenants` tenants.
pub fn generate(
    count: usize,
    arrivals: &Arrivals,
    tenants: u32,
    popularity: &Popularity,
    defaults: &RequestDefaults,
    model: &str,
    seed: u64,
) -> Result<Workload> {
    defaults.validate("workload")?;
    let zipf = check_generate(count, arrivals, tenants, popularity)?;
    let gaps = arrivals.sampler()?;
    let mut gap_rng = stream(seed, Stream::Arrivals);
    let mut mix_rng = stream(seed, Stream::Mix);
    let mut requests = Vec::with_capacity(count);
    let mut arrival_ns: Nanos = 0;
    for index in 0..count {
        if index > 0 {
            arrival_ns = next_arrival(arrival_ns, gaps.gap_ns(&mut gap_rng), index, count)?;
        }
        let tenant = match &zipf {
            None => mix_rng.random_range(0..tenants),
            // A Zipf draw is in 1..=tenants.
            Some(z) => (z.sample(&mut mix_rng) as u32).clamp(1, tenants) - 1,
        };
        requests.push(shaped(arrival_ns, tenant, defaults));
    }
    Ok(Workload {
        tenants: numbered_tenants(tenants, model),
        requests,
    })
}

/// FastPTM's fixed sequences: `types` letters repeated `repeat` times, optionally each group
/// shuffled, one request every `gap_ms`.
pub fn sequence(
    repeat: usize,
    types: u32,
    shuffle: bool,
    gap_ms: f64,
    defaults: &RequestDefaults,
    model: &str,
    seed: u64,
) -> Result<Workload> {
    defaults.validate("workload")?;
    let (count, gap_ns) = check_sequence(repeat, types, gap_ms)?;
    let mut mix_rng = stream(seed, Stream::Mix);
    let mut requests = Vec::with_capacity(count);
    let mut group: Vec<u32> = (0..types).collect();
    for _ in 0..repeat {
        if shuffle {
            group.shuffle(&mut mix_rng);
        }
        for &tenant in &group {
            // At most MAX_TIME_NS: checked above.
            requests.push(shaped(requests.len() as Nanos * gap_ns, tenant, defaults));
        }
    }
    Ok(Workload {
        tenants: numbered_tenants(types, model),
        requests,
    })
}

/// Checks a sequence's parameters without generating; returns its request count and gap.
pub fn check_sequence(repeat: usize, types: u32, gap_ms: f64) -> Result<(usize, Nanos)> {
    if !(1..=26).contains(&types) {
        return Err(Error::invalid(
            "workload.types",
            format!("expected 1–26 letters, got {types}"),
        ));
    }
    let count = repeat.checked_mul(types as usize).ok_or_else(|| {
        Error::invalid(
            "workload.repeat",
            format!(
                "{repeat} groups of {types} letters: more than {} requests, the most a workload may have",
                limits::MAX_REQUESTS
            ),
        )
    })?;
    check_counts(count, types)?;
    if gap_ms.is_nan() || gap_ms <= 0.0 {
        return Err(Error::invalid(
            "workload.gap_ms",
            format!("expected a positive number, got {gap_ms}"),
        ));
    }
    let gap_ns = limits::time_ms("workload.gap_ms", gap_ms)?;
    let last_ns = (count as u128 - 1) * gap_ns as u128;
    if last_ns > MAX_TIME_NS as u128 {
        return Err(Error::invalid(
            "workload.gap_ms",
            format!(
                "{count} requests {gap_ms} ms apart: the last would arrive after {}, beyond the bound of 10 years",
                limits::human_ns(last_ns as f64)
            ),
        ));
    }
    Ok((count, gap_ns))
}

fn shaped(arrival_ns: Nanos, tenant: u32, defaults: &RequestDefaults) -> Request {
    Request {
        arrival_ns,
        tenant,
        samples: defaults.samples,
        seq_len: defaults.seq_len,
        deadline_ns: defaults.deadline_ns(),
    }
}

fn check_counts(requests: usize, tenants: u32) -> Result<()> {
    if requests == 0 {
        return Err(Error::invalid(
            "workload.requests",
            format!("expected 1 to {}, got 0", limits::MAX_REQUESTS),
        ));
    }
    check_request_count("workload.requests", requests)?;
    if tenants == 0 || tenants > MAX_TENANTS {
        return Err(Error::invalid(
            "workload.tenants",
            format!("expected 1 to {MAX_TENANTS}, got {tenants}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(arrivals: Arrivals, tenants: u32, pop: Popularity, seed: u64) -> Workload {
        generate(
            20_000,
            &arrivals,
            tenants,
            &pop,
            &RequestDefaults::default(),
            "m",
            seed,
        )
        .unwrap()
    }

    fn gaps_s(w: &Workload) -> Vec<f64> {
        w.requests
            .windows(2)
            .map(|p| (p[1].arrival_ns - p[0].arrival_ns) as f64 / 1e9)
            .collect()
    }

    fn mean_cv(x: &[f64]) -> (f64, f64) {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        let v = x.iter().map(|g| (g - m) * (g - m)).sum::<f64>() / n;
        (m, v.sqrt() / m)
    }

    #[test]
    fn fastptm_gaps_have_mean_mu_and_cv_a_third() {
        let w = gen(Arrivals::FastPtm { mu_s: 0.1 }, 12, Popularity::Uniform, 3);
        let (m, cv) = mean_cv(&gaps_s(&w));
        assert!((m - 0.1).abs() < 0.002, "mean {m}");
        assert!((cv - 0.33).abs() < 0.02, "cv {cv}");
        assert!(gaps_s(&w).iter().all(|&g| g > 0.0));
    }

    #[test]
    fn poisson_and_gamma_have_their_cv() {
        let (m, cv) = mean_cv(&gaps_s(&gen(
            Arrivals::Poisson { rate_rps: 50.0 },
            4,
            Popularity::Uniform,
            1,
        )));
        assert!(
            (m - 0.02).abs() < 0.001 && (cv - 1.0).abs() < 0.05,
            "{m} {cv}"
        );
        let g = gen(
            Arrivals::Gamma {
                rate_rps: 50.0,
                cv: 3.0,
            },
            4,
            Popularity::Uniform,
            1,
        );
        let (m, cv) = mean_cv(&gaps_s(&g));
        assert!(
            (m - 0.02).abs() < 0.003 && (cv - 3.0).abs() < 0.3,
            "{m} {cv}"
        );
    }

    #[test]
    fn zipf_favours_low_tenants_and_uniform_does_not() {
        let w = gen(
            Arrivals::Poisson { rate_rps: 1.0 },
            100_000,
            Popularity::Zipf { s: 1.1 },
            9,
        );
        let first = w.requests.iter().filter(|r| r.tenant == 0).count();
        let tenth = w.requests.iter().filter(|r| r.tenant == 9).count();
        assert!(first > 5 * tenth && tenth > 0, "{first} {tenth}");
        assert!(w.requests.iter().all(|r| r.tenant < 100_000));
        let u = gen(
            Arrivals::Poisson { rate_rps: 1.0 },
            4,
            Popularity::Uniform,
            9,
        );
        let zeros = u.requests.iter().filter(|r| r.tenant == 0).count() as f64 / 20_000.0;
        assert!((zeros - 0.25).abs() < 0.02, "{zeros}");
    }

    #[test]
    fn streams_are_independent() {
        let a = gen(
            Arrivals::Poisson { rate_rps: 5.0 },
            8,
            Popularity::Uniform,
            4,
        );
        let b = gen(
            Arrivals::Poisson { rate_rps: 5.0 },
            8,
            Popularity::Zipf { s: 1.0 },
            4,
        );
        let arrivals = |w: &Workload| w.requests.iter().map(|r| r.arrival_ns).collect::<Vec<_>>();
        assert_eq!(arrivals(&a), arrivals(&b));
        assert_ne!(
            a,
            gen(
                Arrivals::Poisson { rate_rps: 5.0 },
                8,
                Popularity::Uniform,
                5
            )
        );
    }

    #[test]
    fn sequences_repeat_the_letters() {
        let d = RequestDefaults::default();
        let w = sequence(3, 4, false, 100.0, &d, "m", 1).unwrap();
        let t: Vec<_> = w.requests.iter().map(|r| r.tenant).collect();
        assert_eq!(t, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(w.requests[5].arrival_ns, 500_000_000);
        let s = sequence(50, 12, true, 100.0, &d, "m", 1).unwrap();
        for group in s.requests.chunks(12) {
            let mut g: Vec<_> = group.iter().map(|r| r.tenant).collect();
            g.sort_unstable();
            assert_eq!(g, (0..12).collect::<Vec<_>>());
        }
        assert_ne!(
            s.requests[..12]
                .iter()
                .map(|r| r.tenant)
                .collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
    }

    #[test]
    fn nonsense_is_refused() {
        let d = RequestDefaults::default();
        let e = generate(
            10,
            &Arrivals::Poisson { rate_rps: -1.0 },
            3,
            &Popularity::Uniform,
            &d,
            "m",
            1,
        );
        assert!(e.unwrap_err().to_string().contains("rate_rps"));
        assert!(sequence(1, 27, false, 1.0, &d, "m", 1).is_err());
        assert!(generate(
            10,
            &Arrivals::Fixed { gap_ms: 1.0 },
            0,
            &Popularity::Uniform,
            &d,
            "m",
            1
        )
        .is_err());
    }
}
