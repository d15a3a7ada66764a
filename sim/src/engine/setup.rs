//! What a run needs before it starts: the serving configuration, the profile's costs resolved
//! per tenant and per request, and the mean estimates schedulers see.
//!
//! A setup refuses what cannot be simulated exactly in `u64` nanoseconds: more than
//! [`MAX_INSTANCES`] instances, and a workload whose worst case — its last arrival plus every
//! request's longest load and longest inference back to back — ends after [`MAX_RUN_NS`]
//! (100 years). Profile costs are bounded draws ([`crate::profile::dist`]), so this bound holds
//! for every seed.

use crate::error::{Error, Result};
pub use crate::estimates::Estimates;
use crate::estimates::{EstimateParts, ModelStretch, PassCosts, PetEstimates};
use crate::ledger::{Capacity, Eviction, Load, Residency, Tiers};
use crate::limits::{self, MAX_INSTANCES, MAX_RUN_NS, MAX_SAMPLES};
use crate::profile::{
    max_stretch, Contention, Cost, Dist, HostOverhead, ModelProfile, PetKind, Profile, Resource,
};
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

/// The serving configuration of one GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Serving {
    /// Parallel instances (executors: a stream, an arena, graphs).
    pub instances: usize,
    /// How switches load weights.
    pub loading: LoadingMode,
    /// Largest batch of samples in one forward pass (FastPTM: 1).
    pub forward_batch: u32,
    /// The GPU weight pool (tier 1); `None`: FastPTM's model, no pool.
    pub gpu_pool: Option<Capacity>,
    /// The host cache (tier 2); `None`: every tenant, read before time 0.
    pub host_cache: Option<Capacity>,
    /// Who a full pool or host cache evicts.
    pub eviction: Eviction,
    /// Cross-request batching; `None`: one request a dispatch.
    pub batching: Option<Batching>,
    /// The tenants are parameter-efficient deltas over the model as a backbone.
    pub pet: Option<PetServing>,
}

impl Default for Serving {
    /// FastPTM's: one instance, split loading, one sample a pass, no tiers, no batching.
    fn default() -> Self {
        Serving {
            instances: 1,
            loading: LoadingMode::Split,
            forward_batch: 1,
            gpu_pool: None,
            host_cache: None,
            eviction: Eviction::Lru,
            batching: None,
            pet: None,
        }
    }
}

/// Parameter-efficient tenants: each tenant is a delta of `kind` over the scenario's model,
/// whose backbone every executor keeps; deltas live in a GPU pool of `delta_pool` (a count,
/// bytes, or `Auto`: what the GPU holds after the executors), the host, or their files; a
/// batch may mix tenants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PetServing {
    /// The kind of delta (a key of the profile's `pet` costs).
    pub kind: PetKind,
    /// The GPU's delta pool.
    #[serde(default = "auto")]
    pub delta_pool: Capacity,
}

fn auto() -> Capacity {
    Capacity::Auto
}

