//! The live core: the simulator's schedulers and its ledger on the wall clock.
//!
//! The same [`Scheduler`] code that decides in the simulator decides here, and the same
//! [`Ledger`] keeps the books: a dispatch, a load, a completion mean exactly what they mean in
//! the simulator, with the same checks. A [`Core`] (owned by one coordinating thread) holds the
//! scheduler and the ledger; each instance is a worker thread owning an [`Executor`] (a model
//! slot of the runtime). A dispatch is sent to the instance's worker, which loads the tenant's
//! weights if the ledger says so (a switch, or a cold load if it holds nothing) and runs the
//! inference; the core books phase ends as the workers report them. What happened is the
//! simulator's [`Run`], so reports are computed by the same code and a live replay can be
//! compared with a simulation of the same cell.
//!
//! Two drivers use the core: [`crate::replay`] releases a workload's arrivals at their trace
//! times; `ptm serve` feeds it requests as they come over HTTP (and forgets answered requests,
//! so its memory stays bounded). Time is nanoseconds since the core started. Periodic
//! schedulers (OMLS) are woken at their ticks; event-driven ones after each arrival or
//! completion. A worker that reports a request its instance is not serving, or stops with a
//! request unanswered, is an error, never a silent loss.

use crate::error::{Error, Result};
use crate::executor::{Executor, Item, Prefetcher, RowOutput, Source};
use crate::latch::{Latch, OpenOnDrop};
use ptm_sim::engine::{Estimates, Setup};
use ptm_sim::ledger::{initial_residency, Ledger, Load, Preload, Run, Start};
use ptm_sim::scheduler::{BatchLimits, Decision, Scheduler, View};
use ptm_sim::time::{ms_to_ns, Nanos};
use ptm_sim::workload::{Request, RequestId, TenantId};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Token ids of a served request's texts.
pub type Rows = Arc<Vec<Vec<u32>>>;

/// How a served request ended.
#[derive(Debug, Clone)]
pub struct Served {
    /// One output per text.
    pub outputs: Vec<RowOutput>,
    /// The instance that ran it.
    pub instance: usize,
    /// Whether its instance switched from another tenant's weights first.
    pub switched: bool,
    /// Whether its instance held nothing and loaded cold first.
    pub cold_load: bool,
    /// Arrival to start.
    pub wait_ns: Nanos,
    /// Arrival to completion.
    pub latency_ns: Nanos,
}

/// Why a served request got no outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Admission control: the queue is full, or the deadline cannot be met (HTTP 429).
    Rejected(String),
    /// The server is shutting down and accepts nothing new (HTTP 503).
    Draining,
    /// The executor failed on it (HTTP 500).
    Failed(String),
}

/// Where to send a served request's outcome.
pub type Reply = tokio::sync::oneshot::Sender<Result<Served, Refusal>>;

/// A job for an instance's worker: a batch and the loads before it.
struct Job {
    /// The batch: ids, requests and token ids.
    items: Vec<(RequestId, Request, Option<Rows>)>,
    /// Loads before the pass, in order.
    loads: Vec<LoadJob>,
    /// Whether the loads are a phase of their own (reported when done); a mixed batch's delta
    /// loads are part of its pass.
    load_phase: bool,
}

/// One load of a job: a tenant's weights (or a PET tenant's delta) from a source, written into
/// a pool slot when promoted, ordered after the last write into that slot.
struct LoadJob {
    tenant: TenantId,
    source: Source,
    promote: Option<u32>,
    /// The last write booked into the pool slot the load reads or writes: done before it.
    after: Option<Arc<Latch>>,
    /// Opened once the load (and its promotion) is done.
    fills: Option<Arc<Latch>>,
}

/// A prefetch for the prefetch worker: the tenant, its pool slot, the slot's last write booked
/// before it, and the latch it opens once done.
type PrefetchJob = (TenantId, u32, Option<Arc<Latch>>, Arc<Latch>);

