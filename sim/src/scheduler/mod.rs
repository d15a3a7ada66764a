//! Schedulers: who runs what, when. One small trait, one policy per file, chosen by name.
//!
//! The engine tells a scheduler about each arrival ([`Scheduler::on_arrival`]) and asks it to
//! [`decide`](Scheduler::decide) once per instant at which something changed (or, for a policy
//! with a [`tick`](Scheduler::tick_ns), only at its ticks). A decision is a list of
//! [`Dispatch`]es, each starting one waiting request on one idle instance; the engine performs
//! the switch the request needs and checks the rules (idle instance, waiting request, each
//! used once). The [`View`] shows the instant: instances, requests and cost estimates (means
//! from the profile, never the sampled future).
//!
//! | name | policy |
//! | --- | --- |
//! | `fcfs-rr` | FastPTM's FCFS: arrivals dealt round-robin to per-instance FIFO queues |
//! | `fcfs-mod` | per-instance FIFOs, tenant index mod instances (FastPTM's switch tests) |
//! | `fcfs` | one global FIFO, lowest-numbered idle instance first |
//! | `omls` | FastPTM's online multi-list scheduler, as its code behaves |
//! | `edf` | earliest deadline first, preferring an idle instance that holds the tenant |
//! | `sjf` | shortest estimated job first, the needed switch included |
//! | `affinity` | ours: per-tenant queues, own tenant first unless another must go now |
//! | `deadline-batch` | ours, Clockwork-style: predicted finish vs deadline picks tenant and batch; lost requests step aside |
//! | `tier-affinity` | ours: `affinity` over the weight tiers, prefetching urgent and popular tenants into the GPU pool |
//! | `pets` | PetS's coordinated batching: one FIFO, batches mixing parameter-efficient tenants |
//! | `deadline-mixed` | ours: deadline order over all tenants, mixed batches sized by predicted finish, lost requests step aside |
//!
//! Policies that batch (`fcfs`, `omls`, `affinity`, `deadline-batch`, `tier-affinity`, `pets`,
//! `deadline-mixed`) join waiting requests into one dispatch when the scenario turns batching
//! on: of one tenant, or — `pets` and `deadline-mixed` with parameter-efficient tenants — of
//! several.

mod affinity;
mod deadline_batch;
mod deadline_mixed;
mod edf;
mod fcfs;
mod fcfs_mod;
mod fcfs_rr;
mod omls;
mod pets;
mod sjf;
mod tier_affinity;

pub use affinity::{Affinity, AffinityOptions};
pub use deadline_batch::DeadlineBatch;
pub use deadline_mixed::DeadlineMixed;
pub use edf::Edf;
pub use fcfs::Fcfs;
pub use fcfs_mod::FcfsMod;
pub use fcfs_rr::FcfsRr;
pub use omls::{Omls, OmlsOptions};
pub use pets::Pets;
pub use sjf::Sjf;
pub use tier_affinity::TierAffinity;

use crate::error::{Error, Result};
use crate::estimates::Estimates;
pub use crate::ledger::{Dispatch, InstanceView};
use crate::ledger::{Load, Residency};
use crate::time::Nanos;
use crate::workload::{Request, RequestId, TenantId};
use serde::{Deserialize, Serialize};

/// Every policy name, in the order reports list them.
pub const POLICIES: &[&str] = &[
    "fcfs-rr",
    "fcfs-mod",
    "fcfs",
    "omls",
    "edf",
    "sjf",
    "affinity",
    "deadline-batch",
    "tier-affinity",
    "pets",
    "deadline-mixed",
];

/// What a scheduler decides at one instant: dispatches (several to one instance form a batch,
/// when batching is on), tenants to bring into the GPU pool ahead of need, and when to be asked
/// again if nothing else happens (a batching window closing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Start these requests.
    pub dispatches: Vec<Dispatch>,
    /// Copy these tenants from the host into the GPU pool (ignored without a pool).
    pub prefetch: Vec<TenantId>,
    /// Decide again at this time at the latest.
    pub wake_at_ns: Option<Nanos>,
}

impl Decision {
    /// Empties the decision for the next instant.
    pub fn clear(&mut self) {
        self.dispatches.clear();
        self.prefetch.clear();
        self.wake_at_ns = None;
    }

    /// Asks to decide again at `t` at the latest.
    pub fn wake_at(&mut self, t: Nanos) {
        self.wake_at_ns = Some(self.wake_at_ns.map_or(t, |w| w.min(t)));
    }
}

impl std::ops::Deref for Decision {
    type Target = Vec<Dispatch>;
    fn deref(&self) -> &Vec<Dispatch> {
        &self.dispatches
    }
}

impl std::ops::DerefMut for Decision {
    fn deref_mut(&mut self) -> &mut Vec<Dispatch> {
        &mut self.dispatches
    }
}

/// Cross-request batching as a policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most rows (samples) in one batch.
    pub max_rows: u32,
    /// How long a partial batch may wait for more.
    pub max_wait_ns: Nanos,
}