/// Cross-request batching: waiting requests of one tenant share an executor's passes, up to
/// `forward_batch` rows together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    /// How long a policy may hold a partial batch for more rows, milliseconds (a policy
    /// shortens it when a deadline needs).
    #[serde(default)]
    pub max_wait_ms: f64,
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
    /// Forward passes it runs.
    passes: u32,
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
    /// The tiers, resolved to tenant slots.
    pub tiers: Tiers,
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
        let executors_bytes = biggest.saturating_mul(serving.instances as u64);
        if executors_bytes > profile.gpu.memory_bytes {
            return Err(Error::DoesNotFit {
                instances: serving.instances,
                model,
                per_instance_bytes: biggest,
                need_bytes: executors_bytes,
                gpu: profile.gpu.name.clone(),
                have_bytes: profile.gpu.memory_bytes,
                fit: profile.gpu.memory_bytes / biggest,
            });
        }
        let tiers = super::tiers::resolve_tiers(
            &serving,
            profile,
            &models,
            &names,
            profile.gpu.memory_bytes - executors_bytes,
            workload.tenants.len(),
        )?;
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
        let host_ns = |p: &ServicePlan| {
            models[p.model]
                .host
                .as_ref()
                .map_or(0, |h| ms_to_ns_saturating(h.mean_ms(p.passes)))
        };
        let estimates = Estimates::new(EstimateParts {
            service_ns: request_plan
                .iter()
                .map(|&p| {
                    let p = &plans[p as usize];
                    p.mean_ns.saturating_add(host_ns(p))
                })
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
            pool_ns: models
                .iter()
                .map(|m| m.pool_switch.as_ref().map_or(0, |c| ms_to_ns(c.ms.mean())))
                .collect(),
            pet: models
                .iter()
                .map(|m| {
                    let p = m.pet.get(&serving.pet?.kind.key())?;
                    Some(PetEstimates {
                        overhead: p.overhead,
                        overhead_ns: ms_to_ns(p.overhead_ms),
                        segment_ns: ms_to_ns(p.segment_ms.mean()),
                        load_host_ns: ms_to_ns(p.load_host.ms.mean()),
                        load_file_ns: ms_to_ns(p.load_file.ms.mean()),
                        pipelined: p.pipelined,
                    })
                })
                .collect(),
            passes: models
                .iter()
                .map(|m| PassCosts {
                    forward: m.forward.clone(),
                    forward_batch: serving.forward_batch,
                    overhead_ms: m.request_overhead_ms.mean(),
                    host: m.host.clone(),
                })
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
        });
        Ok(Setup {
            workload,
            serving,
            gpu: profile.gpu.name.clone(),
            models,
            plans,
            request_plan,
            estimates,
            tiers,
        })
    }

    /// The tiers' initial state: for a simulation (`with_trace`: Belady may look ahead) or a
    /// live run (which cannot).
    pub fn residency(&self, with_trace: bool) -> Result<Residency> {
        if self.tiers.pool_tenants.is_none() {
            return Ok(Residency::fastptm());
        }
        // GDSF's weight: the reload from the host per byte of each tenant's weights.
        let cost_per_byte = self
            .workload
            .tenants
            .iter()
            .enumerate()
            .map(|(t, _)| {
                let m = self.models[self.estimates.model_of(t as TenantId)];
                let bytes = m
                    .weights_bytes
                    .unwrap_or(m.memory_per_instance_bytes)
                    .max(1);
                m.switch.split.ms.mean() / bytes as f64 * 1e9
            })
            .collect();
        let trace = with_trace.then_some(self.workload.requests.as_slice());
        Residency::new(
            self.tiers,
            self.workload.tenants.len(),
            cost_per_byte,
            trace,
        )
    }

    /// The estimated inference of a request of `tenant` of `samples` × `seq_len` on one busy
    /// instance (the profile's mean), for requests not in the workload.
    pub fn estimate_service_ns(&self, tenant: TenantId, samples: u32, seq_len: u32) -> Nanos {
        let index = self.estimates.model_of(tenant);
        let m = self.models[index];
        let p = plan(
            m,
            index,
            samples.max(1),
            seq_len.max(1),
            self.serving.forward_batch,
        );
        let host = m
            .host
            .as_ref()
            .map_or(0, |h| ms_to_ns_saturating(h.mean_ms(p.passes)));
        p.mean_ns.saturating_add(host)
    }

    /// How this run models contention: by resource when every model it uses has measured
    /// contention figures, else the stretch at a phase's start (see
    /// [`crate::profile::contention`]).
    pub fn contention(&self) -> Option<Vec<Contention>> {
        self.models.iter().map(|m| m.contention.clone()).collect()
    }

    /// One line for reports: the contention model and the host overhead this run applies.
    pub fn cost_model(&self) -> String {
        let names = self.workload.models();
        let lacking = |f: &dyn Fn(&ModelProfile) -> bool| -> Vec<&str> {
            self.models
                .iter()
                .zip(&names)
                .filter(|(m, _)| !f(m))
                .map(|(_, n)| n.as_str())
                .collect()
        };
        let contention = match self.models.first().and_then(|m| m.contention.as_ref()) {
            Some(c) if lacking(&|m| m.contention.is_some()).is_empty() => {
                let how = |r: Resource| match c.sharing(r) {
                    crate::profile::Sharing::Fifo => format!("{} FIFO", r.name()),
                    crate::profile::Sharing::Shared(_) => format!("{} shared", r.name()),
                };
                format!(
                    "contention by resource ({}, {}, {})",
                    how(Resource::Sm),
                    how(Resource::Link),
                    how(Resource::Host)
                )
            }
            _ => format!(
                "contention: stretch by busy instances at each phase's start (no contention \
                 figures in the profile for {})",
                lacking(&|m| m.contention.is_some()).join(", ")
            ),
        };
        let missing = lacking(&|m| m.host.is_some());
        let host = if missing.is_empty() {
            "host overhead per dispatch measured".to_string()
        } else {
            format!("no host overhead (not measured for {})", missing.join(", "))
        };
        match self.pool_copy_note() {
            Some(pool) => format!("{contention}; {host}; {pool}"),
            None => format!("{contention}; {host}"),
        }
    }

    /// Per model, how its loads from the GPU weight pool and its passes slow each other, when
    /// measured ([`crate::profile::pool_copy`]).
    pub fn pool_copies(&self) -> Vec<Option<crate::profile::PoolCopyContention>> {
        self.models
            .iter()
            .map(|m| m.pool_contention.clone())
            .collect()
    }

    /// For a run with a GPU weight pool and contention by resource: whether pool loads and
    /// passes slow each other as measured, or for which models that was not measured (their
    /// pool loads keep the stretch at their start). `None` otherwise.
    fn pool_copy_note(&self) -> Option<String> {
        self.serving.gpu_pool?;
        let names = self.workload.models();
        let missing: Vec<&str> = self
            .models
            .iter()
            .zip(&names)
            .filter(|(m, _)| m.contention.is_none() || m.pool_contention.is_none())
            .map(|(_, n)| n.as_str())
            .collect();
        Some(if missing.is_empty() {
            "pool loads on the pool stream beside passes as measured".to_string()
        } else {
            format!(
                "pool loads stretched at their start, passes not slowed by them (not measured \
                 for {})",
                missing.join(", ")
            )
        })
    }

    /// The index of `tenant`'s model.
    pub(crate) fn model_index(&self, tenant: TenantId) -> usize {
        self.estimates.model_of(tenant)
    }

    /// The host overhead figures of model `model`, when measured.
    pub(crate) fn host(&self, model: usize) -> Option<&HostOverhead> {
        self.models[model].host.as_ref()
    }

    /// The resource a load of kind `load` of `tenant` into an executor that held `from` waits
    /// on: the copy engine for copies (switches, pool loads), the host for checkpoint reads
    /// (cold loads, rebuilds).
    pub(crate) fn load_resource(
        &self,
        load: Load,
        from: Option<TenantId>,
        tenant: TenantId,
    ) -> Resource {
        match load {
            Load::Cold => Resource::Host,
            Load::Switch if self.rebuilds(from, tenant) => Resource::Host,
            Load::Switch | Load::Pool | Load::None => Resource::Link,
        }
    }

    /// Whether a switch into `tenant` from `from` rebuilds the model (full loading, or another
    /// model's structure).
    fn rebuilds(&self, from: Option<TenantId>, tenant: TenantId) -> bool {
        let to = self.estimates.model_of(tenant);
        match from {
            Some(r) if self.estimates.model_of(r) != to => true,
            _ => self.serving.loading == LoadingMode::Full,
        }
    }

    /// The cost of a prefetch of `tenant` from host memory into the GPU pool: its delta's load
    /// (`pet.load_host`) where the run serves parameter-efficient tenants, else the copy of a
    /// weight switch.
    pub(crate) fn prefetch_cost(&self, tenant: TenantId) -> Option<&Cost> {
        let model = self.models[self.estimates.model_of(tenant)];
        match self.serving.pet.and_then(|s| model.pet.get(&s.kind.key())) {
            Some(p) => Some(&p.load_host),
            None => self.load_cost(Load::Switch, None, tenant),
        }
    }

    /// The cost of a load of kind `load` of `tenant` into an executor that held `from`
    /// (`None` for no load).
    pub(crate) fn load_cost(
        &self,
        load: Load,
        from: Option<TenantId>,
        tenant: TenantId,
    ) -> Option<&Cost> {
        let to = self.estimates.model_of(tenant);
        let m = self.models[to];
        match load {
            Load::None => None,
            Load::Cold => Some(&m.cold_load),
            Load::Pool => m.pool_switch.as_ref(),
            Load::Switch if self.rebuilds(from, tenant) => Some(&m.switch.full),
            Load::Switch => Some(&m.switch.split),
        }
    }

    /// The inference, milliseconds alone, of a mixed pass of parameter-efficient tenants of
    /// `batch` whose backbone pass alone takes `backbone_ms` and whose deltas needed `loads`:
    /// the backbone stretched by the delta kernels' overhead, plus the fixed time per pass and
    /// a segment per distinct tenant, plus what the delta loads add (only what exceeds the pass when pipelined).
    pub(crate) fn pet_inference_ms(
        &self,
        backbone_ms: f64,
        batch: &[RequestId],
        loads: &[crate::ledger::PetLoad],
        rng: &mut Rng,
    ) -> f64 {
        let tenant = self.workload.requests[batch[0] as usize].tenant;
        let model = self.models[self.estimates.model_of(tenant)];
        let Some(p) = self.serving.pet.and_then(|s| model.pet.get(&s.kind.key())) else {
            return backbone_ms;
        };
        let mut ms = backbone_ms * (1.0 + p.overhead) + p.overhead_ms;
        for _ in loads {
            ms += p.segment_ms.sample(rng);
        }
        let mut load_ms = 0.0;
        for l in loads {
            load_ms += match l.load {
                Load::Switch => p.load_host.ms.sample(rng),
                Load::Cold => p.load_file.ms.sample(rng),
                Load::None | Load::Pool => 0.0,
            };
        }
        ms + if p.pipelined {
            (load_ms - ms).max(0.0)
        } else {
            load_ms
        }
    }

    /// Draws the inference of instance batch `batch` (the first request keys the noise) with
    /// one instance busy, milliseconds: one request's plan, or passes over several requests'
    /// rows together. Returns it, the passes it runs and the tokens of its largest pass.
    pub(crate) fn sample_inference_ms(
        &self,
        batch: &[RequestId],
        rng: &mut Rng,
    ) -> (f64, u32, u32) {
        let fb = self.serving.forward_batch.max(1);
        let reqs = &self.workload.requests;
        if let [id] = batch {
            let plan = &self.plans[self.request_plan[*id as usize] as usize];
            let r = &reqs[*id as usize];
            let tokens = r.samples.clamp(1, fb).saturating_mul(r.seq_len.max(1));
            return (plan.sample_ms(rng), plan.passes, tokens);
        }
        let first = &reqs[batch[0] as usize];
        let rows: u32 = batch.iter().map(|&id| reqs[id as usize].samples).sum();
        let seq = batch
            .iter()
            .map(|&id| reqs[id as usize].seq_len)
            .max()
            .unwrap_or(1);
        let model = self.estimates.model_of(first.tenant);
        let p = plan(
            self.models[model],
            model,
            rows.max(1),
            seq.max(1),
            self.serving.forward_batch,
        );
        let tokens = rows.clamp(1, fb).saturating_mul(seq.max(1));
        (p.sample_ms(rng), p.passes, tokens)
    }

    /// The factor of an inference of `tenant` started with `busy` instances busy (the stretch
    /// model).
    pub(crate) fn forward_stretch(&self, tenant: TenantId, busy: usize) -> f64 {
        self.models[self.estimates.model_of(tenant)]
            .forward
            .stretch_at(busy)
    }
}

