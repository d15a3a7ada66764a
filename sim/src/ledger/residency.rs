//! What each tier holds: the GPU weight pool and the host cache as [`TierCache`]s of numbered
//! slots, Belady's oracle when the whole trace is known, and the prefetches in flight. The
//! ledger asks it which load a dispatch needs ([`Residency::load_needed`]) and tells it what
//! happened (a batch started with a load, a load ended, a prefetch landed).

use super::tiers::{Eviction, NextUse, TierCache, Tiers};
use crate::error::{Error, Result};
use crate::record::Load;
use crate::time::Nanos;
use crate::workload::{Request, TenantId};

/// What each tier holds and who leaves a full one.
#[derive(Debug, Clone)]
pub struct Residency {
    /// Parameter-efficient tenants: the pool holds their deltas, read by the passes in place
    /// (no arena); executors keep their backbone.
    pet: bool,
    pool: Option<TierCache>,
    host: Option<TierCache>,
    next: Option<NextUse>,
    /// Tenants whose prefetch into the pool is in flight (in a slot, not yet usable).
    arriving: Vec<TenantId>,
}

impl Residency {
    /// FastPTM's model: no pool; the host holds every tenant; an empty instance loads cold.
    pub fn fastptm() -> Self {
        Residency {
            pet: false,
            pool: None,
            host: None,
            next: None,
            arriving: Vec::new(),
        }
    }

    /// Tiers as `tiers` says for `tenants` tenants; `reload_cost_per_byte` weighs GDSF;
    /// Belady needs `trace` (the whole workload), which only a simulation has.
    pub fn new(
        tiers: Tiers,
        tenants: usize,
        reload_cost_per_byte: Vec<f64>,
        trace: Option<&[Request]>,
    ) -> Result<Self> {
        let next = match (tiers.eviction, trace) {
            (Eviction::Belady, Some(t)) => Some(NextUse::new(t, tenants)),
            (Eviction::Belady, None) => {
                return Err(Error::invalid(
                    "eviction",
                    "belady needs the whole trace in advance: the simulator only",
                ))
            }
            _ => None,
        };
        let cache = |n: usize| {
            let mut c = TierCache::new(n, tenants, tiers.eviction);
            c.set_costs(reload_cost_per_byte.clone());
            c
        };
        Ok(Residency {
            pet: tiers.pet,
            pool: tiers.pool_tenants.map(cache),
            host: tiers.host_tenants.map(cache),
            next,
            arriving: Vec::new(),
        })
    }

    /// Whether the tenants are parameter-efficient deltas over one backbone (their pool holds
    /// deltas; batches may mix tenants).
    pub fn pet(&self) -> bool {
        self.pet
    }

    /// Keeps `tenant`'s delta in the pool while a pass reads it (`true`), or lets it go.
    pub fn hold(&mut self, tenant: TenantId, on: bool) {
        if let Some(pool) = &mut self.pool {
            if pool.slot_of(tenant).is_some() || !on {
                pool.pin(tenant, on);
            }
        }
    }

    /// Whether the GPU has a weight pool (else FastPTM's model).
    pub fn tiered(&self) -> bool {
        self.pool.is_some()
    }

    /// The load an executor holding `arena` needs to serve `tenant`: none, from the pool, from
    /// the host (a switch) or from the tenant's file (cold).
    pub fn load_needed(&self, arena: Option<TenantId>, tenant: TenantId) -> Load {
        if arena == Some(tenant) {
            return Load::None;
        }
        let Some(pool) = &self.pool else {
            return Load::needed(arena, tenant);
        };
        if pool.slot_of(tenant).is_some() && !self.arriving.contains(&tenant) {
            // A delta in the pool is where the pass reads it: nothing to load.
            if self.pet {
                Load::None
            } else {
                Load::Pool
            }
        } else if self
            .host
            .as_ref()
            .is_none_or(|h| h.slot_of(tenant).is_some())
        {
            Load::Switch
        } else {
            Load::Cold
        }
    }

