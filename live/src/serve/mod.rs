//! `ptm serve`: an HTTP/JSON server on loopback whose requests are scheduled by the same
//! policies as the simulator and run on the real runtime.
//!
//! Threads: a tokio runtime serves HTTP; the calling thread coordinates (the live [`Core`]:
//! scheduler, instances, admission control); one worker thread per instance runs the runtime.
//! A request is tokenized with its tenant's `tokenizer.json` in the handler, sent to the
//! coordinator, admitted or refused (429: queue full, or the estimated start plus service and
//! switch exceeds its deadline), dispatched by the policy, and answered with its outputs.
//! Shutdown (SIGINT/SIGTERM) stops accepting connections, answers every accepted request, then
//! exits; the counters at `/metrics` add up: every response is counted under its status.

mod api;
mod http;
pub mod metrics;

pub use api::{InferRequest, TenantInfo};

use crate::coordinator::{Core, CoreOptions, Msg, Refusal};
use crate::executor::{Executor, Prefetcher};
use crate::slot::{PoolPrefetcher, SlotExecutor, Tenants};
use metrics::Metrics;
use ptm_calibrate::{calibrate, target_for, Check, Expected, Plan};
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{Config, DType, Device, Zoo};
use ptm_sim::engine::{Batching, LoadingMode, Preload, Serving, Setup};
use ptm_sim::ledger::{Capacity, Eviction};
use ptm_sim::profile::Profile;
use ptm_sim::scheduler::{self, PolicyOptions, Shape};
use ptm_sim::time::ms_to_ns;
use ptm_sim::workload::{Tenant, Workload};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};

/// How to serve.
pub struct ServeOptions {
    /// Address to listen on (port 0: any free port, printed at start).
    pub listen: SocketAddr,
    /// The zoo whose models are the tenants.
    pub zoo: PathBuf,
    /// Where the runtime runs.
    pub device: Device,
    /// Weight dtype.
    pub dtype: DType,
    /// Scheduling policy.
    pub policy: String,
    /// Instances (model slots).
    pub instances: usize,
    /// Samples per forward pass (and most rows of a batch).
    pub forward_batch: u32,
    /// The GPU weight pool (`None`: FastPTM's model).
    pub gpu_pool: Option<Capacity>,
    /// Who a full pool evicts.
    pub eviction: Eviction,
    /// Cross-request batching.
    pub batching: Option<Batching>,
    /// Most requests waiting for an instance; more are refused with 429.
    pub queue: usize,
    /// Deadline of requests that give none, milliseconds.
    pub deadline_ms: f64,
    /// The profile whose costs the policy and admission estimate with, its name, and the model
    /// in it that describes the zoo; `None`: a quick calibration of the zoo on `device` at
    /// start-up.
    pub profile: Option<(Profile, String, String)>,
    /// Use a profile of another model, device or dtype all the same (warned about instead of
    /// refused).
    pub allow_profile_mismatch: bool,
}

/// What the server shares with its HTTP handlers.
pub struct AppState {
    /// Tenants by id.
    pub tenants: Vec<TenantInfo>,
    /// Tenant ids by name.
    pub by_name: BTreeMap<String, u32>,
    /// To the coordinator.
    pub tx: mpsc::Sender<Msg>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Default deadline, ms.
    pub deadline_ms: f64,
}

