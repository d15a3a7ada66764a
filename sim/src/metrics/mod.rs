//! Reports: what a run achieved, with exactly the definitions of the design card.
//!
//! - response time = completion − arrival; waiting time = start − arrival;
//! - overtime: response time > the request's deadline; SLO attainment = 1 − overtimes/completed;
//! - throughput = completed / (last completion − first arrival), and that span is the makespan;
//! - a switch: an instance starts a request whose weights are not the ones it holds; an
//!   instance's first load (holding nothing) is a cold load, counted apart; with a GPU weight
//!   pool, loads are counted by source: the pool (`pool_loads`, device to device), the host
//!   cache (`switches`) and the tenant's file (`cold_loads`);
//! - a batch: the requests one dispatch started together (`batches` = requests without
//!   cross-request batching);
//! - GPU busy fraction: the share of the makespan during which at least one instance was busy;
//!   an instance's busy fraction: its own loading and inferring time over the makespan;
//! - percentiles are nearest-rank over all completed requests (p-th: the ⌈p·n/100⌉-th smallest).

pub mod perfetto;
pub mod requests;
pub mod seeds;
pub(crate) mod summary;
pub mod timeline;

pub use seeds::{over_seeds, Estimate, SeedMean};
pub use summary::Summary;

use crate::engine::{Run, Setup};
use crate::time::{ns_to_ms, ns_to_secs, Nanos};
use crate::workload::Workload;
use serde::{Deserialize, Serialize};

/// One (policy, seed) cell's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Policy name.
    pub policy: String,
    /// Seed of the random streams.
    pub seed: u64,
    /// The GPU's name (from the profile).
    pub gpu: String,
    /// How the costs were applied: contention by resource or the stretch at each phase's
    /// start, and whether the host's work per dispatch was added ([`Setup::cost_model`]).
    #[serde(default)]
    pub cost_model: String,
    /// Parallel instances.
    pub instances: usize,
    /// Loading mode (`split` or `full`).
    pub loading: String,
    /// Tenants in the workload.
    pub tenants: usize,
    /// Requests in the workload.
    pub requests: usize,
    /// Offered load: (requests − 1) / (last arrival − first arrival), requests per second (0
    /// for fewer than two distinct arrival times).
    #[serde(default)]
    pub offered_rps: f64,
    /// The deadline every request shares, milliseconds (`None` when they differ).
    #[serde(default)]
    pub deadline_ms: Option<f64>,
    /// Requests completed (always all of them: nothing is dropped).
    pub completed: usize,
    /// Completed requests per second of makespan.
    pub throughput_rps: f64,
    /// Last completion − first arrival, seconds.
    pub makespan_s: f64,
    /// Switches over all instances.
    pub switches: u64,
    /// Cold loads over all instances.
    pub cold_loads: u64,
    /// Loads from the GPU weight pool (device to device; 0 without a pool).
    #[serde(default)]
    pub pool_loads: u64,
    /// Tenants evicted from the GPU pool.
    #[serde(default)]
    pub pool_evictions: u64,
    /// Prefetches into the GPU pool.
    #[serde(default)]
    pub prefetches: u64,
    /// Batches run (= requests without cross-request batching).
    #[serde(default)]
    pub batches: u64,
    /// Instances that held a tenant before time 0.
    pub preloaded: usize,
    /// Requests whose response time exceeded their deadline.
    pub overtimes: usize,
    /// Share of completed requests that met their deadline.
    pub slo_attainment: f64,
    /// Response time, milliseconds.
    pub latency_ms: Summary,
    /// Waiting time before the instance started on it, milliseconds.
    pub wait_ms: Summary,
    /// Response-time percentiles 0, 1, …, 100 (nearest rank; 0 = the minimum), milliseconds:
    /// the latency CDF.
    pub latency_quantiles_ms: Vec<f64>,
    /// Share of the makespan with at least one instance busy.
    pub gpu_busy_frac: f64,
    /// Per instance.
    pub per_instance: Vec<InstanceReport>,
    /// Per tenant.
    pub per_tenant: Vec<TenantReport>,
}

/// One instance's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// Its index.
    pub instance: usize,
    /// Requests completed.
    pub requests: u64,
    /// Switches.
    pub switches: u64,
    /// Cold loads.
    pub cold_loads: u64,
    /// The tenant it held before time 0.
    pub preloaded: Option<String>,
    /// Loading or inferring, share of the makespan.
    pub busy_frac: f64,
    /// Loading, share of the makespan.
    pub loading_frac: f64,
}

/// One tenant's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantReport {
    /// Its name.
    pub tenant: String,
    /// Requests completed.
    pub requests: u64,
    /// Of which overtime.
    pub overtimes: u64,
    /// Times its weights were loaded (cold loads and switches).
    pub loads: u64,
    /// Mean response time, milliseconds (0 with no requests).
    pub mean_latency_ms: f64,
    /// 99th-percentile response time (nearest rank), milliseconds (0 with no requests).
    #[serde(default)]
    pub p99_latency_ms: f64,
    /// Share of its requests that met their deadline (1 with no requests).
    #[serde(default = "one")]
    pub slo_attainment: f64,
}

fn one() -> f64 {
    1.0
}

/// A workload's mean arrival rate: (n − 1) / (last arrival − first arrival), requests per second;
/// 0 when it has fewer than two distinct arrival times.
pub fn offered_rps(workload: &Workload) -> f64 {
    match (workload.requests.first(), workload.requests.last()) {
        (Some(a), Some(b)) if b.arrival_ns > a.arrival_ns => {
            (workload.requests.len() - 1) as f64 / ns_to_secs(b.arrival_ns - a.arrival_ns)
        }
        _ => 0.0,
    }
}

