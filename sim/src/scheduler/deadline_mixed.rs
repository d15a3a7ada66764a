//! `deadline-mixed`: ours, a deadline-aware mixed batcher for parameter-efficient tenants.
//!
//! Every waiting request in one deadline order (earliest first, then oldest). For each idle
//! executor, in index order:
//! 1. **Lost requests step aside**: a request that cannot finish by its deadline even if it
//!    ran alone now (its delta's load and its pass) waits in a late queue, served only when no
//!    request that can still make it waits — then oldest first, in full batches.
//! 2. **The batch**: the most urgent requests, whatever their tenants, up to the row limit —
//!    but the batch stops growing where its estimated pass (backbone, a segment per distinct
//!    tenant, delta loads) would make its most urgent request late.
//! 3. **Whether to wait**: a batch under half full waits for more rows, until its oldest
//!    request has waited the batching window and never past the time its most urgent request
//!    must start; the policy asks to be woken then.
//!
//! Without parameter-efficient tenants batches cannot mix tenants: the batch then takes the
//! most urgent request's tenant only.

use super::{Decision, Dispatch, Scheduler, View};
use crate::record::Load;
use crate::time::Nanos;
use crate::workload::{RequestId, TenantId};
use std::collections::{BTreeSet, VecDeque};

/// Deadline order over all tenants, mixed batches.
#[derive(Debug, Default)]
pub struct DeadlineMixed {
    /// Waiting requests by (absolute deadline, id).
    waiting: BTreeSet<(Nanos, RequestId)>,
    /// Requests that cannot make their deadline, oldest first.
    late: VecDeque<RequestId>,
}

impl DeadlineMixed {
    /// Nothing waiting.
    pub fn new() -> Self {
        DeadlineMixed::default()
    }

    /// Estimated pass of `batch` on executor `e`: rows, longest sequence, distinct tenants and
    /// the loads of their deltas.
    fn pass_ns(batch: &[RequestId], e: u32, view: &View<'_>) -> Nanos {
        let Some(&first) = batch.first() else {
            return 0;
        };
        let (mut rows, mut seq) = (0u32, 1u32);
        let mut tenants: Vec<TenantId> = Vec::new();
        for &id in batch {
            let r = view.request(id);
            rows += r.samples;
            seq = seq.max(r.seq_len);
            if !tenants.contains(&r.tenant) {
                tenants.push(r.tenant);
            }
        }
        if !view.residency.pet() {
            let load = view.est_load_ns(e, view.request(first).tenant);
            let pass = if batch.len() == 1 {
                view.est_service_ns(first)
            } else {
                view.estimates
                    .batch_service_ns(view.request(first).tenant, rows, seq)
            };
            return load + pass;
        }
        let (mut host, mut file) = (0, 0);
        for &t in &tenants {
            match view.residency.load_needed(None, t) {
                Load::Switch => host += 1,
                Load::Cold => file += 1,
                Load::None | Load::Pool => {}
            }
        }
        view.estimates.pet_batch_ns(
            view.request(first).tenant,
            rows,
            seq,
            tenants.len() as u32,
            host,
            file,
        )
    }

    /// With nothing that can still make its deadline waiting: the oldest late requests to
    /// executor `e`, batched like the others (mixing tenants when deltas allow, else of the
    /// oldest's tenant) up to the row limit, so that a backlog drains at full passes.
    fn dispatch_late(&mut self, e: u32, view: &View<'_>, out: &mut Decision) {
        let Some(first) = self.late.pop_front() else {
            return;
        };
        out.push(Dispatch {
            instance: e,
            request: first,
        });
        let Some(limits) = view.batching else {
            return;
        };
        let tenant = view.request(first).tenant;
        let mixed = view.residency.pet();
        let mut rows = view.request(first).samples as u64;
        let mut k = 0;
        while k < self.late.len() && rows < limits.max_rows as u64 {
            let r = view.request(self.late[k]);
            if (!mixed && r.tenant != tenant) || rows + r.samples as u64 > limits.max_rows as u64 {
                k += 1;
                continue;
            }
            rows += r.samples as u64;
            let Some(request) = self.late.remove(k) else {
                break;
            };
            out.push(Dispatch {
                instance: e,
                request,
            });
        }
    }

