//! Capacity: the highest offered rate at which a policy still meets an SLO target **in steady
//! state**, found by bisection over simulated runs (as Vidur-Search and DistServe search).
//!
//! - **Steady state.** Every probe runs a workload of at least `min_requests` requests at the
//!   probed rate ([`crate::offered::build`]: a trace is tiled, a generator draws more), skips a
//!   warm-up and checks that the queue does not grow ([`steady::judge`]). A rate is met when,
//!   for every seed, the run is stationary and the SLO attainment of the judged requests
//!   reaches the target.
//! - **A bound.** No policy can serve more than the instances' fastest service rate: the
//!   largest over k ≤ instances of k / (mean service time × forward stretch with k busy), where
//!   the mean service time is the profile's at one busy instance; with no stretch this is
//!   `instances / mean service time`. Beyond it the instances would be busy more than all the
//!   time. The search never goes above it, so a capacity never exceeds it (tested as a
//!   property).
//! - **Not reached.** When even a rate 2^20 times lower than the start misses the target (a
//!   deadline no request can meet, an SLO of 1.0 that one slow request breaks), the result says
//!   so instead of giving a number.
//!
//! The search starts at the scenario's rate (or half the bound, if lower), halves until a
//! rate is met, then bisects between the highest met and the lowest missed rate until the
//! bracket is narrower than `tolerance` (relative). Searches of several policies run in
//! parallel; each is deterministic.

pub mod steady;

use crate::engine::Setup;
use crate::error::{Error, Result};
use crate::offered;
use crate::profile::{stretch_at, Profile};
use crate::scenario::Scenario;
use crate::workload::{FileSource, Workload, WorkloadSpec};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CapacityOptions {
    /// SLO attainment target (share of judged requests meeting their deadline), 0–1.
    pub slo: f64,
    /// Stop when (missed − met) / missed ≤ this.
    pub tolerance: f64,
    /// Requests per probe, at least (the workload is lengthened to reach it).
    pub min_requests: usize,
    /// Share of the requests (by arrival) treated as warm-up and not judged.
    pub warmup_frac: f64,
}

impl Default for CapacityOptions {
    fn default() -> Self {
        CapacityOptions {
            slo: 0.99,
            tolerance: 0.01,
            min_requests: 10_000,
            warmup_frac: 0.1,
        }
    }
}

impl CapacityOptions {
    /// Refuses targets outside [0, 1], tolerances outside (0, 1) and warm-ups outside [0, 0.9].
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.slo) {
            return Err(Error::invalid(
                "slo",
                format!("expected 0 ≤ slo ≤ 1, got {}", self.slo),
            ));
        }
        if !(self.tolerance > 0.0 && self.tolerance < 1.0) {
            return Err(Error::invalid(
                "tolerance",
                format!("expected 0 < tolerance < 1, got {}", self.tolerance),
            ));
        }
        if !(0.0..=0.9).contains(&self.warmup_frac) {
            return Err(Error::invalid(
                "warmup",
                format!("expected 0 ≤ warm-up ≤ 0.9, got {}", self.warmup_frac),
            ));
        }
        Ok(())
    }
}

/// One probed rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The rate, requests per second.
    pub rate_rps: f64,
    /// Lowest SLO attainment over the seeds (judged requests).
    pub slo_attainment: f64,
    /// Every seed's run was stationary.
    pub stationary: bool,
    /// Stationary and attainment ≥ target.
    pub met: bool,
}

impl Probe {
    /// Why a missed probe missed.
    pub fn why(&self, slo: f64) -> String {
        if !self.stationary {
            format!(
                "the queue grows at {:.3} req/s (not a steady state)",
                self.rate_rps
            )
        } else {
            format!(
                "SLO attainment {:.4} < {slo} at {:.3} req/s",
                self.slo_attainment, self.rate_rps
            )
        }
    }
}

/// One policy's capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The policy.
    pub policy: String,
    /// Instances.
    pub instances: usize,
    /// Highest rate found meeting the target; `None` = not reached (see `not_reached`).
    pub capacity_rps: Option<f64>,
    /// The lowest attainment over seeds at that rate.
    pub slo_attainment: Option<f64>,
    /// The lowest rate found missing the target (the bound when nothing below it missed).
    pub missed_at_rps: Option<f64>,
    /// Why that rate missed.
    pub missed_because: Option<String>,
    /// instances / mean service time: no policy serves more.
    pub bound_rps: f64,
    /// The capacity is within the tolerance of the bound (the executors, not the policy, limit).
    pub at_bound: bool,
    /// Why there is no capacity, when there is none.
    pub not_reached: Option<String>,
    /// Requests per probe.
    pub requests_per_run: usize,
    /// Simulated runs.
    pub evaluations: usize,
}