/// What the core hears.
pub enum Msg {
    /// A worker finished loading.
    LoadDone {
        /// The instance.
        instance: usize,
    },
    /// A worker finished a batch.
    Done {
        /// The instance.
        instance: usize,
        /// The batch's first request.
        id: RequestId,
        /// The outputs of each request of the batch, or why it failed.
        result: Result<Vec<Vec<RowOutput>>>,
    },
    /// A prefetch into the GPU pool landed (or failed).
    Prefetched {
        /// The tenant.
        tenant: TenantId,
        /// Whether it landed.
        result: Result<()>,
    },
    /// A worker stopped (its executor panicked, or the core went away).
    Stopped {
        /// The instance.
        instance: usize,
    },
    /// A request to serve (from `ptm serve`).
    Arrive {
        /// The request (its arrival time is set by the core).
        request: Request,
        /// Its texts' token ids.
        rows: Rows,
        /// Where the outcome goes.
        reply: Reply,
    },
    /// Stop accepting and finish once every accepted request is answered.
    Drain,
}

/// How a core runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreOptions {
    /// What the instances hold before time 0 (loaded before the clock starts, untimed).
    pub preload: Preload,
    /// Record every phase in the run's timeline (replay; a server runs forever).
    pub timeline: bool,
    /// Forget answered requests (a server): memory stays bounded by the requests in flight,
    /// and the run's per-request records only cover those.
    pub forget_answered: bool,
    /// The clock's reading when the core starts, nanoseconds: a replay starts at its first
    /// arrival, so a trace whose log begins minutes in (an imported production trace) does
    /// not wait that long in real time, and its times stay the workload's, as the
    /// simulator's do.
    pub origin_ns: Nanos,
}

/// Sends [`Msg::Stopped`] when a worker ends, however it ends.
struct StopGuard {
    instance: usize,
    tx: mpsc::Sender<Msg>,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stopped {
            instance: self.instance,
        });
    }
}

/// The scheduler, the ledger and the requests, on the wall clock.
pub struct Core<'a> {
    scheduler: &'a mut dyn Scheduler,
    estimates: Estimates,
    setup: &'a Setup<'a>,
    ledger: Ledger,
    /// Requests from the ledger's first id on.
    requests: Vec<Request>,
    rows: Vec<Option<Rows>>,
    replies: Vec<Option<Reply>>,
    jobs: Vec<mpsc::Sender<Job>>,
    prefetches: Option<mpsc::Sender<PrefetchJob>>,
    /// Per pool slot: the last write booked into it ([`crate::latch`]).
    pool_writes: Vec<Option<Arc<Latch>>>,
    batching: Option<BatchLimits>,
    forget_answered: bool,
    /// Sum of the estimated inference of the waiting requests.
    waiting_est_ns: Nanos,
    start: Instant,
    /// The clock's reading at `start` ([`CoreOptions::origin_ns`]).
    origin_ns: Nanos,
    next_tick: Nanos,
    /// When the scheduler asked to decide again.
    wake_ns: Option<Nanos>,
    out: Decision,
    starts: Vec<Start>,
}

