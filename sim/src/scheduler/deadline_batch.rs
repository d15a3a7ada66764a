//! `deadline-batch`: ours, in Clockwork's spirit: predicted finish against the deadline decides
//! what runs, how large its batch is, and which requests are already lost.
//!
//! Per-tenant FIFO queues; their heads ordered by absolute deadline. Every estimate of a load
//! from the host counts the wait behind the copies already booked on the copy engine
//! ([`View::copy_wait_ns`], this decision's earlier switches included): the engine runs one
//! copy at a time, so in a burst a host switch waits for several copies, not one. At each
//! decision, for each idle executor in index order:
//! 1. **Lost requests step aside.** A head that cannot finish by its deadline even if started
//!    now (the cheapest load any idle executor needs for its tenant, plus its service) moves to
//!    its tenant's late queue — so that one late request does not make the ones behind it late
//!    too (goodput). Late requests ride along in their tenant's batches when there is room, and
//!    an executor with nothing that can still make it serves them (its own tenant's first, else
//!    the oldest). Every request is still served.
//! 2. **What to run.** Tenants whose other holders will clear their queue within two of this
//!    executor's loads are left to them. Then the executor's own tenant (no load) unless the most urgent head of
//!    another tenant must go now: its slack no longer covers the own batch, its load and its
//!    service, while starting it now would still make it. Otherwise, among the tenants of the
//!    most urgent heads, the one whose batch serves the most rows per estimated nanosecond
//!    (its load included: a tenant in the GPU pool loads cheaply), provided the most urgent
//!    head can still make its deadline after it; else the most urgent head's tenant.
//! 3. **How much.** The tenant's waiting requests join, in order, up to the row limit.
//! 4. **Whether to wait.** With a batching window, an executor that holds the tenant (no
//!    load) and whose batch is under half full waits for more rows until the oldest request has
//!    waited the window — never past the time that request must start to make its deadline.
//!    It asks to be woken then.

use super::{fill_batch, holders_backlog_ns, Decision, Dispatch, Scheduler, Shape, View};
use crate::ledger::Load;
use crate::time::Nanos;
use crate::workload::{RequestId, TenantId};
use std::collections::{BTreeSet, VecDeque};

/// How many of the most urgent heads are looked at for a more efficient batch.
const LOOKAHEAD: usize = 8;

/// Deadline-aware batching.
#[derive(Debug)]
pub struct DeadlineBatch {
    queues: Vec<VecDeque<RequestId>>,
    /// One entry per non-empty queue: (absolute deadline of its head, head id, tenant).
    heads: BTreeSet<(Nanos, RequestId, TenantId)>,
    /// Per tenant: requests that cannot make their deadline, oldest first.
    late: Vec<VecDeque<RequestId>>,
    /// Every late request in the order it stepped aside (served ones are skipped lazily).
    late_order: VecDeque<(RequestId, TenantId)>,
    /// When the host→GPU copy engine is estimated to be done with the copies booked so far,
    /// this decision's switches included.
    copy_free_ns: Nanos,
}