/// Runs the server until SIGINT or SIGTERM; returns the counters.
pub fn serve(mut o: ServeOptions) -> anyhow::Result<Arc<Metrics>> {
    let zoo = Zoo::read(&o.zoo)?;
    anyhow::ensure!(
        !zoo.models.is_empty(),
        "{}: the zoo has no models",
        o.zoo.display()
    );
    let mut tenants = Vec::with_capacity(zoo.models.len());
    for m in &zoo.models {
        let dir = model_dir(&o.zoo, &m.name);
        let cfg = Config::from_file(&dir.join("config.json"))?;
        let encoder =
            ptm_runtime::tokenize::TextEncoder::from_file(&dir.join("tokenizer.json"), &cfg)?;
        tenants.push(TenantInfo {
            name: m.name.clone(),
            task: m.task,
            labels: cfg.label_names(),
            encoder,
            cfg,
        });
    }
    let (profile, profile_name, model) = match o.profile.take() {
        Some(p) => {
            check_profile(&p, &o)?;
            p
        }
        None => startup_profile(&o)?,
    };
    let workload = Workload {
        tenants: tenants
            .iter()
            .map(|t| Tenant {
                name: t.name.clone(),
                model: model.clone(),
            })
            .collect(),
        requests: Vec::new(),
    };
    let serving = Serving {
        instances: o.instances,
        loading: LoadingMode::Split,
        forward_batch: o.forward_batch,
        gpu_pool: o.gpu_pool,
        eviction: o.eviction,
        batching: o.batching,
        ..Serving::default()
    };
    let setup = Setup::new(&profile, &profile_name, &workload, serving)?;
    let shape = Shape {
        instances: o.instances,
        tenants: tenants.len(),
    };
    let mut scheduler = scheduler::by_name(&o.policy, &PolicyOptions::default(), shape)?;
    // Served texts may be as long as the model allows.
    let max_seq = tenants
        .iter()
        .map(|t| t.cfg.max_tokens())
        .min()
        .unwrap_or(1);
    let shared = Tenants::read(
        &o.zoo,
        tenants.len(),
        o.dtype,
        o.device,
        o.forward_batch as usize,
        max_seq,
        setup.tiers.pool_tenants,
    )?;
    shared.check_fit(o.instances)?;
    let executors = (0..o.instances)
        .map(|i| {
            SlotExecutor::new(shared.clone(), o.forward_batch, i as u64 + 1, &[])
                .map(|e| Box::new(e) as Box<dyn Executor>)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listener = std::net::TcpListener::bind(o.listen)?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = mpsc::channel::<Msg>();
    let by_name = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i as u32))
        .collect();
    let state = Arc::new(AppState {
        tenants,
        by_name,
        tx: tx.clone(),
        metrics: metrics.clone(),
        deadline_ms: o.deadline_ms,
    });
    println!(
        "ptm serve: listening on http://{addr} ({} tenants, {} instances on {}, policy {})",
        state.tenants.len(),
        o.instances,
        o.device,
        o.policy
    );
    use std::io::Write as _;
    std::io::stdout().flush()?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut core = Core::start(
            scope,
            &setup,
            scheduler.as_mut(),
            executors,
            PoolPrefetcher::new(&shared).map(|p| Box::new(p) as Box<dyn Prefetcher>),
            CoreOptions {
                preload: Preload::Empty,
                timeline: false,
                forget_answered: true,
            },
            &tx,
        )?;
        let http_state = state.clone();
        let http = scope.spawn(move || http::run(listener, http_state));
        drop(tx);
        let mut draining = false;
        loop {
            let first = match core.until_tick() {
                Some(w) => rx.recv_timeout(w).ok(),
                None => Some(rx.recv()?),
            };
            let mut changed = false;
            for msg in first.into_iter().chain(rx.try_iter()) {
                match msg {
                    Msg::Arrive {
                        mut request,
                        rows,
                        reply,
                    } => {
                        if draining {
                            let _ = reply.send(Err(Refusal::Draining));
                            continue;
                        }
                        if core.waiting() >= o.queue {
                            let why = format!(
                                "queue full: {} requests wait (the server's --queue)",
                                core.waiting()
                            );
                            let _ = reply.send(Err(Refusal::Rejected(why)));
                            continue;
                        }
                        let finish = core.estimated_wait_ns()
                            + core.estimated_service_ns(
                                request.tenant,
                                request.samples,
                                request.seq_len,
                            );
                        if finish > request.deadline_ns {
                            let why = format!(
                                "cannot meet deadline_ms {}: estimated {:.1} ms to finish",
                                request.deadline_ns as f64 / 1e6,
                                finish as f64 / 1e6
                            );
                            let _ = reply.send(Err(Refusal::Rejected(why)));
                            continue;
                        }
                        request.arrival_ns = core.now();
                        core.arrive(request, Some(rows), Some(reply))?;
                        metrics.accepted.fetch_add(1, Relaxed);
                        changed = true;
                    }
                    Msg::Drain => draining = true,
                    worker => changed |= core.worker(worker)?,
                }
            }
            core.decide(changed, true)?;
            let stats = &core.ledger().run().instances;
            let switches: u64 = stats.iter().map(|i| i.switches).sum();
            let cold: u64 = stats.iter().map(|i| i.cold_loads).sum();
            metrics.switches.store(switches, Relaxed);
            metrics.cold_loads.store(cold, Relaxed);
            metrics.queue_depth.store(core.waiting() as u64, Relaxed);
            metrics.busy_instances.store(core.busy() as u64, Relaxed);
            if draining && core.waiting() == 0 && core.busy() == 0 {
                break;
            }
        }
        drop(core);
        http.join()
            .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))??;
        Ok(())
    })?;
    Ok(metrics)
}

/// Refuses a given profile of another model architecture, device kind or dtype than the zoo
/// served (unless allowed); warns on another build.
fn check_profile(
    (profile, name, model): &(Profile, String, String),
    o: &ServeOptions,
) -> anyhow::Result<()> {
    let run = Expected::run(Some(&o.zoo), Some(o.device), Some(o.dtype))?;
    let check = Check::new(profile, name, Some(model), &run)?;
    for w in check.enforce(o.allow_profile_mismatch)? {
        eprintln!("ptm serve: warning: {w}");
    }
    Ok(())
}

/// A quick calibration of the zoo on the serving device: the profile, its name and its model.
fn startup_profile(o: &ServeOptions) -> anyhow::Result<(Profile, String, String)> {
    eprintln!(
        "ptm serve: calibrating the zoo on {} (quick plan; pass --profile to skip)",
        o.device
    );
    let plan = Plan::quick();
    let (mut target, names) = target_for(o.device, std::slice::from_ref(&o.zoo), o.dtype, &plan)?;
    let p = calibrate(
        target.as_mut(),
        &names,
        &plan,
        "ptm serve (start-up calibration)",
        "now",
        &mut |_| (),
    )?;
    Ok((p, "start-up calibration".to_string(), names[0].clone()))
}

/// A request of `rows` for `tenant` with a deadline, as the coordinator takes it.
pub fn to_request(r: &InferRequest) -> ptm_sim::workload::Request {
    ptm_sim::workload::Request {
        arrival_ns: 0,
        tenant: r.tenant,
        samples: r.rows.len() as u32,
        seq_len: r.rows.iter().map(Vec::len).max().unwrap_or(1) as u32,
        deadline_ns: ms_to_ns(r.deadline_ms),
    }
}
