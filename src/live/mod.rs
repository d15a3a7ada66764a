//! Live mode: the simulator's schedulers drive real executors on the wall clock.
//!
//! The same [`Scheduler`] code that decides in the simulator decides here. A coordinator (the
//! calling thread) owns the scheduler and the instances' state; each instance is a worker
//! thread owning an [`Executor`] (a model slot of the runtime). Arrivals are replayed at their
//! trace times; a dispatch is sent to the instance's worker, which loads the tenant's weights if
//! it holds others (a switch, or a cold load if it holds nothing) and runs the inference; the
//! coordinator records phase ends as the workers report them. The result is the simulator's
//! [`Run`], so the report is computed by the same code and the two can be compared.
//!
//! Time is nanoseconds since the replay started. Periodic schedulers (OMLS) are woken at their
//! ticks; event-driven ones after each arrival or completion.

pub mod runtime;

use ptm_sim::engine::{initial_residency, Preload, Run, Setup, SpanKind};
use ptm_sim::scheduler::{Dispatch, InstanceView, Scheduler, View};
use ptm_sim::time::Nanos;
use ptm_sim::workload::{Request, RequestId, TenantId};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One instance's engine: holds one tenant's weights at a time and runs requests.
pub trait Executor: Send {
    /// Loads `tenant`'s weights into this instance (`cold`: it held nothing before).
    fn load(&mut self, tenant: TenantId, cold: bool) -> Result<(), String>;
    /// Runs `request` on the weights it holds.
    fn infer(&mut self, request: &Request) -> Result<(), String>;
}

enum Job {
    Run {
        request: RequestId,
        load: Option<bool>,
    },
    Stop,
}

enum WorkerMsg {
    LoadDone {
        instance: usize,
    },
    Done {
        instance: usize,
        request: RequestId,
    },
    Failed {
        instance: usize,
        request: RequestId,
        message: String,
    },
}

