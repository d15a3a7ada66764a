//! The ledger: what a dispatch, a load and a completion mean, in one place.
//!
//! The event simulator ([`crate::engine`]) and the live backend (`ptm-live`: replay and serve)
//! both keep their books here, so a decision means the same thing in both worlds and a live run
//! can be compared with a simulation cell by cell. The simulator is the ledger + an event queue
//! + sampled durations; live mode is the ledger + channels + the wall clock.
//!
//! The ledger owns the instances as schedulers see them ([`InstanceView`]), each request's state
//! (not arrived → waiting → running → done), the phases in progress and the [`Run`] record. It
//! checks every transition:
//!
//! - [`dispatch`](Ledger::dispatch): to an existing idle instance, of a waiting request, each
//!   used once per decision; it classifies the load the request needs ([`Load`]: none, switch,
//!   cold), counts it, moves the instance's residency to the tenant and sets the instance's
//!   estimated free time from the [`Estimates`];
//! - [`load_done`](Ledger::load_done) / [`complete`](Ledger::complete) / [`fail`](Ledger::fail):
//!   only on an instance in that phase (a live worker reporting another request is an error);
//!   phases become [`Span`]s, busy and loading time accrue, the GPU's busy time accrues while at
//!   least one instance is busy; a failed load leaves the instance holding nothing;
//! - [`check_stall`](Ledger::check_stall): requests wait, every instance is idle and nothing
//!   else will happen — an error, never an endless loop;
//! - [`finish`](Ledger::finish): conservation — every request completed exactly once.
//!
//! Requests are numbered densely in arrival order. A server that runs forever calls
//! [`compact`](Ledger::compact) to forget the finished prefix, so its memory is bounded by the
//! requests in flight; ids keep increasing (wrapping after 2³² requests).

mod record;

pub use record::{InstanceStats, Load, Run, Span, SpanKind};

use crate::error::{Error, Result};
use crate::estimates::Estimates;
use crate::scheduler::{Dispatch, InstanceView};
use crate::time::Nanos;
use crate::workload::{Request, RequestId, TenantId};
use serde::{Deserialize, Serialize};

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotArrived,
    Waiting,
    Running,
    Done,
}

/// The phase an instance is in.
#[derive(Debug, Clone, Copy)]
struct Phase {
    request: RequestId,
    kind: SpanKind,
    start_ns: Nanos,
    load: Load,
}

/// A dispatch the ledger accepted: what the backend must now do on `instance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The instance.
    pub instance: u32,
    /// The request.
    pub request: RequestId,
    /// Its tenant.
    pub tenant: TenantId,
    /// The tenant the instance held before (what a switch replaces).
    pub from: Option<TenantId>,
    /// The load before its inference.
    pub load: Load,
}

/// The books of one run (see the module documentation).
#[derive(Debug)]
pub struct Ledger {
    policy: &'static str,
    views: Vec<InstanceView>,
    phases: Vec<Option<Phase>>,
    state: Vec<State>,
    first_id: RequestId,
    run: Run,
    busy: usize,
    busy_since_ns: Nanos,
    waiting: usize,
    completed: usize,
    failed: usize,
}

impl Ledger {
    /// Books for `policy` (named in errors) with instances holding `residency` before time 0,
    /// `tenants` tenants and `requests` requests known in advance (more can be added with
    /// [`push_request`](Self::push_request)); `timeline` records every phase.
    pub fn new(
        policy: &'static str,
        residency: &[Option<TenantId>],
        tenants: usize,
        requests: usize,
        timeline: bool,
    ) -> Self {
        let mut run = Run {
            start_ns: vec![0; requests],
            end_ns: vec![0; requests],
            served_by: vec![0; requests],
            load: vec![Load::None; requests],
            instances: vec![InstanceStats::default(); residency.len()],
            tenant_loads: vec![0; tenants],
            gpu_busy_ns: 0,
            timeline: timeline.then(Vec::new),
        };
        let views = residency
            .iter()
            .zip(&mut run.instances)
            .map(|(&resident, stats)| {
                stats.preloaded = resident;
                InstanceView {
                    resident,
                    ..InstanceView::default()
                }
            })
            .collect();
        Ledger {
            policy,
            views,
            phases: vec![None; residency.len()],
            state: vec![State::NotArrived; requests],
            first_id: 0,
            run,
            busy: 0,
            busy_since_ns: 0,
            waiting: 0,
            completed: 0,
            failed: 0,
        }
    }

    /// The instances as schedulers see them.
    pub fn views(&self) -> &[InstanceView] {
        &self.views
    }

    /// Requests waiting for an instance.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Busy instances.
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Requests completed (failed ones included).
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// Requests that failed (see [`fail`](Self::fail)).
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// The id of the oldest request still on the books (0 unless [`compact`](Self::compact)ed).
    pub fn first_id(&self) -> RequestId {
        self.first_id
    }

    /// What has been recorded so far.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The request instance `i` is serving and the load it began with, if busy.
    pub fn serving(&self, i: usize) -> Option<(RequestId, Load)> {
        self.phases.get(i)?.map(|p| (p.request, p.load))
    }

