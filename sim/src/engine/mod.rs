//! The discrete-event engine: replays one workload through one scheduler on one GPU.
//!
//! State: the instances (what each holds, whether it is loading or inferring), the requests
//! (not arrived, waiting, running, done) and the event [`queue`]. The loop takes the next
//! instant, handles everything that happens then — arrivals first, then phase ends, then the
//! scheduler's tick — and then lets the scheduler decide once. A dispatch to an instance that
//! holds another tenant starts with a load phase (a switch, or a cold load for an instance that
//! never held anything); the inference phase follows. The books are the shared
//! [`crate::ledger`]'s; timing is the engine's.
//!
//! A phase's work is drawn at its start from the profile (its time alone). How long it takes:
//!
//! - **by resource** (every model of the run has measured contention figures): the phase holds
//!   the SMs (an inference), the copy engine (a switch, a prefetch) or the host (a cold load, a
//!   rebuild) and progresses at the rate its resource's sharing gives it; its remaining work is
//!   re-timed whenever a phase on its resource starts or ends ([`share`]). A load from the GPU
//!   pool runs on the pool stream's FIFO track, slowing and slowed by the passes, when the
//!   profile measured that ([`crate::profile::pool_copy`]); else it is stretched at its start
//!   by the pool loads' curve at the instances busy;
//! - **stretch at the start** (otherwise: older profiles, FastPTM's published costs): its
//!   duration is stretched by its cost's curve at the number of instances busy when it starts,
//!   and fixed then. [`Setup::cost_model`] says which, and every report carries it.
//!
//! Measured host work (the hand-off of a dispatch to its worker and back, the worker's staging
//! around a request's passes) is added unshared before the phase's work: the hand-off to a
//! dispatch's first phase, the staging to its inference. A dispatch to an instance whose batch
//! ended at this very instant (its worker just reported and barely parked) pays the profile's
//! busy hand-off when it has one ([`crate::profile::HostOverhead::handoff`]); any other — an
//! instance idle for a while, a prefetch — pays the hand-off to a parked worker.
//!
//! Invariants, checked as it runs: a dispatch names an idle instance and a waiting request; no
//! request runs twice; when the run ends every request has completed exactly once. A scheduler
//! that leaves requests waiting with idle instances and nothing left to happen is reported as
//! stalled rather than looping forever.

mod promotion;
mod queue;
mod setup;
pub mod share;
mod tiers;

pub use crate::ledger::{initial_residency, InstanceStats, Load, Preload, Run, Span, SpanKind};
pub use queue::{Event, Job, Queue};
pub use setup::{Batching, Estimates, LoadingMode, PetServing, Serving, Setup};
pub use share::{Shares, Track, Work as SharedWork};

use crate::error::Result;
use crate::ledger::{Ledger, Start};
use crate::profile::Resource;
use crate::rng::{keyed, Stream};
use crate::scheduler::{BatchLimits, Decision, Scheduler, View};
use crate::time::{ms_to_ns, Nanos};
use crate::workload::{RequestId, TenantId};

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
    /// Contention by resource (`None`: the stretch at each phase's start).
    shares: Option<Shares>,
    /// Shared work (resource, model, nanoseconds alone) of a job waiting for its unshared host
    /// work to end: per instance, and per prefetch (by tenant).
    pending: Vec<Option<(Track, usize, SharedWork)>>,
    pending_prefetches: Vec<(TenantId, Track, usize, SharedWork)>,
    /// Jobs a completion on a resource ended (reused).
    done: Vec<Job>,
    /// Promotions into the GPU pool in flight and the pool loads waiting for them.
    promotions: promotion::Promotions,
    /// Per model, whether its pool loads run on the pool stream's track (their cross factors
    /// with the passes measured).
    pool_track: Vec<bool>,
}

