//! The discrete-event engine: replays one workload through one scheduler on one GPU.
//!
//! State: the instances (what each holds, whether it is loading or inferring), the requests
//! (not arrived, waiting, running, done) and the event [`queue`]. The loop takes the next
//! instant, handles everything that happens then — arrivals first, then phase ends, then the
//! scheduler's tick — and then lets the scheduler decide once. A dispatch to an instance that
//! holds another tenant starts with a load phase (a switch, or a cold load for an instance that
//! never held anything); the inference phase follows. Each phase's duration is drawn at its
//! start from the profile and stretched by the number of instances busy at that moment.
//!
//! Invariants, checked as it runs: a dispatch names an idle instance and a waiting request; no
//! request runs twice; when the run ends every request has completed exactly once. A scheduler
//! that leaves requests waiting with idle instances and nothing left to happen is reported as
//! stalled rather than looping forever.

mod queue;
mod setup;

pub use queue::{Event, Queue};
pub use setup::{Estimates, LoadingMode, Preload, Serving, Setup};

use crate::error::{Error, Result};
use crate::rng::{keyed, Stream};
use crate::scheduler::{Dispatch, InstanceView, Scheduler, View};
use crate::time::{ms_to_ns, Nanos};
use crate::workload::{RequestId, TenantId};

/// What one instance did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Requests it completed.
    pub requests: u64,
    /// Switches (loads of another tenant's weights over the ones it held).
    pub switches: u64,
    /// Cold loads (its first load, when it held nothing).
    pub cold_loads: u64,
    /// Time spent loading or inferring.
    pub busy_ns: Nanos,
    /// Time spent loading.
    pub loading_ns: Nanos,
    /// The tenant it held before time 0, if any.
    pub preloaded: Option<TenantId>,
}

/// One phase of one instance, for timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The instance.
    pub instance: u32,
    /// What it did.
    pub kind: SpanKind,
    /// The request it served.
    pub request: RequestId,
    /// Start.
    pub start_ns: Nanos,
    /// End.
    pub end_ns: Nanos,
}

/// What an instance was doing during a [`Span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Its first load.
    ColdLoad,
    /// A switch to another tenant.
    Switch,
    /// Inference.
    Inference,
}

/// Everything a run recorded; [`crate::metrics::Report`] summarises it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// When each request started (was dispatched).
    pub start_ns: Vec<Nanos>,
    /// When each request completed.
    pub end_ns: Vec<Nanos>,
    /// Which instance served each request.
    pub served_by: Vec<u32>,
    /// Per instance.
    pub instances: Vec<InstanceStats>,
    /// Per tenant: how often its weights were loaded (cold loads and switches).
    pub tenant_loads: Vec<u64>,
    /// Time during which at least one instance was busy.
    pub gpu_busy_ns: Nanos,
    /// Every phase, when recording was asked for.
    pub timeline: Option<Vec<Span>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Load(SpanKind),
    Infer,
}

#[derive(Debug, Clone, Copy)]
struct Running {
    request: RequestId,
    phase: Phase,
    phase_start_ns: Nanos,
}

const NOT_ARRIVED: u8 = 0;
const WAITING: u8 = 1;
const RUNNING: u8 = 2;
const DONE: u8 = 3;

/// Options of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunOptions {
    /// What the instances hold before time 0.
    pub preload: Preload,
    /// Record every phase in [`Run::timeline`].
    pub timeline: bool,
}