/// Replays `setup`'s workload in real time through `scheduler` on `executors` (one per
/// instance), returning what happened.
pub fn replay(
    setup: &Setup<'_>,
    scheduler: &mut dyn Scheduler,
    mut executors: Vec<Box<dyn Executor>>,
    preload: Preload,
) -> anyhow::Result<Run> {
    let requests = &setup.workload.requests;
    let m = setup.serving.instances;
    anyhow::ensure!(
        executors.len() == m,
        "{} executors for {m} instances",
        executors.len()
    );
    let n = requests.len();
    let mut run = Run {
        start_ns: vec![0; n],
        end_ns: vec![0; n],
        served_by: vec![0; n],
        instances: vec![Default::default(); m],
        tenant_loads: vec![0; setup.workload.tenants.len()],
        gpu_busy_ns: 0,
        timeline: Some(Vec::new()),
    };
    let mut views = vec![InstanceView::default(); m];
    let held = initial_residency(preload, scheduler, m, setup.workload.tenants.len())?;
    for (i, t) in held.into_iter().enumerate() {
        views[i].resident = t;
        run.instances[i].preloaded = t;
        // Preloaded before time 0, as in the simulator: not timed.
        if let Some(t) = t {
            executors[i]
                .load(t, true)
                .map_err(|e| anyhow::anyhow!("preloading instance {i}: {e}"))?;
        }
    }
    let (report_tx, report_rx) = mpsc::channel::<WorkerMsg>();
    std::thread::scope(|scope| -> anyhow::Result<Run> {
        let mut jobs = Vec::with_capacity(m);
        let executors = std::mem::take(&mut executors);
        for (instance, mut exec) in executors.into_iter().enumerate() {
            let (job_tx, job_rx) = mpsc::channel::<Job>();
            jobs.push(job_tx);
            let tx = report_tx.clone();
            scope.spawn(move || {
                while let Ok(Job::Run { request, load }) = job_rx.recv() {
                    let r = &requests[request as usize];
                    let result = load
                        .map_or(Ok(()), |cold| exec.load(r.tenant, cold))
                        .and_then(|()| {
                            if load.is_some() {
                                let _ = tx.send(WorkerMsg::LoadDone { instance });
                            }
                            exec.infer(r)
                        });
                    let msg = match result {
                        Ok(()) => WorkerMsg::Done { instance, request },
                        Err(message) => WorkerMsg::Failed {
                            instance,
                            request,
                            message,
                        },
                    };
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
            });
        }
        drop(report_tx);
        let result = coordinate(setup, scheduler, &jobs, &report_rx, &mut views, &mut run);
        for j in &jobs {
            let _ = j.send(Job::Stop);
        }
        result.map(|()| run)
    })
}

/// Where each busy instance is: (request, phase start, phase kind).
type Phase = Option<(RequestId, Nanos, SpanKind)>;

fn coordinate(
    setup: &Setup<'_>,
    scheduler: &mut dyn Scheduler,
    jobs: &[mpsc::Sender<Job>],
    reports: &mpsc::Receiver<WorkerMsg>,
    views: &mut [InstanceView],
    run: &mut Run,
) -> anyhow::Result<()> {
    let requests = &setup.workload.requests;
    let n = requests.len();
    let m = views.len();
    let tick = scheduler.tick_ns();
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as Nanos;
    let mut phases: Vec<Phase> = vec![None; m];
    let (mut next_arrival, mut waiting, mut completed, mut busy) = (0usize, 0usize, 0usize, 0usize);
    let mut busy_since: Nanos = 0;
    let mut next_tick: Nanos = 0;
    let mut out = Vec::new();
    while completed < n {
        // Sleep until the next arrival or tick, unless a worker reports first.
        let due = [
            requests.get(next_arrival).map(|r| r.arrival_ns),
            tick.map(|_| next_tick),
        ]
        .into_iter()
        .flatten()
        .min();
        let wait = due.map(|d| Duration::from_nanos(d.saturating_sub(now())));
        let first = match wait {
            Some(w) => reports.recv_timeout(w).ok(),
            None => Some(reports.recv()?),
        };
        let t = now();
        let mut changed = false;
        for report in first.into_iter().chain(reports.try_iter()) {
            match report {
                WorkerMsg::LoadDone { instance } => {
                    if let Some((request, since, kind)) = phases[instance] {
                        span(run, instance, kind, request, since, t);
                        phases[instance] = Some((request, t, SpanKind::Inference));
                    }
                }
                WorkerMsg::Done { instance, request } => {
                    let (_, since, kind) =
                        phases[instance].take().expect("a busy instance reports");
                    span(run, instance, kind, request, since, t);
                    run.end_ns[request as usize] = t;
                    run.instances[instance].requests += 1;
                    views[instance].busy = false;
                    completed += 1;
                    busy -= 1;
                    if busy == 0 {
                        run.gpu_busy_ns += t - busy_since;
                    }
                    changed = true;
                }
                WorkerMsg::Failed {
                    instance,
                    request,
                    message,
                } => {
                    anyhow::bail!("instance {instance} failed on request {request}: {message}")
                }
            }
        }
        while next_arrival < n && requests[next_arrival].arrival_ns <= t {
            let view = View {
                now_ns: t,
                instances: views,
                requests,
                estimates: &setup.estimates,
            };
            scheduler.on_arrival(next_arrival as RequestId, &view);
            next_arrival += 1;
            waiting += 1;
            changed = true;
        }
        let ticked = tick.is_some_and(|_| t >= next_tick);
        if let Some(p) = tick.filter(|_| ticked) {
            next_tick = (t / p + 1) * p;
        }
        let decide = if tick.is_some() { ticked } else { changed };
        if decide && waiting > 0 && busy < m {
            let view = View {
                now_ns: t,
                instances: views,
                requests,
                estimates: &setup.estimates,
            };
            scheduler.decide(&view, &mut out);
            for Dispatch { instance, request } in out.drain(..) {
                let (i, r) = (instance as usize, &requests[request as usize]);
                anyhow::ensure!(
                    !views[i].busy,
                    "{} dispatched to busy instance {i}",
                    scheduler.name()
                );
                let load = match views[i].resident {
                    None => Some(true),
                    Some(held) if held == r.tenant => None,
                    Some(_) => Some(false),
                };
                let kind = match load {
                    Some(true) => {
                        run.instances[i].cold_loads += 1;
                        SpanKind::ColdLoad
                    }
                    Some(false) => {
                        run.instances[i].switches += 1;
                        SpanKind::Switch
                    }
                    None => SpanKind::Inference,
                };
                if load.is_some() {
                    run.tenant_loads[r.tenant as usize] += 1;
                }
                let estimate = setup.estimates.load_ns(views[i].resident, r.tenant)
                    + setup.estimates.service_ns(request);
                views[i].busy = true;
                views[i].resident = Some(r.tenant);
                views[i].free_at_est_ns = t + estimate;
                phases[i] = Some((request, t, kind));
                run.start_ns[request as usize] = t;
                run.served_by[request as usize] = instance;
                waiting -= 1;
                if busy == 0 {
                    busy_since = t;
                }
                busy += 1;
                jobs[i].send(Job::Run { request, load })?;
            }
        }
        // Nothing will happen any more: no arrival to come, no instance busy.
        if decide && next_arrival == n && busy == 0 && waiting > 0 {
            anyhow::bail!(
                "{} stalled: {waiting} requests wait, every instance is idle and nothing else will happen",
                scheduler.name()
            );
        }
    }
    Ok(())
}

fn span(
    run: &mut Run,
    instance: usize,
    kind: SpanKind,
    request: RequestId,
    start_ns: Nanos,
    end_ns: Nanos,
) {
    let stats = &mut run.instances[instance];
    stats.busy_ns += end_ns - start_ns;
    if kind != SpanKind::Inference {
        stats.loading_ns += end_ns - start_ns;
    }
    if let Some(t) = &mut run.timeline {
        t.push(ptm_sim::engine::Span {
            instance: instance as u32,
            kind,
            request,
            start_ns,
            end_ns,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ptm_sim::engine::{self, LoadingMode, Serving};
    use ptm_sim::metrics::Report;
    use ptm_sim::profile::{Dist, Profile};
    use ptm_sim::scheduler::{self, Shape};
    use ptm_sim::workload::{self, NoFiles, RequestDefaults, WorkloadSpec};

    /// Sleeps for the example profile's costs.
    struct Sleeper {
        cold_ms: u64,
        switch_ms: u64,
        infer_ms: u64,
    }

    impl Executor for Sleeper {
        fn load(&mut self, _tenant: TenantId, cold: bool) -> Result<(), String> {
            std::thread::sleep(Duration::from_millis(if cold {
                self.cold_ms
            } else {
                self.switch_ms
            }));
            Ok(())
        }
        fn infer(&mut self, _request: &Request) -> Result<(), String> {
            std::thread::sleep(Duration::from_millis(self.infer_ms));
            Ok(())
        }
    }

    #[test]
    fn live_replay_follows_the_same_schedule_as_the_simulator() {
        let mut profile = Profile::example();
        let m = profile.models.get_mut("bert-base").unwrap();
        m.cold_load.ms = Dist::Constant(30.0);
        m.switch.split.ms = Dist::Constant(20.0);
        m.forward.points[0].ms = Dist::Constant(2.0); // 16 samples: 32 ms a request
        let spec = WorkloadSpec::Sequence {
            repeat: 4,
            types: 3,
            shuffle: true,
            gap_ms: 25.0,
        };
        let w =
            workload::build(&spec, &RequestDefaults::default(), "bert-base", 3, &NoFiles).unwrap();
        let serving = Serving {
            instances: 2,
            loading: LoadingMode::Split,
            forward_batch: 1,
        };
        let setup = Setup::new(&profile, "p", &w, serving).unwrap();
        let shape = Shape {
            instances: 2,
            tenants: 3,
        };
        for policy in ["fcfs-rr", "omls", "affinity"] {
            let mut s = scheduler::by_name(policy, &Default::default(), shape).unwrap();
            let sim = engine::simulate(&setup, s.as_mut(), 1, Default::default()).unwrap();
            let mut s = scheduler::by_name(policy, &Default::default(), shape).unwrap();
            let executors: Vec<Box<dyn Executor>> = (0..2)
                .map(|_| {
                    Box::new(Sleeper {
                        cold_ms: 30,
                        switch_ms: 20,
                        infer_ms: 32,
                    }) as Box<dyn Executor>
                })
                .collect();
            let live = replay(&setup, s.as_mut(), executors, Preload::Policy).unwrap();
            let (a, b) = (
                Report::new("t", policy, 1, &setup, &sim),
                Report::new("t", policy, 1, &setup, &live),
            );
            assert_eq!(b.completed, w.requests.len(), "{policy}");
            if policy == "fcfs-rr" {
                // Round-robin decides without looking at time: the same loads in both worlds.
                // (The others may break near-ties differently on a loaded machine.)
                assert_eq!(a.switches + a.cold_loads, b.switches + b.cold_loads);
            }
            let err = (a.latency_ms.mean - b.latency_ms.mean).abs() / a.latency_ms.mean;
            assert!(
                err < 0.5,
                "{policy}: sim {} ms, live {} ms",
                a.latency_ms.mean,
                b.latency_ms.mean
            );
            let spans = live.timeline.as_ref().unwrap();
            assert_eq!(
                spans
                    .iter()
                    .filter(|s| s.kind == SpanKind::Inference)
                    .count(),
                w.requests.len()
            );
        }
    }
}
