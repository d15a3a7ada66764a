//! What a run needs before it starts: the serving configuration, the profile's costs resolved
//! per tenant and per request, and the mean estimates schedulers see.
//!
//! A setup refuses what cannot be simulated exactly in `u64` nanoseconds: more than
//! [`MAX_INSTANCES`] instances, and a workload whose worst case — its last arrival plus every
//! request's longest load and longest inference back to back — ends after [`MAX_RUN_NS`]
//! (100 years). Profile costs are bounded draws ([`crate::profile::dist`]), so this bound holds
//! for every seed.

use crate::error::{Error, Result};
use crate::limits::{self, MAX_INSTANCES, MAX_RUN_NS, MAX_SAMPLES};
use crate::profile::{max_stretch, stretch_at, Cost, Dist, ModelProfile, Profile};
use crate::rng::Rng;
use crate::time::{ms_to_ns, Nanos};
use crate::workload::{RequestId, TenantId, Workload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a switch loads weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum LoadingMode {
    /// FastPTM's fast loading: the model structure stays, new weights are copied in.
    #[default]
    Split,
    /// The model is rebuilt from configuration and checkpoint.
    Full,
}

impl LoadingMode {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            LoadingMode::Split => "split",
            LoadingMode::Full => "full",
        }
    }
}

/// What the instances hold before time 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Preload {
    /// Whatever the policy asks for (OMLS: FastPTM's start; the others: nothing).
    #[default]
    Policy,
    /// Nothing: every instance's first load is a cold load.
    Empty,
    /// FastPTM's start for every policy: instance 0 empty, instance i ≥ 1 holding tenant i.
    FastPtm,
}

/// The serving configuration of one GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Serving {
    /// Parallel instances.
    pub instances: usize,
    /// How switches load weights.
    pub loading: LoadingMode,
    /// Largest batch of samples in one forward pass (FastPTM: 1).
    pub forward_batch: u32,
}

/// How one request's inference time is drawn.
#[derive(Debug, Clone, PartialEq)]
struct ServicePlan {
    /// (forward passes, mean ms per pass, the noise distribution and its mean).
    groups: Vec<(u32, f64, Dist, f64)>,
    overhead: Dist,
    mean_ns: Nanos,
    /// The longest draw with one instance busy, milliseconds.
    max_ms: f64,
    /// Index of its model in [`Setup`]'s models.
    model: usize,
}

/// Mean costs, as schedulers see them.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimates {
    service_ns: Vec<Nanos>,
    tenant_model: Vec<u16>,
    cold_ns: Vec<Nanos>,
    switch_ns: Vec<Nanos>,
    /// Switch into a model from another model (the structure must be rebuilt: full mode).
    rebuild_ns: Vec<Nanos>,
    /// Per model: how cold loads, switches, rebuilds and inference stretch with busy instances.
    stretch: Vec<ModelStretch>,
}

/// One model's contention curves (see [`crate::profile::Cost`]).
#[derive(Debug, Clone, PartialEq)]
struct ModelStretch {
    cold: Vec<f64>,
    switch: Vec<f64>,
    rebuild: Vec<f64>,
    forward: Vec<f64>,
}

impl Estimates {
    /// Estimates where every request takes `service_ns`, every switch `switch_ns` and every
    /// cold load `cold_ns`, all tenants of one model (for tests of policies).
    pub fn uniform(requests: usize, service_ns: Nanos, switch_ns: Nanos, cold_ns: Nanos) -> Self {
        Estimates {
            service_ns: vec![service_ns; requests],
            tenant_model: Vec::new(),
            cold_ns: vec![cold_ns],
            switch_ns: vec![switch_ns],
            rebuild_ns: vec![switch_ns],
            stretch: Vec::new(),
        }
    }

    /// Estimated inference of request `id` on one busy instance.
    pub fn service_ns(&self, id: RequestId) -> Nanos {
        debug_assert!(
            (id as usize) < self.service_ns.len(),
            "request {id} has no estimate"
        );
        self.service_ns[id as usize]
    }

    /// The same estimates for no request yet (requests are then added with
    /// [`push_service_ns`](Self::push_service_ns) as they arrive).
    pub fn without_requests(&self) -> Estimates {
        Estimates {
            service_ns: Vec::new(),
            ..self.clone()
        }
    }

    /// Estimated switch into `tenant` from another tenant of its model, one instance busy.
    pub fn switch_into_ns(&self, tenant: TenantId) -> Nanos {
        self.switch_ns[self.model_of(tenant)]
    }