impl ServicePlan {
    /// Draws one inference, milliseconds, before contention.
    fn sample_ms(&self, rng: &mut Rng) -> f64 {
        let mut ms = self.overhead.sample(rng);
        for (n, mean, noise, noise_mean) in &self.groups {
            let x = noise.sample_sum(*n, rng);
            ms += if *noise_mean > 0.0 {
                x * mean / noise_mean
            } else {
                *mean * *n as f64
            };
        }
        ms
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
    // The longest a phase can take per unit of its work: the stretch model's largest factor,
    // or under contention by resource the largest per-phase factor of its resource's sharing
    // and its cross factor (a run's work completes at least at the slowest total rate).
    let by_resource = |m: &ModelProfile, r: Resource| -> Option<f64> {
        m.contention.as_ref().map(|c| {
            let cross = match r {
                Resource::Sm => c.forward_during_copy,
                Resource::Link => c.max_copy_factor(),
                Resource::Host => 1.0,
            };
            let per_phase = match r {
                Resource::Sm => c.sm_max_per_phase(),
                _ => c.sharing(r).max_per_phase(),
            };
            per_phase * cross.max(1.0)
        })
    };
    let longest = |m: &ModelProfile, c: &Cost, r: Resource| {
        c.ms.max_ms() * by_resource(m, r).unwrap_or_else(|| max_stretch(&c.stretch))
    };
    let load_ms: Vec<f64> = models
        .iter()
        .map(|m| {
            let switch = match loading {
                LoadingMode::Split => &m.switch.split,
                LoadingMode::Full => &m.switch.full,
            };
            let host_ms = m.host.as_ref().map_or(0.0, |h| {
                h.handoff(true).max_ms().max(h.handoff(false).max_ms())
            });
            host_ms
                + longest(m, &m.cold_load, Resource::Host)
                    .max(longest(m, switch, Resource::Link))
                    .max(longest(m, &m.switch.full, Resource::Host))
        })
        .collect();
    let service_ms: Vec<f64> = plans
        .iter()
        .map(|p| {
            let m = models[p.model];
            let host_ms = m.host.as_ref().map_or(0.0, |h| {
                h.staging_ms.max_ms() + h.staging_per_pass_ms * p.passes as f64
            });
            let factor =
                by_resource(m, Resource::Sm).unwrap_or_else(|| max_stretch(&m.forward.stretch));
            host_ms + p.max_ms * factor
        })
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
    let passes = groups.iter().map(|(n, ..)| *n).sum();
    ServicePlan {
        groups,
        overhead,
        mean_ns: ms_to_ns_saturating(mean_ms),
        max_ms,
        model,
        passes,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Batching, PetServing};
    use crate::ledger::Capacity;
    use crate::profile::{PetKind, Profile};
    use crate::workload::{self, Arrivals, NoFiles, Popularity, RequestDefaults, WorkloadSpec};

    #[test]
    fn a_prefetch_copies_a_delta_for_pet_tenants_and_weights_otherwise() {
        let profile = Profile::example();
        let spec = WorkloadSpec::Generate {
            requests: 10,
            arrivals: Arrivals::Poisson { rate_rps: 10.0 },
            tenants: 4,
            popularity: Popularity::Zipf { s: 1.0 },
        };
        let w =
            workload::build(&spec, &RequestDefaults::default(), "bert-base", 1, &NoFiles).unwrap();
        let full = Serving {
            instances: 1,
            batching: Some(Batching { max_wait_ms: 0.0 }),
            ..Serving::default()
        };
        let pet = Serving {
            pet: Some(PetServing {
                kind: PetKind::Lora { rank: 8 },
                delta_pool: Capacity::Tenants(64),
            }),
            ..full
        };
        let m = &profile.models["bert-base"];
        let full = Setup::new(&profile, "example", &w, full).unwrap();
        assert_eq!(full.prefetch_cost(0), Some(&m.switch.split));
        let pet = Setup::new(&profile, "example", &w, pet).unwrap();
        assert_eq!(pet.prefetch_cost(0), Some(&m.pet["lora-r8"].load_host));
    }
}
