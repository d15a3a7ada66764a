//! `ptm serve`: an HTTP/JSON server on loopback whose requests are scheduled by the same
//! policies as the simulator and run on the real runtime.
//!
//! Threads: a tokio runtime serves HTTP ([`http`]: connections, timeouts, shutdown; [`routes`]:
//! handlers, guard, counting); the calling thread coordinates (the live [`Core`]: scheduler,
//! instances, and [`admission`] control on measured service times); one worker thread per
//! instance runs the runtime. A request is read (bounded in size and time), parsed and
//! tokenized on the blocking pool, sent to the coordinator, admitted or refused (429: queue
//! full, or the admitted work ahead plus its own measured service exceeds its deadline),
//! dispatched by the policy, and answered with its outputs. Shutdown (SIGINT/SIGTERM) stops
//! accepting connections and requests (503), answers every accepted request within the grace
//! period or refuses it (503), then exits; `/metrics` counts every response.

mod admission;
mod api;
mod guard;
mod http;
pub mod metrics;
mod routes;
mod timed;

pub use admission::{Admission, Estimate, Priors, ServiceModel};
pub use api::{
    body_limit_bytes, max_text_bytes, parse_infer, valid_deadline_ms, ApiError, InferRequest,
    TenantInfo, MAX_DEADLINE_MS, MAX_TEXTS,
};
pub use guard::{read_token, Guard};
pub use http::{HttpOptions, Stop};

use crate::coordinator::{Core, CoreOptions, Msg, Refusal};
use crate::executor::Executor;
use crate::fleet::{Fleet, FleetShape};
use crate::pet::PetTenants;
use metrics::Metrics;
use ptm_calibrate::{calibrate, target_for, Check, Expected, Plan};
use ptm_runtime::pet::PetZoo;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{Config, DType, Device, Zoo};
use ptm_sim::engine::{Batching, LoadingMode, PetServing, Preload, Serving, Setup};
use ptm_sim::ledger::{Capacity, Eviction};
use ptm_sim::profile::PetKind;
use ptm_sim::profile::Profile;
use ptm_sim::scheduler::{self, PolicyOptions, Shape};
use ptm_sim::time::{ms_to_ns, Nanos};
use ptm_sim::workload::{Tenant, TenantId, Workload};
use routes::AppState;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use timed::Timed;

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
    /// Read timeouts and the shutdown grace period.
    pub http: HttpOptions,
    /// A bearer token every request must carry (`--token-file`).
    pub token: Option<String>,
    /// Use a profile of another model, device or dtype all the same (warned about instead of
    /// refused).
    pub allow_profile_mismatch: bool,
    /// How executor threads wait for the GPU (`--gpu-sync`; `auto`: the driver's default).
    pub gpu_sync: ptm_runtime::gpu::HostSync,
    /// The runtime's kernel options (the default but for A/B runs: `--pageable-staging`).
    pub kernel_options: ptm_runtime::KernelOptions,
}

impl ServeOptions {
    /// Refuses options the server cannot run with, naming the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.listen.ip().is_loopback(),
            "--listen {}: ptm serve listens on loopback only",
            self.listen
        );
        anyhow::ensure!(
            self.instances > 0 && self.queue > 0 && self.forward_batch > 0,
            "--instances, --queue and --forward-batch must be ≥ 1"
        );
        anyhow::ensure!(
            valid_deadline_ms(self.deadline_ms),
            "--deadline-ms {}: expected a positive number of milliseconds, at most {MAX_DEADLINE_MS} \
             (a day); 0 would refuse every request that gives no deadline_ms",
            self.deadline_ms
        );
        anyhow::ensure!(
            self.gpu_sync == ptm_runtime::gpu::HostSync::Auto
                || matches!(self.device, Device::Cuda(_)),
            "--gpu-sync {}: only a cuda device has a wait to choose",
            self.gpu_sync
        );
        for (flag, d) in [
            ("--header-timeout-ms", self.http.header_timeout),
            ("--body-timeout-ms", self.http.body_timeout),
        ] {
            anyhow::ensure!(!d.is_zero(), "{flag}: expected at least 1 ms");
        }
        Ok(())
    }
}

/// What tests and benchmarks may set beside the options.
pub struct Hooks {
    /// The instances' executors (default: runtime slots over the zoo).
    pub executors: Option<Vec<Box<dyn Executor>>>,
    /// How the server learns it must stop.
    pub stop: Stop,
    /// Told the address once the server listens.
    pub listening: Option<mpsc::Sender<SocketAddr>>,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            executors: None,
            stop: Stop::Signals,
            listening: None,
        }
    }
}