    /// Records the estimated inference of the next request id (for requests that arrive while
    /// serving, after the setup was made); returns that id.
    pub fn push_service_ns(&mut self, ns: Nanos) -> RequestId {
        self.service_ns.push(ns);
        (self.service_ns.len() - 1) as RequestId
    }

    /// The model index of `tenant`.
    pub fn model_of(&self, tenant: TenantId) -> usize {
        self.tenant_model
            .get(tenant as usize)
            .map_or(0, |&m| m as usize)
    }

    /// Estimated load before an instance holding `resident` can serve `tenant`, with one
    /// instance busy.
    pub fn load_ns(&self, resident: Option<TenantId>, tenant: TenantId) -> Nanos {
        self.load_ns_busy(resident, tenant, 1)
    }

    /// The same with `busy` instances busy (the profile's contention stretch applied).
    pub fn load_ns_busy(&self, resident: Option<TenantId>, tenant: TenantId, busy: usize) -> Nanos {
        let to = self.model_of(tenant);
        let curves = self.stretch.get(to);
        let (ns, curve) = match resident {
            None => (self.cold_ns[to], curves.map(|c| &c.cold)),
            Some(r) if r == tenant => return 0,
            Some(r) if self.model_of(r) == to => (self.switch_ns[to], curves.map(|c| &c.switch)),
            Some(_) => (self.rebuild_ns[to], curves.map(|c| &c.rebuild)),
        };
        scale(ns, curve.map_or(1.0, |c| stretch_at(c, busy)))
    }

    /// Estimated inference of request `id` with `busy` instances busy.
    pub fn service_ns_busy(&self, id: RequestId, tenant: TenantId, busy: usize) -> Nanos {
        let f = self
            .stretch
            .get(self.model_of(tenant))
            .map_or(1.0, |c| stretch_at(&c.forward, busy));
        scale(self.service_ns[id as usize], f)
    }
}

/// A workload bound to a profile and a serving configuration, ready to simulate.
#[derive(Debug)]
pub struct Setup<'a> {
    /// The workload.
    pub workload: &'a Workload,
    /// The serving configuration.
    pub serving: Serving,
    /// The GPU's name.
    pub gpu: String,
    models: Vec<&'a ModelProfile>,
    plans: Vec<ServicePlan>,
    request_plan: Vec<u32>,
    /// Mean costs for schedulers.
    pub estimates: Estimates,
}