impl DeadlineBatch {
    /// Empty queues for `shape.tenants` tenants.
    pub fn new(shape: Shape) -> Self {
        DeadlineBatch {
            queues: vec![VecDeque::new(); shape.tenants],
            heads: BTreeSet::new(),
            late: vec![VecDeque::new(); shape.tenants],
            late_order: VecDeque::new(),
            copy_free_ns: 0,
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

    /// Estimated time until executor `e` could start serving `tenant`: its load, and for a
    /// switch from the host the wait behind the copies already on the copy engine.
    fn load_ns(&self, e: u32, tenant: TenantId, view: &View<'_>) -> Nanos {
        let queued = match view.load_needed(e, tenant) {
            Load::Switch => self.copy_free_ns.saturating_sub(view.now_ns),
            _ => 0,
        };
        view.est_load_ns(e, tenant) + queued
    }

    /// The cheapest load of `tenant` on any idle executor not yet given work.
    fn cheapest_load_ns(&self, tenant: TenantId, free: &[u32], view: &View<'_>) -> Nanos {
        free.iter()
            .map(|&e| self.load_ns(e, tenant, view))
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
            self.late[tenant as usize].push_back(id);
            self.late_order.push_back((id, tenant));
        }
    }

    /// The rows and estimated time of the batch `tenant`'s queue would form now.
    fn batch(&self, tenant: TenantId, view: &View<'_>) -> (u64, Nanos) {
        let queue = &self.queues[tenant as usize];
        let Some(&first) = queue.front() else {
            return (0, 0);
        };
        let Some(limits) = view.batching else {
            return (
                view.request(first).samples as u64,
                view.est_service_ns(first),
            );
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
        let ns = view
            .estimates
            .batch_service_ns(tenant, rows as u32, seq)
            .max(view.est_service_ns(first));
        (rows, ns)
    }

    /// The estimated time of the batch `tenant`'s queue would form now.
    fn batch_ns(&self, tenant: TenantId, view: &View<'_>) -> Nanos {
        self.batch(tenant, view).1
    }

    /// The tenant whose late requests executor `e` serves when nothing can still make it: its
    /// own, else the oldest late request's.
    fn late_tenant(&mut self, e: u32, view: &View<'_>) -> Option<TenantId> {
        if let Some(c) = view.instances[e as usize].resident {
            if !self.late[c as usize].is_empty() {
                return Some(c);
            }
        }
        while let Some(&(id, t)) = self.late_order.front() {
            if self.late[t as usize].contains(&id) {
                return Some(t);
            }
            self.late_order.pop_front();
        }
        None
    }

    /// Whether `tenant`'s other holders will clear its queue about as soon as `e` could load
    /// it (within two loads): then `e` leaves it to them.
    fn left_to_holders(&self, e: u32, tenant: TenantId, taken: &[u32], view: &View<'_>) -> bool {
        let load = self.load_ns(e, tenant, view);
        holders_backlog_ns(view, tenant, e, taken, &self.queues[tenant as usize])
            .is_some_and(|b| b <= 2 * load)
    }

    /// The tenant executor `e` should serve now, if any (`taken`: executors given work in this
    /// decision).
    fn pick(&self, e: u32, taken: &[u32], view: &View<'_>) -> Option<TenantId> {
        let now = view.now_ns;
        let own = view.instances[e as usize]
            .resident
            .filter(|&c| !self.queues[c as usize].is_empty());
        let mut heads = self
            .heads
            .iter()
            .filter(|&&(_, _, t)| Some(t) != own && !self.left_to_holders(e, t, taken, view));
        let urgent = heads.next().copied();
        match (own, urgent) {
            (Some(c), Some((due, id, t))) => {
                let slack = due.saturating_sub(now);
                let alone = self.load_ns(e, t, view) + view.est_service_ns(id);
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
                // The most efficient batch among the next heads (rows per estimated
                // nanosecond, load included), if the most urgent head can still make its
                // deadline after it; else the most urgent.
                let slack = due.saturating_sub(now);
                let urgent_ns = self.load_ns(e, t, view) + view.est_service_ns(id);
                let best = std::iter::once(&(due, id, t))
                    .chain(heads.take(LOOKAHEAD - 1))
                    .map(|&(_, _, c)| {
                        let (rows, batch_ns) = self.batch(c, view);
                        let cost_ns = self.load_ns(e, c, view) + batch_ns;
                        (c, rows, cost_ns)
                    })
                    .filter(|&(c, _, cost_ns)| c == t || cost_ns + urgent_ns <= slack)
                    .max_by(|a, b| {
                        // rows_a / cost_a vs rows_b / cost_b, exactly; ties: the more urgent.
                        (a.1 as u128 * b.2 as u128)
                            .cmp(&(b.1 as u128 * a.2 as u128))
                            .then(std::cmp::Ordering::Greater)
                    });
                Some(best.map_or(t, |(c, _, _)| c))
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
        self.copy_free_ns = view.copy_free_at_est_ns;
        self.set_aside_lost(&free, view);
        let idle = free.clone();
        let mut taken = Vec::new();
        for e in idle {
            free.retain(|&f| f != e);
            let Some(tenant) = self.pick(e, &taken, view) else {
                if let Some(t) = self.late_tenant(e, view) {
                    let first = self.late[t as usize]
                        .pop_front()
                        .expect("a late tenant has late requests");
                    taken.push(e);
                    out.push(Dispatch {
                        instance: e,
                        request: first,
                    });
                    fill_batch(view, e, first, &mut self.late[t as usize], out);
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
            if view.load_needed(e, tenant) == Load::Switch {
                self.copy_free_ns =
                    self.copy_free_ns.max(view.now_ns) + view.est_load_ns(e, tenant);
            }
            let old = self.head_key(tenant, view);
            self.queues[tenant as usize].pop_front();
            taken.push(e);
            out.push(Dispatch {
                instance: e,
                request: first,
            });
            fill_batch(view, e, first, &mut self.queues[tenant as usize], out);
            self.reindex(tenant, old, view);
            // Late requests of the tenant ride along where there is room.
            let batch: Vec<RequestId> = out
                .iter()
                .filter(|d| d.instance == e)
                .map(|d| d.request)
                .collect();
            if let Some(&last) = batch.last() {
                ride_along(view, e, &batch, last, &mut self.late[tenant as usize], out);
            }
        }
    }
}

/// Joins requests from the front of `late` to the batch `batch` of executor `e` (last request
/// `last`) while the rows fit.
fn ride_along(
    view: &View<'_>,
    e: u32,
    batch: &[RequestId],
    last: RequestId,
    late: &mut VecDeque<RequestId>,
    out: &mut Decision,
) {
    let Some(limits) = view.batching else { return };
    let mut rows: u64 = batch
        .iter()
        .map(|&id| view.request(id).samples as u64)
        .sum();
    while let Some(&id) = late.front() {
        let r = view.request(id);
        if rows + r.samples as u64 > limits.max_rows as u64 {
            break;
        }
        debug_assert_eq!(r.tenant, view.request(last).tenant);
        rows += r.samples as u64;
        late.pop_front();
        out.push(Dispatch {
            instance: e,
            request: id,
        });
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
    fn a_host_switch_counts_the_copies_queued_before_it() {
        // Executor 0 holds tenant 1 (request 1 waits for it); request 0 of tenant 0 needs a
        // 100 ms switch from the host and has 115 ms left: with the copy engine idle it must go
        // now (after tenant 1's 10 ms it could not make it); with 50 ms of copies queued it
        // cannot make it at all, steps aside, and tenant 1 is served.
        let reqs = requests(&[0, 1]);
        let inst = instances(&[Some(1)], &[false]);
        let est = estimates(reqs.len());
        let residency = crate::ledger::Residency::fastptm();
        let now = 3_000_000_000 - 115_000_000;
        let decide = |copy_free_at_est_ns: Nanos| {
            let view = View {
                now_ns: now,
                instances: &inst,
                requests: &reqs,
                first_id: 0,
                estimates: &est,
                residency: &residency,
                batching: None,
                copy_free_at_est_ns,
            };
            let mut s = policy(2);
            for id in 0..2 {
                s.on_arrival(id, &view);
            }
            let mut out = Decision::default();
            s.decide(&view, &mut out);
            (out.dispatches, s.late[0].len())
        };
        assert_eq!(decide(0), (vec![d(0, 0)], 0));
        assert_eq!(decide(now + 50_000_000), (vec![d(0, 1)], 1));
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
