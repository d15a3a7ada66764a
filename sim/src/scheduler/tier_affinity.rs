//! `tier-affinity`: ours: [`affinity`](super::affinity) over the weight tiers, with prefetch.
//!
//! It decides as `affinity` does — whose estimates already see the tiers, so a tenant in the
//! GPU pool costs a device-to-device copy, not a switch from the host — and batches as
//! `affinity` does. Then it brings tenants up a tier ahead of need: the tenants of the most
//! urgent waiting heads that no executor and no pool slot holds (as many as there are
//! executors), and, once per `popular_every` decisions, the most requested tenant so far that
//! the pool lacks. A prefetch is a host-to-pool copy on the copy engine; it never occupies an
//! executor, and without a pool it is ignored.

use super::affinity::{Affinity, AffinityOptions};
use super::{Decision, Scheduler, Shape, View};
use crate::workload::{RequestId, TenantId};
use std::collections::BTreeSet;

/// Decisions between two prefetches of the most popular tenant.
const POPULAR_EVERY: u64 = 16;

/// Affinity with tier-aware estimates and prefetch.
#[derive(Debug)]
pub struct TierAffinity {
    inner: Affinity,
    executors: usize,
    /// Requests per tenant so far, and the tenants by (count, tenant).
    counts: Vec<u64>,
    by_count: BTreeSet<(u64, TenantId)>,
    decisions: u64,
}

impl TierAffinity {
    /// For `shape`.
    pub fn new(shape: Shape) -> Self {
        TierAffinity {
            inner: Affinity::new(shape, AffinityOptions::default()),
            executors: shape.instances,
            counts: vec![0; shape.tenants],
            by_count: BTreeSet::new(),
            decisions: 0,
        }
    }
}

impl Scheduler for TierAffinity {
    fn name(&self) -> &'static str {
        "tier-affinity"
    }

    fn on_arrival(&mut self, id: RequestId, view: &View<'_>) {
        let t = view.request(id).tenant;
        let c = &mut self.counts[t as usize];
        self.by_count.remove(&(*c, t));
        *c += 1;
        self.by_count.insert((*c, t));
        self.inner.on_arrival(id, view);
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        self.inner.decide(view, out);
        if !view.residency.tiered() {
            return;
        }
        let started: Vec<TenantId> = out.iter().map(|d| view.request(d.request).tenant).collect();
        let held = |t: TenantId| {
            started.contains(&t)
                || view.residency.in_pool(t)
                || view.instances.iter().any(|i| i.resident == Some(t))
        };
        let needed: Vec<TenantId> = self
            .inner
            .urgent_tenants()
            .filter(|&t| !held(t))
            .take(self.executors)
            .collect();
        out.prefetch.extend(needed);
        self.decisions += 1;
        if self.decisions % POPULAR_EVERY == 0 {
            if let Some(&(_, t)) = self
                .by_count
                .iter()
                .rev()
                .find(|&&(_, t)| !held(t) && !out.prefetch.contains(&t))
            {
                out.prefetch.push(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn decides_as_affinity_without_tiers() {
        let reqs = requests(&[0, 1, 2, 1]);
        let inst = instances(&[Some(1), None], &[false, false]);
        let shape = Shape {
            instances: 2,
            tenants: 3,
        };
        let ours = arrive_all_then_decide(&mut TierAffinity::new(shape), &reqs, &inst, 0);
        let theirs = arrive_all_then_decide(
            &mut Affinity::new(shape, AffinityOptions::default()),
            &reqs,
            &inst,
            0,
        );
        assert_eq!(ours, theirs);
    }
}
