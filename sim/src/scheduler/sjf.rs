//! `sjf`: shortest job first on the estimated service *including the switch it needs*. Each
//! idle instance (in index order) starts the waiting request that it would finish soonest:
//! a request of the tenant it holds costs only its inference; any other costs a switch (or a
//! cold load) too. Ties go to the older request.

use super::{Decision, Dispatch, Scheduler, Shape, View};
use crate::time::Nanos;
use crate::workload::{RequestId, TenantId};
use std::collections::BTreeSet;

/// Shortest estimated job first.
#[derive(Debug)]
pub struct Sjf {
    /// Waiting requests per tenant, by (estimated inference, id).
    by_tenant: Vec<BTreeSet<(Nanos, RequestId)>>,
    /// All waiting requests per model, by (estimated inference, id).
    by_model: Vec<BTreeSet<(Nanos, RequestId)>>,
}

impl Sjf {
    /// Empty queues for `shape.tenants` tenants.
    pub fn new(shape: Shape) -> Self {
        Sjf {
            by_tenant: vec![BTreeSet::new(); shape.tenants],
            by_model: Vec::new(),
        }
    }
}

impl Scheduler for Sjf {
    fn name(&self) -> &'static str {
        "sjf"
    }

    fn on_arrival(&mut self, id: RequestId, view: &View<'_>) {
        let tenant = view.request(id).tenant;
        let key = (view.est_service_ns(id), id);
        self.by_tenant[tenant as usize].insert(key);
        let model = view.estimates.model_of(tenant);
        if self.by_model.len() <= model {
            self.by_model.resize(model + 1, BTreeSet::new());
        }
        self.by_model[model].insert(key);
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        for instance in view.idle() {
            let resident = view.instances[instance as usize].resident;
            // Candidates: the shortest of the tenant it holds (no switch), and the shortest of
            // each model (with the load it needs). Cost ties go to the older request.
            let own = resident
                .and_then(|t| self.by_tenant[t as usize].first())
                .map(|&(est, id)| (est, id));
            let mut best: Option<(Nanos, RequestId)> = own;
            for set in &self.by_model {
                if let Some(&(est, id)) = set.first() {
                    let cost = est + view.est_load_ns(instance, view.request(id).tenant);
                    if best.is_none_or(|b| (cost, id) < b) {
                        best = Some((cost, id));
                    }
                }
            }
            let Some((_, request)) = best else { break };
            let tenant: TenantId = view.request(request).tenant;
            let key = (view.est_service_ns(request), request);
            self.by_tenant[tenant as usize].remove(&key);
            self.by_model[view.estimates.model_of(tenant)].remove(&key);
            out.push(Dispatch { instance, request });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_needed_switch_counts_against_a_job() {
        let mut reqs = requests(&[0, 1]);
        reqs[1].samples = 32; // estimates are uniform, so make tenant 1's the "longer" by id only
        let est = estimates(reqs.len());
        // Instance 0 holds tenant 1: its request costs 10 ms, tenant 0's 10 + 100 ms.
        let inst = instances(&[Some(1), None], &[false, true]);
        let view = View {
            now_ns: 0,
            instances: &inst,
            requests: &reqs,
            first_id: 0,
            estimates: &est,
            residency: &crate::ledger::Residency::fastptm(),
            batching: None,
            copy_free_at_est_ns: 0,
        };
        let mut s = Sjf::new(Shape {
            instances: 2,
            tenants: 2,
        });
        s.on_arrival(0, &view);
        s.on_arrival(1, &view);
        let mut out = Decision::default();
        s.decide(&view, &mut out);
        assert_eq!(out.dispatches, vec![d(0, 1)]);
    }
}