    /// Whether instance `i` is loading weights.
    pub fn loading(&self, i: usize) -> bool {
        matches!(self.phases.get(i), Some(Some(p)) if p.kind != SpanKind::Inference)
    }

    /// Adds a request that was not known in advance; returns its id (the next one).
    pub fn push_request(&mut self) -> RequestId {
        self.state.push(State::NotArrived);
        self.run.push_request();
        self.first_id
            .wrapping_add((self.state.len() - 1) as RequestId)
    }

    fn index(&self, id: RequestId) -> Option<usize> {
        let i = id.wrapping_sub(self.first_id) as usize;
        (i < self.state.len()).then_some(i)
    }

    /// Request `id` arrived and now waits.
    pub fn arrive(&mut self, now_ns: Nanos, id: RequestId) -> Result<()> {
        match self.index(id) {
            Some(r) if self.state[r] == State::NotArrived => {
                self.state[r] = State::Waiting;
                self.waiting += 1;
                Ok(())
            }
            _ => Err(self.broken(now_ns, format!("request {id} arrived twice or is unknown"))),
        }
    }

    /// Starts the dispatches of one decision at `now_ns`, after checking all of them; pushes
    /// what the backend must do into `starts`. `requests` holds the requests from
    /// [`first_id`](Self::first_id) on. Every dispatch counts as busy from now, so phases
    /// started at this instant see the same number of busy instances.
    pub fn dispatch(
        &mut self,
        now_ns: Nanos,
        decision: &[Dispatch],
        requests: &[Request],
        estimates: &Estimates,
        starts: &mut Vec<Start>,
    ) -> Result<()> {
        for d in decision {
            let i = d.instance as usize;
            if i >= self.views.len() || self.views[i].busy {
                return Err(self.broken(now_ns, format!("dispatch {d:?}: instance is not idle")));
            }
            match self.index(d.request) {
                Some(r) if self.state[r] == State::Waiting && r < requests.len() => {
                    self.state[r] = State::Running;
                }
                _ => {
                    return Err(
                        self.broken(now_ns, format!("dispatch {d:?}: request is not waiting"))
                    )
                }
            }
            self.views[i].busy = true;
            self.waiting -= 1;
            self.set_busy(now_ns, self.busy + 1);
        }
        for d in decision {
            let (i, id) = (d.instance as usize, d.request);
            let r = id.wrapping_sub(self.first_id) as usize;
            let tenant = requests[r].tenant;
            let view = &mut self.views[i];
            let from = view.resident;
            let load = Load::needed(from, tenant);
            let estimate_ns = estimates.load_ns(view.resident, tenant) + estimates.service_ns(id);
            view.resident = Some(tenant);
            view.free_at_est_ns = now_ns + estimate_ns;
            let stats = &mut self.run.instances[i];
            match load {
                Load::None => {}
                Load::Switch => stats.switches += 1,
                Load::Cold => stats.cold_loads += 1,
            }
            if load != Load::None {
                self.run.tenant_loads[tenant as usize] += 1;
            }
            self.run.start_ns[r] = now_ns;
            self.run.served_by[r] = d.instance;
            self.run.load[r] = load;
            self.phases[i] = Some(Phase {
                request: id,
                kind: load.span().unwrap_or(SpanKind::Inference),
                start_ns: now_ns,
                load,
            });
            starts.push(Start {
                instance: d.instance,
                request: id,
                tenant,
                from,
                load,
            });
        }
        Ok(())
    }

    /// Instance `i` finished loading the weights of the request it serves; its inference
    /// starts now. Returns the request.
    pub fn load_done(&mut self, now_ns: Nanos, i: usize) -> Result<RequestId> {
        let phase = match self.phases.get(i).copied().flatten() {
            Some(p) if p.kind != SpanKind::Inference => p,
            _ => {
                return Err(self.broken(
                    now_ns,
                    format!("instance {i} reported a load it was not doing"),
                ))
            }
        };
        self.span(i, &phase, now_ns);
        self.phases[i] = Some(Phase {
            kind: SpanKind::Inference,
            start_ns: now_ns,
            ..phase
        });
        Ok(phase.request)
    }

    /// Instance `i` completed the request it serves (its inference phase) and is idle.
    /// Returns the request.
    pub fn complete(&mut self, now_ns: Nanos, i: usize) -> Result<RequestId> {
        match self.phases.get(i).copied().flatten() {
            Some(p) if p.kind == SpanKind::Inference => Ok(self.end(now_ns, i, p, false)),
            _ => Err(self.broken(
                now_ns,
                format!("instance {i} completed an inference it was not running"),
            )),
        }
    }

    /// The request instance `i` serves failed in whatever phase it was; it counts as answered
    /// (and as failed). A failed load leaves the instance holding nothing.
    pub fn fail(&mut self, now_ns: Nanos, i: usize) -> Result<RequestId> {
        match self.phases.get(i).copied().flatten() {
            Some(p) => {
                if p.kind != SpanKind::Inference {
                    self.views[i].resident = None;
                }
                self.failed += 1;
                Ok(self.end(now_ns, i, p, true))
            }
            None => Err(self.broken(
                now_ns,
                format!("instance {i} failed a request it was not serving"),
            )),
        }
    }