/// The deadline all requests share, milliseconds; `None` when they differ or there are none.
pub fn common_deadline_ms(workload: &Workload) -> Option<f64> {
    let first = workload.requests.first()?.deadline_ns;
    workload
        .requests
        .iter()
        .all(|r| r.deadline_ns == first)
        .then_some(ns_to_ms(first))
}

impl TenantReport {
    /// The tenants that fared worst: lowest SLO attainment first, then highest p99; at most `n`,
    /// tenants without requests left out.
    pub fn worst(tenants: &[TenantReport], n: usize) -> Vec<&TenantReport> {
        let mut v: Vec<&TenantReport> = tenants.iter().filter(|t| t.requests > 0).collect();
        v.sort_by(|a, b| {
            a.slo_attainment
                .total_cmp(&b.slo_attainment)
                .then(b.p99_latency_ms.total_cmp(&a.p99_latency_ms))
                .then(a.tenant.cmp(&b.tenant))
        });
        v.truncate(n);
        v
    }
}

impl Report {
    /// Summarises `run` of `setup`.
    pub fn new(scenario: &str, policy: &str, seed: u64, setup: &Setup<'_>, run: &Run) -> Report {
        let w = setup.workload;
        let n = w.requests.len();
        assert_eq!(run.end_ns.len(), n, "a run records every request");
        let first_arrival = w.requests.first().map_or(0, |r| r.arrival_ns);
        let last_end = run.end_ns.iter().copied().max().unwrap_or(first_arrival);
        let makespan_ns = last_end.saturating_sub(first_arrival);
        let mut latencies: Vec<Nanos> = Vec::with_capacity(n);
        let mut waits: Vec<Nanos> = Vec::with_capacity(n);
        let mut tenants = vec![(0u64, 0u64, 0u128); w.tenants.len()];
        let mut tenant_latencies: Vec<Vec<Nanos>> = vec![Vec::new(); w.tenants.len()];
        let mut overtimes = 0;
        for (i, r) in w.requests.iter().enumerate() {
            assert!(
                run.start_ns[i] >= r.arrival_ns && run.end_ns[i] >= run.start_ns[i],
                "causality"
            );
            let latency = run.end_ns[i] - r.arrival_ns;
            let late = latency > r.deadline_ns;
            overtimes += late as usize;
            latencies.push(latency);
            waits.push(run.start_ns[i] - r.arrival_ns);
            let t = &mut tenants[r.tenant as usize];
            t.0 += 1;
            t.1 += late as u64;
            t.2 += latency as u128;
            tenant_latencies[r.tenant as usize].push(latency);
        }
        let frac = |ns: Nanos| {
            if makespan_ns == 0 {
                0.0
            } else {
                ns as f64 / makespan_ns as f64
            }
        };
        let tenant_name = |t: Option<u32>| t.map(|t| w.tenants[t as usize].name.clone());
        Report {
            scenario: scenario.to_string(),
            policy: policy.to_string(),
            seed,
            gpu: setup.gpu.clone(),
            cost_model: setup.cost_model(),
            instances: setup.serving.instances,
            loading: setup.serving.loading.name().to_string(),
            tenants: w.tenants.len(),
            requests: n,
            offered_rps: offered_rps(w),
            deadline_ms: common_deadline_ms(w),
            completed: n,
            throughput_rps: if makespan_ns == 0 {
                0.0
            } else {
                n as f64 / ns_to_secs(makespan_ns)
            },
            makespan_s: ns_to_secs(makespan_ns),
            switches: run.instances.iter().map(|i| i.switches).sum(),
            cold_loads: run.instances.iter().map(|i| i.cold_loads).sum(),
            pool_loads: run.instances.iter().map(|i| i.pool_loads).sum(),
            pool_evictions: run.pool_evictions,
            prefetches: run.prefetches,
            batches: run.instances.iter().map(|i| i.batches).sum(),
            preloaded: run
                .instances
                .iter()
                .filter(|i| i.preloaded.is_some())
                .count(),
            overtimes,
            slo_attainment: if n == 0 {
                1.0
            } else {
                1.0 - overtimes as f64 / n as f64
            },
            latency_ms: Summary::of_ns(&mut latencies),
            latency_quantiles_ms: summary::quantiles_ms(&latencies),
            wait_ms: Summary::of_ns(&mut waits),
            gpu_busy_frac: frac(run.gpu_busy_ns),
            per_instance: run
                .instances
                .iter()
                .enumerate()
                .map(|(i, s)| InstanceReport {
                    instance: i,
                    requests: s.requests,
                    switches: s.switches,
                    cold_loads: s.cold_loads,
                    preloaded: tenant_name(s.preloaded),
                    busy_frac: frac(s.busy_ns),
                    loading_frac: frac(s.loading_ns),
                })
                .collect(),
            per_tenant: tenants
                .iter()
                .zip(&w.tenants)
                .zip(&run.tenant_loads)
                .zip(&mut tenant_latencies)
                .map(|((((requests, late, sum), t), &loads), lat)| TenantReport {
                    tenant: t.name.clone(),
                    requests: *requests,
                    overtimes: *late,
                    loads,
                    mean_latency_ms: if *requests == 0 {
                        0.0
                    } else {
                        ns_to_ms((*sum / *requests as u128) as Nanos)
                    },
                    p99_latency_ms: Summary::of_ns(lat).p99,
                    slo_attainment: if *requests == 0 {
                        1.0
                    } else {
                        1.0 - *late as f64 / *requests as f64
                    },
                })
                .collect(),
        }
    }
}