    /// Whether `tenant` is in the GPU pool (or on its way there).
    pub fn in_pool(&self, tenant: TenantId) -> bool {
        self.pool
            .as_ref()
            .is_some_and(|p| p.slot_of(tenant).is_some())
    }

    /// Starts a prefetch of `tenant` from the host into the pool at `now_ns`: its slot and
    /// whom it evicted, or `None` when there is no pool, the tenant is there already, or every
    /// member is pinned. The tenant is pinned and unusable until
    /// [`prefetch_done`](Self::prefetch_done).
    pub fn prefetch(&mut self, now_ns: Nanos, tenant: TenantId) -> Option<(u32, Option<TenantId>)> {
        if self.in_pool(tenant) {
            return None;
        }
        let next_ns = self.next.as_ref().map_or(0, |n| n.next_ns(tenant));
        let pool = self.pool.as_mut()?;
        let placed = pool.insert(tenant, now_ns, next_ns)?;
        pool.pin(tenant, true);
        self.arriving.push(tenant);
        Some(placed)
    }

    /// The prefetch of `tenant` landed: it is usable from the pool.
    pub fn prefetch_done(&mut self, tenant: TenantId) {
        if let Some(k) = self.arriving.iter().position(|&t| t == tenant) {
            self.arriving.swap_remove(k);
            if let Some(pool) = &mut self.pool {
                pool.pin(tenant, false);
            }
        }
    }

    /// The tenants in the pool, in slot order.
    pub fn pool_members(&self) -> Vec<TenantId> {
        self.pool
            .as_ref()
            .map_or_else(Vec::new, |p| p.members().collect())
    }

    /// Slots of the pool (0 without one).
    pub fn pool_capacity(&self) -> usize {
        self.pool.as_ref().map_or(0, TierCache::capacity)
    }

    /// Books a batch of `requests` requests of `tenant` starting with `load` at `now_ns`:
    /// uses, promotion into the pool (and the host, after a cold load), pinning of a pool
    /// copy. Returns the tenant's pool slot and whom it evicted.
    pub(super) fn start(
        &mut self,
        now_ns: Nanos,
        tenant: TenantId,
        load: Load,
        requests: u32,
    ) -> (Option<u32>, Option<TenantId>) {
        if let Some(next) = &mut self.next {
            for _ in 0..requests {
                next.dispatched(tenant);
            }
        }
        let next_ns = self.next.as_ref().map_or(0, |n| n.next_ns(tenant));
        for cache in [&mut self.host, &mut self.pool].into_iter().flatten() {
            for _ in 0..requests {
                cache.record_use(tenant);
            }
        }
        if let Some(host) = &mut self.host {
            if load == Load::Cold {
                host.insert(tenant, now_ns, next_ns);
            } else if host.slot_of(tenant).is_some() {
                host.touch(tenant, now_ns, next_ns);
            }
        }
        let Some(pool) = &mut self.pool else {
            return (None, None);
        };
        match load {
            Load::Switch | Load::Cold => match pool.insert(tenant, now_ns, next_ns) {
                Some((slot, evicted)) => (Some(slot), evicted),
                None => (None, None),
            },
            Load::Pool => {
                pool.touch(tenant, now_ns, next_ns);
                pool.pin(tenant, true);
                (pool.slot_of(tenant), None)
            }
            Load::None => {
                if pool.slot_of(tenant).is_some() {
                    pool.touch(tenant, now_ns, next_ns);
                }
                (pool.slot_of(tenant), None)
            }
        }
    }

    pub(super) fn load_ended(&mut self, tenant: TenantId, load: Load) {
        if let (Load::Pool, Some(pool)) = (load, &mut self.pool) {
            pool.pin(tenant, false);
        }
    }

    /// Tenants evicted so far from the pool and from the host cache.
    pub fn evictions(&self) -> (u64, u64) {
        (
            self.pool.as_ref().map_or(0, |p| p.evictions),
            self.host.as_ref().map_or(0, |h| h.evictions),
        )
    }
}
