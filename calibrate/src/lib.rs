//! # ptm-calibrate — measure a device, write the simulator's profile
//!
//! Calibration drives a [`Target`] — the real runtime on a GPU or the CPU — through every figure
//! the simulator's [`Profile`] holds: an instance's cold load, a switch per loading mode,
//! forward-pass latency over a (batch × sequence length) grid, and how switches and forward
//! passes stretch when several instances work at once. Each figure gets warm-up runs, then
//! repeats; [`stats::summarise`] turns the repeats into a median, percentiles, a standard
//! deviation and a fitted distribution (normal or log-normal, by likelihood), and the profile
//! records both the distribution the simulator samples and the statistics behind it.
//!
//! Through the path a live instance takes ([`slot_path`]: the runtime's `Slot`s on worker
//! threads, jobs handed over channels), [`contention`] then measures what contention by
//! resource and the host overhead need: how forward requests, switches and cold loads share the
//! SMs, the copy engine and the host, how forwards and switches slow each other, and the host's
//! work per dispatch; on a path with a weight pool, [`pool_contention`] measures how pool loads
//! and forward passes slow each other. A target without a live path leaves those sections out,
//! and the profile says so by their absence.
//!
//! The runtime implements [`Target`] (see the CLI's `ptm calibrate`); tests use a synthetic
//! target with known costs.

pub mod check;
pub mod contention;
pub mod gpu_target;
pub mod identity;
pub mod pet;
pub mod plan;
pub mod pool_contention;
pub mod refit;
pub mod runtime_target;
pub mod slot_path;
pub mod stats;
pub mod tiers;

pub use check::{Check, Verdict};
pub use gpu_target::GpuTarget;
pub use identity::Expected;
pub use plan::Plan;
pub use runtime_target::RuntimeTarget;
pub use slot_path::{LivePath, LivePaths, PathOp, SlotPath};

use ptm_runtime::KernelOptions;
use ptm_sim::profile::{
    Calibration, Cost, DeviceKind, ForwardPoint, ForwardTable, Gpu, ModelIdentity, ModelProfile,
    Profile, RuntimeBuild, SwitchCosts,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// What calibration (and checking a profile against a run) can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target failed to perform a measured operation.
    #[error("measuring {what} of {model}: {source}")]
    Target {
        /// The model.
        model: String,
        /// The figure being measured.
        what: String,
        /// The target's error.
        source: Box<Error>,
    },
    /// The runtime failed (reading a zoo, loading, switching, running).
    #[error(transparent)]
    Runtime(#[from] ptm_runtime::Error),
    /// A model the target does not measure.
    #[error("no zoo for model `{model}` (this target measures: {known})")]
    UnknownModel {
        /// The model asked for.
        model: String,
        /// The models it measures.
        known: String,
    },
    /// A measuring thread panicked.
    #[error("a measuring thread panicked while timing {what}")]
    Panicked {
        /// What it was timing.
        what: String,
    },
    /// A profile that describes another model, device or dtype than the run it would be
    /// applied to.
    #[error("{profile} does not describe this run ({fields}); use a profile measured for it (`ptm calibrate`), or pass --allow-profile-mismatch to use it anyway. `ptm profile check` prints every field side by side.")]
    ProfileMismatch {
        /// The profile's name.
        profile: String,
        /// The refused fields, each with the profile's and the run's value.
        fields: String,
    },
    /// A plan or input that cannot be measured.
    #[error("{0}")]
    Invalid(String),
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The calibration target of `device` for `zoos` (the runtime on the CPU, or slots over a pinned
/// host cache on a GPU, sized for `plan`) and the profile model names it measures.
pub fn target_for(
    device: ptm_runtime::Device,
    zoos: &[std::path::PathBuf],
    dtype: ptm_runtime::DType,
    plan: &Plan,
) -> Result<(Box<dyn Target>, Vec<String>)> {
    // The live path runs the stretch shape's passes, the plan's largest and the SMs' sizes
    // between.
    let path_shapes = contention::shapes(plan)
        .iter()
        .chain(&contention::sm_shapes(plan))
        .map(|&(b, s)| (b as usize, s as usize))
        .collect::<Vec<_>>();
    Ok(match device {
        ptm_runtime::Device::Cpu => {
            let t = RuntimeTarget::new(zoos, device, dtype)?
                .with_live_paths(plan.max_instances, path_shapes.clone());
            let names = t.model_names();
            (Box::new(t), names)
        }
        ptm_runtime::Device::Cuda(ordinal) => {
            let max_batch = plan.batches.iter().copied().max().unwrap_or(1) as usize;
            let max_seq = plan.seq_lens.iter().copied().max().unwrap_or(1) as usize;
            let shape = (plan.max_instances, max_batch, max_seq);
            let t = GpuTarget::new(zoos, ordinal, dtype, shape, KernelOptions::default())?
                .with_live_paths(plan.max_instances, path_shapes.clone());
            let names = t.model_names();
            (Box::new(t), names)
        }
    })
}

/// How a switch loads weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchMode {
    /// From the pinned host cache into a resident slot (ptm's split loading).
    HostCache,
    /// FastPTM's split mode: re-read the checkpoint into pageable memory, copy in place.
    FastPtm,
    /// Rebuild: read the checkpoint, allocate and upload tensor by tensor, build the model.
    Full,
}

/// One measurable operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A switch in the given mode.
    Switch(SwitchMode),
    /// One forward pass.
    Forward {
        /// Samples.
        batch: u32,
        /// Tokens per sample.
        seq_len: u32,
    },
}

/// The device being calibrated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// CPU or GPU.
    pub kind: DeviceKind,
    /// Its name, as the driver reports it.
    pub name: String,
    /// Driver version (or "cpu").
    pub driver: String,
    /// Memory available to instances, bytes.
    pub memory_bytes: u64,
}

