//! The runtime as a calibration target: the tenants of a zoo on the CPU (candle).
//!
//! What each operation means here, measured on the calibrating thread(s):
//! - cold load: an executor (a runtime `Slot`) reads its next tenant's checkpoint and builds its
//!   engine ([`crate::tiers`]) — what a live CPU instance does when it held nothing;
//! - weight-pool load with k executors: each copies its next tenant from the CPU twin of the
//!   weight pool and builds its engine ([`crate::tiers`]);
//! - host-cache switch: build tenant 1's engine from its packed weights already in memory (on the
//!   CPU the packed host copy *is* the slot's weights);
//! - FastPTM-mode switch: re-read tenant 1's checkpoint from the file, then build the engine;
//! - full switch: `Model::load` of tenant 1 from its folder;
//! - forward: one pass of a (batch × seq_len) batch of random token ids on tenant 0's engine.
//!
//! With k instances, k threads each hold their own engine and start the operation together
//! (a barrier); each one's latency is a sample. GPUs are measured by [`crate::GpuTarget`].

use crate::identity::{model_identity, this_build};
use crate::slot_path::{LivePath, LivePaths};
use crate::tiers::TierSlots;
use crate::{DeviceInfo, Error, Op, Result, SwitchMode, Target};
use ptm_runtime::model::run;
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{ArchLayout, Batch, Config, DType, Device, Model, PackedWeights, Zoo};
use ptm_sim::profile::{DeviceKind, ModelIdentity, RuntimeBuild};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

struct Tenant {
    dir: PathBuf,
    cfg: Config,
    packed: PackedWeights,
}

/// Zoo models on a device, by profile model name (`<arch>-<dtype>`).
pub struct RuntimeTarget {
    device: Device,
    dtype: DType,
    models: BTreeMap<String, [Tenant; 2]>,
    identities: BTreeMap<String, ModelIdentity>,
    /// Per model: its two tenants in a host with a weight pool (made on first use).
    tiers: BTreeMap<String, TierSlots>,
    /// The zoo of each model.
    zoos: BTreeMap<String, PathBuf>,
    /// The live path's figures ([`RuntimeTarget::with_live_paths`]).
    paths: Option<LivePaths>,
}

/// The profile model name of a zoo's architecture in a dtype, e.g. `bert-base-fp16`.
pub fn model_name(zoo: &Zoo, dtype: DType) -> String {
    format!("{}-{dtype}", zoo.arch.name())
}

impl RuntimeTarget {
    /// Reads the first two tenants of each zoo into memory. Each zoo needs at least two.
    pub fn new(zoos: &[PathBuf], device: Device, dtype: DType) -> Result<Self> {
        if let Device::Cuda(_) = device {
            return Err(Error::Invalid(
                "RuntimeTarget measures the CPU; a GPU is calibrated through GpuTarget".into(),
            ));
        }
        let mut models = BTreeMap::new();
        let mut identities = BTreeMap::new();
        let mut zoo_dirs = BTreeMap::new();
        for dir in zoos {
            let zoo = Zoo::read(dir)?;
            if zoo.models.len() < 2 {
                return Err(Error::Invalid(format!(
                    "{}: calibration needs a zoo of at least 2 tenants (to switch between)",
                    dir.display()
                )));
            }
            let load = |i: usize| -> Result<Tenant> {
                let d = model_dir(dir, &zoo.models[i].name);
                let cfg = Config::from_file(&d.join("config.json"))?;
                let packed = PackedWeights::from_file(&d.join("model.safetensors"), &cfg, dtype)?;
                Ok(Tenant {
                    dir: d,
                    cfg,
                    packed,
                })
            };
            let tenants = [load(0)?, load(1)?];
            let name = model_name(&zoo, dtype);
            zoo_dirs.insert(name.clone(), dir.clone());
            identities.insert(
                name.clone(),
                model_identity(zoo.arch, dtype, &tenants[0].cfg),
            );
            models.insert(name, tenants);
        }
        Ok(RuntimeTarget {
            device,
            dtype,
            models,
            identities,
            tiers: BTreeMap::new(),
            zoos: zoo_dirs,
            paths: None,
        })
    }

    /// The same target measuring the live path too ([`crate::contention`]): `instances` slots
    /// per zoo running passes of the `shapes` (rows, tokens).
    pub fn with_live_paths(mut self, instances: usize, shapes: Vec<(usize, usize)>) -> Self {
        self.paths = Some(LivePaths::new(
            self.device,
            self.dtype,
            instances,
            shapes,
            self.zoos.clone(),
        ));
        self
    }