impl<'a> Core<'a> {
    /// Starts one worker per executor (in `scope`) reporting to `tx` (and a prefetch worker,
    /// given a prefetcher), and preloads instances as `options.preload` says (before time 0,
    /// untimed). The ledger's tiers and batching are those of `setup`.
    pub fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        setup: &'a Setup<'a>,
        scheduler: &'a mut dyn Scheduler,
        mut executors: Vec<Box<dyn Executor>>,
        prefetcher: Option<Box<dyn Prefetcher>>,
        options: CoreOptions,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<Self> {
        let m = setup.serving.instances;
        if executors.len() != m {
            return Err(Error::Invalid(format!(
                "{} executors for {m} instances",
                executors.len()
            )));
        }
        let tenants = setup.workload.tenants.len();
        let held = initial_residency(
            options.preload,
            scheduler.name(),
            scheduler.preload(),
            m,
            tenants,
        )?;
        for (i, t) in held.iter().enumerate() {
            if let Some(t) = *t {
                executors[i]
                    .load(t, Source::File, None)
                    .map_err(|e| Error::Executor {
                        instance: i,
                        message: format!("preloading tenant {t}: {e}"),
                    })?;
            }
        }
        let mut ledger = Ledger::new(scheduler.name(), &held, tenants, 0, options.timeline)
            .with_tiers(setup.residency(false)?);
        if setup.serving.batching.is_some() {
            ledger = ledger.with_batching(setup.serving.forward_batch);
        }
        let batching = setup.serving.batching.map(|b| BatchLimits {
            max_rows: setup.serving.forward_batch,
            max_wait_ns: ms_to_ns(b.max_wait_ms),
        });
        let mut jobs = Vec::with_capacity(m);
        for (instance, exec) in executors.into_iter().enumerate() {
            let (job_tx, job_rx) = mpsc::channel::<Job>();
            jobs.push(job_tx);
            let tx = tx.clone();
            // Named, so that a profile of the server tells executors from the rest.
            std::thread::Builder::new()
                .name(format!("ptm-exec-{instance}"))
                .spawn_scoped(scope, move || worker(instance, exec, &job_rx, tx))
                .map_err(|e| Error::io(format!("starting instance {instance}'s worker"), e))?;
        }
        let prefetches = prefetcher
            .map(|mut p| {
                let (ptx, prx) = mpsc::channel::<PrefetchJob>();
                let tx = tx.clone();
                let spawned = std::thread::Builder::new()
                    .name("ptm-prefetch".into())
                    .spawn_scoped(scope, move || {
                        while let Ok((tenant, slot, after, fills)) = prx.recv() {
                            if let Some(a) = after {
                                a.wait();
                            }
                            let filled = OpenOnDrop(Some(fills));
                            let result = p.prefetch(tenant, slot);
                            drop(filled);
                            if tx.send(Msg::Prefetched { tenant, result }).is_err() {
                                break;
                            }
                        }
                    });
                spawned.map(|_| ptx)
            })
            .transpose()
            .map_err(|e| Error::io("starting the prefetch worker", e))?;
        // Ticks fall on multiples of the period, as the simulator's do.
        let next_tick = scheduler
            .tick_ns()
            .map_or(0, |p| options.origin_ns.div_ceil(p.max(1)) * p);
        Ok(Core {
            scheduler,
            estimates: setup.estimates.without_requests(),
            setup,
            ledger,
            requests: Vec::new(),
            rows: Vec::new(),
            replies: Vec::new(),
            jobs,
            prefetches,
            pool_writes: Vec::new(),
            batching,
            forget_answered: options.forget_answered,
            waiting_est_ns: 0,
            start: Instant::now(),
            origin_ns: options.origin_ns,
            next_tick,
            wake_ns: None,
            out: Decision::default(),
            starts: Vec::new(),
        })
    }

    /// The core's clock, nanoseconds: its origin plus the time since it started.
    pub fn now(&self) -> Nanos {
        self.origin_ns + self.start.elapsed().as_nanos() as Nanos
    }

    /// The books so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Requests waiting for an instance.
    pub fn waiting(&self) -> usize {
        self.ledger.waiting()
    }

    /// Busy instances.
    pub fn busy(&self) -> usize {
        self.ledger.busy()
    }

    /// Requests on the books (a server forgets answered ones).
    pub fn records(&self) -> usize {
        self.requests.len()
    }

    /// Requests answered so far.
    pub fn completed(&self) -> usize {
        self.ledger.completed()
    }

    /// How long until the scheduler must be asked again without any message: its next tick
    /// or the wake-up it asked for (`None`: neither).
    pub fn until_tick(&self) -> Option<Duration> {
        let tick = self.scheduler.tick_ns().map(|_| self.next_tick);
        [tick, self.wake_ns]
            .into_iter()
            .flatten()
            .min()
            .map(|t| Duration::from_nanos(t.saturating_sub(self.now())))
    }

    /// Accepts `request` (its `arrival_ns` on the core's clock); returns its id.
    pub fn arrive(
        &mut self,
        request: Request,
        rows: Option<Rows>,
        reply: Option<Reply>,
    ) -> Result<RequestId> {
        let now = self.now();
        let estimate =
            self.setup
                .estimate_service_ns(request.tenant, request.samples, request.seq_len);
        let id = self.ledger.push_request();
        let estimated = self.estimates.push_service_ns(estimate);
        debug_assert_eq!(id, estimated, "the ledger and the estimates number alike");
        self.requests.push(request);
        self.rows.push(rows);
        self.replies.push(reply);
        self.ledger.arrive(now, id)?;
        let view = View {
            now_ns: now,
            instances: self.ledger.views(),
            requests: &self.requests,
            first_id: self.ledger.first_id(),
            estimates: &self.estimates,
            residency: self.ledger.residency(),
            batching: self.batching,
            copy_free_at_est_ns: self.ledger.copy_free_at_est_ns(),
        };
        self.scheduler.on_arrival(id, &view);
        self.waiting_est_ns += estimate;
        Ok(id)
    }

