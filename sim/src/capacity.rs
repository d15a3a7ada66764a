//! Capacity search: the highest offered rate at which a policy still meets an SLO target, found
//! by bisection over simulated runs (as Vidur-Search and DistServe search).
//!
//! The offered rate of a generated workload is its generator's rate; a trace is replayed faster
//! or slower by scaling its arrival times (same order, same tenants). At each rate the SLO
//! attainment is the *lowest* over the scenario's seeds. The search assumes attainment falls
//! as the rate rises: it brackets the capacity by doubling or halving from the workload's own
//! rate, then bisects until the bracket is narrower than `tolerance` (relative).

use crate::engine::Setup;
use crate::error::{Error, Result};
use crate::scenario::{with_rate, Scenario};
use crate::workload::{FileSource, Workload, WorkloadSpec};
use serde::{Deserialize, Serialize};

/// One policy's capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The policy.
    pub policy: String,
    /// Highest rate found meeting the target (0 if even the lowest tried rate missed it).
    pub capacity_rps: f64,
    /// The lowest attainment over seeds at that rate.
    pub slo_attainment: f64,
    /// The lowest rate found missing the target; `None` when even the highest rate tried met it
    /// (a finite trace that fits its deadlines arriving all at once cannot saturate: use a
    /// longer trace or a generator).
    pub missed_at_rps: Option<f64>,
    /// Simulated cells run.
    pub evaluations: usize,
}

/// A trace replayed at `rate_rps` requests per second (arrivals scaled about the first).
pub fn scale_to_rate(workload: &Workload, rate_rps: f64) -> Workload {
    let mut w = workload.clone();
    let rate0 = offered_rps(workload);
    if rate0 > 0.0 {
        let factor = rate0 / rate_rps;
        let first = w.requests[0].arrival_ns;
        for r in &mut w.requests {
            r.arrival_ns = first + ((r.arrival_ns - first) as f64 * factor).round() as u64;
        }
    }
    w
}

/// A workload's mean arrival rate: (n − 1) / (last arrival − first arrival).
pub fn offered_rps(workload: &Workload) -> f64 {
    let (first, last) = match (workload.requests.first(), workload.requests.last()) {
        (Some(a), Some(b)) if b.arrival_ns > a.arrival_ns => (a.arrival_ns, b.arrival_ns),
        _ => return 0.0,
    };
    (workload.requests.len() - 1) as f64 * 1e9 / (last - first) as f64
}

/// Searches `policy`'s capacity in `scenario` for SLO attainment ≥ `target`.
pub fn search(
    scenario: &Scenario,
    files: &dyn FileSource,
    policy: &str,
    target: f64,
    tolerance: f64,
) -> Result<Capacity> {
    if !((0.0..=1.0).contains(&target) && tolerance > 0.0 && tolerance < 1.0) {
        return Err(Error::invalid(
            "capacity",
            format!("expected 0 ≤ slo ≤ 1 and 0 < tolerance < 1, got {target}, {tolerance}"),
        ));
    }
    let (profile, profile_name) = scenario.load_profile(files)?;
    // For a trace, read it once and scale it; generators are rebuilt per rate and seed.
    let trace = match &scenario.workload {
        WorkloadSpec::Trace(_) => Some(scenario.load_workload(files, scenario.seeds[0])?),
        _ => None,
    };
    let base_rate = match (&trace, &scenario.workload) {
        (Some(w), _) => offered_rps(w),
        (None, WorkloadSpec::Generate { arrivals, .. }) => arrivals.rate_rps(),
        (None, WorkloadSpec::Sequence { gap_ms, .. }) => 1000.0 / gap_ms,
        (None, WorkloadSpec::Trace(_)) => unreachable!("traces are read above"),
    };
    if base_rate.is_nan() || base_rate <= 0.0 {
        return Err(Error::invalid(
            "capacity",
            "the workload has no arrival rate to scale (one request?)",
        ));
    }
    let mut evaluations = 0;
    let mut attainment = |rate: f64| -> Result<f64> {
        let mut worst: f64 = 1.0;
        for &seed in &scenario.seeds {
            let w = match (&trace, &scenario.workload) {
                (Some(t), _) => scale_to_rate(t, rate),
                (
                    None,
                    WorkloadSpec::Sequence {
                        repeat,
                        types,
                        shuffle,
                        ..
                    },
                ) => {
                    let spec = WorkloadSpec::Sequence {
                        repeat: *repeat,
                        types: *types,
                        shuffle: *shuffle,
                        gap_ms: 1000.0 / rate,
                    };
                    crate::workload::build(&spec, &scenario.request, &scenario.model, seed, files)?
                }
                (None, spec) => crate::workload::build(
                    &with_rate(spec, rate),
                    &scenario.request,
                    &scenario.model,
                    seed,
                    files,
                )?,
            };
            let setup = Setup::new(&profile, &profile_name, &w, scenario.serving())?;
            worst = worst.min(scenario.run_cell(&setup, policy, seed)?.slo_attainment);
            evaluations += 1;
        }
        Ok(worst)
    };
    bisect(&mut attainment, base_rate, target, tolerance).map(|(lo, att, hi)| Capacity {
        policy: policy.to_string(),
        capacity_rps: lo,
        slo_attainment: att,
        missed_at_rps: hi,
        evaluations,
    })
}

