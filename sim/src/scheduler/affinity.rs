//! `affinity`: our first better policy. Per-tenant FIFO queues; any instance may serve any
//! tenant, so a hot tenant is not stuck behind the one instance that holds it.
//!
//! An idle instance holding tenant `c`:
//! 1. takes the oldest request of `c` (no switch) — unless the most urgent request of another
//!    tenant *must go now*: its slack (time to its deadline) no longer covers its switch and
//!    service plus the service of `c`'s head it would otherwise wait for, while an immediate
//!    switch would still make it, and no instance already holding its tenant will free up soon
//!    enough to serve it without a switch;
//! 2. if `c` has nothing waiting (or the instance is empty), it switches to the tenant of the
//!    most urgent waiting request, skipping tenants whose holders will clear their backlog
//!    within two switch estimates (`backlog ≤ 2 × switch`: the switch costs one load now and
//!    displaces this instance's own tenant, which may need a load back later);
//! 3. else it stays idle until the next event.
//!
//! "Most urgent" is earliest absolute deadline (ties: older). Estimates are the profile's means.
//! With cross-request batching on, a dispatched request takes the requests behind it in its
//! tenant's queue along, while the batch's rows fit.

use super::{Decision, Dispatch, Scheduler, Shape, View};
use crate::time::Nanos;
use crate::workload::{RequestId, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// Options of `affinity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AffinityOptions {
    /// Never preempt the own tenant for an urgent one (pure affinity; for ablations).
    pub no_urgent: bool,
}

/// Per-tenant queues with affinity and deadline-aware switching.
#[derive(Debug)]
pub struct Affinity {
    options: AffinityOptions,
    queues: Vec<VecDeque<RequestId>>,
    /// One entry per non-empty queue: (absolute deadline of its head, head id, tenant).
    heads: BTreeSet<(Nanos, RequestId, TenantId)>,
}

impl Affinity {
    /// Empty queues for `shape.tenants` tenants.
    pub fn new(shape: Shape, options: AffinityOptions) -> Self {
        Affinity {
            options,
            queues: vec![VecDeque::new(); shape.tenants],
            heads: BTreeSet::new(),
        }
    }

    fn head_key(&self, tenant: TenantId, view: &View<'_>) -> Option<(Nanos, RequestId, TenantId)> {
        self.queues[tenant as usize]
            .front()
            .map(|&id| (view.request(id).due_ns(), id, tenant))
    }

    /// Removes the head of `tenant`'s queue and returns it.
    fn pop(&mut self, tenant: TenantId, view: &View<'_>) -> RequestId {
        let key = self
            .head_key(tenant, view)
            .expect("popping a non-empty queue");
        self.heads.remove(&key);
        self.queues[tenant as usize].pop_front();
        if let Some(next) = self.head_key(tenant, view) {
            self.heads.insert(next);
        }
        key.1
    }

    /// Tenants of the waiting heads, most urgent first.
    pub(super) fn urgent_tenants(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.heads.iter().map(|&(_, _, t)| t)
    }

    /// With batching on, the requests behind `first` in its queue join its batch while they fit.
    fn join_batch(&mut self, view: &View<'_>, instance: u32, first: RequestId, out: &mut Decision) {
        let tenant = view.request(first).tenant;
        let old = self.head_key(tenant, view);
        if super::fill_batch(
            view,
            instance,
            first,
            &mut self.queues[tenant as usize],
            out,
        ) > 0
        {
            if let Some(k) = old {
                self.heads.remove(&k);
            }
            if let Some(k) = self.head_key(tenant, view) {
                self.heads.insert(k);
            }
        }
    }

    /// Time until an instance other than `instance` that holds `tenant` would have cleared the
    /// tenant's queue, or `None` if no other instance holds it.
    fn holders_backlog_ns(
        &self,
        tenant: TenantId,
        instance: u32,
        taken: &[u32],
        view: &View<'_>,
    ) -> Option<Nanos> {
        super::holders_backlog_ns(view, tenant, instance, taken, &self.queues[tenant as usize])
    }
}