/// Something calibration can measure: models on one device.
pub trait Target {
    /// The device.
    fn device(&self) -> DeviceInfo;
    /// The runtime build measuring (version, build identity, kernel options); `None` for
    /// targets that are not the runtime (tests).
    fn runtime(&self) -> Option<RuntimeBuild> {
        None
    }
    /// The model behind the profile model name `model` (architecture, dtype, encoder shape),
    /// when known.
    fn model_identity(&self, _model: &str) -> Option<ModelIdentity> {
        None
    }
    /// Memory one instance of `model` takes, bytes.
    fn memory_per_instance_bytes(&mut self, model: &str) -> Result<u64>;
    /// One cold load of `model` (checkpoint to ready instance).
    fn cold_load(&mut self, model: &str) -> Result<Duration>;
    /// `op` once on each of `instances` instances at the same time; each one's latency.
    fn concurrent(&mut self, model: &str, instances: usize, op: Op) -> Result<Vec<Duration>>;
    /// Bytes of one tenant's packed weights of `model` (what a weight-pool slot holds);
    /// `None` for targets without a packed layout.
    fn weights_bytes(&mut self, _model: &str) -> Result<Option<u64>> {
        Ok(None)
    }
    /// A load from the weight pool into each of `instances` executors at the same time (each
    /// its own tenant); each one's latency. `None`: the target has no weight pool.
    fn pool_loads(&mut self, _model: &str, _instances: usize) -> Result<Option<Vec<Duration>>> {
        Ok(None)
    }
    /// The path a live instance of `model` takes (runtime slots on worker threads), for the
    /// contention and host-overhead figures ([`contention`]); `None` when this target has none
    /// (the profile then says they were not measured).
    fn live_path(&mut self, _model: &str) -> Result<Option<&mut dyn LivePath>> {
        Ok(None)
    }
}

/// A step of a calibration, for progress reporting.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Steps done so far (including this one).
    pub done: usize,
    /// Steps in total.
    pub total: usize,
    /// What was just measured.
    pub what: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Measures `models` on `target` following `plan`, calling `progress` after each figure, and
