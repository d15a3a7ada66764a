//! `deadline-batch`: ours, in Clockwork's spirit: predicted finish against the deadline decides
//! what runs, how large its batch is, and which requests are already lost.
//!
//! Per-tenant FIFO queues; their heads ordered by absolute deadline. At each decision, for each
//! idle executor in index order:
//! 1. **Lost requests step aside.** A head that cannot finish by its deadline even if started
//!    now (the cheapest load any idle executor needs for its tenant, plus its service) moves to
//!    a late queue, served only when no request that can still make it waits — so that one
//!    late request does not make the ones behind it late too (goodput). Every request is still
//!    served.
//! 2. **What to run.** The executor's own tenant (no load) unless the most urgent head of
//!    another tenant must go now: its slack no longer covers the own batch, its load and its
//!    service, while starting it now would still make it. Otherwise the most urgent head's
//!    tenant; among the first few heads a tenant whose load is cheaper (in the GPU pool) is
//!    preferred when the most urgent one can still wait for it.
//! 3. **How much.** The tenant's waiting requests join, in order, up to the row limit.
//! 4. **Whether to wait.** With a batching window, an executor that holds the tenant (no
//!    load) and whose batch is under half full waits for more rows until the oldest request has
//!    waited the window — never past the time that request must start to make its deadline.
//!    It asks to be woken then.

use super::{fill_batch, Decision, Dispatch, Scheduler, Shape, View};
use crate::ledger::Load;
use crate::time::Nanos;
use crate::workload::{RequestId, TenantId};
use std::collections::{BTreeSet, VecDeque};

/// How many of the most urgent heads are looked at for a cheaper load.
const LOOKAHEAD: usize = 4;

/// Deadline-aware batching.
#[derive(Debug)]
pub struct DeadlineBatch {
    queues: Vec<VecDeque<RequestId>>,
    /// One entry per non-empty queue: (absolute deadline of its head, head id, tenant).
    heads: BTreeSet<(Nanos, RequestId, TenantId)>,
    /// Requests that cannot make their deadline, oldest first.
    late: VecDeque<RequestId>,
}

impl DeadlineBatch {
    /// Empty queues for `shape.tenants` tenants.
    pub fn new(shape: Shape) -> Self {
        DeadlineBatch {
            queues: vec![VecDeque::new(); shape.tenants],
            heads: BTreeSet::new(),
            late: VecDeque::new(),
        }
    }

    fn head_key(&self, tenant: TenantId, view: &View<'_>) -> Option<(Nanos, RequestId, TenantId)> {
        self.queues[tenant as usize]
            .front()
            .map(|&id| (view.request(id).due_ns(), id, tenant))
    }

    fn reindex(
        &mut self,
        tenant: TenantId,
        old: Option<(Nanos, RequestId, TenantId)>,
        view: &View<'_>,
    ) {
        if let Some(k) = old {
            self.heads.remove(&k);
        }
        if let Some(k) = self.head_key(tenant, view) {
            self.heads.insert(k);
        }
    }

    /// The cheapest load of `tenant` on any idle executor not yet given work.
    fn cheapest_load_ns(&self, tenant: TenantId, free: &[u32], view: &View<'_>) -> Nanos {
        free.iter()
            .map(|&e| view.est_load_ns(e, tenant))
            .min()
            .unwrap_or(0)
    }

    /// Moves heads that cannot make their deadline any more to the late queue.
    fn set_aside_lost(&mut self, free: &[u32], view: &View<'_>) {
        while let Some(&(due, id, tenant)) = self.heads.first() {
            let finish =
                view.now_ns + self.cheapest_load_ns(tenant, free, view) + view.est_service_ns(id);
            if finish <= due {
                break;
            }
            let old = self.head_key(tenant, view);
            self.queues[tenant as usize].pop_front();
            self.reindex(tenant, old, view);
            self.late.push_back(id);
        }
    }

    /// The estimated time of the batch `tenant`'s queue would form now.
    fn batch_ns(&self, tenant: TenantId, view: &View<'_>) -> Nanos {
        let queue = &self.queues[tenant as usize];
        let Some(&first) = queue.front() else {
            return 0;
        };
        let Some(limits) = view.batching else {
            return view.est_service_ns(first);
        };
        let (mut rows, mut seq) = (0u64, 1u32);
        for &id in queue {
            let r = view.request(id);
            if rows + r.samples as u64 > limits.max_rows as u64 && rows > 0 {
                break;
            }
            rows += r.samples as u64;
            seq = seq.max(r.seq_len);
        }
        view.estimates
            .batch_service_ns(tenant, rows as u32, seq)
            .max(view.est_service_ns(first))
    }

