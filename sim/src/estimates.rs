//! The mean costs a scheduler sees: per request its estimated inference, per tenant its model,
//! per model its cold load, switch and rebuild, and how each stretches with busy instances.
//! Built by [`crate::engine::Setup`] from a profile; never the sampled future.

use crate::profile::{stretch_at, ForwardTable, HostOverhead};
use crate::record::Load;
use crate::time::{ms_to_ns, Nanos};
use crate::workload::{RequestId, TenantId};

/// The fields of [`Estimates`], as [`crate::engine::Setup`] computes them.
pub(crate) struct EstimateParts {
    pub(crate) service_ns: Vec<Nanos>,
    pub(crate) tenant_model: Vec<u16>,
    pub(crate) cold_ns: Vec<Nanos>,
    pub(crate) switch_ns: Vec<Nanos>,
    pub(crate) rebuild_ns: Vec<Nanos>,
    pub(crate) pool_ns: Vec<Nanos>,
    pub(crate) passes: Vec<PassCosts>,
    pub(crate) pet: Vec<Option<PetEstimates>>,
    pub(crate) stretch: Vec<ModelStretch>,
}

/// Mean costs of parameter-efficient tenants over one backbone model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PetEstimates {
    pub(crate) overhead: f64,
    pub(crate) overhead_ns: Nanos,
    pub(crate) segment_ns: Nanos,
    pub(crate) load_host_ns: Nanos,
    pub(crate) load_file_ns: Nanos,
    pub(crate) pipelined: bool,
}

impl PetEstimates {
    /// The time loads of `host` and `file` deltas add to a pass of `pass_ns`: all of it, or
    /// (pipelined under the backbone's compute) only what exceeds the pass.
    pub(crate) fn exposed_ns(&self, pass_ns: Nanos, host: u32, file: u32) -> Nanos {
        let loads = host as Nanos * self.load_host_ns + file as Nanos * self.load_file_ns;
        if self.pipelined {
            loads.saturating_sub(pass_ns)
        } else {
            loads
        }
    }
}

/// What a model's batch of requests costs on average: forward passes of at most
/// `forward_batch` rows, plus a per-batch overhead and, when measured, the host's work of a
/// dispatch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PassCosts {
    pub(crate) forward: ForwardTable,
    pub(crate) forward_batch: u32,
    pub(crate) overhead_ms: f64,
    pub(crate) host: Option<HostOverhead>,
}

impl PassCosts {
    /// Mean of a batch of `rows` rows of at most `seq_len` tokens, milliseconds.
    pub(crate) fn mean_ms(&self, rows: u32, seq_len: u32) -> f64 {
        let fb = self.forward_batch.max(1);
        let (full, rest) = (rows / fb, rows % fb);
        let mut ms = self.overhead_ms;
        if full > 0 {
            ms += full as f64 * self.forward.mean_ms(fb, seq_len);
        }
        if rest > 0 {
            ms += self.forward.mean_ms(rest, seq_len);
        }
        if let Some(h) = &self.host {
            ms += h.mean_ms(full + u32::from(rest > 0));
        }
        ms
    }
}

/// Mean costs, as schedulers see them.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimates {
    /// By request id, from `first_id` on.
    service_ns: Vec<Nanos>,
    first_id: RequestId,
    tenant_model: Vec<u16>,
    cold_ns: Vec<Nanos>,
    switch_ns: Vec<Nanos>,
    /// Switch into a model from another model (the structure must be rebuilt: full mode).
    rebuild_ns: Vec<Nanos>,
    /// Per model: a load from the GPU pool (0 where the profile has none).
    pool_ns: Vec<Nanos>,
    /// Per model: batch costs (empty in [`Estimates::uniform`]).
    passes: Vec<PassCosts>,
    /// Per model: parameter-efficient tenants' costs, when they are served.
    pet: Vec<Option<PetEstimates>>,
    /// Per model: how cold loads, switches, rebuilds and inference stretch with busy instances.
    stretch: Vec<ModelStretch>,
}

/// One model's contention curves (see [`crate::profile::Cost`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelStretch {
    pub(crate) cold: Vec<f64>,
    pub(crate) switch: Vec<f64>,
    pub(crate) rebuild: Vec<f64>,
    pub(crate) forward: Vec<f64>,
}

impl Estimates {
    pub(crate) fn new(p: EstimateParts) -> Self {
        Estimates {
            service_ns: p.service_ns,
            first_id: 0,
            tenant_model: p.tenant_model,
            cold_ns: p.cold_ns,
            switch_ns: p.switch_ns,
            rebuild_ns: p.rebuild_ns,
            pool_ns: p.pool_ns,
            passes: p.passes,
            pet: p.pet,
            stretch: p.stretch,
        }
    }