    /// Estimated time until a request arriving now would start: the instances' remaining work
    /// plus the waiting requests' estimated inference, shared by the instances.
    pub fn estimated_wait_ns(&self) -> Nanos {
        let now = self.now();
        let views = self.ledger.views();
        let remaining: Nanos = views
            .iter()
            .filter(|v| v.busy)
            .map(|v| v.free_at_est_ns.saturating_sub(now))
            .sum();
        (remaining + self.waiting_est_ns) / views.len() as Nanos
    }

    /// Estimated inference and load of a request of `tenant` of `samples` × `seq_len`: no load
    /// if an instance holds the tenant, else the cheapest load the tiers allow.
    pub fn estimated_service_ns(&self, tenant: TenantId, samples: u32, seq_len: u32) -> Nanos {
        let load = (0..self.ledger.views().len())
            .map(|i| {
                let from = self.ledger.views()[i].resident;
                let kind = self.ledger.residency().load_needed(from, tenant);
                self.estimates.load_kind_ns(kind, from, tenant)
            })
            .min()
            .unwrap_or(0);
        self.setup.estimate_service_ns(tenant, samples, seq_len) + load
    }

    fn slot(&self, id: RequestId) -> usize {
        id.wrapping_sub(self.ledger.first_id()) as usize
    }

    /// Books a worker's report; returns whether an instance became idle (or a tenant landed in
    /// the pool). A failed batch is answered with its error where requests have replies (a
    /// failed load leaves its instance holding nothing), and is an error otherwise.
    pub fn worker(&mut self, msg: Msg) -> Result<bool> {
        let t = self.now();
        match msg {
            Msg::LoadDone { instance } => {
                self.ledger.load_done(t, instance)?;
                Ok(false)
            }
            Msg::Done {
                instance,
                id,
                result,
            } => self.done(t, instance, id, result),
            Msg::Prefetched { tenant, result } => {
                // A failed prefetch leaves the slot unusable: the tenant is still marked as
                // arriving, so loads of it go to the host; report it as an error.
                result.map_err(|e| Error::Prefetch {
                    tenant,
                    message: e.to_string(),
                })?;
                self.ledger.prefetch_done(t, tenant);
                Ok(true)
            }
            Msg::Stopped { instance } => match self.ledger.serving(instance) {
                Some((request, _)) => Err(Error::WorkerStopped { instance, request }),
                None => Ok(false),
            },
            Msg::Arrive { .. } | Msg::Drain => Err(Error::Invalid(
                "arrivals and drains are the driver's, not a worker's".into(),
            )),
        }
    }

    fn done(
        &mut self,
        t: Nanos,
        instance: usize,
        id: RequestId,
        result: Result<Vec<Vec<RowOutput>>>,
    ) -> Result<bool> {
        let Some((serving, load)) = self.ledger.serving(instance) else {
            return Err(self
                .ledger
                .broken(
                    t,
                    format!("instance {instance} reported request {id} while idle"),
                )
                .into());
        };
        if serving != id {
            return Err(self
                .ledger
                .broken(
                    t,
                    format!(
                        "instance {instance} reported request {id} but serves request {serving}"
                    ),
                )
                .into());
        }
        let batch = self.ledger.batch(instance).to_vec();
        if result.is_err() {
            self.ledger.fail(t, instance)?;
        } else {
            self.ledger.complete(t, instance)?;
        }
        let (mut outputs, mut error) = match result {
            Ok(o) => (o.into_iter().map(Some).collect::<Vec<_>>(), None),
            Err(e) => (vec![None; batch.len()], Some(e)),
        };
        for (k, &rid) in batch.iter().enumerate() {
            let slot = self.slot(rid);
            let arrival = self.requests[slot].arrival_ns;
            let start = self.ledger.run().start_ns[slot];
            match self.replies[slot].take() {
                Some(reply) => {
                    let served = match outputs[k].take() {
                        Some(outputs) => Ok(Served {
                            outputs,
                            instance,
                            switched: load == Load::Switch,
                            cold_load: load == Load::Cold,
                            wait_ns: start - arrival,
                            latency_ns: t - arrival,
                        }),
                        None => Err(Refusal::Failed(
                            error.as_ref().map_or_else(String::new, ToString::to_string),
                        )),
                    };
                    let _ = reply.send(served); // the client may have gone
                }
                None => {
                    if let Some(e) = error.take() {
                        return Err(e);
                    }
                }
            }
            self.rows[slot] = None;
        }
        if self.forget_answered {
            let n = self.ledger.compact();
            if n > 0 {
                self.requests.drain(..n);
                self.rows.drain(..n);
                self.replies.drain(..n);
                self.estimates.drop_first(n);
            }
        }
        Ok(true)
    }

