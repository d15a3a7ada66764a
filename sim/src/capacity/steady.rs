//! One probe of a rate: simulate a workload long enough to reach a steady state, then judge it.
//!
//! The first `warmup_frac` of the requests (by arrival) are the warm-up (cold loads, empty
//! queues) and are not judged. The rest are split into four windows of equal count:
//! - **SLO attainment** is measured over all judged requests;
//! - the run is **stationary** unless the queue grows: the mean wait of the last window
//!   exceeding twice the first window's plus one mean service time means the instances fall
//!   behind the arrivals (a finite run at such a rate can still meet its deadlines, only
//!   because it ends before the queue reaches them).
//!
//! A rate is *met* when, for every seed, the run is stationary and its attainment reaches the
//! target.

use crate::engine::{Run, Setup};
use crate::error::Result;
use crate::scenario::Scenario;
use crate::workload::Workload;
use serde::{Deserialize, Serialize};

/// What the steady-state part of one run shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Share of the judged requests that met their deadline.
    pub slo_attainment: f64,
    /// Mean wait of each of the four windows, ms.
    pub wait_ms: [f64; 4],
    /// The queue did not grow (see the module docs).
    pub stationary: bool,
}

/// Judges `run` of `workload`: requests after the warm-up, in four windows.
pub fn judge(workload: &Workload, run: &Run, warmup_frac: f64, mean_service_ns: f64) -> Window {
    let n = workload.requests.len();
    let skip = ((n as f64 * warmup_frac.clamp(0.0, 0.9)).floor() as usize).min(n);
    let judged = n - skip;
    let mut late = 0usize;
    let mut sums = [0f64; 4];
    let mut counts = [0usize; 4];
    for (k, i) in (skip..n).enumerate() {
        let r = &workload.requests[i];
        late += usize::from(run.end_ns[i] - r.arrival_ns > r.deadline_ns);
        let w = (k * 4 / judged.max(1)).min(3);
        sums[w] += (run.start_ns[i] - r.arrival_ns) as f64;
        counts[w] += 1;
    }
    let mean = |w: usize| {
        if counts[w] == 0 {
            0.0
        } else {
            sums[w] / counts[w] as f64
        }
    };
    let wait_ns = [mean(0), mean(1), mean(2), mean(3)];
    Window {
        slo_attainment: if judged == 0 {
            1.0
        } else {
            1.0 - late as f64 / judged as f64
        },
        wait_ms: wait_ns.map(|w| w / 1e6),
        stationary: wait_ns[3] <= 2.0 * wait_ns[0] + mean_service_ns,
    }
}

/// The mean estimated service time of the workload's requests (one busy instance), ns; with
/// batching, no more than a request's share of a full pass.
pub fn mean_service_ns(setup: &Setup<'_>) -> f64 {
    let reqs = &setup.workload.requests;
    let n = reqs.len();
    if n == 0 {
        return 0.0;
    }
    let total: u128 = (0..n as u32)
        .map(|i| u128::from(setup.estimates.service_ns(i)))
        .sum();
    let alone = total as f64 / n as f64;
    if setup.serving.batching.is_none() {
        return alone;
    }
    // With batching, a request may share a full pass: the time of a pass of `forward_batch`
    // rows (one tenant, or one segment of parameter-efficient tenants: the best case) over
    // the requests it holds.
    let rows = setup.serving.forward_batch.max(1);
    let samples = reqs.iter().map(|r| r.samples as f64).sum::<f64>() / n as f64;
    let seq = reqs.iter().map(|r| r.seq_len).max().unwrap_or(1);
    let per_batch = (rows as f64 / samples.max(1.0)).max(1.0);
    let tenant = reqs[0].tenant;
    let pass = if setup.serving.pet.is_some() {
        setup.estimates.pet_batch_ns(tenant, rows, seq, 1, 0, 0)
    } else {
        setup.estimates.batch_service_ns(tenant, rows, seq)
    };
    alone.min(pass as f64 / per_batch)
}

/// Simulates one cell of `scenario` on a prepared setup and returns the raw run.
pub fn simulate(scenario: &Scenario, setup: &Setup<'_>, policy: &str, seed: u64) -> Result<Run> {
    Ok(scenario.run_cell_full(setup, policy, seed, false)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Nanos;
    use crate::workload::{Request, Tenant};

    fn workload(n: usize, gap_ns: Nanos) -> Workload {
        Workload {
            tenants: vec![Tenant {
                name: "A".into(),
                model: "m".into(),
            }],
            requests: (0..n)
                .map(|i| Request {
                    arrival_ns: i as Nanos * gap_ns,
                    tenant: 0,
                    samples: 1,
                    seq_len: 1,
                    deadline_ns: 1_000_000_000,
                })
                .collect(),
        }
    }

    fn run_with_waits(w: &Workload, wait: impl Fn(usize) -> Nanos, service: Nanos) -> Run {
        let start: Vec<Nanos> = w
            .requests
            .iter()
            .enumerate()
            .map(|(i, r)| r.arrival_ns + wait(i))
            .collect();
        Run {
            end_ns: start.iter().map(|s| s + service).collect(),
            start_ns: start,
            ..Default::default()
        }
    }

    #[test]
    fn a_growing_queue_is_not_stationary_even_when_deadlines_hold() {
        let w = workload(1000, 10_000_000);
        // Each request waits 0.5 ms longer than the one before: 500 ms at the end, inside the
        // 1 s deadline, but the queue grows.
        let growing = run_with_waits(&w, |i| i as Nanos * 500_000, 5_000_000);
        let j = judge(&w, &growing, 0.1, 5e6);
        assert_eq!(j.slo_attainment, 1.0);
        assert!(!j.stationary, "{j:?}");
        // A steady queue with noise is stationary.
        let steady = run_with_waits(&w, |i| (i % 7) as Nanos * 1_000_000, 5_000_000);
        let j = judge(&w, &steady, 0.1, 5e6);
        assert!(j.stationary, "{j:?}");
        // Late requests inside the warm-up are not judged; after it they are.
        let late_early = run_with_waits(&w, |i| if i < 50 { 2_000_000_000 } else { 0 }, 1);
        assert_eq!(judge(&w, &late_early, 0.1, 1.0).slo_attainment, 1.0);
        let late_after = run_with_waits(&w, |i| if i >= 900 { 2_000_000_000 } else { 0 }, 1);
        let j = judge(&w, &late_after, 0.1, 1.0);
        assert!((j.slo_attainment - 800.0 / 900.0).abs() < 1e-12, "{j:?}");
    }
}