/// What a search needs, read once.
struct Context<'a> {
    scenario: &'a Scenario,
    files: &'a dyn FileSource,
    profile: Profile,
    profile_name: String,
    /// A trace, read and tiled once (scaled per probe).
    trace: Option<Workload>,
    options: CapacityOptions,
}

impl Context<'_> {
    fn workload(&self, seed: u64, rate: f64) -> Result<Workload> {
        let s = self.scenario;
        match &self.trace {
            Some(t) => offered::scale_to_rate(t, rate),
            None => offered::build(
                &s.workload,
                &s.request,
                &s.model,
                seed,
                self.files,
                Some(rate),
                self.options.min_requests,
            ),
        }
    }

    /// Simulates every seed at `rate` and judges the runs.
    fn probe(&self, policy: &str, rate: f64, evaluations: &mut usize) -> Result<Probe> {
        let s = self.scenario;
        let mut p = Probe {
            rate_rps: rate,
            slo_attainment: 1.0,
            stationary: true,
            met: false,
        };
        for &seed in &s.seeds {
            let w = self.workload(seed, rate)?;
            let setup = Setup::new(&self.profile, &self.profile_name, &w, s.serving())?;
            let run = steady::simulate(s, &setup, policy, seed)?;
            *evaluations += 1;
            let j = steady::judge(
                &w,
                &run,
                self.options.warmup_frac,
                steady::mean_service_ns(&setup),
            );
            p.slo_attainment = p.slo_attainment.min(j.slo_attainment);
            p.stationary &= j.stationary;
        }
        p.met = p.stationary && p.slo_attainment >= self.options.slo;
        Ok(p)
    }

    /// The fastest rate the instances can serve: the largest over k ≤ instances of
    /// k / (mean service time × the smallest forward stretch with k busy), and the requests per
    /// probe.
    fn bound_rps(&self) -> Result<(f64, usize)> {
        let s = self.scenario;
        let w = self.workload(s.seeds[0], self.start_rate()?)?;
        let setup = Setup::new(&self.profile, &self.profile_name, &w, s.serving())?;
        let service_s = steady::mean_service_ns(&setup) / 1e9;
        if service_s <= 0.0 {
            return Err(Error::invalid(
                "capacity",
                "the requests' mean service time is 0: no finite capacity",
            ));
        }
        let mut bound: f64 = 0.0;
        for k in 1..=s.instances {
            let mut stretch = f64::INFINITY;
            for model in w.models() {
                let m = self
                    .profile
                    .model(&self.profile_name, &model, "the workload")?;
                stretch = stretch.min(stretch_at(&m.forward.stretch, k));
            }
            bound = bound.max(k as f64 / (service_s * stretch));
        }
        Ok((bound, w.requests.len()))
    }

    fn start_rate(&self) -> Result<f64> {
        let s = self.scenario;
        let rate = match (s.rate_rps, &self.trace) {
            (Some(r), _) => r,
            (None, Some(t)) => offered::offered_rps(t),
            (None, None) => offered::spec_rate_rps(&s.workload).unwrap_or(0.0),
        };
        if rate.is_finite() && rate > 0.0 {
            Ok(rate)
        } else {
            Err(Error::invalid(
                "capacity",
                "the workload has no arrival rate to scale (one request?)",
            ))
        }
    }
}

impl<'a> Context<'a> {
    fn new(
        scenario: &'a Scenario,
        files: &'a dyn FileSource,
        options: &CapacityOptions,
    ) -> Result<Self> {
        options.validate()?;
        let (profile, profile_name) = scenario.load_profile(files)?;
        let trace = match &scenario.workload {
            WorkloadSpec::Trace(_) => {
                let w = scenario.load_workload_as_written(files, scenario.seeds[0])?;
                Some(offered::tile(&w, options.min_requests)?)
            }
            _ => None,
        };
        Ok(Context {
            scenario,
            files,
            profile,
            profile_name,
            trace,
            options: *options,
        })
    }
}

/// Probes one rate of `policy` in `scenario` in steady state (see [`steady`]).
pub fn probe_rate(
    scenario: &Scenario,
    files: &dyn FileSource,
    policy: &str,
    rate_rps: f64,
    options: &CapacityOptions,
) -> Result<Probe> {
    let ctx = Context::new(scenario, files, options)?;
    ctx.probe(policy, rate_rps, &mut 0)
}