impl<'a> Setup<'a> {
    /// Binds `workload` to `profile` (named `profile_name` in errors) for `serving`. Refuses a
    /// model the profile lacks and instances that do not fit the GPU's memory.
    pub fn new(
        profile: &'a Profile,
        profile_name: &str,
        workload: &'a Workload,
        serving: Serving,
    ) -> Result<Self> {
        if !(1..=MAX_INSTANCES).contains(&serving.instances) {
            return Err(Error::invalid(
                "instances",
                format!("{}: expected 1 to {MAX_INSTANCES}", serving.instances),
            ));
        }
        if !(1..=MAX_SAMPLES).contains(&serving.forward_batch) {
            return Err(Error::invalid(
                "forward_batch",
                format!("{}: expected 1 to {MAX_SAMPLES}", serving.forward_batch),
            ));
        }
        let names = workload.models();
        if names.is_empty() || names.len() > u16::MAX as usize {
            return Err(Error::invalid(
                "workload",
                format!(
                    "{} distinct models: expected 1 to {} (a workload has at least one tenant)",
                    names.len(),
                    u16::MAX
                ),
            ));
        }
        // The first tenant of each model, to name it in errors.
        let mut user: BTreeMap<&str, &str> = BTreeMap::new();
        for t in &workload.tenants {
            user.entry(t.model.as_str()).or_insert(t.name.as_str());
        }
        let mut models = Vec::with_capacity(names.len());
        for name in &names {
            let used_by = format!("tenant {}", user.get(name.as_str()).copied().unwrap_or(""));
            models.push(profile.model(profile_name, name, &used_by)?);
        }
        let (biggest, model) = models
            .iter()
            .zip(&names)
            .max_by_key(|(m, _)| m.memory_per_instance_bytes)
            .map(|(m, n)| (m.memory_per_instance_bytes, n.clone()))
            .unwrap_or_default();
        // At least one model (checked above), and every model's memory is > 0 (validated).
        let biggest = biggest.max(1);
        let need = biggest.saturating_mul(serving.instances as u64);
        if need > profile.gpu.memory_bytes {
            return Err(Error::DoesNotFit {
                instances: serving.instances,
                model,
                per_instance_bytes: biggest,
                need_bytes: need,
                gpu: profile.gpu.name.clone(),
                have_bytes: profile.gpu.memory_bytes,
                fit: profile.gpu.memory_bytes / biggest,
            });
        }
        let model_index: BTreeMap<&str, u16> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u16))
            .collect();
        let tenant_model: Vec<u16> = workload
            .tenants
            .iter()
            .map(|t| model_index[t.model.as_str()])
            .collect();

        // One plan per distinct (model, samples, seq_len).
        let mut plan_index: BTreeMap<(u16, u32, u32), u32> = BTreeMap::new();
        let mut plans = Vec::new();
        let mut request_plan = Vec::with_capacity(workload.requests.len());
        for r in &workload.requests {
            let m = tenant_model[r.tenant as usize];
            let key = (m, r.samples, r.seq_len);
            let index = *plan_index.entry(key).or_insert_with(|| {
                plans.push(plan(
                    models[m as usize],
                    m as usize,
                    r.samples,
                    r.seq_len,
                    serving.forward_batch,
                ));
                plans.len() as u32 - 1
            });
            request_plan.push(index);
        }
        check_horizon(
            profile_name,
            workload,
            serving.loading,
            &models,
            &tenant_model,
            &plans,
            &request_plan,
        )?;
        let switch_cost = |m: &ModelProfile| match serving.loading {
            LoadingMode::Split => m.switch.split.ms.mean(),
            LoadingMode::Full => m.switch.full.ms.mean(),
        };
        let estimates = Estimates {
            service_ns: request_plan
                .iter()
                .map(|&p| plans[p as usize].mean_ns)
                .collect(),
            tenant_model,
            cold_ns: models
                .iter()
                .map(|m| ms_to_ns(m.cold_load.ms.mean()))
                .collect(),
            switch_ns: models.iter().map(|m| ms_to_ns(switch_cost(m))).collect(),
            rebuild_ns: models
                .iter()
                .map(|m| ms_to_ns(m.switch.full.ms.mean()))
                .collect(),
            stretch: models
                .iter()
                .map(|m| ModelStretch {
                    cold: m.cold_load.stretch.clone(),
                    switch: match serving.loading {
                        LoadingMode::Split => m.switch.split.stretch.clone(),
                        LoadingMode::Full => m.switch.full.stretch.clone(),
                    },
                    rebuild: m.switch.full.stretch.clone(),
                    forward: m.forward.stretch.clone(),
                })
                .collect(),
        };
        Ok(Setup {
            workload,
            serving,
            gpu: profile.gpu.name.clone(),
            models,
            plans,
            request_plan,
            estimates,
        })
    }

    /// The estimated inference of a request of `tenant` of `samples` × `seq_len` on one busy
    /// instance (the profile's mean), for requests not in the workload.
    pub fn estimate_service_ns(&self, tenant: TenantId, samples: u32, seq_len: u32) -> Nanos {
        let index = self.estimates.model_of(tenant);
        plan(
            self.models[index],
            index,
            samples.max(1),
            seq_len.max(1),
            self.serving.forward_batch,
        )
        .mean_ns
    }

    /// The cost of loading `tenant` into an instance holding `resident` (`None` when it holds
    /// it already), and whether it is a cold load.
    pub(crate) fn load_cost(
        &self,
        resident: Option<TenantId>,
        tenant: TenantId,
    ) -> Option<(&Cost, bool)> {
        let to = self.estimates.model_of(tenant);
        let m = self.models[to];
        match resident {
            None => Some((&m.cold_load, true)),
            Some(r) if r == tenant => None,
            Some(r)
                if self.estimates.model_of(r) == to
                    && self.serving.loading == LoadingMode::Split =>
            {
                Some((&m.switch.split, false))
            }
            Some(_) => Some((&m.switch.full, false)),
        }
    }

    /// Draws request `id`'s inference time with `busy` instances busy.
    pub(crate) fn sample_service_ns(&self, id: RequestId, busy: usize, rng: &mut Rng) -> Nanos {
        let plan = &self.plans[self.request_plan[id as usize] as usize];
        let mut ms = plan.overhead.sample(rng);
        for (n, mean, noise, noise_mean) in &plan.groups {
            let x = noise.sample_sum(*n, rng);
            ms += if *noise_mean > 0.0 {
                x * mean / noise_mean
            } else {
                *mean * *n as f64
            };
        }
        let m = self.models[self
            .estimates
            .model_of(self.workload.requests[id as usize].tenant)];
        ms_to_ns(ms * m.forward.stretch_at(busy))
    }
}

