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
use crate::executor::{Executor, RowOutput};
use ptm_sim::engine::{Estimates, Setup};
use ptm_sim::ledger::{initial_residency, Ledger, Load, Preload, Run, Start};
use ptm_sim::scheduler::{Decision, Scheduler, View};
use ptm_sim::time::Nanos;
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

/// A job for an instance's worker.
struct Job {
    request: Request,
    id: RequestId,
    load: Load,
    rows: Option<Rows>,
}

/// What the core hears.
pub enum Msg {
    /// A worker finished loading.
    LoadDone {
        /// The instance.
        instance: usize,
    },
    /// A worker finished a request.
    Done {
        /// The instance.
        instance: usize,
        /// The request.
        id: RequestId,
        /// Its outputs, or why it failed.
        result: Result<Vec<RowOutput>>,
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
    forget_answered: bool,
    /// Sum of the estimated inference of the waiting requests.
    waiting_est_ns: Nanos,
    start: Instant,
    next_tick: Nanos,
    out: Decision,
    starts: Vec<Start>,
}

impl<'a> Core<'a> {
    /// Starts one worker per executor (in `scope`) reporting to `tx`, and preloads instances as
    /// `options.preload` says (before time 0, untimed).
    pub fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        setup: &'a Setup<'a>,
        scheduler: &'a mut dyn Scheduler,
        mut executors: Vec<Box<dyn Executor>>,
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
        let held = initial_residency(options.preload, scheduler, m, tenants)?;
        for (i, t) in held.iter().enumerate() {
            if let Some(t) = *t {
                executors[i].load(t, true).map_err(|e| Error::Executor {
                    instance: i,
                    message: format!("preloading tenant {t}: {e}"),
                })?;
            }
        }
        let ledger = Ledger::new(scheduler.name(), &held, tenants, 0, options.timeline);
        let mut jobs = Vec::with_capacity(m);
        for (instance, exec) in executors.into_iter().enumerate() {
            let (job_tx, job_rx) = mpsc::channel::<Job>();
            jobs.push(job_tx);
            let tx = tx.clone();
            scope.spawn(move || worker(instance, exec, &job_rx, tx));
        }
        Ok(Core {
            scheduler,
            estimates: setup.estimates.without_requests(),
            setup,
            ledger,
            requests: Vec::new(),
            rows: Vec::new(),
            replies: Vec::new(),
            jobs,
            forget_answered: options.forget_answered,
            waiting_est_ns: 0,
            start: Instant::now(),
            next_tick: 0,
            out: Decision::default(),
            starts: Vec::new(),
        })
    }

    /// Nanoseconds since the core started.
    pub fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
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

    /// Requests answered so far.
    pub fn completed(&self) -> usize {
        self.ledger.completed()
    }

