//! `pets`: PetS's coordinated batching (ATC'22): one FIFO over every tenant; an idle executor
//! takes the oldest requests, whatever their tenants, up to the batch's rows — parameter-
//! efficient tenants share the backbone's pass and each applies its own delta to its rows.
//!
//! Without parameter-efficient tenants a batch cannot mix tenants: then the oldest request's
//! later requests of the same tenant join it, as in `fcfs`.

use super::{Decision, Dispatch, Scheduler, View};
use crate::workload::RequestId;
use std::collections::VecDeque;

/// One FIFO, mixed batches.
#[derive(Debug, Default)]
pub struct Pets {
    queue: VecDeque<RequestId>,
}

impl Pets {
    /// An empty queue.
    pub fn new() -> Self {
        Pets::default()
    }
}

impl Scheduler for Pets {
    fn name(&self) -> &'static str {
        "pets"
    }

    fn on_arrival(&mut self, id: RequestId, _view: &View<'_>) {
        self.queue.push_back(id);
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        let mixed = view.residency.pet();
        for instance in view.idle() {
            let Some(first) = self.queue.pop_front() else {
                break;
            };
            out.push(Dispatch {
                instance,
                request: first,
            });
            let Some(limits) = view.batching else {
                continue;
            };
            let tenant = view.request(first).tenant;
            let max = limits.max_rows as u64;
            let mut rows = view.request(first).samples as u64;
            let mut k = 0;
            while k < self.queue.len() && rows < max {
                let id = self.queue[k];
                let r = view.request(id);
                if (mixed || r.tenant == tenant) && rows + r.samples as u64 <= max {
                    rows += r.samples as u64;
                    self.queue.remove(k);
                    out.push(Dispatch {
                        instance,
                        request: id,
                    });
                } else if mixed {
                    break; // FIFO: a request that does not fit ends the batch
                } else {
                    k += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn without_batching_it_is_fcfs() {
        let reqs = requests(&[0, 1, 2]);
        let inst = instances(&[Some(2), None, None], &[false, true, false]);
        let out = arrive_all_then_decide(&mut Pets::new(), &reqs, &inst, 0);
        assert_eq!(out, vec![d(0, 0), d(2, 1)]);
    }
}