/// returns the profile. `command` is recorded as the calibration's provenance, `date` as its
/// time (ISO 8601, UTC).
pub fn calibrate(
    target: &mut dyn Target,
    models: &[String],
    plan: &Plan,
    command: &str,
    date: &str,
    progress: &mut dyn FnMut(Step),
) -> Result<Profile> {
    plan.validate()?;
    if models.is_empty() {
        return Err(Error::Invalid("no models to calibrate".into()));
    }
    let total = models.len() * plan.steps_per_model();
    let mut done = 0;
    let mut step = |what: String| {
        done += 1;
        progress(Step { done, total, what });
    };
    let instances = format!("1–{} instances", plan.max_instances);
    let mut out = BTreeMap::new();
    for model in models {
        let mut session = Session {
            target: &mut *target,
            plan,
            model,
        };
        let memory = session
            .target
            .memory_per_instance_bytes(model)
            .map_err(|e| session.fail("memory", e))?;
        let cold = session.cold_loads()?;
        step(format!("{model}: cold load"));
        let split =
            session.cost_over_instances(Op::Switch(SwitchMode::HostCache), "host-cache switch")?;
        step(format!("{model}: host-cache switch, {instances}"));
        let fastptm =
            session.cost_over_instances(Op::Switch(SwitchMode::FastPtm), "FastPTM-mode switch")?;
        step(format!("{model}: FastPTM-mode switch, {instances}"));
        let full = session.cost_over_instances(Op::Switch(SwitchMode::Full), "full switch")?;
        step(format!("{model}: full switch, {instances}"));
        let mut points = Vec::new();
        for &seq_len in &plan.seq_lens {
            for &batch in &plan.batches {
                let samples = session.samples(Op::Forward { batch, seq_len }, 1, "forward")?;
                points.push(ForwardPoint {
                    batch,
                    seq_len,
                    ms: stats::fit(&samples),
                    measured: Some(stats::summarise(&samples)),
                });
            }
            step(format!(
                "{model}: forward, seq_len {seq_len}, batch {:?}",
                plan.batches
            ));
        }
        let (batch, seq_len) = plan.stretch_shape();
        let concurrent =
            session.cost_over_instances(Op::Forward { batch, seq_len }, "concurrent forward")?;
        step(format!("{model}: forward, {instances}"));
        let forward = ForwardTable {
            points,
            stretch: concurrent.stretch,
        };
        let path = if plan.max_instances >= 2 {
            session.target.live_path(model).map_err(|e| Error::Target {
                model: model.clone(),
                what: "the live path".into(),
                source: Box::new(e),
            })?
        } else {
            None
        };
        let mut pool_contention = None;
        let figures = match path {
            Some(path) => {
                let f = contention::measure(
                    &mut *path,
                    plan,
                    &|b, s| forward.mean_ms(b, s),
                    &mut |what| step(format!("{model}: {what}")),
                )
                .map_err(|e| Error::Target {
                    model: model.clone(),
                    what: "contention and host overhead".into(),
                    source: Box::new(e),
                })?;
                pool_contention =
                    pool_contention::measure(path, plan).map_err(|e| Error::Target {
                        model: model.clone(),
                        what: "pool loads beside forward passes".into(),
                        source: Box::new(e),
                    })?;
                Some(f)
            }
            None => {
                for _ in 0..contention::STEPS {
                    step(format!(
                        "{model}: contention and host overhead not measured (this target has \
                         no live path, or the plan fewer than 2 instances)"
                    ));
                }
                None
            }
        };
        let weights_bytes = session
            .target
            .weights_bytes(model)
            .map_err(|e| session.fail("weights bytes", e))?;
        let pool_switch = tiers::pool_cost(&mut session)?;
        step(format!("{model}: weight-pool load, {instances}"));
        out.insert(
            model.clone(),
            ModelProfile {
                memory_per_instance_bytes: memory,
                cold_load: Cost {
                    measured: Some(stats::summarise(&cold)),
                    ..Cost::flat(stats::fit(&cold))
                },
                switch: SwitchCosts {
                    split,
                    full,
                    fastptm: Some(fastptm),
                },
                weights_bytes,
                pool_switch,
                request_overhead_ms: ptm_sim::profile::Dist::Constant(0.0),
                forward,
                identity: session.target.model_identity(model),
                pet: Default::default(),
                contention: figures.as_ref().map(|f| f.contention.clone()),
                host: figures.map(|f| f.host),
                pool_contention,
            },
        );
    }
    let device = target.device();
    Ok(Profile {
        gpu: Gpu {
            name: device.name.clone(),
            memory_bytes: device.memory_bytes,
            kind: Some(device.kind),
        },
        source: format!("measured by `{command}` on {date}"),
        models: out,
        calibration: Some(Calibration {
            date: date.to_string(),
            command: command.to_string(),
            driver: device.driver,
            warmup: plan.warmup,
            repeats: plan.repeats,
            interpolation:
                "forward latency: linear in batch within a sequence length, then linear in \
                sequence length; clamped below the smallest measured point, proportional above the \
                largest. Stretch: median latency with k instances busy over the median with one, \
                the last factor holding beyond the measured instance counts. Contention (when \
                measured): a resource's curve is the last finish of k simultaneous operations \
                over one alone, the total rate holding beyond the measured k; the SMs' curve is \
                interpolated in log(tokens) between the two nearest pass sizes measured (the \
                small, the large and, when the plan has them, the sizes between: its batches at \
                the small passes' length, each at least 4 times the tokens of the one before)."
                    .into(),
            runtime: target.runtime(),
        }),
    })
}

