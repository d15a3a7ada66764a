//! What a run needs before it starts: the serving configuration, the profile's costs resolved
//! per tenant and per request, and the mean estimates schedulers see.

use crate::error::{Error, Result};
pub use crate::estimates::Estimates;
use crate::estimates::{EstimateParts, ModelStretch};
use crate::profile::{Cost, Dist, ModelProfile, Profile};
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
        if serving.instances == 0 {
            return Err(Error::invalid("instances", "expected at least 1 instance"));
        }
        if serving.forward_batch == 0 {
            return Err(Error::invalid("forward_batch", "expected at least 1"));
        }
        let names = workload.models();
        let mut models = Vec::with_capacity(names.len());
        for name in &names {
            let user = workload
                .tenants
                .iter()
                .find(|t| &t.model == name)
                .map_or("", |t| t.name.as_str());
            models.push(profile.model(profile_name, name, &format!("tenant {user}"))?);
        }
        let (biggest, model) = models
            .iter()
            .zip(&names)
            .max_by_key(|(m, _)| m.memory_per_instance_bytes)
            .map(|(m, n)| (m.memory_per_instance_bytes, n.clone()))
            .expect("a workload has at least one tenant");
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
                    r.samples,
                    r.seq_len,
                    serving.forward_batch,
                ));
                plans.len() as u32 - 1
            });
            request_plan.push(index);
        }
        let switch_cost = |m: &ModelProfile| match serving.loading {
            LoadingMode::Split => m.switch.split.ms.mean(),
            LoadingMode::Full => m.switch.full.ms.mean(),
        };
        let estimates = Estimates::new(EstimateParts {
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
        });
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
        let m = self.models[self.estimates.model_of(tenant)];
        plan(
            m,
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

fn plan(m: &ModelProfile, samples: u32, seq_len: u32, batch: u32) -> ServicePlan {
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
    ServicePlan {
        groups,
        overhead,
        mean_ns: ms_to_ns(mean_ms),
    }
}
