//! `fcfs-rr`: FastPTM's FCFS baseline as its code behaves. A dispatcher deals arrivals to the
//! instances in round-robin order, ignoring type and load; each instance serves its own FIFO one
//! request at a time and switches whenever the next request's tenant differs from the one it
//! holds.

use super::{Decision, Dispatch, Scheduler, Shape, View};
use crate::workload::RequestId;
use std::collections::VecDeque;

/// Round-robin dispatch to per-instance FIFO queues.
#[derive(Debug)]
pub struct FcfsRr {
    queues: Vec<VecDeque<RequestId>>,
    next: usize,
}

impl FcfsRr {
    /// A dispatcher for `shape.instances` queues; the first arrival goes to instance 0.
    pub fn new(shape: Shape) -> Self {
        FcfsRr {
            queues: vec![VecDeque::new(); shape.instances],
            next: 0,
        }
    }
}

/// Each idle instance starts the head of its own queue.
pub(super) fn serve_own_queues(
    queues: &mut [VecDeque<RequestId>],
    view: &View<'_>,
    out: &mut Vec<Dispatch>,
) {
    for instance in view.idle() {
        if let Some(request) = queues[instance as usize].pop_front() {
            out.push(Dispatch { instance, request });
        }
    }
}

impl Scheduler for FcfsRr {
    fn name(&self) -> &'static str {
        "fcfs-rr"
    }

    fn on_arrival(&mut self, id: RequestId, _view: &View<'_>) {
        self.queues[self.next].push_back(id);
        self.next = (self.next + 1) % self.queues.len();
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
    fn deals_round_robin_and_serves_own_queue_only() {
        let reqs = requests(&[0, 1, 2, 3, 4]);
        let inst = instances(&[None, None], &[true, false]);
        let mut s = FcfsRr::new(Shape {
            instances: 2,
            tenants: 5,
        });
        let out = arrive_all_then_decide(&mut s, &reqs, &inst, 0);
        // Instance 0 is busy: its requests 0, 2, 4 wait even though instance 1 is idle.
        assert_eq!(out, vec![d(1, 1)]);
    }
}
