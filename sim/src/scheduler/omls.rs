//! `omls`: FastPTM's online multi-list scheduler, as its published code behaves.
//!
//! - One FIFO list per tenant ("type"). The scheduler runs every `tick_ms` (10 ms).
//! - *Resident* tenants are those the instances hold, busy or idle.
//! - A *cache* holds at most one head-of-line request per non-resident tenant. It is refilled
//!   only when empty: for each tenant in index order that is not resident and has waiting
//!   requests, that list's head moves into the cache. Cached requests stay there even after
//!   their tenant becomes resident (the cache goes stale, as in FastPTM).
//! - Priority of a cached request = deadline − age − `est_inference_ms` − `est_load_ms` −
//!   `switch_threshold_ms`; negative = urgent. With FastPTM's constants a request turns urgent
//!   at age ≈ 1.92 s, and since every tenant shares them this is oldest-first.
//! - If no instance is idle, nothing happens this tick.
//! - **Urgent branch**: if the most urgent cached request is urgent (ties: lowest tenant), it
//!   goes to the lowest-numbered idle instance (a forced switch); one dispatch this tick.
//! - **Affinity branch** otherwise, idle instances in index order: one holding nothing takes
//!   the first cached request (lowest tenant, not oldest); one holding tenant `c` takes the head
//!   of list `c` if any (no switch), else the first cached request (a switch); else stays idle.
//! - With `preload` (FastPTM's start), instance 0 holds nothing and instance i ≥ 1 holds
//!   tenant i.
//! - Beyond FastPTM: with cross-request batching on, a dispatched request takes the requests
//!   behind it in its tenant's list along, while the batch's rows fit.

use super::{Decision, Dispatch, Scheduler, Shape, View};
use crate::error::{Error, Result};
use crate::limits::{self, MAX_COST_MS, MIN_TICK_MS};
use crate::time::{ms_to_ns, Nanos};
use crate::workload::{RequestId, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// OMLS's constants, FastPTM's by default. Each is at most 10 years; `tick_ms` lies between
/// 1 µs and one hour ([`crate::limits`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OmlsOptions {
    /// Scheduler period, milliseconds.
    pub tick_ms: f64,
    /// Estimated inference of a request in the priority (FastPTM: 16 × 8 ms).
    pub est_inference_ms: f64,
    /// Estimated load in the priority.
    pub est_load_ms: f64,
    /// Switch threshold in the priority.
    pub switch_threshold_ms: f64,
    /// Start as FastPTM does: instance 0 empty, instance i ≥ 1 holding tenant i.
    pub preload: bool,
}

impl Default for OmlsOptions {
    fn default() -> Self {
        OmlsOptions {
            tick_ms: 10.0,
            est_inference_ms: 128.0,
            est_load_ms: 150.0,
            switch_threshold_ms: 800.0,
            preload: true,
        }
    }
}

/// FastPTM's online multi-list scheduler.
#[derive(Debug)]
pub struct Omls {
    options: OmlsOptions,
    shape: Shape,
    tick_ns: Nanos,
    /// Priority offset: est. inference + est. load + threshold.
    margin_ns: Nanos,
    lists: Vec<VecDeque<RequestId>>,
    /// Tenants with waiting requests in their list, in index order.
    nonempty: BTreeSet<TenantId>,
    /// The cache: tenant → its cached request.
    cache: BTreeMap<TenantId, RequestId>,
    /// The cache by (absolute deadline, tenant): its first is the most urgent.
    cache_by_due: BTreeSet<(Nanos, TenantId)>,
}

impl Omls {
    /// OMLS for `shape` with `options`.
    pub fn new(shape: Shape, options: OmlsOptions) -> Result<Self> {
        for (field, v) in [
            ("tick_ms", options.tick_ms),
            ("est_inference_ms", options.est_inference_ms),
            ("est_load_ms", options.est_load_ms),
            ("switch_threshold_ms", options.switch_threshold_ms),
        ] {
            limits::time_ms(&format!("policy_options.omls.{field}"), v)?;
        }
        if !(options.tick_ms >= MIN_TICK_MS && options.tick_ms <= MAX_COST_MS) {
            return Err(Error::invalid(
                "policy_options.omls.tick_ms",
                format!(
                    "{:?}: expected a period of {MIN_TICK_MS} ms (1 µs) to {MAX_COST_MS} ms (one hour)",
                    options.tick_ms
                ),
            ));
        }
        Ok(Omls {
            tick_ns: ms_to_ns(options.tick_ms),
            margin_ns: ms_to_ns(
                options.est_inference_ms + options.est_load_ms + options.switch_threshold_ms,
            ),
            options,
            shape,
            lists: vec![VecDeque::new(); shape.tenants],
            nonempty: BTreeSet::new(),
            cache: BTreeMap::new(),
            cache_by_due: BTreeSet::new(),
        })
    }

