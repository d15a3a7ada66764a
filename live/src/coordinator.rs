//! Live mode: the simulator's schedulers drive real executors on the wall clock.
//!
//! The same [`Scheduler`] code that decides in the simulator decides here. A [`Core`] (owned by
//! one coordinating thread) holds the scheduler and the instances' state; each instance is a
//! worker thread owning an [`Executor`] (a model slot of the runtime). A dispatch is sent to
//! the instance's worker, which loads the tenant's weights if it holds others (a switch, or a
//! cold load if it holds nothing) and runs the inference; the core records phase ends as the
//! workers report them. What happened is the simulator's [`Run`], so reports are computed by the
//! same code and a live replay can be compared with a simulation of the same cell.
//!
//! Two drivers use the core: [`replay`] releases a workload's arrivals at their trace times;
//! `ptm serve` feeds it requests as they come over HTTP. Time is nanoseconds since the core
//! started. Periodic schedulers (OMLS) are woken at their ticks; event-driven ones after each
//! arrival or completion.

use crate::executor::{Executor, RowOutput};
use ptm_sim::engine::{initial_residency, Estimates, Preload, Run, Setup, Span, SpanKind};
use ptm_sim::scheduler::{Dispatch, InstanceView, Scheduler, View};
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
enum Job {
    Run {
        request: Request,
        id: RequestId,
        load: Option<bool>,
        rows: Option<Rows>,
    },
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
        result: Result<Vec<RowOutput>, String>,
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

/// The phase a busy instance is in: (request, phase start, kind, the load it began with).
type Phase = Option<(RequestId, Nanos, SpanKind, Option<SpanKind>)>;

/// The scheduler, the instances and the requests, on the wall clock.
pub struct Core<'a> {
    scheduler: &'a mut dyn Scheduler,
    estimates: Estimates,
    setup: &'a Setup<'a>,
    /// Every request so far, by id.
    pub requests: Vec<Request>,
    rows: Vec<Option<Rows>>,
    replies: Vec<Option<Reply>>,
    views: Vec<InstanceView>,
    phases: Vec<Phase>,
    jobs: Vec<mpsc::Sender<Job>>,
    /// What happened so far.
    pub run: Run,
    /// Requests waiting for an instance.
    pub waiting: usize,
    /// Busy instances.
    pub busy: usize,
    /// Requests answered.
    pub completed: usize,
    /// Sum of the estimated inference of the waiting requests.
    waiting_est_ns: Nanos,
    busy_since: Nanos,
    start: Instant,
    next_tick: Nanos,
    out: Vec<Dispatch>,
}

