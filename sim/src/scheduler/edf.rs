//! `edf`: earliest deadline first. The waiting request with the earliest absolute deadline
//! starts first (ties: the older), on an idle instance that already holds its tenant if there is
//! one, else on the lowest-numbered idle instance.

use super::{Decision, Dispatch, Scheduler, View};
use crate::time::Nanos;
use crate::workload::RequestId;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Earliest deadline first.
#[derive(Debug, Default)]
pub struct Edf {
    heap: BinaryHeap<Reverse<(Nanos, RequestId)>>,
}

impl Edf {
    /// An empty queue.
    pub fn new() -> Self {
        Edf::default()
    }
}

impl Scheduler for Edf {
    fn name(&self) -> &'static str {
        "edf"
    }

    fn on_arrival(&mut self, id: RequestId, view: &View<'_>) {
        self.heap.push(Reverse((view.request(id).due_ns(), id)));
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        let mut idle: Vec<u32> = view.idle().collect();
        while !idle.is_empty() {
            let Some(Reverse((_, request))) = self.heap.pop() else {
                break;
            };
            let tenant = view.request(request).tenant;
            let pick = idle
                .iter()
                .position(|&i| view.instances[i as usize].resident == Some(tenant))
                .unwrap_or(0);
            out.push(Dispatch {
                instance: idle.remove(pick),
                request,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn earliest_deadline_goes_first_to_its_holder() {
        let mut reqs = requests(&[0, 1, 2]);
        reqs[2].deadline_ns = 1_000_000; // due at 3 ms: the most urgent
        let inst = instances(&[None, Some(2)], &[false, false]);
        let mut s = Edf::new();
        let out = arrive_all_then_decide(&mut s, &reqs, &inst, 5_000_000);
        assert_eq!(out, vec![d(1, 2), d(0, 0)]);
    }
}