    fn refill(&mut self, view: &View<'_>) {
        let resident: Vec<TenantId> = view.instances.iter().filter_map(|i| i.resident).collect();
        let movable: Vec<TenantId> = self
            .nonempty
            .iter()
            .copied()
            .filter(|t| !resident.contains(t))
            .collect();
        for t in movable {
            let list = &mut self.lists[t as usize];
            let id = list.pop_front().expect("nonempty lists have a head");
            if list.is_empty() {
                self.nonempty.remove(&t);
            }
            self.cache.insert(t, id);
            self.cache_by_due.insert((view.request(id).due_ns(), t));
        }
    }

    fn take_cached(&mut self, tenant: TenantId, view: &View<'_>) -> RequestId {
        let id = self.cache.remove(&tenant).expect("cached tenant");
        self.cache_by_due
            .remove(&(view.request(id).due_ns(), tenant));
        id
    }

    /// With batching on (not in FastPTM), the requests behind `first` in its tenant's list join
    /// its batch while they fit.
    fn join_batch(&mut self, view: &View<'_>, instance: u32, first: RequestId, out: &mut Decision) {
        let t = view.request(first).tenant;
        super::fill_batch(view, instance, first, &mut self.lists[t as usize], out);
        if self.lists[t as usize].is_empty() {
            self.nonempty.remove(&t);
        }
    }

    fn take_head(&mut self, tenant: TenantId) -> Option<RequestId> {
        let list = &mut self.lists[tenant as usize];
        let id = list.pop_front()?;
        if list.is_empty() {
            self.nonempty.remove(&tenant);
        }
        Some(id)
    }
}