/// The instant a scheduler decides in.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Simulated time.
    pub now_ns: Nanos,
    /// The instances, by index.
    pub instances: &'a [InstanceView],
    /// The requests of the run from `first_id` on, by id (only arrived ones are ever handed
    /// to a scheduler).
    pub requests: &'a [Request],
    /// The id of `requests[0]` (0 in a simulation; a server forgets finished requests).
    pub first_id: RequestId,
    /// Mean costs.
    pub estimates: &'a Estimates,
    /// What the GPU pool and host cache hold.
    pub residency: &'a Residency,
    /// Cross-request batching, when on.
    pub batching: Option<BatchLimits>,
    /// When the host→GPU copy engine is estimated to be done with the copies already booked
    /// (the ledger's [`copy_free_at_est_ns`](crate::ledger::Ledger::copy_free_at_est_ns)).
    pub copy_free_at_est_ns: Nanos,
}

impl View<'_> {
    /// The request `id`.
    pub fn request(&self, id: RequestId) -> &Request {
        &self.requests[id.wrapping_sub(self.first_id) as usize]
    }

    /// Indices of idle instances, in order.
    pub fn idle(&self) -> impl Iterator<Item = u32> + '_ {
        self.instances
            .iter()
            .enumerate()
            .filter(|(_, i)| !i.busy)
            .map(|(i, _)| i as u32)
    }

    /// Estimated inference time of request `id` on one busy instance.
    pub fn est_service_ns(&self, id: RequestId) -> Nanos {
        self.estimates.service_ns(id)
    }

    /// The load `instance` needs before it can serve `tenant` (none, from the pool, a switch
    /// from the host, cold).
    pub fn load_needed(&self, instance: u32, tenant: TenantId) -> Load {
        self.residency
            .load_needed(self.instances[instance as usize].resident, tenant)
    }

    /// How long a copy from the host issued now would wait behind the copies already on the
    /// copy engine (estimated; 0 when it is idle).
    pub fn copy_wait_ns(&self) -> Nanos {
        self.copy_free_at_est_ns.saturating_sub(self.now_ns)
    }

    /// Estimated load before `instance` can serve `tenant`: 0 if it holds it, else a load from
    /// the pool, a switch or a cold load.
    pub fn est_load_ns(&self, instance: u32, tenant: TenantId) -> Nanos {
        let from = self.instances[instance as usize].resident;
        self.estimates
            .load_kind_ns(self.load_needed(instance, tenant), from, tenant)
    }
}

/// After dispatching `first` to `instance`, joins the requests at the front of `queue` (all of
/// `first`'s tenant) to its batch while the rows fit the batching limit; returns how many
/// joined. Without batching, none.
pub fn fill_batch(
    view: &View<'_>,
    instance: u32,
    first: RequestId,
    queue: &mut std::collections::VecDeque<RequestId>,
    out: &mut Decision,
) -> usize {
    let Some(limits) = view.batching else {
        return 0;
    };
    let mut rows = view.request(first).samples as u64;
    let mut joined = 0;
    while let Some(&next) = queue.front() {
        let r = view.request(next);
        debug_assert_eq!(r.tenant, view.request(first).tenant, "one tenant's queue");
        if rows + r.samples as u64 > limits.max_rows as u64 {
            break;
        }
        rows += r.samples as u64;
        queue.pop_front();
        out.push(Dispatch {
            instance,
            request: next,
        });
        joined += 1;
    }
    joined
}

/// Time until an instance other than `instance` (and not among `taken`) that holds `tenant`
/// would have cleared `queue` (the tenant's waiting requests), shared among its holders; `None`
/// if no other instance holds it.
pub fn holders_backlog_ns(
    view: &View<'_>,
    tenant: TenantId,
    instance: u32,
    taken: &[u32],
    queue: &std::collections::VecDeque<RequestId>,
) -> Option<Nanos> {
    let mut holders = 0u64;
    let mut soonest = Nanos::MAX;
    for (j, inst) in view.instances.iter().enumerate() {
        if j as u32 != instance && inst.resident == Some(tenant) && !taken.contains(&(j as u32)) {
            holders += 1;
            soonest = soonest.min(inst.free_at_est_ns.saturating_sub(view.now_ns));
        }
    }
    if holders == 0 {
        return None;
    }
    let per_request = queue.front().map_or(0, |&id| view.est_service_ns(id));
    Some(soonest + per_request * queue.len().saturating_sub(1) as u64 / holders)
}

/// A scheduling policy.
pub trait Scheduler {
    /// The policy's name (as [`by_name`] takes it).
    fn name(&self) -> &'static str;