impl<'a> Core<'a> {
    /// Starts one worker per executor (in `scope`) reporting to `tx`, and preloads instances as
    /// `preload` says (before time 0, untimed).
    pub fn start<'s>(
        scope: &'s std::thread::Scope<'s, '_>,
        setup: &'a Setup<'a>,
        scheduler: &'a mut dyn Scheduler,
        mut executors: Vec<Box<dyn Executor>>,
        preload: Preload,
        tx: &mpsc::Sender<Msg>,
    ) -> anyhow::Result<Self> {
        let m = setup.serving.instances;
        anyhow::ensure!(
            executors.len() == m,
            "{} executors for {m} instances",
            executors.len()
        );
        let tenants = setup.workload.tenants.len();
        let mut views = vec![InstanceView::default(); m];
        let mut run = Run {
            instances: vec![Default::default(); m],
            tenant_loads: vec![0; tenants],
            timeline: Some(Vec::new()),
            ..Run::default()
        };
        let held = initial_residency(preload, scheduler, m, tenants)?;
        for (i, t) in held.into_iter().enumerate() {
            views[i].resident = t;
            run.instances[i].preloaded = t;
            if let Some(t) = t {
                executors[i]
                    .load(t, true)
                    .map_err(|e| anyhow::anyhow!("preloading instance {i}: {e}"))?;
            }
        }
        let mut jobs = Vec::with_capacity(m);
        for (instance, mut exec) in executors.into_iter().enumerate() {
            let (job_tx, job_rx) = mpsc::channel::<Job>();
            jobs.push(job_tx);
            let tx = tx.clone();
            scope.spawn(move || {
                while let Ok(Job::Run {
                    request,
                    id,
                    load,
                    rows,
                }) = job_rx.recv()
                {
                    let result = load
                        .map_or(Ok(()), |cold| exec.load(request.tenant, cold))
                        .and_then(|()| {
                            if load.is_some() {
                                let _ = tx.send(Msg::LoadDone { instance });
                            }
                            exec.infer(&request, rows.as_deref().map(Vec::as_slice))
                        });
                    if tx
                        .send(Msg::Done {
                            instance,
                            id,
                            result,
                        })
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        Ok(Core {
            scheduler,
            estimates: setup.estimates.without_requests(),
            setup,
            requests: Vec::new(),
            rows: Vec::new(),
            replies: Vec::new(),
            views,
            phases: vec![None; m],
            jobs,
            run,
            waiting: 0,
            busy: 0,
            completed: 0,
            waiting_est_ns: 0,
            busy_since: 0,
            start: Instant::now(),
            next_tick: 0,
            out: Vec::new(),
        })
    }

    /// Nanoseconds since the core started.
    pub fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
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
    ) -> RequestId {
        let now = self.now();
        let estimate =
            self.setup
                .estimate_service_ns(request.tenant, request.samples, request.seq_len);
        let id = self.estimates.push_service_ns(estimate);
        debug_assert_eq!(id as usize, self.requests.len());
        self.requests.push(request);
        self.rows.push(rows);
        self.replies.push(reply);
        self.run.start_ns.push(0);
        self.run.end_ns.push(0);
        self.run.served_by.push(0);
        let view = View {
            now_ns: now,
            instances: &self.views,
            requests: &self.requests,
            estimates: &self.estimates,
        };
        self.scheduler.on_arrival(id, &view);
        self.waiting += 1;
        self.waiting_est_ns += estimate;
        id
    }

    /// Estimated time until a request arriving now would start: the instances' remaining work
    /// plus the waiting requests' estimated inference, shared by the instances.
    pub fn estimated_wait_ns(&self) -> Nanos {
        let now = self.now();
        let remaining: Nanos = self
            .views
            .iter()
            .filter(|v| v.busy)
            .map(|v| v.free_at_est_ns.saturating_sub(now))
            .sum();
        (remaining + self.waiting_est_ns) / self.views.len() as Nanos
    }

    /// Estimated inference and switch of a request of `tenant` of `samples` × `seq_len`.
    pub fn estimated_service_ns(&self, tenant: TenantId, samples: u32, seq_len: u32) -> Nanos {
        let holder = self.views.iter().any(|v| v.resident == Some(tenant));
        let switch = if holder {
            0
        } else {
            self.estimates.switch_into_ns(tenant)
        };
        self.setup.estimate_service_ns(tenant, samples, seq_len) + switch
    }

    /// Handles a worker's report; returns whether an instance became idle. A failed request is
    /// answered with its error when it has a reply, and is an error otherwise.
    pub fn worker(&mut self, msg: Msg) -> anyhow::Result<bool> {
        let t = self.now();
        match msg {
            Msg::LoadDone { instance } => {
                if let Some((id, since, kind, loaded)) = self.phases[instance] {
                    self.span(instance, kind, id, since, t);
                    self.phases[instance] = Some((id, t, SpanKind::Inference, loaded));
                }
                Ok(false)
            }
            Msg::Done {
                instance,
                id,
                result,
            } => {
                let (_, since, kind, loaded) = self.phases[instance]
                    .take()
                    .expect("a busy instance reports");
                self.span(instance, kind, id, since, t);
                // Done while still loading: the load failed and the instance holds nothing
                // (its executor dropped what it held), so the next request there loads cold.
                if kind != SpanKind::Inference {
                    self.views[instance].resident = None;
                }
                self.run.end_ns[id as usize] = t;
                self.run.instances[instance].requests += 1;
                self.views[instance].busy = false;
                self.completed += 1;
                self.busy -= 1;
                if self.busy == 0 {
                    self.run.gpu_busy_ns += t - self.busy_since;
                }
                let arrival = self.requests[id as usize].arrival_ns;
                match (self.replies[id as usize].take(), result) {
                    (Some(reply), result) => {
                        let served = result.map_err(Refusal::Failed).map(|outputs| Served {
                            outputs,
                            instance,
                            switched: loaded == Some(SpanKind::Switch),
                            cold_load: loaded == Some(SpanKind::ColdLoad),
                            wait_ns: self.run.start_ns[id as usize] - arrival,
                            latency_ns: t - arrival,
                        });
                        let _ = reply.send(served); // the client may have gone
                    }
                    (None, Err(e)) => {
                        anyhow::bail!("instance {instance} failed on request {id}: {e}")
                    }
                    (None, Ok(_)) => {}
                }
                self.rows[id as usize] = None;
                Ok(true)
            }
            Msg::Arrive { .. } | Msg::Drain => unreachable!("arrivals and drains are the driver's"),
        }
    }

    /// Lets the scheduler decide if it should now (`changed`: an arrival or a completion) and
    /// sends its dispatches to the workers. With `more_to_come` false (no arrival will follow),
    /// a decision that leaves requests waiting with every instance idle is a stall, an error.
    pub fn decide(&mut self, changed: bool, more_to_come: bool) -> anyhow::Result<()> {
        let t = self.now();
        let m = self.views.len();
        let decide = match self.scheduler.tick_ns() {
            Some(p) if t >= self.next_tick => {
                self.next_tick = (t / p + 1) * p;
                true
            }
            Some(_) => false,
            None => changed,
        };
        if !(decide && self.waiting > 0 && self.busy < m) {
            return Ok(());
        }
        let view = View {
            now_ns: t,
            instances: &self.views,
            requests: &self.requests,
            estimates: &self.estimates,
        };
        let mut out = std::mem::take(&mut self.out);
        self.scheduler.decide(&view, &mut out);
        for Dispatch {
            instance,
            request: id,
        } in out.drain(..)
        {
            let (i, r) = (instance as usize, self.requests[id as usize]);
            anyhow::ensure!(
                !self.views[i].busy,
                "{} dispatched to busy instance {i}",
                self.scheduler.name()
            );
            let load = match self.views[i].resident {
                None => Some(true),
                Some(held) if held == r.tenant => None,
                Some(_) => Some(false),
            };
            let kind = match load {
                Some(true) => SpanKind::ColdLoad,
                Some(false) => SpanKind::Switch,
                None => SpanKind::Inference,
            };
            let stats = &mut self.run.instances[i];
            match load {
                Some(true) => stats.cold_loads += 1,
                Some(false) => stats.switches += 1,
                None => {}
            }
            if load.is_some() {
                self.run.tenant_loads[r.tenant as usize] += 1;
            }
            let estimate = self.estimates.load_ns(self.views[i].resident, r.tenant)
                + self.estimates.service_ns(id);
            self.views[i].busy = true;
            self.views[i].resident = Some(r.tenant);
            self.views[i].free_at_est_ns = t + estimate;
            self.phases[i] = Some((id, t, kind, load.map(|_| kind)));
            self.run.start_ns[id as usize] = t;
            self.run.served_by[id as usize] = instance;
            self.waiting -= 1;
            self.waiting_est_ns = self
                .waiting_est_ns
                .saturating_sub(self.estimates.service_ns(id));
            if self.busy == 0 {
                self.busy_since = t;
            }
            self.busy += 1;
            let rows = self.rows[id as usize].clone();
            self.jobs[i].send(Job::Run {
                request: r,
                id,
                load,
                rows,
            })?;
        }
        self.out = out;
        if !more_to_come && self.busy == 0 && self.waiting > 0 {
            anyhow::bail!(
                "{} stalled: {} requests wait, every instance is idle and nothing else will happen",
                self.scheduler.name(),
                self.waiting
            );
        }
        Ok(())
    }

    fn span(
        &mut self,
        instance: usize,
        kind: SpanKind,
        request: RequestId,
        start_ns: Nanos,
        end_ns: Nanos,
    ) {
        let stats = &mut self.run.instances[instance];
        stats.busy_ns += end_ns - start_ns;
        if kind != SpanKind::Inference {
            stats.loading_ns += end_ns - start_ns;
        }
        if let Some(t) = &mut self.run.timeline {
            t.push(Span {
                instance: instance as u32,
                kind,
                request,
                start_ns,
                end_ns,
            });
        }
    }
}
