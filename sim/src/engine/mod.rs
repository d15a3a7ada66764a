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

pub use crate::ledger::{initial_residency, InstanceStats, Load, Preload, Run, Span, SpanKind};
pub use queue::{Event, Queue};
pub use setup::{Batching, Estimates, LoadingMode, PetServing, Serving, Setup};

use crate::error::Result;
use crate::ledger::{Ledger, Start};
use crate::rng::{keyed, Stream};
use crate::scheduler::{BatchLimits, Decision, Scheduler, View};
use crate::time::{ms_to_ns, Nanos};
use crate::workload::RequestId;

/// Options of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunOptions {
    /// What the instances hold before time 0.
    pub preload: Preload,
    /// Record every phase in [`Run::timeline`].
    pub timeline: bool,
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
    ledger: Ledger,
    loads_done: Vec<u64>,
    now_ns: Nanos,
    next_arrival: usize,
    decision: Decision,
    starts: Vec<Start>,
    /// The earliest wake-up pending in the queue.
    wake_ns: Option<Nanos>,
    prefetches_done: u64,
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
        let residency = initial_residency(
            options.preload,
            scheduler.name(),
            scheduler.preload(),
            m,
            tenants,
        )?;
        let mut ledger = Ledger::new(scheduler.name(), &residency, tenants, n, options.timeline)
            .with_tiers(setup.residency(true)?);
        if setup.serving.batching.is_some() {
            ledger = ledger.with_batching(setup.serving.forward_batch);
        }
        Ok(Engine {
            setup,
            scheduler,
            seed,
            queue: Queue::default(),
            ledger,
            loads_done: vec![0; m],
            now_ns: 0,
            next_arrival: 0,
            decision: Decision::default(),
            starts: Vec::new(),
            wake_ns: None,
            prefetches_done: 0,
        })
    }

    fn run(mut self) -> Result<Run> {
        let requests = &self.setup.workload.requests;
        let n = requests.len();
        let m = self.ledger.views().len();
        let tick = self.scheduler.tick_ns();
        let batching = self.setup.serving.batching.map(|b| BatchLimits {
            max_rows: self.setup.serving.forward_batch,
            max_wait_ns: ms_to_ns(b.max_wait_ms),
        });
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
                self.next_arrival += 1;
                self.ledger.arrive(now, id)?;
                let view = View {
                    now_ns: now,
                    instances: self.ledger.views(),
                    requests,
                    first_id: 0,
                    estimates: &self.setup.estimates,
                    residency: self.ledger.residency(),
                    batching,
                };
                self.scheduler.on_arrival(id, &view);
                changed = true;
            }
            let mut ticked = false;
            while let Some(event) = self.queue.pop_at(now) {
                match event {
                    Event::PhaseDone(i) => changed |= self.phase_done(i as usize)?,
                    Event::PrefetchDone(t) => {
                        self.ledger.prefetch_done(t);
                        changed = true;
                    }
                    Event::Wake => {
                        if self.wake_ns == Some(now) {
                            self.wake_ns = None;
                        }
                        changed = true;
                    }
                    Event::Tick => ticked = true,
                }
            }
            if self.ledger.completed() == n {
                break;
            }
            let decide = if tick.is_some() { ticked } else { changed };
            let mut dispatched = false;
            if decide && self.ledger.waiting() > 0 && self.ledger.busy() < m {
                let mut out = std::mem::take(&mut self.decision);
                let view = View {
                    now_ns: now,
                    instances: self.ledger.views(),
                    requests,
                    first_id: 0,
                    estimates: &self.setup.estimates,
                    residency: self.ledger.residency(),
                    batching,
                };
                self.scheduler.decide(&view, &mut out);
                dispatched = !out.is_empty();
                self.apply(&out)?;
                out.clear();
                self.decision = out;
            }
            let nothing_else =
                self.ledger.busy() == 0 && self.next_arrival == n && self.queue.is_empty();
            if let Some(p) = tick.filter(|_| ticked) {
                if !dispatched {
                    self.ledger.check_stall(now, !nothing_else)?;
                }
                // Ticks at which nothing can change are skipped: the next one that matters is the
                // first tick at or after the next event, unless work could start right now.
                let next = if self.ledger.waiting() > 0 && self.ledger.busy() < m {
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
            } else if tick.is_none() {
                self.ledger.check_stall(now, !nothing_else)?;
            }
        }
        self.ledger.finish(self.now_ns)
    }

    /// Books the dispatches of one decision and starts their first phases (all of them count
    /// as busy from now, so each phase is stretched by the instances busy at this instant);
    /// starts its prefetches and queues its wake-up.
    fn apply(&mut self, out: &Decision) -> Result<()> {
        if let Some(t) = out.wake_at_ns.filter(|&t| t > self.now_ns) {
            if self.wake_ns.is_none_or(|w| t < w) {
                self.wake_ns = Some(t);
                self.queue.push(t, Event::Wake);
            }
        }
        for &tenant in &out.prefetch {
            if self.ledger.prefetch(self.now_ns, tenant).is_some() {
                // A prefetch is a copy from the host, like a switch's, on the copy engine.
                let cost = self.setup.load_cost(Load::Switch, None, tenant);
                let mut rng = keyed(self.seed, Stream::Load, (1 << 63) | self.prefetches_done);
                self.prefetches_done += 1;
                let ms = cost.map_or(0.0, |c| c.ms.sample(&mut rng));
                self.queue
                    .push(self.now_ns + ms_to_ns(ms), Event::PrefetchDone(tenant));
            }
        }
        let mut starts = std::mem::take(&mut self.starts);
        self.ledger.dispatch(
            self.now_ns,
            &out.dispatches,
            &self.setup.workload.requests,
            &self.setup.estimates,
            &mut starts,
        )?;
        let busy = self.ledger.busy();
        for start in starts.drain(..) {
            let i = start.instance as usize;
            match self.setup.load_cost(start.load, start.from, start.tenant) {
                Some(cost) => {
                    let mut rng = keyed(
                        self.seed,
                        Stream::Load,
                        ((i as u64) << 40) | self.loads_done[i],
                    );
                    self.loads_done[i] += 1;
                    let ms = cost.ms.sample(&mut rng) * cost.stretch_at(busy);
                    self.queue
                        .push(self.now_ns + ms_to_ns(ms), Event::PhaseDone(i as u32));
                }
                None => self.start_inference(i),
            }
        }
        self.starts = starts;
        Ok(())
    }

    /// Starts the inference of instance `i`'s batch; its noise is keyed by the batch's first
    /// request (common random numbers across policies).
    fn start_inference(&mut self, i: usize) {
        let batch = self.ledger.batch(i);
        let mut rng = keyed(self.seed, Stream::Service, batch[0] as u64);
        let busy = self.ledger.busy();
        let ns = if self.ledger.residency().pet() {
            let loads = self.ledger.pet_loads(i);
            self.setup.sample_pet_batch_ns(batch, loads, busy, &mut rng)
        } else {
            match batch {
                [id] => self.setup.sample_service_ns(*id, busy, &mut rng),
                _ => self.setup.sample_batch_ns(batch, busy, &mut rng),
            }
        };
        self.queue
            .push(self.now_ns + ns, Event::PhaseDone(i as u32));
    }

    /// Ends instance `i`'s phase; returns whether an instance became idle.
    fn phase_done(&mut self, i: usize) -> Result<bool> {
        if self.ledger.loading(i) {
            self.ledger.load_done(self.now_ns, i)?;
            self.start_inference(i);
            return Ok(false);
        }
        self.ledger.complete(self.now_ns, i)?;
        Ok(true)
    }
}