/// The profile's estimates for admission, from the coordinator's setup.
struct SetupPriors<'a>(&'a Setup<'a>);

impl Priors for SetupPriors<'_> {
    fn model_of(&self, tenant: TenantId) -> usize {
        self.0.estimates.model_of(tenant)
    }
    fn inference_ns(&self, tenant: TenantId, samples: u32, seq_len: u32) -> Nanos {
        self.0.estimate_service_ns(tenant, samples, seq_len)
    }
    fn load_ns(&self, from: Option<TenantId>, tenant: TenantId) -> Nanos {
        self.0.estimates.load_ns(from, tenant)
    }
}

/// Runs the server until SIGINT or SIGTERM; returns the counters.
pub fn serve(o: ServeOptions) -> anyhow::Result<Arc<Metrics>> {
    serve_with(o, Hooks::default())
}

/// Runs the server with `hooks` until told to stop; returns the counters.
pub fn serve_with(mut o: ServeOptions, hooks: Hooks) -> anyhow::Result<Arc<Metrics>> {
    o.validate()?;
    if let Device::Cuda(ordinal) = o.device {
        // Before anything (the profile check, the slots) opens the GPU's context.
        ptm_runtime::gpu::set_host_sync(ordinal, o.gpu_sync)?;
    }
    let (tenants, pet) = zoo_tenants(&o.zoo)?;
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
    // Served texts may be as long as the model allows.
    let max_seq = tenants
        .iter()
        .map(|t| t.cfg.max_tokens())
        .min()
        .unwrap_or(1);
    // The runtime's executors first: its pool's size (`auto`: what fits beside the instances
    // on the device) is what the ledger's pool has. For parameter-efficient tenants,
    // --gpu-pool sizes the GPU's delta pool instead.
    let delta_slots = match pet {
        Some(_) => PetTenants::pool_slots(&o.zoo, tenants.len(), o.dtype, o.gpu_pool)?,
        None => 0,
    };
    let fleet = match hooks.executors {
        Some(_) => None,
        None => Some(Fleet::read(
            &o.zoo,
            tenants.len(),
            o.dtype,
            o.device,
            FleetShape {
                max_rows: o.forward_batch as usize,
                max_seq,
                pool: if pet.is_some() { None } else { o.gpu_pool },
                instances: o.instances,
                pet: pet.is_some(),
                delta_slots,
                options: o.kernel_options,
            },
        )?),
    };
    let gpu_pool = match (&fleet, o.gpu_pool) {
        (_, _) if pet.is_some() => None,
        (Some(f), Some(_)) => f.pool_slots().map(|n| Capacity::Tenants(n as u32)),
        (_, pool) => pool,
    };
    let serving = Serving {
        instances: o.instances,
        loading: LoadingMode::Split,
        forward_batch: o.forward_batch,
        gpu_pool,
        eviction: o.eviction,
        batching: o.batching,
        pet: pet.map(|kind| PetServing {
            kind,
            delta_pool: Capacity::Tenants(delta_slots as u32),
        }),
        ..Serving::default()
    };
    let setup = Setup::new(&profile, &profile_name, &workload, serving)?;
    let shape = Shape {
        instances: o.instances,
        tenants: tenants.len(),
    };
    let mut scheduler = scheduler::by_name(&o.policy, &PolicyOptions::default(), shape)?;
    let (executors, prefetcher) = match (hooks.executors, fleet) {
        (Some(e), _) => (e, None),
        (None, None) => anyhow::bail!("no executors and no tenants to make them from"),
        (None, Some(fleet)) => {
            fleet.check_fit(o.instances)?;
            (
                fleet.executors(o.instances, o.forward_batch, 0, &[])?,
                fleet.prefetcher(),
            )
        }
    };
    anyhow::ensure!(
        executors.len() == o.instances,
        "{} executors for {} instances",
        executors.len(),
        o.instances
    );
    let live = timed::shared(o.instances);
    let executors: Vec<Box<dyn Executor>> = executors
        .into_iter()
        .enumerate()
        .map(|(i, e)| Box::new(Timed::new(e, i, live.clone())) as Box<dyn Executor>)
        .collect();
    let listener = std::net::TcpListener::bind(o.listen)?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = mpsc::channel::<Msg>();
    let state = Arc::new(AppState::new(
        tenants,
        tx.clone(),
        metrics.clone(),
        o.deadline_ms,
        Guard::new(addr.port(), o.token.clone()),
        o.http,
    ));
    let priors = SetupPriors(&setup);
    let mut admission = Admission::new(&priors);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut core = Core::start(
            scope,
            &setup,
            scheduler.as_mut(),
            executors,
            prefetcher,
            CoreOptions {
                preload: Preload::Empty,
                timeline: false,
                forget_answered: true,
                origin_ns: 0,
            },
            &tx,
        )?;
        let http_state = state.clone();
        let stop = hooks.stop;
        let (ready_tx, ready) = mpsc::channel();
        let http = scope.spawn(move || http::run(listener, http_state, stop, ready_tx));
        drop(tx);
        if ready.recv().is_ok() {
            println!(
                "ptm serve: listening on http://{addr} ({} tenants, {} instances on {}, policy {})",
                state.tenants.len(),
                o.instances,
                o.device,
                o.policy
            );
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            if let Some(l) = hooks.listening {
                let _ = l.send(addr);
            }
        }
        let result = coordinate(&mut core, &rx, &mut admission, &live, &state, o.queue);
        if result.is_err() {
            // The coordinator failed: stop serving rather than leave requests unanswered.
            state.stop_now();
        }
        drop(core);
        let http = http
            .join()
            .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"));
        result?;
        http??;
        Ok(())
    })?;
    Ok(metrics)
}