    /// Lets the scheduler decide if it should now (`changed`: an arrival, a completion or a
    /// tenant landing in the pool) and sends its dispatches to the workers and its prefetches
    /// to the prefetcher. With `more_to_come` false (no arrival will follow), a decision that
    /// leaves requests waiting with every instance idle is a stall, an error.
    pub fn decide(&mut self, changed: bool, more_to_come: bool) -> Result<()> {
        let t = self.now();
        let m = self.ledger.views().len();
        let woken = self.wake_ns.is_some_and(|w| t >= w);
        if woken {
            self.wake_ns = None;
        }
        let decide = match self.scheduler.tick_ns() {
            Some(p) if t >= self.next_tick => {
                self.next_tick = (t / p + 1) * p;
                true
            }
            Some(_) => false,
            None => changed || woken,
        };
        if decide && self.ledger.waiting() > 0 && self.ledger.busy() < m {
            let mut out = std::mem::take(&mut self.out);
            let view = View {
                now_ns: t,
                instances: self.ledger.views(),
                requests: &self.requests,
                first_id: self.ledger.first_id(),
                estimates: &self.estimates,
                residency: self.ledger.residency(),
                batching: self.batching,
                copy_free_at_est_ns: self.ledger.copy_free_at_est_ns(),
            };
            self.scheduler.decide(&view, &mut out);
            if let Some(w) = out.wake_at_ns.filter(|&w| w > t) {
                self.wake_ns = Some(self.wake_ns.map_or(w, |x| x.min(w)));
            }
            if self.prefetches.is_some() {
                for &tenant in &out.prefetch {
                    if let Some((slot, _)) = self.ledger.prefetch(t, tenant, &self.estimates) {
                        let (after, fills) = self.book_write(slot);
                        let sent = self
                            .prefetches
                            .as_ref()
                            .is_some_and(|p| p.send((tenant, slot, after, fills)).is_ok());
                        if !sent {
                            return Err(Error::Invalid("the prefetch worker stopped".into()));
                        }
                    }
                }
            }
            let mut starts = std::mem::take(&mut self.starts);
            self.ledger.dispatch(
                t,
                &out.dispatches,
                &self.requests,
                &self.estimates,
                &mut starts,
            )?;
            out.clear();
            self.out = out;
            for s in starts.drain(..) {
                let items = self
                    .ledger
                    .batch(s.instance as usize)
                    .iter()
                    .map(|&id| {
                        let slot = self.slot(id);
                        (id, self.requests[slot], self.rows[slot].clone())
                    })
                    .collect::<Vec<_>>();
                for (id, _, _) in &items {
                    self.waiting_est_ns = self
                        .waiting_est_ns
                        .saturating_sub(self.estimates.service_ns(*id));
                }
                let pet = self.ledger.residency().pet();
                let mut loads = Vec::new();
                if pet {
                    // A delta from the host or its file lands in its slot of the delta pool.
                    let wanted: Vec<_> = self
                        .ledger
                        .pet_loads(s.instance as usize)
                        .iter()
                        .filter_map(|l| Source::of(l.load, None).map(|src| (l.tenant, src, l.slot)))
                        .collect();
                    for (tenant, source, slot) in wanted {
                        let (after, fills) = match slot {
                            Some(slot) => {
                                let (after, fills) = self.book_write(slot);
                                (after, Some(fills))
                            }
                            None => (None, None),
                        };
                        loads.push(LoadJob {
                            tenant,
                            source,
                            promote: slot,
                            after,
                            fills,
                        });
                    }
                } else if let Some(source) = Source::of(s.load, s.pool_slot) {
                    let promote = match s.load {
                        Load::Switch | Load::Cold => s.pool_slot,
                        Load::None | Load::Pool => None,
                    };
                    let (after, fills) = match (s.load, s.pool_slot, promote) {
                        (_, _, Some(slot)) => {
                            let (after, fills) = self.book_write(slot);
                            (after, Some(fills))
                        }
                        (Load::Pool, Some(slot), None) => (self.last_write(slot), None),
                        _ => (None, None),
                    };
                    loads.push(LoadJob {
                        tenant: s.tenant,
                        source,
                        promote,
                        after,
                        fills,
                    });
                }
                let job = Job {
                    items,
                    loads,
                    load_phase: !pet,
                };
                if self.jobs[s.instance as usize].send(job).is_err() {
                    return Err(Error::WorkerStopped {
                        instance: s.instance as usize,
                        request: s.request,
                    });
                }
            }
            self.starts = starts;
        }
        let wake_pending = self.wake_ns.is_some();
        // A periodic policy that did not decide now decides at its next tick: no stall before
        // it (the simulator checks a periodic policy at its ticks only).
        let tick_pending = self.scheduler.tick_ns().is_some() && !decide;
        self.ledger
            .check_stall(t, more_to_come || wake_pending || tick_pending)?;
        Ok(())
    }