impl Scheduler for Affinity {
    fn name(&self) -> &'static str {
        "affinity"
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
        let now = view.now_ns;
        // Instances given work in this decision: they no longer count as free holders.
        let mut taken: Vec<u32> = Vec::new();
        for instance in view.idle().collect::<Vec<_>>() {
            if self.heads.is_empty() {
                break;
            }
            let own = view.instances[instance as usize]
                .resident
                .filter(|&c| !self.queues[c as usize].is_empty());
            // The most urgent head of another tenant that this instance should take, if any.
            let mut pick: Option<TenantId> = None;
            for &(due, id, tenant) in &self.heads {
                if Some(tenant) == own {
                    continue;
                }
                let switch = view.est_load_ns(instance, tenant);
                let backlog = self.holders_backlog_ns(tenant, instance, &taken, view);
                if backlog.is_some_and(|b| b <= 2 * switch) {
                    // Its holders will serve it about as soon as we could switch; and switching
                    // would also displace our own tenant (a switch back later): leave it.
                    continue;
                }
                match own {
                    None => pick = Some(tenant),
                    Some(c) if !self.options.no_urgent => {
                        let slack = due.saturating_sub(now);
                        let need = switch + view.est_service_ns(id);
                        let own_head = self.queues[c as usize][0];
                        let deferred = need + view.est_service_ns(own_head);
                        if slack >= need && slack < deferred {
                            pick = Some(tenant);
                        }
                    }
                    Some(_) => {}
                }
                break; // only the most urgent eligible head is considered
            }
            let Some(tenant) = pick.or(own) else { continue };
            let request = self.pop(tenant, view);
            taken.push(instance);
            out.push(Dispatch { instance, request });
            self.join_batch(view, instance, request, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::InstanceView;
    use super::*;

    fn run(
        reqs: &[crate::workload::Request],
        inst: &[InstanceView],
        now_ns: Nanos,
    ) -> Vec<Dispatch> {
        let mut s = Affinity::new(
            Shape {
                instances: inst.len(),
                tenants: 4,
            },
            AffinityOptions::default(),
        );
        arrive_all_then_decide(&mut s, reqs, inst, now_ns)
    }

    #[test]
    fn own_tenant_first_when_nothing_is_urgent() {
        let reqs = requests(&[1, 0, 0]);
        let inst = instances(&[Some(0)], &[false]);
        assert_eq!(run(&reqs, &inst, 0), vec![d(0, 1)]);
    }

    #[test]
    fn an_urgent_request_of_another_tenant_goes_first() {
        let reqs = requests(&[1, 0]);
        let inst = instances(&[Some(0)], &[false]);
        // Request 0 is due at 3000 ms; switch 100 + service 10 = 110 ms; deferring it behind
        // tenant 0's 10 ms job needs 120 ms of slack. At 2885 ms it has 115 ms: must go now.
        assert_eq!(run(&reqs, &inst, 2_885_000_000), vec![d(0, 0)]);
        // With 125 ms of slack it can wait one job.
        assert_eq!(run(&reqs, &inst, 2_875_000_000), vec![d(0, 1)]);
        // With 105 ms it is lost anyway: no point in switching for it.
        assert_eq!(run(&reqs, &inst, 2_895_000_000), vec![d(0, 1)]);
    }

    #[test]
    fn an_idle_instance_helps_a_hot_tenant_whose_holder_is_backed_up() {
        // Tenant 0 has 30 waiting (300 ms of backlog) behind busy instance 0.
        let reqs = requests(&[0; 30]);
        let mut inst = instances(&[Some(0), Some(1)], &[true, false]);
        inst[0].free_at_est_ns = 5_000_000;
        assert_eq!(run(&reqs, &inst, 0), vec![d(1, 0)]);
        // With only 3 waiting (25 ms of backlog < two 100 ms switches) the holder keeps them.
        let reqs = requests(&[0; 3]);
        assert!(run(&reqs, &inst, 0).is_empty());
    }

    #[test]
    fn an_idle_holder_gets_its_tenant_and_others_switch_elsewhere() {
        let reqs = requests(&[2, 0, 2]);
        let inst = instances(&[None, Some(2)], &[false, false]);
        // Instance 0 (empty) would take tenant 2's head, but idle instance 1 holds tenant 2
        // and will serve it at once: instance 0 takes tenant 0 instead.
        let out = run(&reqs, &inst, 0);
        assert_eq!(out, vec![d(0, 1), d(1, 0)]);
    }
}