/// The coordinator's loop: admits or refuses arrivals, hands workers' reports to the core,
/// lets the policy decide, updates the gauges; returns once every connection is closed and
/// nothing runs.
fn coordinate(
    core: &mut Core<'_>,
    rx: &mpsc::Receiver<Msg>,
    admission: &mut Admission<'_>,
    live: &timed::Shared,
    state: &AppState,
    queue: usize,
) -> anyhow::Result<()> {
    let metrics = &state.metrics;
    let mut draining = false;
    loop {
        let first = match core.until_tick() {
            Some(w) => rx.recv_timeout(w).ok(),
            None => Some(rx.recv()?),
        };
        admission.absorb(live);
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
                    if core.waiting() >= queue {
                        let why = format!(
                            "queue full: {} requests wait (the server's --queue)",
                            core.waiting()
                        );
                        let _ = reply.send(Err(Refusal::Rejected(why)));
                        continue;
                    }
                    let estimate =
                        admission.estimate(live, request.tenant, request.samples, request.seq_len);
                    if estimate.finish_ns() > request.deadline_ns {
                        let why = estimate.refusal(request.deadline_ns);
                        let _ = reply.send(Err(Refusal::Rejected(why)));
                        continue;
                    }
                    request.arrival_ns = core.now();
                    let (tenant, samples, seq_len) =
                        (request.tenant, request.samples, request.seq_len);
                    let now_ns = core.now();
                    let id = core.arrive(request, Some(rows), Some(reply))?;
                    admission.admit(id, tenant, (samples, seq_len), &estimate, now_ns);
                    metrics.accepted.fetch_add(1, Relaxed);
                    changed = true;
                }
                Msg::Drain => draining = true,
                worker => {
                    if let Msg::Done { instance, .. } = &worker {
                        // Every request of the batch is answered now.
                        let now_ns = core.now();
                        for &id in core.ledger().batch(*instance) {
                            admission.done(id, now_ns);
                        }
                    }
                    changed |= core.worker(worker)?;
                }
            }
        }
        // Once every connection is closed (or the grace period ended) nobody waits for
        // what is still queued: finish what runs and stop.
        let stopping = state.http_done.load(Relaxed) || state.abandoned.load(Relaxed);
        if !stopping {
            core.decide(changed, true)?;
        }
        let run = core.ledger().run();
        let stats = &run.instances;
        metrics
            .switches
            .store(stats.iter().map(|i| i.switches).sum(), Relaxed);
        metrics
            .cold_loads
            .store(stats.iter().map(|i| i.cold_loads).sum(), Relaxed);
        metrics
            .pool_loads
            .store(stats.iter().map(|i| i.pool_loads).sum(), Relaxed);
        metrics
            .batches
            .store(stats.iter().map(|i| i.batches).sum(), Relaxed);
        metrics
            .pool_evictions
            .store(core.ledger().residency().evictions().0, Relaxed);
        metrics.queue_depth.store(core.waiting() as u64, Relaxed);
        metrics.busy_instances.store(core.busy() as u64, Relaxed);
        let spans = run.timeline.as_ref().map_or(0, Vec::len);
        metrics
            .request_records
            .store(core.records() as u64, Relaxed);
        metrics
            .request_record_bytes
            .store(coordinator_record_bytes(core.records(), spans), Relaxed);
        if state.http_done.load(Relaxed) && core.busy() == 0 {
            break;
        }
    }
    Ok(())
}