    /// The tenant executor `e` should serve now, if any.
    fn pick(&self, e: u32, view: &View<'_>) -> Option<TenantId> {
        let now = view.now_ns;
        let own = view.instances[e as usize]
            .resident
            .filter(|&c| !self.queues[c as usize].is_empty());
        let mut heads = self.heads.iter().filter(|&&(_, _, t)| Some(t) != own);
        let urgent = heads.next().copied();
        match (own, urgent) {
            (Some(c), Some((due, id, t))) => {
                let slack = due.saturating_sub(now);
                let alone = view.est_load_ns(e, t) + view.est_service_ns(id);
                let after_own = self.batch_ns(c, view) + alone;
                Some(if slack >= alone && slack < after_own {
                    t
                } else {
                    c
                })
            }
            (Some(c), None) => Some(c),
            (None, None) => None,
            (None, Some((due, id, t))) => {
                // A cheaper load among the next heads, if the most urgent can wait for it.
                let slack = due.saturating_sub(now);
                let urgent_ns = view.est_load_ns(e, t) + view.est_service_ns(id);
                let cheaper = std::iter::once(&(due, id, t))
                    .chain(heads.take(LOOKAHEAD - 1))
                    .filter(|&&(_, _, c)| view.load_needed(e, c) == Load::Pool)
                    .map(|&(_, _, c)| c)
                    .find(|&c| {
                        c == t
                            || view.est_load_ns(e, c) + self.batch_ns(c, view) + urgent_ns <= slack
                    });
                Some(cheaper.unwrap_or(t))
            }
        }
    }
}

impl Scheduler for DeadlineBatch {
    fn name(&self) -> &'static str {
        "deadline-batch"
    }

    fn on_arrival(&mut self, id: RequestId, view: &View<'_>) {
        let tenant = view.request(id).tenant;
        let queue = &mut self.queues[tenant as usize];
        queue.push_back(id);
        if queue.len() == 1 {
            self.heads.insert((view.request(id).due_ns(), id, tenant));
        }
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        let mut free: Vec<u32> = view.idle().collect();
        self.set_aside_lost(&free, view);
        let idle = free.clone();
        for e in idle {
            free.retain(|&f| f != e);
            let Some(tenant) = self.pick(e, view) else {
                if let Some(request) = self.late.pop_front() {
                    out.push(Dispatch {
                        instance: e,
                        request,
                    });
                }
                continue;
            };
            let first = self.queues[tenant as usize][0];
            if let Some(limits) = view.batching {
                let wait_until = view.request(first).arrival_ns + limits.max_wait_ns;
                let rows: u64 = self.queues[tenant as usize]
                    .iter()
                    .map(|&id| view.request(id).samples as u64)
                    .sum();
                let latest_start = view
                    .request(first)
                    .due_ns()
                    .saturating_sub(self.batch_ns(tenant, view));
                let hold_until = wait_until.min(latest_start);
                if view.load_needed(e, tenant) == Load::None
                    && rows * 2 < limits.max_rows as u64
                    && hold_until > view.now_ns
                {
                    out.wake_at(hold_until);
                    continue;
                }
            }
            let old = self.head_key(tenant, view);
            self.queues[tenant as usize].pop_front();
            out.push(Dispatch {
                instance: e,
                request: first,
            });
            fill_batch(view, e, first, &mut self.queues[tenant as usize], out);
            self.reindex(tenant, old, view);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn policy(tenants: usize) -> DeadlineBatch {
        DeadlineBatch::new(Shape {
            instances: 2,
            tenants,
        })
    }

    #[test]
    fn own_tenant_first_then_most_urgent() {
        // Instance 0 holds tenant 1; instance 1 is empty.
        let reqs = requests(&[0, 1, 2]);
        let inst = instances(&[Some(1), None], &[false, false]);
        let out = arrive_all_then_decide(&mut policy(3), &reqs, &inst, 0);
        assert_eq!(out, vec![d(0, 1), d(1, 0)]);
    }

    #[test]
    fn a_request_that_cannot_make_it_steps_aside() {
        // Request 0 is due at 3 s but it is 3.5 s now: it waits until nothing else does.
        let mut reqs = requests(&[0, 1]);
        reqs[1].arrival_ns = 3_400_000_000;
        let inst = instances(&[None, None], &[false, true]);
        let mut s = policy(2);
        let out = arrive_all_then_decide(&mut s, &reqs, &inst, 3_500_000_000);
        assert_eq!(out, vec![d(0, 1)]);
        let out = decide_at(&mut s, &reqs, &inst, 3_600_000_000);
        assert_eq!(
            out,
            vec![d(0, 0)],
            "served once nothing that can make it waits"
        );
    }
}
