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

mod copies;
mod pet;
mod preload;
mod residency;
mod tiers;

pub use crate::record::{InstanceStats, Load, Run, Span, SpanKind};
pub use preload::{initial_residency, Preload};
pub use residency::Residency;
pub use tiers::{Capacity, Eviction, Tiers};

use crate::error::{Error, Result};
use crate::estimates::Estimates;
use crate::time::Nanos;
use crate::workload::{Request, RequestId, TenantId};
use copies::CopyQueue;

/// Start `request` on `instance` (which must be idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    /// The instance.
    pub instance: u32,
    /// The request.
    pub request: RequestId,
}

/// One instance as a scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InstanceView {
    /// The tenant whose weights it holds (or is loading), if any.
    pub resident: Option<TenantId>,
    /// Whether it is running a request (loading or inferring).
    pub busy: bool,
    /// When it is expected to be free, from the profile's means (≤ now when idle).
    pub free_at_est_ns: Nanos,
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotArrived,
    Waiting,
    Running,
    Done,
}

/// The phase an instance is in; its batch is `Ledger::batches[instance]`.
#[derive(Debug, Clone, Copy)]
struct Phase {
    kind: SpanKind,
    start_ns: Nanos,
    load: Load,
    tenant: TenantId,
}

/// A batch the ledger accepted: what the backend must now do on `instance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The instance.
    pub instance: u32,
    /// The batch's first request ([`Ledger::batch`] lists them all).
    pub request: RequestId,
    /// Requests in the batch (1 without cross-request batching).
    pub requests: u32,
    /// Their tenant.
    pub tenant: TenantId,
    /// The tenant the instance held before (what a switch replaces).
    pub from: Option<TenantId>,
    /// The load before the inference.
    pub load: Load,
    /// The tenant's slot in the GPU pool, when it is in (a pool load reads it) or goes there
    /// (a load from the host or its file also writes it).
    pub pool_slot: Option<u32>,
    /// The tenant that left the pool to make room.
    pub evicted: Option<TenantId>,
}

/// A parameter-efficient tenant's delta in a mixed batch: the load it needed into the GPU's
/// delta pool, its slot there, and whom it evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PetLoad {
    /// The tenant.
    pub tenant: TenantId,
    /// None (its delta was in the pool), from the host, or from its file.
    pub load: Load,
    /// Its slot in the delta pool.
    pub slot: Option<u32>,
    /// The tenant whose delta left the pool to make room.
    pub evicted: Option<TenantId>,
}

