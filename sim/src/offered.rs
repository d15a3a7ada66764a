//! Offered load: a workload's arrival rate, the same workload replayed at another rate, and the
//! same workload made long enough to reach a steady state.
//!
//! - A generator gets the new rate as its parameter (`Poisson(rate_rps)`, FastPTM's `mu_s`, …);
//!   a fixed sequence gets the gap; a trace is replayed faster or slower by scaling its arrival
//!   times about the first (same order, same tenants, same shapes).
//! - Lengthening ([`build`] with `min_requests`): a generator draws more requests, a sequence
//!   repeats more groups, a trace is *tiled*: copy k arrives k periods later, where a period is
//!   the trace's span plus one mean gap, so the tiled trace has the original's rate.

use crate::error::{Error, Result};
use crate::time::Nanos;
use crate::workload::{self, Arrivals, FileSource, RequestDefaults, Workload, WorkloadSpec};

pub use crate::metrics::offered_rps;

/// The rate a spec states (generators and sequences); `None` for a trace (read it to know).
pub fn spec_rate_rps(spec: &WorkloadSpec) -> Option<f64> {
    match spec {
        WorkloadSpec::Generate { arrivals, .. } => Some(arrivals.rate_rps()),
        WorkloadSpec::Sequence { gap_ms, .. } => Some(1000.0 / gap_ms),
        WorkloadSpec::Trace(_) => None,
    }
}

/// `spec` with its rate replaced (generators and sequences; a trace is returned unchanged: scale
/// it with [`scale_to_rate`] once read).
pub fn spec_at_rate(spec: &WorkloadSpec, rate_rps: f64) -> WorkloadSpec {
    let mut spec = spec.clone();
    match &mut spec {
        WorkloadSpec::Generate { arrivals, .. } => {
            *arrivals = match *arrivals {
                Arrivals::FastPtm { .. } => Arrivals::FastPtm {
                    mu_s: 1.0 / rate_rps,
                },
                Arrivals::Poisson { .. } => Arrivals::Poisson { rate_rps },
                Arrivals::Gamma { cv, .. } => Arrivals::Gamma { rate_rps, cv },
                Arrivals::Fixed { .. } => Arrivals::Fixed {
                    gap_ms: 1000.0 / rate_rps,
                },
            }
        }
        WorkloadSpec::Sequence { gap_ms, .. } => *gap_ms = 1000.0 / rate_rps,
        WorkloadSpec::Trace(_) => {}
    }
    spec
}

/// `spec` lengthened to at least `min_requests` requests (generators and sequences).
fn spec_with_at_least(spec: &WorkloadSpec, min_requests: usize) -> WorkloadSpec {
    let mut spec = spec.clone();
    match &mut spec {
        WorkloadSpec::Generate { requests, .. } => *requests = (*requests).max(min_requests),
        WorkloadSpec::Sequence { repeat, types, .. } => {
            let per_group = (*types).max(1) as usize;
            *repeat = (*repeat).max(min_requests.div_ceil(per_group));
        }
        WorkloadSpec::Trace(_) => {}
    }
    spec
}

/// A trace replayed at `rate_rps`: arrivals scaled about the first. Refuses a rate that is not
/// positive and finite, a workload with no rate (fewer than two distinct arrival times), and
/// arrival times past the range of nanoseconds.
pub fn scale_to_rate(workload: &Workload, rate_rps: f64) -> Result<Workload> {
    if !(rate_rps.is_finite() && rate_rps > 0.0) {
        return Err(Error::invalid(
            "rate",
            format!("expected a positive rate in requests per second, got {rate_rps}"),
        ));
    }
    let rate0 = offered_rps(workload);
    if rate0 <= 0.0 {
        return Err(Error::invalid(
            "rate",
            "the workload has no arrival rate to scale (fewer than two distinct arrival times)",
        ));
    }
    let mut w = workload.clone();
    let factor = rate0 / rate_rps;
    let first = w.requests[0].arrival_ns;
    for r in &mut w.requests {
        let t = first as f64 + (r.arrival_ns - first) as f64 * factor;
        if t >= (Nanos::MAX / 2) as f64 {
            return Err(Error::invalid(
                "rate",
                format!("{rate_rps} req/s stretches the trace past 292 years"),
            ));
        }
        r.arrival_ns = first + ((r.arrival_ns - first) as f64 * factor).round() as Nanos;
    }
    Ok(w)
}