    fn end(&mut self, now_ns: Nanos, i: usize, phase: Phase, failed: bool) -> RequestId {
        self.span(i, &phase, now_ns);
        self.phases[i] = None;
        let r = phase.request.wrapping_sub(self.first_id) as usize;
        if !failed {
            self.run.instances[i].requests += 1;
        }
        self.run.end_ns[r] = now_ns;
        self.state[r] = State::Done;
        self.completed += 1;
        self.views[i].busy = false;
        self.set_busy(now_ns, self.busy - 1);
        phase.request
    }

    fn span(&mut self, i: usize, phase: &Phase, now_ns: Nanos) {
        let elapsed = now_ns - phase.start_ns;
        let stats = &mut self.run.instances[i];
        stats.busy_ns += elapsed;
        if phase.kind != SpanKind::Inference {
            stats.loading_ns += elapsed;
        }
        if let Some(timeline) = &mut self.run.timeline {
            timeline.push(Span {
                instance: i as u32,
                kind: phase.kind,
                request: phase.request,
                start_ns: phase.start_ns,
                end_ns: now_ns,
            });
        }
    }

    fn set_busy(&mut self, now_ns: Nanos, busy: usize) {
        if self.busy == 0 && busy > 0 {
            self.busy_since_ns = now_ns;
        } else if self.busy > 0 && busy == 0 {
            self.run.gpu_busy_ns += now_ns - self.busy_since_ns;
        }
        self.busy = busy;
    }

    /// With nothing else to happen (`more_to_come` false), requests that wait while every
    /// instance is idle are a stall: an error naming the policy.
    pub fn check_stall(&self, now_ns: Nanos, more_to_come: bool) -> Result<()> {
        if !more_to_come && self.busy == 0 && self.waiting > 0 {
            return Err(self.broken(
                now_ns,
                format!(
                    "stalled: {} requests wait, every instance is idle and nothing else will happen",
                    self.waiting
                ),
            ));
        }
        Ok(())
    }

    /// Forgets the finished requests at the front (once they are at least half of the books and
    /// more than a few), for a server that runs forever; returns how many were dropped, so the
    /// caller drops the same from its own per-request records.
    pub fn compact(&mut self) -> usize {
        const MIN: usize = 1024;
        let done = self.state.iter().take_while(|&&s| s == State::Done).count();
        if done < MIN || done * 2 < self.state.len() {
            return 0;
        }
        self.state.drain(..done);
        self.run.drop_first(done);
        self.first_id = self.first_id.wrapping_add(done as RequestId);
        done
    }

    /// Ends the run at `now_ns`: every request must have completed exactly once.
    pub fn finish(self, now_ns: Nanos) -> Result<Run> {
        if let Some(r) = self.state.iter().position(|&s| s != State::Done) {
            let id = self.first_id.wrapping_add(r as RequestId);
            return Err(self.broken(
                now_ns,
                format!(
                    "run ended with {} of {} requests completed; request {id} is {:?}",
                    self.completed,
                    self.state.len(),
                    self.state[r]
                ),
            ));
        }
        debug_assert_eq!(self.completed, self.state.len());
        debug_assert_eq!(self.busy, 0);
        Ok(self.run)
    }

    /// A broken rule, as an error naming the policy and the time.
    pub fn broken(&self, now_ns: Nanos, message: String) -> Error {
        Error::Scheduler {
            policy: self.policy.into(),
            now_ns,
            message,
        }
    }
}

/// What the instances hold before time 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Preload {
    /// Whatever the policy asks for (OMLS: FastPTM's start; the others: nothing).
    #[default]
    Policy,
    /// Nothing: every instance's first load is a cold load.
    Empty,
    /// FastPTM's start for every policy: instance 0 empty, instance i ≥ 1 holding tenant i.
    FastPtm,
}

/// What each of `instances` instances holds before time 0 under `preload` (one entry per
/// instance); refuses a policy's preload that names a missing instance or tenant.
pub fn initial_residency(
    preload: Preload,
    scheduler: &dyn crate::scheduler::Scheduler,
    instances: usize,
    tenants: usize,
) -> Result<Vec<Option<TenantId>>> {
    let mut held: Vec<Option<TenantId>> = match preload {
        Preload::Policy => scheduler.preload(),
        Preload::Empty => Vec::new(),
        Preload::FastPtm => (0..instances)
            .map(|i| (i >= 1 && i < tenants).then_some(i as TenantId))
            .collect(),
    };
    if held.len() > instances || held.iter().flatten().any(|&t| t as usize >= tenants) {
        return Err(Error::Scheduler {
            policy: scheduler.name().into(),
            now_ns: 0,
            message: format!(
                "preload {held:?} does not fit {instances} instances and {tenants} tenants"
            ),
        });
    }
    held.resize(instances, None);
    Ok(held)
}

#[cfg(test)]
mod tests;