/// Refuses a workload whose worst case ends after [`MAX_RUN_NS`] (see the module doc).
fn check_horizon(
    profile_name: &str,
    workload: &Workload,
    loading: LoadingMode,
    models: &[&ModelProfile],
    tenant_model: &[u16],
    plans: &[ServicePlan],
    request_plan: &[u32],
) -> Result<()> {
    let longest = |c: &Cost| c.ms.max_ms() * max_stretch(&c.stretch);
    let load_ms: Vec<f64> = models
        .iter()
        .map(|m| {
            let switch = match loading {
                LoadingMode::Split => &m.switch.split,
                LoadingMode::Full => &m.switch.full,
            };
            longest(&m.cold_load)
                .max(longest(switch))
                .max(longest(&m.switch.full))
        })
        .collect();
    let service_ms: Vec<f64> = plans
        .iter()
        .map(|p| p.max_ms * max_stretch(&models[p.model].forward.stretch))
        .collect();
    let work_ms: f64 = workload
        .requests
        .iter()
        .zip(request_plan)
        .map(|(r, &p)| load_ms[tenant_model[r.tenant as usize] as usize] + service_ms[p as usize])
        .sum();
    let last_ns = workload.requests.last().map_or(0, |r| r.arrival_ns);
    let end_ns = last_ns as f64 + work_ms * 1e6;
    if end_ns <= MAX_RUN_NS as f64 {
        return Ok(());
    }
    let longest_service = service_ms.iter().copied().fold(0.0, f64::max);
    Err(Error::invalid(
        profile_name,
        format!(
            "the workload cannot be simulated within 100 years: its last request arrives after {} \
             and its {} requests may take up to {} of loads and inference back to back (the \
             longest inference of one request up to {}): use fewer or smaller requests or \
             smaller costs",
            limits::human_ns(last_ns as f64),
            workload.requests.len(),
            limits::human_ns(work_ms * 1e6),
            limits::human_ns(longest_service * 1e6),
        ),
    ))
}

fn scale(ns: Nanos, factor: f64) -> Nanos {
    (ns as f64 * factor).round() as Nanos
}

fn plan(m: &ModelProfile, model: usize, samples: u32, seq_len: u32, batch: u32) -> ServicePlan {
    let mut groups = Vec::new();
    let full = samples / batch;
    let rest = samples % batch;
    for (n, b) in [(full, batch), (1, rest)] {
        if n > 0 && b > 0 {
            let mean = m.forward.mean_ms(b, seq_len);
            let noise = m.forward.nearest(b, seq_len).ms.clone();
            let noise_mean = noise.mean();
            groups.push((n, mean, noise, noise_mean));
        }
    }
    let overhead = m.request_overhead_ms.clone();
    let mean_ms = overhead.mean()
        + groups
            .iter()
            .map(|(n, mean, _, _)| *n as f64 * mean)
            .sum::<f64>();
    // The largest value `sample_service_ns` can draw before the stretch: each group's sum of
    // `n` draws is at most n·μ + √n·(max − μ) (or n·v for a constant), scaled to its mean.
    let max_ms = overhead.max_ms()
        + groups
            .iter()
            .map(|(n, mean, noise, noise_mean)| {
                let n = *n as f64;
                if *noise_mean > 0.0 {
                    let sum = match noise {
                        Dist::Constant(v) => v * n,
                        d => n * noise_mean + n.sqrt() * (d.max_ms() - noise_mean).max(0.0),
                    };
                    sum * mean / noise_mean
                } else {
                    mean * n
                }
            })
            .sum::<f64>();
    ServicePlan {
        groups,
        overhead,
        mean_ns: ms_to_ns_saturating(mean_ms),
        max_ms,
        model,
    }
}

/// Milliseconds to nanoseconds for means that may be huge before [`check_horizon`] refuses them.
fn ms_to_ns_saturating(ms: f64) -> Nanos {
    if ms.is_finite() {
        ms_to_ns(ms.clamp(0.0, Nanos::MAX as f64 / 1e6))
    } else {
        Nanos::MAX
    }
}