    /// Estimates where every request takes `service_ns`, every switch `switch_ns` and every
    /// cold load `cold_ns`, all tenants of one model (for tests of policies).
    pub fn uniform(requests: usize, service_ns: Nanos, switch_ns: Nanos, cold_ns: Nanos) -> Self {
        Estimates {
            service_ns: vec![service_ns; requests],
            first_id: 0,
            tenant_model: Vec::new(),
            cold_ns: vec![cold_ns],
            switch_ns: vec![switch_ns],
            rebuild_ns: vec![switch_ns],
            pool_ns: vec![switch_ns / 40],
            passes: Vec::new(),
            pet: Vec::new(),
            stretch: Vec::new(),
        }
    }

    /// Estimated inference of request `id` on one busy instance.
    pub fn service_ns(&self, id: RequestId) -> Nanos {
        let i = id.wrapping_sub(self.first_id) as usize;
        debug_assert!(i < self.service_ns.len(), "request {id} has no estimate");
        self.service_ns[i]
    }

    /// The same estimates for no request yet (requests are then added with
    /// [`push_service_ns`](Self::push_service_ns) as they arrive).
    pub fn without_requests(&self) -> Estimates {
        Estimates {
            service_ns: Vec::new(),
            first_id: 0,
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
        self.first_id
            .wrapping_add((self.service_ns.len() - 1) as RequestId)
    }

    /// Forgets the estimates of the first `n` requests (see [`crate::ledger::Ledger::compact`]).
    pub fn drop_first(&mut self, n: usize) {
        self.service_ns.drain(..n);
        self.first_id = self.first_id.wrapping_add(n as RequestId);
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

    /// Estimated load of kind `load` into an executor that held `from`, for `tenant`, with one
    /// instance busy (the ledger's classification, tiers included).
    pub fn load_kind_ns(&self, load: Load, from: Option<TenantId>, tenant: TenantId) -> Nanos {
        let to = self.model_of(tenant);
        if let Some(p) = self.pet.get(to).copied().flatten() {
            // A parameter-efficient tenant's load is its delta's, into the delta pool.
            return match load {
                Load::None | Load::Pool => 0,
                Load::Switch => p.load_host_ns,
                Load::Cold => p.load_file_ns,
            };
        }
        match load {
            Load::None => 0,
            Load::Pool => self.pool_ns[to],
            Load::Cold => self.cold_ns[to],
            Load::Switch => match from {
                Some(r) if self.model_of(r) != to => self.rebuild_ns[to],
                _ => self.switch_ns[to],
            },
        }
    }

    /// Estimated inference of a batch of `rows` rows of at most `seq_len` tokens of `tenant`
    /// with one instance busy.
    pub fn batch_service_ns(&self, tenant: TenantId, rows: u32, seq_len: u32) -> Nanos {
        self.passes
            .get(self.model_of(tenant))
            .map_or(0, |p| ms_to_ns(p.mean_ms(rows, seq_len)))
    }

    /// Estimated mixed pass of parameter-efficient tenants over `tenant`'s backbone: `rows`
    /// rows of at most `seq_len` tokens over `segments` distinct tenants, `host` and `file`
    /// of whose deltas must be loaded first.
    pub fn pet_batch_ns(
        &self,
        tenant: TenantId,
        rows: u32,
        seq_len: u32,
        segments: u32,
        host: u32,
        file: u32,
    ) -> Nanos {
        let backbone = self.batch_service_ns(tenant, rows, seq_len);
        match self.pet.get(self.model_of(tenant)).copied().flatten() {
            Some(p) => {
                let pass = (backbone as f64 * (1.0 + p.overhead)).round() as Nanos
                    + p.overhead_ns
                    + segments as Nanos * p.segment_ns;
                pass + p.exposed_ns(pass, host, file)
            }
            None => backbone,
        }
    }

    /// Estimated inference of request `id` with `busy` instances busy.
    pub fn service_ns_busy(&self, id: RequestId, tenant: TenantId, busy: usize) -> Nanos {
        let f = self
            .stretch
            .get(self.model_of(tenant))
            .map_or(1.0, |c| stretch_at(&c.forward, busy));
        scale(self.service_ns(id), f)
    }
}

fn scale(ns: Nanos, factor: f64) -> Nanos {
    (ns as f64 * factor).round() as Nanos
}