    /// The last write booked into pool slot `slot`, if it may still be running.
    fn last_write(&self, slot: u32) -> Option<Arc<Latch>> {
        self.pool_writes
            .get(slot as usize)
            .and_then(Option::as_ref)
            .filter(|l| !l.is_open())
            .cloned()
    }

    /// Books a write into pool slot `slot`: the write booked before it, which it must wait
    /// for, and its own latch.
    fn book_write(&mut self, slot: u32) -> (Option<Arc<Latch>>, Arc<Latch>) {
        let after = self.last_write(slot);
        let fills = Latch::new();
        let i = slot as usize;
        if self.pool_writes.len() <= i {
            self.pool_writes.resize(i + 1, None);
        }
        self.pool_writes[i] = Some(fills.clone());
        (after, fills)
    }

    /// Ends the run: every request must have been answered exactly once.
    pub fn finish(self) -> Result<Run> {
        let now = self.now();
        Ok(self.ledger.finish(now)?)
    }
}

/// Loads (if the ledger said so) and runs one batch; a panic of the executor, or an answer
/// that lacks rows, is the batch's failure.
fn run_job(
    instance: usize,
    exec: &mut dyn Executor,
    job: &Job,
    tx: &mpsc::Sender<Msg>,
) -> Result<Vec<Vec<RowOutput>>> {
    let fail = |message: String| Error::Executor { instance, message };
    let first = job.items[0].0;
    let items: Vec<Item<'_>> = job
        .items
        .iter()
        .map(|(_, request, rows)| Item {
            request,
            rows: rows.as_deref().map(Vec::as_slice),
        })
        .collect();
    let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Each load's latch opens however it ends (done, failed, panicked) — also those a
        // failed earlier load never reached.
        let mut filled: Vec<Option<OpenOnDrop>> = job
            .loads
            .iter()
            .map(|l| Some(OpenOnDrop(l.fills.clone())))
            .collect();
        for (load, guard) in job.loads.iter().zip(&mut filled) {
            if let Some(a) = &load.after {
                a.wait();
            }
            exec.load(load.tenant, load.source, load.promote)?;
            drop(guard.take());
        }
        if job.load_phase && !job.loads.is_empty() {
            let _ = tx.send(Msg::LoadDone { instance });
        }
        exec.infer(&items)
    }))
    .map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        fail(format!("request {first}: the executor panicked: {what}"))
    })??;
    if outputs.len() != items.len() {
        return Err(fail(format!(
            "request {first}: the executor answered {} of {} requests of its batch",
            outputs.len(),
            items.len()
        )));
    }
    for ((id, request, _), (item, out)) in job.items.iter().zip(items.iter().zip(&outputs)) {
        let expected = item.rows.map_or(request.samples as usize, <[_]>::len);
        if out.len() != expected {
            return Err(fail(format!(
                "request {id}: the executor answered {} of {expected} rows",
                out.len()
            )));
        }
    }
    Ok(outputs)
}

/// One instance's worker: runs its jobs in order, reporting load ends and completions; reports
/// [`Msg::Stopped`] when it ends, also by a panic of its executor.
fn worker(
    instance: usize,
    mut exec: Box<dyn Executor>,
    jobs: &mpsc::Receiver<Job>,
    tx: mpsc::Sender<Msg>,
) {
    let guard = StopGuard {
        instance,
        tx: tx.clone(),
    };
    while let Ok(job) = jobs.recv() {
        let result = run_job(instance, exec.as_mut(), &job, &tx);
        let done = Msg::Done {
            instance,
            id: job.items[0].0,
            result,
        };
        if tx.send(done).is_err() {
            break;
        }
    }
    drop(guard);
}
