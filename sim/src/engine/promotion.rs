//! When a tenant's copy in the GPU pool can be read. A load from the host or from its file
//! also promotes the tenant into its pool slot: the runtime copies the executor's arena into the
//! slot (device to device, on the pool's stream) once the load has landed, and a later load
//! from that slot is ordered after that copy (the slot's fence; live, `latch.rs` holds the job
//! until the promoting worker has issued it). The ledger books a promotion at dispatch — from
//! then on the tenant is in the pool for every decision — so a pool load dispatched before the
//! promotion has landed waits for it: until the promoting load ends (not known in advance under
//! contention) plus the copy into the pool. Without this the simulator read a pool copy that did
//! not exist yet (0.3 ms simulated against 0.6 ms live per request in the H200 tiers cell).
//!
//! A parameter-efficient run has no promotions of whole weight sets (its deltas are read in
//! place from their pool); prefetches have their own landing (the ledger's residency).

use super::Work;
use crate::ledger::{Load, Start};
use crate::time::Nanos;
use crate::workload::TenantId;

/// Promotions in flight and the pool loads waiting for them.
#[derive(Default)]
pub(super) struct Promotions {
    /// Per tenant: the instance whose running load promotes it.
    promoting: Vec<Option<u32>>,
    /// Per tenant: when its pool copy landed or lands.
    ready_ns: Vec<Nanos>,
    /// Per instance: the tenant its running load promotes.
    by_instance: Vec<Option<TenantId>>,
    /// Pool loads waiting for a promotion: (tenant, instance, the load's work).
    waiting: Vec<(TenantId, u32, Work)>,
}

impl Promotions {
    /// Nothing in flight, for `tenants` tenants on `instances` instances.
    pub(super) fn new(tenants: usize, instances: usize) -> Self {
        Promotions {
            promoting: vec![None; tenants],
            ready_ns: vec![0; tenants],
            by_instance: vec![None; instances],
            waiting: Vec::new(),
        }
    }

    /// A dispatch started: a load from the host or a file into a pool slot promotes.
    pub(super) fn started(&mut self, start: &Start, pet: bool) {
        if !pet && start.pool_slot.is_some() && matches!(start.load, Load::Switch | Load::Cold) {
            self.promoting[start.tenant as usize] = Some(start.instance);
            self.by_instance[start.instance as usize] = Some(start.tenant);
        }
    }

    /// A pool load of `tenant` on `instance` with `work`: the work to start now (delayed until
    /// a known landing), or `None` when it waits for a promotion still loading.
    pub(super) fn pool_load(
        &mut self,
        now_ns: Nanos,
        tenant: TenantId,
        instance: u32,
        mut work: Work,
    ) -> Option<Work> {
        let t = tenant as usize;
        if self.promoting[t].is_some() {
            self.waiting.push((tenant, instance, work));
            return None;
        }
        work.fixed_ns += self.ready_ns[t].saturating_sub(now_ns);
        Some(work)
    }

    /// `instance`'s load ended at `now_ns`; the copy into the pool takes `copy_ns`. Returns
    /// the tenant it promoted and when its pool copy lands.
    pub(super) fn load_ended(
        &mut self,
        now_ns: Nanos,
        instance: u32,
        copy_ns: impl FnOnce(TenantId) -> Nanos,
    ) -> Option<(TenantId, Nanos)> {
        let tenant = self.by_instance[instance as usize].take()?;
        let t = tenant as usize;
        if self.promoting[t] != Some(instance) {
            return None; // evicted and promoted again by another load meanwhile
        }
        self.promoting[t] = None;
        self.ready_ns[t] = now_ns + copy_ns(tenant);
        Some((tenant, self.ready_ns[t]))
    }

    /// The pool copy of `tenant` landed at `now_ns`: the loads that waited for it, to start.
    pub(super) fn landed(&mut self, tenant: TenantId) -> Vec<(u32, Work)> {
        let mut out = Vec::new();
        let mut k = 0;
        while k < self.waiting.len() {
            if self.waiting[k].0 == tenant {
                let (_, i, w) = self.waiting.remove(k);
                out.push((i, w));
            } else {
                k += 1;
            }
        }
        out
    }

    /// Whether a load waits for a promotion (a run must not end with one).
    pub(super) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}