/// The books of one run (see the module documentation).
#[derive(Debug)]
pub struct Ledger {
    policy: &'static str,
    views: Vec<InstanceView>,
    phases: Vec<Option<Phase>>,
    /// Per instance: the requests of its batch.
    batches: Vec<Vec<RequestId>>,
    /// Per instance: the delta loads of its mixed batch (parameter-efficient tenants).
    pet_loads: Vec<Vec<PetLoad>>,
    /// Per instance: when its last batch ended (completed or failed), if one has.
    ended_ns: Vec<Option<Nanos>>,
    state: Vec<State>,
    first_id: RequestId,
    residency: Residency,
    /// The host→GPU copy engine's booked copies (switches, prefetches).
    copies: CopyQueue,
    /// Most rows a batch of several requests may have (`None`: one request a dispatch).
    batch_rows: Option<u32>,
    batches_started: u32,
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
    /// [`push_request`](Self::push_request)); `timeline` records every phase. FastPTM's model
    /// until [`with_tiers`](Self::with_tiers) and [`with_batching`](Self::with_batching).
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
            batch: vec![0; requests],
            instances: vec![InstanceStats::default(); residency.len()],
            tenant_loads: vec![0; tenants],
            timeline: timeline.then(Vec::new),
            ..Run::default()
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
            batches: vec![Vec::new(); residency.len()],
            pet_loads: vec![Vec::new(); residency.len()],
            ended_ns: vec![None; residency.len()],
            state: vec![State::NotArrived; requests],
            first_id: 0,
            residency: Residency::fastptm(),
            copies: CopyQueue::new(residency.len()),
            batch_rows: None,
            batches_started: 0,
            run,
            busy: 0,
            busy_since_ns: 0,
            waiting: 0,
            completed: 0,
            failed: 0,
        }
    }

    /// Starts a prefetch of `tenant` into the GPU pool (see [`Residency::prefetch`]); its copy
    /// from the host is booked on the copy engine at its estimated cost.
    pub fn prefetch(
        &mut self,
        now_ns: Nanos,
        tenant: TenantId,
        estimates: &Estimates,
    ) -> Option<(u32, Option<TenantId>)> {
        let placed = self.residency.prefetch(now_ns, tenant)?;
        self.run.prefetches += 1;
        let copy_ns = estimates.load_kind_ns(Load::Switch, None, tenant);
        self.copies.book_prefetch(now_ns, tenant, copy_ns);
        Some(placed)
    }

    /// A prefetch of `tenant` landed at `now_ns`.
    pub fn prefetch_done(&mut self, now_ns: Nanos, tenant: TenantId) {
        self.residency.prefetch_done(tenant);
        self.copies.prefetch_done(now_ns, tenant);
    }

    /// When the host→GPU copy engine is estimated to be done with the copies booked so far
    /// (switches from the host and prefetches; ≤ now when it is idle): a host switch started
    /// now would begin its copy then. From the profile's means, re-anchored as copies end
    /// (see the `copies` module).
    pub fn copy_free_at_est_ns(&self) -> Nanos {
        self.copies.free_at_ns()
    }

    /// The same books over the tiers of `residency`.
    pub fn with_tiers(mut self, residency: Residency) -> Self {
        self.residency = residency;
        self
    }

    /// The same books where a decision may give one instance several requests of one tenant,
    /// up to `max_rows` rows together: one batch.
    pub fn with_batching(mut self, max_rows: u32) -> Self {
        self.batch_rows = Some(max_rows.max(1));
        self
    }

    /// The instances as schedulers see them.
    pub fn views(&self) -> &[InstanceView] {
        &self.views
    }

    /// What each tier holds.
    pub fn residency(&self) -> &Residency {
        &self.residency
    }

    /// Most rows of a batch when cross-request batching is on.
    pub fn batch_rows(&self) -> Option<u32> {
        self.batch_rows
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

    /// The batch instance `i` serves (empty when idle).
    pub fn batch(&self, i: usize) -> &[RequestId] {
        &self.batches[i]
    }

    /// The delta loads of instance `i`'s mixed batch (empty unless its tenants are
    /// parameter-efficient).
    pub fn pet_loads(&self, i: usize) -> &[PetLoad] {
        &self.pet_loads[i]
    }

    /// The first request of the batch instance `i` is serving and the load it began with.
    pub fn serving(&self, i: usize) -> Option<(RequestId, Load)> {
        let p = self.phases.get(i)?.as_ref()?;
        Some((self.batches[i][0], p.load))
    }

    /// When instance `i`'s last batch ended (completed or failed; `None` before its first
    /// ends). A dispatch still sees its previous batch's end: a backend tells a dispatch to an
    /// instance whose worker reported the same instant (`Some(now)`, the worker barely parked)
    /// from one to an instance idle for a while.
    pub fn ended_ns(&self, i: usize) -> Option<Nanos> {
        self.ended_ns.get(i).copied().flatten()
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
    /// one [`Start`] per instance into `starts`. `requests` holds the requests from
    /// [`first_id`](Self::first_id) on. Several dispatches to one instance form a batch: allowed
    /// with batching on, for one tenant, within the row limit. Every instance started counts
    /// as busy from now, so phases started at this instant see the same number busy.
    pub fn dispatch(
        &mut self,
        now_ns: Nanos,
        decision: &[Dispatch],
        requests: &[Request],
        estimates: &Estimates,
        starts: &mut Vec<Start>,
    ) -> Result<()> {
        let first_start = starts.len();
        for d in decision {
            let i = d.instance as usize;
            let r = match self.index(d.request) {
                Some(r) if self.state[r] == State::Waiting && r < requests.len() => r,
                _ => {
                    return Err(
                        self.broken(now_ns, format!("dispatch {d:?}: request is not waiting"))
                    )
                }
            };
            if i >= self.views.len() {
                return Err(self.broken(now_ns, format!("dispatch {d:?}: instance is not idle")));
            }
            let joins = starts[first_start..]
                .iter()
                .position(|s| s.instance == d.instance);
            match joins {
                None if self.views[i].busy => {
                    return Err(self.broken(now_ns, format!("dispatch {d:?}: instance is not idle")))
                }
                None => {
                    self.views[i].busy = true;
                    self.set_busy(now_ns, self.busy + 1);
                    self.batches[i].clear();
                    starts.push(Start {
                        instance: d.instance,
                        request: d.request,
                        requests: 0,
                        tenant: requests[r].tenant,
                        from: self.views[i].resident,
                        load: Load::None,
                        pool_slot: None,
                        evicted: None,
                    });
                }
                Some(k) => {
                    let s = &starts[first_start + k];
                    let rows: u64 = self.batches[i]
                        .iter()
                        .map(|&id| requests[id.wrapping_sub(self.first_id) as usize].samples as u64)
                        .sum::<u64>()
                        + requests[r].samples as u64;
                    let why = match self.batch_rows {
                        None => Some("instance is not idle (batching is off)".to_string()),
                        Some(_) if requests[r].tenant != s.tenant && !self.residency.pet() => {
                            Some(format!(
                                "a batch is one tenant's, not {} and {}",
                                s.tenant, requests[r].tenant
                            ))
                        }
                        Some(max) if rows > max as u64 => {
                            Some(format!("the batch would have {rows} rows, more than {max}"))
                        }
                        Some(_) => None,
                    };
                    if let Some(why) = why {
                        return Err(self.broken(now_ns, format!("dispatch {d:?}: {why}")));
                    }
                }
            }
            self.state[r] = State::Running;
            self.waiting -= 1;
            self.batches[i].push(d.request);
        }
        for s in &mut starts[first_start..] {
            if self.residency.pet() {
                self.start_pet(now_ns, s, requests, estimates);
            } else {
                self.start_batch(now_ns, s, requests, estimates);
            }
        }
        Ok(())
    }

    /// Books the batch `s` of one tenant: its load into the executor's arena (by source tier),
    /// the instance's new residency and estimated free time, counts and per-request records.
    fn start_batch(
        &mut self,
        now_ns: Nanos,
        s: &mut Start,
        requests: &[Request],
        estimates: &Estimates,
    ) {
        let i = s.instance as usize;
        let batch = &self.batches[i];
        s.requests = batch.len() as u32;
        let load = self.residency.load_needed(s.from, s.tenant);
        (s.pool_slot, s.evicted) = self.residency.start(now_ns, s.tenant, load, s.requests);
        s.load = load;
        let (rows, seq) = shape(batch, requests, self.first_id);
        let service_ns = if batch.len() == 1 {
            estimates.service_ns(s.request)
        } else {
            estimates.batch_service_ns(s.tenant, rows, seq)
        };
        let load_ns = estimates.load_kind_ns(load, s.from, s.tenant);
        if load == Load::Switch {
            self.copies.book_instance(now_ns, i, load_ns);
        }
        let estimate_ns = load_ns + service_ns;
        let view = &mut self.views[i];
        view.resident = Some(s.tenant);
        view.free_at_est_ns = now_ns + estimate_ns;
        self.count_load(i, s.tenant, load);
        self.record_batch(now_ns, i, |_| load);
        self.phases[i] = Some(Phase {
            kind: load.span().unwrap_or(SpanKind::Inference),
            start_ns: now_ns,
            load,
            tenant: s.tenant,
        });
    }

    /// Counts one load of `tenant` on instance `i`.
    fn count_load(&mut self, i: usize, tenant: TenantId, load: Load) {
        let stats = &mut self.run.instances[i];
        match load {
            Load::None => {}
            Load::Pool => stats.pool_loads += 1,
            Load::Switch => stats.switches += 1,
            Load::Cold => stats.cold_loads += 1,
        }
        if load != Load::None {
            self.run.tenant_loads[tenant as usize] += 1;
        }
    }

    /// Records the start of instance `i`'s batch: each request's start, instance, load (from
    /// `load_of`, in batch order) and batch number.
    fn record_batch(
        &mut self,
        now_ns: Nanos,
        i: usize,
        mut load_of: impl FnMut(RequestId) -> Load,
    ) {
        self.run.instances[i].batches += 1;
        for &id in &self.batches[i] {
            let r = id.wrapping_sub(self.first_id) as usize;
            self.run.start_ns[r] = now_ns;
            self.run.served_by[r] = i as u32;
            self.run.load[r] = load_of(id);
            self.run.batch[r] = self.batches_started;
        }
        self.batches_started = self.batches_started.wrapping_add(1);
    }

    /// Instance `i` finished loading the weights of the batch it serves; its inference starts
    /// now. Returns the batch's first request.
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
        self.residency.load_ended(phase.tenant, phase.load);
        self.copies.instance_done(now_ns, i);
        self.phases[i] = Some(Phase {
            kind: SpanKind::Inference,
            start_ns: now_ns,
            ..phase
        });
        Ok(self.batches[i][0])
    }

    /// Instance `i` completed the batch it serves (its inference phase) and is idle. Returns
    /// the batch's first request ([`batch`](Self::batch) still lists them until the next
    /// dispatch to `i`).
    pub fn complete(&mut self, now_ns: Nanos, i: usize) -> Result<RequestId> {
        match self.phases.get(i).copied().flatten() {
            Some(p) if p.kind == SpanKind::Inference => Ok(self.end(now_ns, i, p, false)),
            _ => Err(self.broken(
                now_ns,
                format!("instance {i} completed an inference it was not running"),
            )),
        }
    }

    /// The batch instance `i` serves failed in whatever phase it was; its requests count as
    /// answered (and as failed). A failed load leaves the instance holding nothing.
    pub fn fail(&mut self, now_ns: Nanos, i: usize) -> Result<RequestId> {
        match self.phases.get(i).copied().flatten() {
            Some(p) => {
                if p.kind != SpanKind::Inference {
                    self.views[i].resident = None;
                    self.residency.load_ended(p.tenant, p.load);
                    self.copies.instance_done(now_ns, i);
                }
                self.failed += self.batches[i].len();
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
        for l in std::mem::take(&mut self.pet_loads[i]) {
            self.residency.hold(l.tenant, false);
        }
        self.phases[i] = None;
        let n = self.batches[i].len();
        if !failed {
            self.run.instances[i].requests += n as u64;
        }
        for &id in &self.batches[i] {
            let r = id.wrapping_sub(self.first_id) as usize;
            self.run.end_ns[r] = now_ns;
            self.state[r] = State::Done;
        }
        self.completed += n;
        self.ended_ns[i] = Some(now_ns);
        self.views[i].busy = false;
        self.set_busy(now_ns, self.busy - 1);
        self.batches[i][0]
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
                request: self.batches[i][0],
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
        let mut run = self.run;
        (run.pool_evictions, run.host_evictions) = self.residency.evictions();
        Ok(run)
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

/// The rows and the longest sequence of `batch` (ids from `first_id` on in `requests`).
fn shape(batch: &[RequestId], requests: &[Request], first_id: RequestId) -> (u32, u32) {
    let r = |id: RequestId| &requests[id.wrapping_sub(first_id) as usize];
    let rows = batch.iter().map(|&id| r(id).samples).sum();
    let seq = batch.iter().map(|&id| r(id).seq_len).max().unwrap_or(1);
    (rows, seq)
}

#[cfg(test)]
mod tests;