/// One model's measurements on a target.
pub(crate) struct Session<'a> {
    target: &'a mut dyn Target,
    plan: &'a Plan,
    model: &'a str,
}

impl Session<'_> {
    fn fail(&self, what: &str, source: Error) -> Error {
        Error::Target {
            model: self.model.to_string(),
            what: what.to_string(),
            source: Box::new(source),
        }
    }

    /// Cold loads after the warm-up, `slow_repeats` times (ms).
    fn cold_loads(&mut self) -> Result<Vec<f64>> {
        let mut samples = Vec::new();
        for i in 0..self.plan.warmup + self.plan.slow_repeats {
            let d = self
                .target
                .cold_load(self.model)
                .map_err(|e| self.fail("cold load", e))?;
            if i >= self.plan.warmup {
                samples.push(ms(d));
            }
        }
        Ok(samples)
    }

    /// Whether `op` is one of the slow figures (measured fewer times, over fewer instances).
    fn slow(op: Op) -> bool {
        matches!(op, Op::Switch(SwitchMode::FastPtm | SwitchMode::Full))
    }

    /// `op` on `k` instances at once, after the warm-up, `repeats` times (`slow_repeats` for
    /// the slow figures): every instance's latency of every repeat is a sample (ms).
    fn samples(&mut self, op: Op, k: usize, what: &str) -> Result<Vec<f64>> {
        let repeats = if Self::slow(op) {
            self.plan.slow_repeats
        } else {
            self.plan.repeats
        };
        let mut samples = Vec::new();
        for i in 0..self.plan.warmup + repeats {
            let ds = self
                .target
                .concurrent(self.model, k, op)
                .map_err(|e| self.fail(what, e))?;
            if ds.len() != k {
                let e = Error::Invalid(format!("{} latencies for {k} instances", ds.len()));
                return Err(self.fail(what, e));
            }
            if i >= self.plan.warmup {
                samples.extend(ds.into_iter().map(ms));
            }
        }
        Ok(samples)
    }

    /// `op`'s cost: its distribution with one instance and its stretch with 1, 2, … busy.
    fn cost_over_instances(&mut self, op: Op, what: &str) -> Result<Cost> {
        let base = self.samples(op, 1, what)?;
        let mut medians = vec![stats::median(&base)];
        let max_k = if Self::slow(op) {
            self.plan.slow_max_instances.min(self.plan.max_instances)
        } else {
            self.plan.max_instances
        };
        for k in 2..=max_k {
            medians.push(stats::median(&self.samples(op, k, what)?));
        }
        Ok(Cost {
            ms: stats::fit(&base),
            stretch: stretch(&medians),
            measured: Some(stats::summarise(&base)),
        })
    }
}

/// Factors relative to the first median.
fn stretch(medians: &[f64]) -> Vec<f64> {
    match medians.first() {
        Some(&m1) if m1 > 0.0 => medians.iter().map(|m| m / m1).collect(),
        _ => vec![1.0; medians.len()],
    }
}