    /// Moves requests that cannot make their deadline even alone to the late queue.
    fn set_aside_lost(&mut self, e: u32, view: &View<'_>) {
        while let Some(&(due, id)) = self.waiting.first() {
            if view.now_ns + Self::pass_ns(&[id], e, view) <= due {
                break;
            }
            self.waiting.pop_first();
            self.late.push_back(id);
        }
    }
}

impl Scheduler for DeadlineMixed {
    fn name(&self) -> &'static str {
        "deadline-mixed"
    }

    fn on_arrival(&mut self, id: RequestId, view: &View<'_>) {
        self.waiting.insert((view.request(id).due_ns(), id));
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        let mixed = view.residency.pet();
        for e in view.idle().collect::<Vec<_>>() {
            self.set_aside_lost(e, view);
            let Some(&(due, first)) = self.waiting.first() else {
                self.dispatch_late(e, view, out);
                continue;
            };
            let tenant = view.request(first).tenant;
            let mut batch = vec![first];
            let mut rows = view.request(first).samples as u64;
            if let Some(limits) = view.batching {
                for &(_, id) in self.waiting.iter().skip(1) {
                    let r = view.request(id);
                    if rows >= limits.max_rows as u64 {
                        break;
                    }
                    if (!mixed && r.tenant != tenant)
                        || rows + r.samples as u64 > limits.max_rows as u64
                    {
                        continue;
                    }
                    batch.push(id);
                    if view.now_ns + Self::pass_ns(&batch, e, view) > due {
                        batch.pop(); // it would make the most urgent request late
                        break;
                    }
                    rows += r.samples as u64;
                }
                // A small batch waits for more rows while the window and the deadline allow.
                let oldest = batch
                    .iter()
                    .map(|&id| view.request(id).arrival_ns)
                    .min()
                    .unwrap_or(view.now_ns);
                let latest_start = due.saturating_sub(Self::pass_ns(&batch, e, view));
                let hold_until = (oldest + limits.max_wait_ns).min(latest_start);
                if rows * 2 < limits.max_rows as u64 && hold_until > view.now_ns {
                    out.wake_at(hold_until);
                    continue;
                }
            }
            for id in batch {
                self.waiting.remove(&(view.request(id).due_ns(), id));
                out.push(Dispatch {
                    instance: e,
                    request: id,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn earliest_deadline_first_and_lost_requests_last() {
        // Request 0 (due 3 s) is lost at 3.5 s; request 1 arrived at 3.4 s and can make it.
        let mut reqs = requests(&[0, 1]);
        reqs[1].arrival_ns = 3_400_000_000;
        let inst = instances(&[None, None], &[false, true]);
        let mut s = DeadlineMixed::new();
        let out = arrive_all_then_decide(&mut s, &reqs, &inst, 3_500_000_000);
        assert_eq!(out, vec![d(0, 1)]);
        let out = decide_at(&mut s, &reqs, &inst, 3_600_000_000);
        assert_eq!(
            out,
            vec![d(0, 0)],
            "served once nothing that can make it waits"
        );
    }

    #[test]
    fn late_requests_drain_in_full_batches_of_one_tenant_without_deltas() {
        use crate::ledger::Residency;
        // Four requests (16 rows each) lost by 3.5 s; batches of up to 32 rows.
        let reqs = requests(&[0, 1, 0, 0]);
        let inst = instances(&[None], &[false]);
        let est = estimates(reqs.len());
        let residency = Residency::fastptm();
        let view = View {
            now_ns: 3_500_000_000,
            instances: &inst,
            requests: &reqs,
            first_id: 0,
            estimates: &est,
            residency: &residency,
            batching: Some(crate::scheduler::BatchLimits {
                max_rows: 32,
                max_wait_ns: 1_000_000,
            }),
            copy_free_at_est_ns: 0,
        };
        let mut s = DeadlineMixed::new();
        for id in 0..4 {
            s.on_arrival(id, &view);
        }
        let mut out = Decision::default();
        s.decide(&view, &mut out);
        // The oldest (tenant 0) with the next of its tenant, skipping tenant 1's: 32 rows.
        assert_eq!(out.dispatches, vec![d(0, 0), d(0, 2)]);
        let mut out = Decision::default();
        s.decide(&view, &mut out);
        assert_eq!(out.dispatches, vec![d(0, 1)]);
    }
}