/// What a job does once started: unshared host work, then (by resource) work on a resource.
struct Work {
    fixed_ns: Nanos,
    shared: Option<(Track, usize, SharedWork)>,
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
            shares: setup
                .contention()
                .map(|c| Shares::new(c).with_pool_copies(setup.pool_copies())),
            pending: vec![None; m],
            pending_prefetches: Vec::new(),
            done: Vec::new(),
            promotions: promotion::Promotions::new(tenants, m),
            pool_track: setup.pool_copies().iter().map(Option::is_some).collect(),
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
                    copy_free_at_est_ns: self.ledger.copy_free_at_est_ns(),
                };
                self.scheduler.on_arrival(id, &view);
                changed = true;
            }
            let mut ticked = false;
            while let Some(event) = self.queue.pop_at(now) {
                match event {
                    Event::Step(job) => changed |= self.step(job)?,
                    Event::Share(resource, generation) => {
                        let mut done = std::mem::take(&mut self.done);
                        done.clear();
                        if let Some(shares) = &mut self.shares {
                            done.extend_from_slice(shares.complete(
                                now,
                                resource,
                                generation,
                                &mut self.queue,
                            ));
                        }
                        for &job in &done {
                            changed |= self.job_done(job)?;
                        }
                        self.done = done;
                    }
                    Event::Wake => {
                        if self.wake_ns == Some(now) {
                            self.wake_ns = None;
                        }
                        changed = true;
                    }
                    Event::Promoted(tenant) => {
                        for (i, work) in self.promotions.landed(tenant) {
                            self.start(Job::Instance(i), work);
                        }
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
                    copy_free_at_est_ns: self.ledger.copy_free_at_est_ns(),
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
        debug_assert!(
            !self.promotions.any_waiting(),
            "a pool load still waits for a promotion at the end"
        );
        self.ledger.finish(self.now_ns)
    }

    /// Books the dispatches of one decision and starts their first phases (all of them count
    /// as busy from now, so under the stretch model each phase is stretched by the instances
    /// busy at this instant); starts its prefetches and queues its wake-up.
    fn apply(&mut self, out: &Decision) -> Result<()> {
        if let Some(t) = out.wake_at_ns.filter(|&t| t > self.now_ns) {
            if self.wake_ns.is_none_or(|w| t < w) {
                self.wake_ns = Some(t);
                self.queue.push(t, Event::Wake);
            }
        }
        for &tenant in &out.prefetch {
            if self
                .ledger
                .prefetch(self.now_ns, tenant, &self.setup.estimates)
                .is_some()
            {
                // A prefetch is a copy from the host on the copy engine: a switch's weights, or
                // a parameter-efficient tenant's delta.
                let cost = self.setup.prefetch_cost(tenant);
                let key = (1 << 63) | self.prefetches_done;
                let mut rng = keyed(self.seed, Stream::Load, key);
                self.prefetches_done += 1;
                let ms = cost.map_or(0.0, |c| c.ms.sample(&mut rng));
                let model = self.setup.model_index(tenant);
                let fixed_ns = self.host_ns(model, key, |h| h.handoff(false));
                let work = match &self.shares {
                    None => Work {
                        fixed_ns: fixed_ns + ms_to_ns(ms),
                        shared: None,
                    },
                    // Its latency first, then its time on the link (`link_occupancy`).
                    Some(shares) => {
                        let (latency_ns, link_ns) = shares.split_copy(model, ms_to_ns(ms));
                        Work {
                            fixed_ns: fixed_ns + latency_ns,
                            shared: Some((
                                Resource::Link.into(),
                                model,
                                SharedWork::plain(link_ns),
                            )),
                        }
                    }
                };
                self.start(Job::Prefetch(tenant), work);
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
        let pet = self.ledger.residency().pet();
        for start in starts.drain(..) {
            self.promotions.started(&start, pet);
            let i = start.instance as usize;
            let model = self.setup.model_index(start.tenant);
            // The dispatch's hand-off to its worker and the report back: its first phase's; to
            // a worker that reported its previous batch this instant, the busy figure.
            let hot = self.ledger.ended_ns(i) == Some(self.now_ns);
            let handoff_ns = self.host_ns(model, (start.request as u64) << 1, |h| h.handoff(hot));
            // A mixed pass of parameter-efficient tenants has no load phase: its delta loads
            // are part of the pass (`start_inference`), the backbone stays.
            let cost = match pet {
                true => None,
                false => self.setup.load_cost(start.load, start.from, start.tenant),
            };
            match cost {
                Some(cost) => {
                    let mut rng = keyed(
                        self.seed,
                        Stream::Load,
                        ((i as u64) << 40) | self.loads_done[i],
                    );
                    self.loads_done[i] += 1;
                    let alone_ms = cost.ms.sample(&mut rng);
                    let work = match &self.shares {
                        // A load from the GPU pool is a device-to-device copy on its own stream,
                        // not behind the host link's copies. Without its cross factors measured,
                        // its curve over concurrent pool loads stretches it at its start, as
                        // without shares.
                        None => Work {
                            fixed_ns: handoff_ns + ms_to_ns(alone_ms * cost.stretch_at(busy)),
                            shared: None,
                        },
                        // With the pool copies' figures measured, it runs on the pool
                        // stream's FIFO track, slowing and slowed by the passes on the SMs.
                        Some(_) if start.load == Load::Pool => match self.pool_track[model] {
                            true => Work {
                                fixed_ns: handoff_ns,
                                shared: Some((
                                    Track::PoolCopy,
                                    model,
                                    SharedWork::plain(ms_to_ns(alone_ms)),
                                )),
                            },
                            false => Work {
                                fixed_ns: handoff_ns + ms_to_ns(alone_ms * cost.stretch_at(busy)),
                                shared: None,
                            },
                        },
                        Some(shares) => {
                            let r = self
                                .setup
                                .load_resource(start.load, start.from, start.tenant);
                            // A copy's latency overlaps the copies ahead of it on the link; only
                            // its `link_occupancy` holds the link (host reads: all of it).
                            let (latency_ns, shared_ns) = match r {
                                Resource::Link => shares.split_copy(model, ms_to_ns(alone_ms)),
                                _ => (0, ms_to_ns(alone_ms)),
                            };
                            Work {
                                fixed_ns: handoff_ns + latency_ns,
                                shared: Some((r.into(), model, SharedWork::plain(shared_ns))),
                            }
                        }
                    };
                    let work = if start.load == Load::Pool {
                        // A pool copy still being promoted is read once it has landed.
                        self.promotions
                            .pool_load(self.now_ns, start.tenant, i as u32, work)
                    } else {
                        Some(work)
                    };
                    if let Some(work) = work {
                        self.start(Job::Instance(i as u32), work);
                    }
                }
                None => self.start_inference(i, handoff_ns),
            }
        }
        self.starts = starts;
        Ok(())
    }

    /// A draw of the host overhead figure `which` of model `model` keyed by `key`, nanoseconds
    /// (0 when the profile has none).
    fn host_ns(
        &self,
        model: usize,
        key: u64,
        which: impl Fn(&crate::profile::HostOverhead) -> &crate::profile::Dist,
    ) -> Nanos {
        self.setup.host(model).map_or(0, |h| {
            ms_to_ns(which(h).sample(&mut keyed(self.seed, Stream::Host, key)))
        })
    }

    /// Starts `job`: its unshared work first (a queued step), then its shared work, if any.
    fn start(&mut self, job: Job, work: Work) {
        match (work.shared, &mut self.shares) {
            (Some((r, model, ns)), Some(shares)) if work.fixed_ns == 0 => {
                shares.join(self.now_ns, r, job, model, ns, &mut self.queue);
            }
            (shared, _) => {
                match job {
                    Job::Instance(i) => self.pending[i as usize] = shared,
                    Job::Prefetch(t) => {
                        if let Some((r, model, ns)) = shared {
                            self.pending_prefetches.push((t, r, model, ns));
                        }
                    }
                }
                self.queue
                    .push(self.now_ns + work.fixed_ns, Event::Step(job));
            }
        }
    }

    /// `job`'s unshared work ended: it joins its resource, or (with nothing shared) is done.
    /// Returns whether an instance became idle or a tenant landed in the pool.
    fn step(&mut self, job: Job) -> Result<bool> {
        let shared = match job {
            Job::Instance(i) => self.pending[i as usize].take(),
            Job::Prefetch(t) => self
                .pending_prefetches
                .iter()
                .position(|p| p.0 == t)
                .map(|k| {
                    let (_, r, model, ns) = self.pending_prefetches.swap_remove(k);
                    (r, model, ns)
                }),
        };
        match (shared, &mut self.shares) {
            (Some((r, model, ns)), Some(shares)) => {
                shares.join(self.now_ns, r, job, model, ns, &mut self.queue);
                Ok(false)
            }
            _ => self.job_done(job),
        }
    }

    /// `job` is done. Returns whether an instance became idle or a tenant landed in the pool.
    fn job_done(&mut self, job: Job) -> Result<bool> {
        match job {
            Job::Instance(i) => self.phase_done(i as usize),
            Job::Prefetch(t) => {
                self.ledger.prefetch_done(self.now_ns, t);
                Ok(true)
            }
        }
    }

    /// Starts the inference of instance `i`'s batch after `handoff_ns` of hand-off (a dispatch
    /// without a load); its noise is keyed by the batch's first request (common random numbers
    /// across policies).
    fn start_inference(&mut self, i: usize, handoff_ns: Nanos) {
        let batch = self.ledger.batch(i);
        let first = batch[0];
        let tenant = self.setup.workload.requests[first as usize].tenant;
        let mut rng = keyed(self.seed, Stream::Service, first as u64);
        let (mut alone_ms, passes, tokens) = self.setup.sample_inference_ms(batch, &mut rng);
        if self.ledger.residency().pet() {
            // A mixed pass of parameter-efficient tenants: the backbone's, plus the delta
            // kernels and the delta loads it waited for (all on the SMs' clock).
            alone_ms =
                self.setup
                    .pet_inference_ms(alone_ms, batch, self.ledger.pet_loads(i), &mut rng);
        }
        let model = self.setup.model_index(tenant);
        let staging_ns = self.host_ns(model, ((first as u64) << 1) | 1, |h| &h.staging_ms)
            + self.setup.host(model).map_or(0, |h| {
                ms_to_ns(h.staging_per_pass_ms * passes.saturating_sub(1) as f64)
            });
        let fixed_ns = handoff_ns + staging_ns;
        let work = match self.shares {
            None => {
                let busy = self.ledger.busy();
                Work {
                    fixed_ns: fixed_ns
                        + ms_to_ns(alone_ms * self.setup.forward_stretch(tenant, busy)),
                    shared: None,
                }
            }
            Some(_) => Work {
                fixed_ns,
                shared: Some((
                    Resource::Sm.into(),
                    model,
                    SharedWork {
                        ns: ms_to_ns(alone_ms),
                        tokens,
                    },
                )),
            },
        };
        self.start(Job::Instance(i as u32), work);
    }

    /// Ends instance `i`'s phase; returns whether an instance became idle.
    fn phase_done(&mut self, i: usize) -> Result<bool> {
        if self.ledger.loading(i) {
            self.ledger.load_done(self.now_ns, i)?;
            let setup = self.setup;
            let landing = self.promotions.load_ended(self.now_ns, i as u32, |t| {
                // The arena → pool slot copy: a pool load's figure alone, as its mean.
                setup
                    .load_cost(Load::Pool, None, t)
                    .map_or(0, |c| ms_to_ns(c.ms.mean()))
            });
            if let Some((tenant, at_ns)) = landing {
                self.queue.push(at_ns, Event::Promoted(tenant));
            }
            self.start_inference(i, 0);
            return Ok(false);
        }
        self.ledger.complete(self.now_ns, i)?;
        Ok(true)
    }
}