    /// The profile model names this target measures.
    pub fn model_names(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    /// The model's tier slots, made on first use.
    fn tiers(&mut self, model: &str) -> Result<&mut TierSlots> {
        if !self.tiers.contains_key(model) {
            let [t0, t1] = self.tenants(model)?;
            let max = t0.cfg.labels().max(t1.cfg.labels()).max(1);
            let arch = ArchLayout::new(&t0.cfg, max, self.dtype)?;
            let names = vec![format!("{model}-t0"), format!("{model}-t1")];
            let dirs = vec![t0.dir.clone(), t1.dir.clone()];
            let t = TierSlots::new(
                self.device,
                arch,
                names,
                dirs,
                1,
                ptm_runtime::KernelOptions::default(),
            )?;
            self.tiers.insert(model.to_string(), t);
        }
        let known = self.model_names().join(", ");
        self.tiers
            .get_mut(model)
            .ok_or_else(|| Error::UnknownModel {
                model: model.to_string(),
                known,
            })
    }

    fn tenants(&self, model: &str) -> Result<&[Tenant; 2]> {
        self.models.get(model).ok_or_else(|| Error::UnknownModel {
            model: model.to_string(),
            known: self.model_names().join(", "),
        })
    }
}

fn random_batch(cfg: &Config, batch: u32, seq_len: u32, seed: u64) -> Result<Batch> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let rows = random_rows(cfg, batch, seq_len, &mut state);
    Ok(Batch::from_rows(&rows, cfg.pad_token_id, None)?)
}

fn total_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

impl Target for RuntimeTarget {
    fn device(&self) -> DeviceInfo {
        DeviceInfo {
            kind: DeviceKind::Cpu,
            name: crate::identity::cpu_name(),
            driver: "cpu".into(),
            memory_bytes: total_memory_bytes(),
        }
    }

    fn runtime(&self) -> Option<RuntimeBuild> {
        // The CPU runs no GPU kernels: no kernel options.
        Some(this_build(None))
    }

    fn model_identity(&self, model: &str) -> Option<ModelIdentity> {
        self.identities.get(model).cloned()
    }

    fn memory_per_instance_bytes(&mut self, model: &str) -> Result<u64> {
        Ok(self.tenants(model)?[0].packed.bytes.len() as u64)
    }

    fn live_path(&mut self, model: &str) -> Result<Option<&mut dyn LivePath>> {
        match &mut self.paths {
            Some(p) => p.get(model),
            None => Ok(None),
        }
    }

    fn cold_load(&mut self, model: &str) -> Result<Duration> {
        self.tiers(model)?.cold_load()
    }

    fn weights_bytes(&mut self, model: &str) -> Result<Option<u64>> {
        Ok(Some(self.tiers(model)?.weights_bytes()))
    }

    fn pool_loads(&mut self, model: &str, instances: usize) -> Result<Option<Vec<Duration>>> {
        Ok(Some(self.tiers(model)?.pool_loads(instances)?))
    }

    fn concurrent(&mut self, model: &str, k: usize, op: Op) -> Result<Vec<Duration>> {
        let [t0, t1] = self.tenants(model)?;
        let (device, dtype) = (self.device, self.dtype);
        let barrier = Barrier::new(k);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..k)
                .map(|i| {
                    let barrier = &barrier;
                    scope.spawn(move || -> Result<Duration> {
                        // Prepare outside the timed part.
                        let prepared = match op {
                            Op::Forward { batch, seq_len } => Some((
                                Model::engine(&t0.packed, &t0.cfg, device)?,
                                random_batch(&t0.cfg, batch, seq_len, i as u64 + 1)?,
                            )),
                            Op::Switch(_) => None,
                        };
                        barrier.wait();
                        let start = Instant::now();
                        match (op, prepared) {
                            (Op::Forward { .. }, Some((mut engine, batch))) => {
                                run(&mut engine, &batch)?;
                            }
                            (Op::Switch(SwitchMode::HostCache), _) => {
                                Model::engine(&t1.packed, &t1.cfg, device)?;
                            }
                            (Op::Switch(SwitchMode::FastPtm), _) => {
                                let w = PackedWeights::from_file(
                                    &t1.dir.join("model.safetensors"),
                                    &t1.cfg,
                                    dtype,
                                )?;
                                Model::engine(&w, &t1.cfg, device)?;
                            }
                            (Op::Switch(SwitchMode::Full), _) => {
                                Model::load(&t1.dir, device, dtype)?;
                            }
                            (Op::Forward { .. }, None) => {
                                return Err(Error::Invalid(
                                    "a forward pass without a prepared engine".into(),
                                ))
                            }
                        }
                        Ok(start.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().map_err(|_| Error::Panicked {
                        what: format!("{op:?} of {model}"),
                    })?
                })
                .collect()
        })
    }
}

/// Makes a two-tenant zoo of `arch` in `dir` (for `--models`).
pub fn make_zoo(arch: &str, dtype: DType, dir: &Path) -> Result<PathBuf> {
    let a: ptm_runtime::Arch = arch.parse()?;
    let out = dir.join(a.name());
    ptm_runtime::make_zoo(a, 2, &out, dtype, 0)?;
    Ok(out)
}