    /// How long to wait for the next message before a tick is due (`None`: no tick).
    pub fn until_tick(&self) -> Option<Duration> {
        self.scheduler
            .tick_ns()
            .map(|_| Duration::from_nanos(self.next_tick.saturating_sub(self.now())))
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
            batching: None,
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

    /// Estimated inference and switch of a request of `tenant` of `samples` × `seq_len`.
    pub fn estimated_service_ns(&self, tenant: TenantId, samples: u32, seq_len: u32) -> Nanos {
        let holder = self
            .ledger
            .views()
            .iter()
            .any(|v| v.resident == Some(tenant));
        let switch = if holder {
            0
        } else {
            self.estimates.switch_into_ns(tenant)
        };
        self.setup.estimate_service_ns(tenant, samples, seq_len) + switch
    }

    fn slot(&self, id: RequestId) -> usize {
        id.wrapping_sub(self.ledger.first_id()) as usize
    }

    /// Books a worker's report; returns whether an instance became idle. A failed request is
    /// answered with its error when it has a reply (a failed load leaves its instance holding
    /// nothing), and is an error otherwise.
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
            } => {
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
                    return Err(self.ledger.broken(t, format!("instance {instance} reported request {id} but serves request {serving}")).into());
                }
                let failed = result.is_err();
                if failed {
                    self.ledger.fail(t, instance)?;
                } else {
                    self.ledger.complete(t, instance)?;
                }
                let slot = self.slot(id);
                let arrival = self.requests[slot].arrival_ns;
                let start = self.ledger.run().start_ns[slot];
                match (self.replies[slot].take(), result) {
                    (Some(reply), result) => {
                        let served =
                            result
                                .map_err(|e| Refusal::Failed(e.to_string()))
                                .map(|outputs| Served {
                                    outputs,
                                    instance,
                                    switched: load == Load::Switch,
                                    cold_load: load == Load::Cold,
                                    wait_ns: start - arrival,
                                    latency_ns: t - arrival,
                                });
                        let _ = reply.send(served); // the client may have gone
                    }
                    (None, Err(e)) => return Err(e),
                    (None, Ok(_)) => {}
                }
                self.rows[slot] = None;
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
            Msg::Stopped { instance } => match self.ledger.serving(instance) {
                Some((request, _)) => Err(Error::WorkerStopped { instance, request }),
                None => Ok(false),
            },
            Msg::Arrive { .. } | Msg::Drain => Err(Error::Invalid(
                "arrivals and drains are the driver's, not a worker's".into(),
            )),
        }
    }

    /// Lets the scheduler decide if it should now (`changed`: an arrival or a completion) and
    /// sends its dispatches to the workers. With `more_to_come` false (no arrival will follow),
    /// a decision that leaves requests waiting with every instance idle is a stall, an error.
    pub fn decide(&mut self, changed: bool, more_to_come: bool) -> Result<()> {
        let t = self.now();
        let m = self.ledger.views().len();
        let decide = match self.scheduler.tick_ns() {
            Some(p) if t >= self.next_tick => {
                self.next_tick = (t / p + 1) * p;
                true
            }
            Some(_) => false,
            None => changed,
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
                batching: None,
            };
            self.scheduler.decide(&view, &mut out);
            let mut starts = std::mem::take(&mut self.starts);
            self.ledger
                .dispatch(t, &out, &self.requests, &self.estimates, &mut starts)?;
            out.clear();
            self.out = out;
            for s in starts.drain(..) {
                let slot = self.slot(s.request);
                self.waiting_est_ns = self
                    .waiting_est_ns
                    .saturating_sub(self.estimates.service_ns(s.request));
                let job = Job {
                    request: self.requests[slot],
                    id: s.request,
                    load: s.load,
                    rows: self.rows[slot].clone(),
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
        self.ledger.check_stall(t, more_to_come)?;
        Ok(())
    }

    /// Ends the run: every request must have been answered exactly once.
    pub fn finish(self) -> Result<Run> {
        let now = self.now();
        Ok(self.ledger.finish(now)?)
    }
}

/// Loads (if the ledger said so) and runs one job; a panic of the executor, or an answer
/// that lacks rows, is the request's failure.
fn run_job(
    instance: usize,
    exec: &mut dyn Executor,
    job: &Job,
    tx: &mpsc::Sender<Msg>,
) -> Result<Vec<RowOutput>> {
    let rows = job.rows.as_deref().map(Vec::as_slice);
    let expected = rows.map_or(job.request.samples as usize, <[_]>::len);
    let fail = |message: String| Error::Executor { instance, message };
    let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if job.load != Load::None {
            exec.load(job.request.tenant, job.load == Load::Cold)?;
            let _ = tx.send(Msg::LoadDone { instance });
        }
        exec.infer(&job.request, rows)
    }))
    .map_err(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        fail(format!("request {}: the executor panicked: {what}", job.id))
    })??;
    if outputs.len() != expected {
        return Err(fail(format!(
            "request {}: the executor answered {} of {expected} rows",
            job.id,
            outputs.len()
        )));
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
            id: job.id,
            result,
        };
        if tx.send(done).is_err() {
            break;
        }
    }
    drop(guard);
}
