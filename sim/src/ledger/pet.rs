//! The ledger's books of a mixed batch of parameter-efficient tenants: each distinct tenant's
//! delta load into the GPU's delta pool (held there while the pass reads it), the batch's
//! estimate and its record. The executor keeps its backbone; delta loads are part of the pass.

use super::{shape, Ledger, PetLoad, Phase, Start};
use crate::estimates::Estimates;
use crate::record::{Load, SpanKind};
use crate::time::Nanos;
use crate::workload::{Request, TenantId};

impl Ledger {
    /// Books the mixed batch `s` of parameter-efficient tenants: for each distinct tenant, the
    /// load of its delta into the GPU's delta pool (none when it is there) — held there until
    /// the pass ends, since the pass reads it; the executor keeps its backbone. Delta loads are
    /// part of the pass (pipelined under the backbone's compute), not a phase of their own.
    pub(super) fn start_pet(
        &mut self,
        now_ns: Nanos,
        s: &mut Start,
        requests: &[Request],
        estimates: &Estimates,
    ) {
        let i = s.instance as usize;
        let batch = std::mem::take(&mut self.batches[i]);
        let mut loads = std::mem::take(&mut self.pet_loads[i]);
        loads.clear();
        for &id in &batch {
            let tenant = requests[id.wrapping_sub(self.first_id) as usize].tenant;
            if loads.iter().any(|l| l.tenant == tenant) {
                continue;
            }
            let n = batch
                .iter()
                .filter(|&&x| requests[x.wrapping_sub(self.first_id) as usize].tenant == tenant)
                .count() as u32;
            let load = self.residency.load_needed(None, tenant);
            let (slot, evicted) = self.residency.start(now_ns, tenant, load, n);
            self.residency.hold(tenant, true);
            self.count_load(i, tenant, load);
            loads.push(PetLoad {
                tenant,
                load,
                slot,
                evicted,
            });
        }
        s.requests = batch.len() as u32;
        s.load = loads.iter().map(|l| l.load).max().unwrap_or(Load::None);
        let (rows, seq) = shape(&batch, requests, self.first_id);
        let (mut host, mut file) = (0, 0);
        for l in &loads {
            host += u32::from(l.load == Load::Switch);
            file += u32::from(l.load == Load::Cold);
        }
        let estimate_ns =
            estimates.pet_batch_ns(s.tenant, rows, seq, loads.len() as u32, host, file);
        let view = &mut self.views[i];
        view.resident = None;
        view.free_at_est_ns = now_ns + estimate_ns;
        self.batches[i] = batch;
        let load_of = |t: TenantId| {
            loads
                .iter()
                .find(|l| l.tenant == t)
                .map_or(Load::None, |l| l.load)
        };
        let per_request: Vec<Load> = self.batches[i]
            .iter()
            .map(|&id| load_of(requests[id.wrapping_sub(self.first_id) as usize].tenant))
            .collect();
        let mut k = 0;
        self.record_batch(now_ns, i, |_| {
            k += 1;
            per_request[k - 1]
        });
        self.pet_loads[i] = loads;
        self.phases[i] = Some(Phase {
            kind: SpanKind::Inference,
            start_ns: now_ns,
            load: s.load,
            tenant: s.tenant,
        });
    }
}