/// (highest rate meeting the target, its attainment, lowest rate missing it if one was found).
fn bisect(
    f: &mut dyn FnMut(f64) -> Result<f64>,
    start: f64,
    target: f64,
    tolerance: f64,
) -> Result<(f64, f64, Option<f64>)> {
    /// Doublings or halvings tried before giving up (2^20 ≈ a million times the start).
    const STEPS: usize = 20;
    let (mut lo, mut lo_att, mut hi);
    let a = f(start)?;
    if a >= target {
        (lo, lo_att, hi) = (start, a, start * 2.0);
        let mut missed = false;
        for _ in 0..STEPS {
            let a = f(hi)?;
            if a < target {
                missed = true;
                break;
            }
            (lo, lo_att, hi) = (hi, a, hi * 2.0);
        }
        if !missed {
            return Ok((lo, lo_att, None));
        }
    } else {
        (lo, lo_att, hi) = (0.0, 1.0, start);
        let mut r = start / 2.0;
        for _ in 0..STEPS {
            let a = f(r)?;
            if a >= target {
                (lo, lo_att) = (r, a);
                break;
            }
            hi = r;
            r /= 2.0;
        }
    }
    if lo == 0.0 {
        return Ok((0.0, lo_att, Some(hi)));
    }
    while (hi - lo) / hi > tolerance {
        let mid = (lo + hi) / 2.0;
        let a = f(mid)?;
        if a >= target {
            (lo, lo_att) = (mid, a);
        } else {
            hi = mid;
        }
    }
    Ok((lo, lo_att, Some(hi)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_finds_a_threshold() {
        // Attainment 1 up to 37.5 req/s, then 0.
        let mut f = |r: f64| -> Result<f64> { Ok(if r <= 37.5 { 1.0 } else { 0.0 }) };
        let (lo, att, hi) = bisect(&mut f, 10.0, 0.99, 0.001).unwrap();
        let hi = hi.unwrap();
        assert!(
            lo <= 37.5 && hi > 37.5 && (hi - lo) / hi <= 0.001,
            "{lo} {hi}"
        );
        assert_eq!(att, 1.0);
        let (lo, _, hi) = bisect(&mut f, 100.0, 0.99, 0.001).unwrap();
        assert!(lo <= 37.5 && hi.unwrap() > 37.5, "{lo} {hi:?}");
        let mut always = |_: f64| -> Result<f64> { Ok(1.0) };
        let (lo, _, hi) = bisect(&mut always, 1.0, 0.99, 0.01).unwrap();
        assert_eq!(
            (lo, hi),
            (2f64.powi(20), None),
            "unbounded: said, not looped on"
        );
        let mut never = |_: f64| -> Result<f64> { Ok(0.5) };
        assert_eq!(bisect(&mut never, 1.0, 0.99, 0.01).unwrap().0, 0.0);
    }

    #[test]
    fn scaling_a_trace_changes_its_rate_only() {
        let spec = WorkloadSpec::Sequence {
            repeat: 3,
            types: 4,
            shuffle: false,
            gap_ms: 100.0,
        };
        let w = crate::workload::build(
            &spec,
            &Default::default(),
            "m",
            1,
            &crate::workload::NoFiles,
        )
        .unwrap();
        assert!((offered_rps(&w) - 10.0).abs() < 1e-9);
        let fast = scale_to_rate(&w, 40.0);
        assert!((offered_rps(&fast) - 40.0).abs() < 1e-9);
        assert_eq!(fast.requests[1].arrival_ns, 25_000_000);
        assert_eq!(fast.tenants, w.tenants);
    }
}
