//! `fcfs`: the textbook first-come first-served: one global FIFO; whenever instances are idle,
//! the lowest-numbered one starts the oldest request (with batching on, the later requests of
//! its tenant join it while they fit).

use super::{Decision, Dispatch, Scheduler, View};
use crate::workload::RequestId;
use std::collections::VecDeque;

/// One global FIFO.
#[derive(Debug, Default)]
pub struct Fcfs {
    queue: VecDeque<RequestId>,
}

impl Fcfs {
    /// An empty queue.
    pub fn new() -> Self {
        Fcfs::default()
    }
}

impl Scheduler for Fcfs {
    fn name(&self) -> &'static str {
        "fcfs"
    }

    fn on_arrival(&mut self, id: RequestId, _view: &View<'_>) {
        self.queue.push_back(id);
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        for instance in view.idle() {
            let Some(request) = self.queue.pop_front() else {
                break;
            };
            out.push(Dispatch { instance, request });
            if let Some(limits) = view.batching {
                // Later requests of the same tenant join, in order, while they fit.
                let tenant = view.request(request).tenant;
                let max = limits.max_rows as u64;
                let mut rows = view.request(request).samples as u64;
                let mut k = 0;
                while k < self.queue.len() && rows < max {
                    let id = self.queue[k];
                    let r = view.request(id);
                    if r.tenant == tenant && rows + r.samples as u64 <= max {
                        rows += r.samples as u64;
                        self.queue.remove(k);
                        out.push(Dispatch {
                            instance,
                            request: id,
                        });
                    } else {
                        k += 1;
                    }
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
    fn oldest_first_to_lowest_idle() {
        let reqs = requests(&[0, 1, 2]);
        let inst = instances(&[Some(2), None, None], &[false, true, false]);
        let mut s = Fcfs::new();
        let out = arrive_all_then_decide(&mut s, &reqs, &inst, 0);
        assert_eq!(out, vec![d(0, 0), d(2, 1)]);
    }
}