impl Scheduler for Omls {
    fn name(&self) -> &'static str {
        "omls"
    }

    fn on_arrival(&mut self, id: RequestId, view: &View<'_>) {
        let t = view.request(id).tenant;
        self.lists[t as usize].push_back(id);
        self.nonempty.insert(t);
    }

    fn decide(&mut self, view: &View<'_>, out: &mut Decision) {
        let idle: Vec<u32> = view.idle().collect();
        if idle.is_empty() {
            return;
        }
        if self.cache.is_empty() {
            self.refill(view);
        }
        // Urgent branch: one forced dispatch to the lowest-numbered idle instance.
        if let Some(&(due, tenant)) = self.cache_by_due.first() {
            let priority = due as i128 - view.now_ns as i128 - self.margin_ns as i128;
            if priority < 0 {
                let request = self.take_cached(tenant, view);
                out.push(Dispatch {
                    instance: idle[0],
                    request,
                });
                self.join_batch(view, idle[0], request, out);
                return;
            }
        }
        // Affinity branch.
        for instance in idle {
            let own = view.instances[instance as usize]
                .resident
                .and_then(|c| self.take_head(c));
            let request = match own {
                Some(id) => id,
                None => match self.cache.first_key_value() {
                    Some((&t, _)) => self.take_cached(t, view),
                    None => continue,
                },
            };
            out.push(Dispatch { instance, request });
            self.join_batch(view, instance, request, out);
        }
    }

    fn tick_ns(&self) -> Option<Nanos> {
        Some(self.tick_ns)
    }

    fn preload(&self) -> Vec<Option<TenantId>> {
        if !self.options.preload {
            return Vec::new();
        }
        (0..self.shape.instances)
            .map(|i| (i >= 1 && i < self.shape.tenants).then_some(i as TenantId))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn omls(instances: usize, tenants: usize) -> Omls {
        Omls::new(Shape { instances, tenants }, OmlsOptions::default()).unwrap()
    }

    fn decide(
        s: &mut Omls,
        now_ns: Nanos,
        inst: &[super::super::InstanceView],
        reqs: &[crate::workload::Request],
    ) -> Vec<Dispatch> {
        decide_at(s, reqs, inst, now_ns)
    }

    fn arrive(s: &mut Omls, ids: std::ops::Range<u32>, reqs: &[crate::workload::Request]) {
        let est = estimates(reqs.len());
        let inst = instances(&[], &[]);
        let view = View {
            now_ns: 0,
            instances: &inst,
            requests: reqs,
            first_id: 0,
            estimates: &est,
            residency: &crate::ledger::Residency::fastptm(),
            batching: None,
            copy_free_at_est_ns: 0,
        };
        for id in ids {
            s.on_arrival(id, &view);
        }
    }

    #[test]
    fn preload_is_fastptms() {
        assert_eq!(omls(4, 12).preload(), vec![None, Some(1), Some(2), Some(3)]);
        assert_eq!(omls(4, 2).preload(), vec![None, Some(1), None, None]);
    }

    #[test]
    fn affinity_branch_prefers_own_list_then_lowest_cached_letter() {
        // Tenants: 2 (oldest), 1, 0, 1. Instance 0 holds 1, instance 1 holds nothing.
        let reqs = requests(&[2, 1, 0, 1]);
        let mut s = omls(2, 3);
        arrive(&mut s, 0..4, &reqs);
        let inst = instances(&[Some(1), None], &[false, false]);
        let out = decide(&mut s, 10_000_000, &inst, &reqs);
        // Cache = {0: req 2, 2: req 0} (tenant 1 is resident). Instance 0 takes its own list's
        // head (req 1); instance 1 takes the lowest cached letter (tenant 0 = req 2), not the
        // oldest (req 0).
        assert_eq!(out, vec![d(0, 1), d(1, 2)]);
    }

    #[test]
    fn urgent_branch_forces_one_dispatch_to_lowest_idle() {
        let reqs = requests(&[2, 1, 1]);
        let mut s = omls(3, 3);
        arrive(&mut s, 0..3, &reqs);
        // Instance 0 busy, 1 idle holding tenant 1 (has work), 2 idle holding 1 too.
        let inst = instances(&[Some(0), Some(1), Some(1)], &[true, false, false]);
        // Request 0 (tenant 2) arrived at 0: urgent once age > 3000 − 1078 = 1922 ms.
        let out = decide(&mut s, 1_921_000_000, &inst, &reqs);
        assert_eq!(
            out.len(),
            2,
            "not urgent yet: affinity branch serves tenant 1 twice"
        );
        assert!(out.iter().all(|d| reqs[d.request as usize].tenant == 1));
        let mut s = omls(3, 3);
        arrive(&mut s, 0..3, &reqs);
        let out = decide(&mut s, 1_923_000_000, &inst, &reqs);
        assert_eq!(out, vec![d(1, 0)], "one forced switch to the lowest idle");
    }

    #[test]
    fn cache_is_refilled_only_when_empty() {
        let reqs = requests(&[0, 1, 0, 2, 1]);
        let mut s = omls(1, 3);
        arrive(&mut s, 0..3, &reqs);
        let busy = instances(&[None], &[true]);
        let idle = instances(&[None], &[false]);
        // No idle instance: nothing happens, not even a refill.
        assert!(decide(&mut s, 0, &busy, &reqs).is_empty());
        assert!(s.cache.is_empty());
        // Idle: refill caches heads of tenants 0 and 1; instance takes tenant 0's.
        assert_eq!(decide(&mut s, 0, &idle, &reqs), vec![d(0, 0)]);
        assert_eq!(s.cache.values().copied().collect::<Vec<_>>(), vec![1]);
        // Tenant 2 arrives; the cache (still holding tenant 1's) is not refilled, so tenant 2
        // and tenant 0's second request wait in their lists.
        arrive(&mut s, 3..5, &reqs);
        let holding_0 = instances(&[Some(0)], &[false]);
        assert_eq!(decide(&mut s, 0, &holding_0, &reqs), vec![d(0, 2)]);
        assert_eq!(s.cache.len(), 1);
        let holding_0 = instances(&[Some(0)], &[false]);
        assert_eq!(decide(&mut s, 0, &holding_0, &reqs), vec![d(0, 1)]);
        // Now empty: the next tick refills with tenant 1's second request and tenant 2's.
        let holding_1 = instances(&[Some(1)], &[true]);
        assert!(decide(&mut s, 0, &holding_1, &reqs).is_empty());
        let holding_1 = instances(&[Some(1)], &[false]);
        assert_eq!(decide(&mut s, 0, &holding_1, &reqs), vec![d(0, 4)]);
        assert_eq!(s.cache.values().copied().collect::<Vec<_>>(), vec![3]);
    }
}