/// What each of `instances` instances holds before time 0 under `preload` (one entry per
/// instance); refuses a policy's preload that names a missing instance or tenant.
pub fn initial_residency(
    preload: Preload,
    scheduler: &dyn Scheduler,
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

/// Simulates `setup` under `scheduler` with random streams from `seed`.
pub fn simulate(
    setup: &Setup<'_>,
    scheduler: &mut dyn Scheduler,
    seed: u64,
    options: RunOptions,
) -> Result<Run> {
    Engine::new(setup, scheduler, seed, options)?.run()
}

struct Engine<'s, 'a> {
    setup: &'s Setup<'a>,
    scheduler: &'s mut dyn Scheduler,
    seed: u64,
    queue: Queue,
    views: Vec<InstanceView>,
    running: Vec<Option<Running>>,
    loads_done: Vec<u64>,
    state: Vec<u8>,
    run: Run,
    now_ns: Nanos,
    busy: usize,
    busy_since_ns: Nanos,
    waiting: usize,
    completed: usize,
    next_arrival: usize,
    dispatches: Vec<Dispatch>,
}

impl<'s, 'a> Engine<'s, 'a> {
    fn new(
        setup: &'s Setup<'a>,
        scheduler: &'s mut dyn Scheduler,
        seed: u64,
        options: RunOptions,
    ) -> Result<Self> {
        let m = setup.serving.instances;
        let n = setup.workload.requests.len();
        let tenants = setup.workload.tenants.len();
        let preload = initial_residency(options.preload, scheduler, m, tenants)?;
        let mut views = vec![InstanceView::default(); m];
        let mut run = Run {
            start_ns: vec![0; n],
            end_ns: vec![0; n],
            served_by: vec![0; n],
            instances: vec![InstanceStats::default(); m],
            tenant_loads: vec![0; tenants],
            gpu_busy_ns: 0,
            timeline: options.timeline.then(Vec::new),
        };
        for (i, t) in preload.iter().enumerate() {
            views[i].resident = *t;
            run.instances[i].preloaded = *t;
        }
        Ok(Engine {
            setup,
            scheduler,
            seed,
            queue: Queue::default(),
            views,
            running: vec![None; m],
            loads_done: vec![0; m],
            state: vec![NOT_ARRIVED; n],
            run,
            now_ns: 0,
            busy: 0,
            busy_since_ns: 0,
            waiting: 0,
            completed: 0,
            next_arrival: 0,
            dispatches: Vec::new(),
        })
    }

    fn run(mut self) -> Result<Run> {
        let requests = &self.setup.workload.requests;
        let n = requests.len();
        let m = self.views.len();
        let tick = self.scheduler.tick_ns();
        if let Some(p) = tick {
            assert!(p > 0, "a tick period must be positive");
            self.queue.push(0, Event::Tick);
        }
        loop {
            let next_arrival = requests.get(self.next_arrival).map(|r| r.arrival_ns);
            let now = match (next_arrival, self.queue.next_time()) {
                (Some(a), Some(q)) => a.min(q),
                (Some(a), None) => a,
                (None, Some(q)) => q,
                (None, None) => break,
            };
            debug_assert!(now >= self.now_ns, "time never goes back");
            self.now_ns = now;
            let mut changed = false;
            while self.next_arrival < n && requests[self.next_arrival].arrival_ns == now {
                let id = self.next_arrival as RequestId;
                self.state[id as usize] = WAITING;
                self.waiting += 1;
                self.next_arrival += 1;
                let view = View {
                    now_ns: now,
                    instances: &self.views,
                    requests,
                    estimates: &self.setup.estimates,
                };
                self.scheduler.on_arrival(id, &view);
                changed = true;
            }
            let mut ticked = false;
            while let Some(event) = self.queue.pop_at(now) {
                match event {
                    Event::PhaseDone(i) => changed |= self.phase_done(i as usize),
                    Event::Tick => ticked = true,
                }
            }
            if self.completed == n {
                break;
            }
            let decide = if tick.is_some() { ticked } else { changed };
            let mut dispatched = false;
            if decide && self.waiting > 0 && self.busy < m {
                let mut out = std::mem::take(&mut self.dispatches);
                let view = View {
                    now_ns: now,
                    instances: &self.views,
                    requests,
                    estimates: &self.setup.estimates,
                };
                self.scheduler.decide(&view, &mut out);
                dispatched = !out.is_empty();
                self.apply(&mut out)?;
                self.dispatches = out;
            }
            let nothing_else = self.busy == 0 && self.next_arrival == n && self.queue.is_empty();
            if let Some(p) = tick.filter(|_| ticked) {
                if nothing_else && !dispatched && self.waiting > 0 {
                    return Err(self.stalled());
                }
                // Ticks at which nothing can change are skipped: the next one that matters is the
                // first tick at or after the next event, unless work could start right now.
                let next = if self.waiting > 0 && self.busy < m {
                    now + p
                } else {
                    let upcoming = [
                        requests.get(self.next_arrival).map(|r| r.arrival_ns),
                        self.queue.next_time(),
                    ]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(now + p);
                    upcoming.max(now + 1).div_ceil(p) * p
                };
                self.queue.push(next, Event::Tick);
            } else if tick.is_none() && nothing_else && self.waiting > 0 {
                return Err(self.stalled());
            }
        }
        if self.completed != n || self.state.iter().any(|&s| s != DONE) {
            return Err(self.broken(format!(
                "run ended with {} of {n} requests completed",
                self.completed
            )));
        }
        Ok(self.run)
    }

    fn stalled(&self) -> Error {
        self.broken(format!(
            "stalled: {} requests wait, every instance is idle and nothing else will happen",
            self.waiting
        ))
    }

    fn broken(&self, message: String) -> Error {
        Error::Scheduler {
            policy: self.scheduler.name().into(),
            now_ns: self.now_ns,
            message,
        }
    }

    /// Starts the dispatches in `out` (emptying it). All of them count as busy from now, so each
    /// phase is stretched by the instances busy at this instant.
    fn apply(&mut self, out: &mut Vec<Dispatch>) -> Result<()> {
        for d in out.iter() {
            let (i, r) = (d.instance as usize, d.request as usize);
            if i >= self.views.len() || self.views[i].busy {
                return Err(self.broken(format!("dispatch {d:?}: instance is not idle")));
            }
            if r >= self.state.len() || self.state[r] != WAITING {
                return Err(self.broken(format!("dispatch {d:?}: request is not waiting")));
            }
            self.views[i].busy = true;
            self.state[r] = RUNNING;
            self.waiting -= 1;
            self.set_busy(self.busy + 1);
        }
        for d in out.drain(..) {
            let (i, id) = (d.instance as usize, d.request);
            let tenant = self.setup.workload.requests[id as usize].tenant;
            self.run.start_ns[id as usize] = self.now_ns;
            self.run.served_by[id as usize] = d.instance;
            let resident = self.views[i].resident;
            self.views[i].resident = Some(tenant);
            let estimate = self.setup.estimates.load_ns(resident, tenant)
                + self.setup.estimates.service_ns(id);
            self.views[i].free_at_est_ns = self.now_ns + estimate;
            match self.setup.load_cost(resident, tenant) {
                Some((cost, cold)) => {
                    let mut rng = keyed(
                        self.seed,
                        Stream::Load,
                        ((i as u64) << 40) | self.loads_done[i],
                    );
                    self.loads_done[i] += 1;
                    let ms = cost.ms.sample(&mut rng) * cost.stretch_at(self.busy);
                    let stats = &mut self.run.instances[i];
                    let kind = if cold {
                        stats.cold_loads += 1;
                        SpanKind::ColdLoad
                    } else {
                        stats.switches += 1;
                        SpanKind::Switch
                    };
                    self.run.tenant_loads[tenant as usize] += 1;
                    self.start_phase(i, id, Phase::Load(kind), ms_to_ns(ms));
                }
                None => self.start_inference(i, id),
            }
        }
        Ok(())
    }

    fn start_inference(&mut self, i: usize, id: RequestId) {
        let mut rng = keyed(self.seed, Stream::Service, id as u64);
        let ns = self.setup.sample_service_ns(id, self.busy, &mut rng);
        self.start_phase(i, id, Phase::Infer, ns);
    }

    fn start_phase(&mut self, i: usize, request: RequestId, phase: Phase, duration_ns: Nanos) {
        self.running[i] = Some(Running {
            request,
            phase,
            phase_start_ns: self.now_ns,
        });
        self.queue
            .push(self.now_ns + duration_ns, Event::PhaseDone(i as u32));
    }

    /// Ends instance `i`'s phase; returns whether an instance became idle.
    fn phase_done(&mut self, i: usize) -> bool {
        let r = self.running[i]
            .take()
            .expect("a phase ends only on a running instance");
        let elapsed = self.now_ns - r.phase_start_ns;
        let stats = &mut self.run.instances[i];
        stats.busy_ns += elapsed;
        let kind = match r.phase {
            Phase::Load(kind) => {
                stats.loading_ns += elapsed;
                kind
            }
            Phase::Infer => SpanKind::Inference,
        };
        if let Some(timeline) = &mut self.run.timeline {
            timeline.push(Span {
                instance: i as u32,
                kind,
                request: r.request,
                start_ns: r.phase_start_ns,
                end_ns: self.now_ns,
            });
        }
        if let Phase::Load(_) = r.phase {
            self.start_inference(i, r.request);
            return false;
        }
        stats.requests += 1;
        self.run.end_ns[r.request as usize] = self.now_ns;
        self.state[r.request as usize] = DONE;
        self.completed += 1;
        self.views[i].busy = false;
        self.set_busy(self.busy - 1);
        true
    }

    fn set_busy(&mut self, busy: usize) {
        if self.busy == 0 && busy > 0 {
            self.busy_since_ns = self.now_ns;
        } else if self.busy > 0 && busy == 0 {
            self.run.gpu_busy_ns += self.now_ns - self.busy_since_ns;
        }
        self.busy = busy;
    }
}