    /// Request `id` arrived and now waits.
    fn on_arrival(&mut self, id: RequestId, view: &View<'_>);

    /// Push dispatches for idle instances into `out` (and, optionally, prefetches and a
    /// wake-up). Called only when an instance is idle and a request waits.
    fn decide(&mut self, view: &View<'_>, out: &mut Decision);

    /// For a periodic policy, its period: [`decide`](Self::decide) is then called only at its
    /// ticks (0, p, 2p, …), after all other events of that instant.
    fn tick_ns(&self) -> Option<Nanos> {
        None
    }

    /// Tenants the instances hold before time 0 (the engine's `Preload::Policy`).
    fn preload(&self) -> Vec<Option<TenantId>> {
        Vec::new()
    }
}

/// Options of the policies that have any, as a scenario's `policy_options` writes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyOptions {
    /// FastPTM's OMLS.
    pub omls: OmlsOptions,
    /// Ours.
    pub affinity: AffinityOptions,
}

/// How many instances and tenants a scheduler is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Instances on the GPU.
    pub instances: usize,
    /// Tenants in the workload.
    pub tenants: usize,
}

/// Builds the policy called `name`.
pub fn by_name(name: &str, options: &PolicyOptions, shape: Shape) -> Result<Box<dyn Scheduler>> {
    assert!(shape.instances > 0, "at least one instance");
    Ok(match name {
        "fcfs-rr" => Box::new(FcfsRr::new(shape)),
        "fcfs-mod" => Box::new(FcfsMod::new(shape)),
        "fcfs" => Box::new(Fcfs::new()),
        "omls" => Box::new(Omls::new(shape, options.omls.clone())?),
        "edf" => Box::new(Edf::new()),
        "sjf" => Box::new(Sjf::new(shape)),
        "affinity" => Box::new(Affinity::new(shape, options.affinity.clone())),
        "deadline-batch" => Box::new(DeadlineBatch::new(shape)),
        "tier-affinity" => Box::new(TierAffinity::new(shape)),
        "pets" => Box::new(Pets::new()),
        "deadline-mixed" => Box::new(DeadlineMixed::new()),
        _ => {
            return Err(Error::UnknownPolicy {
                name: name.to_string(),
                known: POLICIES.join(", "),
            })
        }
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! A hand-made instant for unit tests of policies.
    use super::*;
    use crate::estimates::Estimates;

    /// Requests of tenants `tenants[i]` arriving at `i` ms with a 3 s deadline.
    pub fn requests(tenants: &[u32]) -> Vec<Request> {
        tenants
            .iter()
            .enumerate()
            .map(|(i, &t)| Request {
                arrival_ns: i as u64 * 1_000_000,
                tenant: t,
                samples: 16,
                seq_len: 128,
                deadline_ns: 3_000_000_000,
            })
            .collect()
    }

    /// Estimates: 10 ms service, 100 ms switch, 1 s cold load.
    pub fn estimates(requests: usize) -> Estimates {
        Estimates::uniform(requests, 10_000_000, 100_000_000, 1_000_000_000)
    }

    /// Hands every request of `reqs` to `s` as an arrival, then lets it decide once at
    /// `now_ns` with instances `inst`.
    pub fn arrive_all_then_decide(
        s: &mut dyn Scheduler,
        reqs: &[Request],
        inst: &[InstanceView],
        now_ns: Nanos,
    ) -> Vec<Dispatch> {
        let est = estimates(reqs.len());
        let residency = Residency::fastptm();
        let view = View {
            now_ns,
            instances: inst,
            requests: reqs,
            first_id: 0,
            estimates: &est,
            residency: &residency,
            batching: None,
            copy_free_at_est_ns: 0,
        };
        for id in 0..reqs.len() as RequestId {
            s.on_arrival(id, &view);
        }
        decide_at(s, reqs, inst, now_ns)
    }

    /// Lets `s` decide once at `now_ns` with instances `inst`.
    pub fn decide_at(
        s: &mut dyn Scheduler,
        reqs: &[Request],
        inst: &[InstanceView],
        now_ns: Nanos,
    ) -> Vec<Dispatch> {
        let est = estimates(reqs.len());
        let residency = Residency::fastptm();
        let view = View {
            now_ns,
            instances: inst,
            requests: reqs,
            first_id: 0,
            estimates: &est,
            residency: &residency,
            batching: None,
            copy_free_at_est_ns: 0,
        };
        let mut out = Decision::default();
        s.decide(&view, &mut out);
        out.dispatches
    }

    /// Shorthand for a dispatch in assertions.
    pub fn d(instance: u32, request: RequestId) -> Dispatch {
        Dispatch { instance, request }
    }

    /// Instances holding `resident`, busy where `busy`.
    pub fn instances(resident: &[Option<u32>], busy: &[bool]) -> Vec<InstanceView> {
        resident
            .iter()
            .zip(busy)
            .map(|(&r, &b)| InstanceView {
                resident: r,
                busy: b,
                free_at_est_ns: 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_and_unknown_names_are_listed() {
        for name in POLICIES {
            let s = by_name(
                name,
                &PolicyOptions::default(),
                Shape {
                    instances: 2,
                    tenants: 3,
                },
            )
            .unwrap();
            assert_eq!(&s.name(), name);
        }
        let err = by_name(
            "lifo",
            &PolicyOptions::default(),
            Shape {
                instances: 1,
                tenants: 1,
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("lifo") && err.contains("omls"), "{err}");
    }
}
