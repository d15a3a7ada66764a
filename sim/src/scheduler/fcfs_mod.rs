//! `fcfs-mod`: the variant of FastPTM's switch experiments: a request of tenant `t` goes to
//! instance `t mod m`'s FIFO, so each instance sees a fixed subset of tenants.

use super::fcfs_rr::serve_own_queues;
use super::{Decision, Scheduler, Shape, View};
use crate::workload::RequestId;
use std::collections::VecDeque;

/// Tenant-modulo dispatch to per-instance FIFO queues.
#[derive(Debug)]
pub struct FcfsMod {
    queues: Vec<VecDeque<RequestId>>,
}

impl FcfsMod {
    /// A dispatcher for `shape.instances` queues.
    pub fn new(shape: Shape) -> Self {
        FcfsMod {
            queues: vec![VecDeque::new(); shape.instances],
        }
    }
}

impl Scheduler for FcfsMod {
    fn name(&self) -> &'static str {
        "fcfs-mod"
    }

    fn on_arrival(&mut self, id: RequestId, view: &View<'_>) {
        let m = self.queues.len();
        self.queues[view.request(id).tenant as usize % m].push_back(id);
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        serve_own_queues(&mut self.queues, view, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn routes_by_tenant_modulo_instances() {
        let reqs = requests(&[3, 2, 5]);
        let inst = instances(&[None, None], &[false, false]);
        let mut s = FcfsMod::new(Shape {
            instances: 2,
            tenants: 6,
        });
        let out = arrive_all_then_decide(&mut s, &reqs, &inst, 0);
        assert_eq!(out, vec![d(0, 1), d(1, 0)]);
    }
}