/// `workload` repeated until it has at least `min_requests` requests; copy k arrives k periods
/// after the original (a period: the span of arrivals plus one mean gap).
pub fn tile(workload: &Workload, min_requests: usize) -> Result<Workload> {
    let n = workload.requests.len();
    if n >= min_requests {
        return Ok(workload.clone());
    }
    let rate = offered_rps(workload);
    if rate <= 0.0 {
        return Err(Error::invalid(
            "workload",
            "cannot repeat a trace with fewer than two distinct arrival times",
        ));
    }
    let first = workload.requests[0].arrival_ns;
    let last = workload.requests[n - 1].arrival_ns;
    let span = last - first;
    let period = span + span / (n as Nanos - 1).max(1);
    let copies = min_requests.div_ceil(n);
    let mut w = workload.clone();
    w.requests.reserve(n * (copies - 1));
    for k in 1..copies as Nanos {
        let shift = period.checked_mul(k).ok_or_else(|| {
            Error::invalid("workload", "the repeated trace runs past the range of time")
        })?;
        for r in &workload.requests {
            let mut r = *r;
            r.arrival_ns = r.arrival_ns.checked_add(shift).ok_or_else(|| {
                Error::invalid("workload", "the repeated trace runs past the range of time")
            })?;
            w.requests.push(r);
        }
    }
    w.assert_valid();
    Ok(w)
}

/// Builds `spec`'s workload for `seed`, with at least `min_requests` requests (0: as written) at
/// `rate_rps` (`None`: its own rate).
pub fn build(
    spec: &WorkloadSpec,
    defaults: &RequestDefaults,
    model: &str,
    seed: u64,
    files: &dyn FileSource,
    rate_rps: Option<f64>,
    min_requests: usize,
) -> Result<Workload> {
    match spec {
        WorkloadSpec::Trace(_) => {
            let w = workload::build(spec, defaults, model, seed, files)?;
            let w = tile(&w, min_requests)?;
            match rate_rps {
                Some(r) => scale_to_rate(&w, r),
                None => Ok(w),
            }
        }
        _ => {
            let mut spec = spec_with_at_least(spec, min_requests);
            if let Some(r) = rate_rps {
                if !(r.is_finite() && r > 0.0) {
                    return Err(Error::invalid(
                        "rate",
                        format!("expected a positive rate in requests per second, got {r}"),
                    ));
                }
                spec = spec_at_rate(&spec, r);
            }
            workload::build(&spec, defaults, model, seed, files)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(repeat: usize, gap_ms: f64) -> Workload {
        let spec = WorkloadSpec::Sequence {
            repeat,
            types: 4,
            shuffle: false,
            gap_ms,
        };
        workload::build(&spec, &Default::default(), "m", 1, &workload::NoFiles).unwrap()
    }

    #[test]
    fn scaling_a_trace_changes_its_rate_only() {
        let w = sequence(3, 100.0);
        assert!((offered_rps(&w) - 10.0).abs() < 1e-9);
        let fast = scale_to_rate(&w, 40.0).unwrap();
        assert!((offered_rps(&fast) - 40.0).abs() < 1e-9);
        assert_eq!(fast.requests[1].arrival_ns, 25_000_000);
        assert_eq!(fast.tenants, w.tenants);
        assert!(scale_to_rate(&w, 0.0).is_err());
        assert!(scale_to_rate(&w, 1e-12).is_err(), "past the range of time");
    }

    #[test]
    fn tiling_keeps_the_rate_and_the_mix() {
        let w = sequence(2, 50.0); // 8 requests, 20 req/s
        let t = tile(&w, 30).unwrap();
        assert_eq!(t.requests.len(), 32);
        assert!((offered_rps(&t) - 20.0).abs() < 1e-9, "{}", offered_rps(&t));
        assert_eq!(t.requests[8].tenant, w.requests[0].tenant);
        assert_eq!(t.requests[8].arrival_ns, 400_000_000);
        assert_eq!(tile(&w, 5).unwrap(), w, "long enough already");
    }

    #[test]
    fn generators_are_lengthened_and_re_rated() {
        let spec = WorkloadSpec::Generate {
            requests: 10,
            arrivals: Arrivals::Fixed { gap_ms: 100.0 },
            tenants: 3,
            popularity: Default::default(),
        };
        let w = build(
            &spec,
            &Default::default(),
            "m",
            1,
            &workload::NoFiles,
            Some(50.0),
            100,
        )
        .unwrap();
        assert_eq!(w.requests.len(), 100);
        assert!((offered_rps(&w) - 50.0).abs() < 1e-6);
        assert_eq!(spec_rate_rps(&spec), Some(10.0));
    }
}