/// Searches `policy`'s capacity in `scenario`.
pub fn search(
    scenario: &Scenario,
    files: &dyn FileSource,
    policy: &str,
    options: &CapacityOptions,
) -> Result<Capacity> {
    let ctx = Context::new(scenario, files, options)?;
    let (bound, requests) = ctx.bound_rps()?;
    let mut evaluations = 0;
    let mut f = |rate: f64| ctx.probe(policy, rate, &mut evaluations);
    let outcome = bisect(&mut f, ctx.start_rate()?, bound, options.tolerance)?;
    let mut c = Capacity {
        policy: policy.to_string(),
        instances: scenario.instances,
        capacity_rps: None,
        slo_attainment: None,
        missed_at_rps: None,
        missed_because: None,
        bound_rps: bound,
        at_bound: false,
        not_reached: None,
        requests_per_run: requests,
        evaluations,
    };
    let because = |p: &Option<Probe>| {
        Some(p.map_or_else(
            || "at the bound the instances would be busy all the time".to_string(),
            |p| p.why(options.slo),
        ))
    };
    match outcome {
        Outcome::Found { met, missed } => {
            c.capacity_rps = Some(met.rate_rps);
            c.slo_attainment = Some(met.slo_attainment);
            c.missed_at_rps = Some(missed.map_or(bound, |m| m.rate_rps));
            c.missed_because = because(&missed);
            c.at_bound = missed.is_none();
        }
        Outcome::NeverMet { lowest } => {
            c.missed_at_rps = Some(lowest.rate_rps);
            c.missed_because = because(&Some(lowest));
            c.not_reached = Some(format!(
                "not reached: missed the target even at {:.3e} req/s ({})",
                lowest.rate_rps,
                lowest.why(options.slo)
            ));
        }
    }
    debug_assert!(c.capacity_rps.is_none_or(|r| r <= bound));
    Ok(c)
}

/// Searches every policy of `policies` in parallel; results in that order.
pub fn search_all(
    scenario: &Scenario,
    files: &dyn FileSource,
    policies: &[String],
    options: &CapacityOptions,
) -> Result<Vec<Capacity>> {
    policies
        .par_iter()
        .map(|p| search(scenario, files, p, options))
        .collect()
}

/// How a bisection ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    /// The highest met probe and the lowest missed one (`None`: only the bound, by theory).
    Found { met: Probe, missed: Option<Probe> },
    /// Nothing met down to 2^-20 times the start.
    NeverMet { lowest: Probe },
}

/// Bisects on `f` between a start and the `bound` (missed by theory, never probed).
fn bisect(
    f: &mut dyn FnMut(f64) -> Result<Probe>,
    start: f64,
    bound: f64,
    tolerance: f64,
) -> Result<Outcome> {
    /// Halvings tried before giving up (2^20 ≈ a million times lower).
    const STEPS: usize = 20;
    let mut hi = bound;
    let mut missed: Option<Probe> = None;
    let mut rate = start.min(bound / 2.0);
    let mut met = None;
    for _ in 0..=STEPS {
        let p = f(rate)?;
        if p.met {
            met = Some(p);
            break;
        }
        (hi, missed) = (rate, Some(p));
        rate /= 2.0;
    }
    let Some(mut met) = met else {
        return Ok(Outcome::NeverMet {
            lowest: missed.expect("at least one probe ran"),
        });
    };
    while (hi - met.rate_rps) / hi > tolerance {
        let p = f((met.rate_rps + hi) / 2.0)?;
        if p.met {
            met = p;
        } else {
            (hi, missed) = (p.rate_rps, Some(p));
        }
    }
    Ok(Outcome::Found { met, missed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(limit: f64) -> impl FnMut(f64) -> Result<Probe> {
        move |r: f64| {
            Ok(Probe {
                rate_rps: r,
                slo_attainment: if r <= limit { 1.0 } else { 0.5 },
                stationary: true,
                met: r <= limit,
            })
        }
    }

    #[test]
    fn bisection_finds_a_threshold_below_the_bound() {
        let Outcome::Found { met, missed } =
            bisect(&mut threshold(37.5), 10.0, 1000.0, 0.001).unwrap()
        else {
            panic!("found")
        };
        let hi = missed.unwrap().rate_rps;
        assert!(met.rate_rps <= 37.5 && hi > 37.5 && (hi - met.rate_rps) / hi <= 0.001);
        // Starting above the threshold halves down first.
        let Outcome::Found { met, .. } = bisect(&mut threshold(37.5), 900.0, 1000.0, 0.01).unwrap()
        else {
            panic!("found")
        };
        assert!(met.rate_rps <= 37.5 && met.rate_rps > 37.5 * 0.99);
    }

    #[test]
    fn the_bound_caps_and_never_met_says_so() {
        // Met everywhere: the capacity approaches the bound from below and never passes it.
        let Outcome::Found { met, missed } =
            bisect(&mut threshold(f64::INFINITY), 1.0, 50.0, 0.01).unwrap()
        else {
            panic!("found")
        };
        assert!(met.rate_rps < 50.0 && met.rate_rps >= 49.5 && missed.is_none());
        // Missed everywhere: no number, the lowest probe instead.
        let Outcome::NeverMet { lowest } = bisect(&mut threshold(-1.0), 1.0, 50.0, 0.01).unwrap()
        else {
            panic!("never met")
        };
        assert!(lowest.rate_rps < 1e-5);
    }
}