/// Bytes the coordinator keeps for `records` requests and `spans` timeline spans: per request
/// its `Request`, rows and reply slots, start, end and instance in the run, and its service
/// estimate; per span a `Span`. (What the soak benchmark weighs the server's growth against.)
pub fn coordinator_record_bytes(records: usize, spans: usize) -> u64 {
    use std::mem::size_of;
    let per_request = size_of::<ptm_sim::workload::Request>()
        + size_of::<Option<crate::coordinator::Rows>>()
        + size_of::<Option<crate::coordinator::Reply>>()
        + 2 * size_of::<Nanos>()
        + size_of::<u32>()
        + size_of::<Nanos>();
    (records * per_request + spans * size_of::<ptm_sim::engine::Span>()) as u64
}

/// Refuses a given profile of another model architecture, device kind or dtype than the zoo
/// served (unless allowed); warns on another build.
fn check_profile(
    (profile, name, model): &(Profile, String, String),
    o: &ServeOptions,
) -> anyhow::Result<()> {
    let run =
        Expected::run(Some(&o.zoo), Some(o.device), Some(o.dtype))?.with_options(o.kernel_options);
    let check = Check::new(profile, name, Some(model), &run)?;
    for w in check.enforce(o.allow_profile_mismatch)? {
        eprintln!("ptm serve: warning: {w}");
    }
    Ok(())
}

/// The tenants of the zoo at `dir` (full fine-tunes, or a PET zoo's tenants over its backbone,
/// with their kind).
fn zoo_tenants(dir: &Path) -> anyhow::Result<(Vec<TenantInfo>, Option<PetKind>)> {
    if PetTenants::is_pet_zoo(dir) {
        let zoo = PetZoo::read(dir)?;
        anyhow::ensure!(
            !zoo.tenants.is_empty(),
            "{}: the zoo has no tenants",
            dir.display()
        );
        let backbone = dir.join(&zoo.backbone);
        let cfg = Config::from_file(&backbone.join("config.json"))?;
        let encoder = Arc::new(ptm_runtime::tokenize::TextEncoder::from_file(
            &backbone.join("tokenizer.json"),
            &cfg,
        )?);
        let tenants = zoo
            .tenants
            .iter()
            .map(|t| TenantInfo {
                name: t.name.clone(),
                task: t.task,
                labels: (0..t.labels).map(|i| format!("LABEL_{i}")).collect(),
                encoder: encoder.clone(),
                cfg: cfg.clone(),
            })
            .collect();
        return Ok((tenants, Some(ptm_calibrate::pet::kind_of(&zoo))));
    }
    let zoo = Zoo::read(dir)?;
    anyhow::ensure!(
        !zoo.models.is_empty(),
        "{}: the zoo has no models",
        dir.display()
    );
    let mut tenants = Vec::with_capacity(zoo.models.len());
    for m in &zoo.models {
        let d = model_dir(dir, &m.name);
        let cfg = Config::from_file(&d.join("config.json"))?;
        let encoder = Arc::new(ptm_runtime::tokenize::TextEncoder::from_file(
            &d.join("tokenizer.json"),
            &cfg,
        )?);
        tenants.push(TenantInfo {
            name: m.name.clone(),
            task: m.task,
            labels: cfg.label_names(),
            encoder,
            cfg,
        });
    }
    Ok((tenants, None))
}

/// A quick calibration of the zoo on the serving device: the profile, its name and its model.
/// A PET zoo's backbone is measured on a seeded zoo of its architecture, then its tenants.
fn startup_profile(o: &ServeOptions) -> anyhow::Result<(Profile, String, String)> {
    eprintln!(
        "ptm serve: calibrating the zoo on {} (quick plan; pass --profile to skip)",
        o.device
    );
    let plan = Plan::quick();
    if PetTenants::is_pet_zoo(&o.zoo) {
        let zoo = PetZoo::read(&o.zoo)?;
        let tmp = tempfile::tempdir()?;
        let full = ptm_calibrate::runtime_target::make_zoo(zoo.arch.name(), o.dtype, tmp.path())?;
        let (mut target, names) = target_for(o.device, &[full], o.dtype, &plan)?;
        let mut p = calibrate(
            target.as_mut(),
            &names,
            &plan,
            "ptm serve (start-up calibration)",
            "now",
            &mut |_| (),
        )?;
        let (model, kind, costs) =
            ptm_calibrate::pet::calibrate_pet(&o.zoo, o.device, o.dtype, &plan)?;
        if let Some(m) = p.models.get_mut(&model) {
            m.pet.insert(kind.key(), costs);
        }
        return Ok((p, "start-up calibration".to_string(), model));
    }
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
