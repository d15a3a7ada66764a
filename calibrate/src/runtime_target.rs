//! The runtime as a calibration target: the tenants of a zoo on the CPU (candle).
//!
//! What each operation means here, measured on the calibrating thread(s):
//! - cold load: `Model::load` of tenant 0 — config, checkpoint, tokenizer, engine;
//! - host-cache switch: build tenant 1's engine from its packed weights already in memory (on the
//!   CPU the packed host copy *is* the slot's weights);
//! - FastPTM-mode switch: re-read tenant 1's checkpoint from the file, then build the engine;
//! - full switch: `Model::load` of tenant 1 from its folder;
//! - forward: one pass of a (batch × seq_len) batch of random token ids on tenant 0's engine.
//!
//! With k instances, k threads each hold their own engine and start the operation together
//! (a barrier); each one's latency is a sample. GPUs are measured by [`crate::GpuTarget`].

use crate::{DeviceInfo, Op, SwitchMode, Target};
use ptm_runtime::model::run;
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{Batch, Config, DType, Device, Model, PackedWeights, Zoo};
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
}

/// The profile model name of a zoo's architecture in a dtype, e.g. `bert-base-fp16`.
pub fn model_name(zoo: &Zoo, dtype: DType) -> String {
    format!("{}-{dtype}", zoo.arch.name())
}

impl RuntimeTarget {
    /// Reads the first two tenants of each zoo into memory. Each zoo needs at least two.
    pub fn new(zoos: &[PathBuf], device: Device, dtype: DType) -> Result<Self, String> {
        if let Device::Cuda(_) = device {
            return Err(
                "RuntimeTarget measures the CPU; a GPU is calibrated through GpuTarget".into(),
            );
        }
        let mut models = BTreeMap::new();
        for dir in zoos {
            let zoo = Zoo::read(dir).map_err(|e| e.to_string())?;
            if zoo.models.len() < 2 {
                return Err(format!(
                    "{}: calibration needs a zoo of at least 2 tenants (to switch between)",
                    dir.display()
                ));
            }
            let load = |i: usize| -> Result<Tenant, String> {
                let d = model_dir(dir, &zoo.models[i].name);
                let cfg = Config::from_file(&d.join("config.json")).map_err(|e| e.to_string())?;
                let packed = PackedWeights::from_file(&d.join("model.safetensors"), &cfg, dtype)
                    .map_err(|e| e.to_string())?;
                Ok(Tenant {
                    dir: d,
                    cfg,
                    packed,
                })
            };
            models.insert(model_name(&zoo, dtype), [load(0)?, load(1)?]);
        }
        Ok(RuntimeTarget {
            device,
            dtype,
            models,
        })
    }

    /// The profile model names this target measures.
    pub fn model_names(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }

    fn tenants(&self, model: &str) -> Result<&[Tenant; 2], String> {
        self.models
            .get(model)
            .ok_or_else(|| format!("no zoo for model {model}"))
    }
}

fn random_batch(cfg: &Config, batch: u32, seq_len: u32, seed: u64) -> Result<Batch, String> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let rows = random_rows(cfg, batch, seq_len, &mut state);
    Batch::from_rows(&rows, cfg.pad_token_id, None).map_err(|e| e.to_string())
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
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        DeviceInfo {
            name: format!("CPU (candle, {threads} threads)"),
            driver: "cpu".into(),
            memory_bytes: total_memory_bytes(),
        }
    }

    fn memory_per_instance_bytes(&mut self, model: &str) -> Result<u64, String> {
        Ok(self.tenants(model)?[0].packed.bytes.len() as u64)
    }

    fn cold_load(&mut self, model: &str) -> Result<Duration, String> {
        let t = &self.tenants(model)?[0];
        let start = Instant::now();
        Model::load(&t.dir, self.device, self.dtype).map_err(|e| e.to_string())?;
        Ok(start.elapsed())
    }

    fn concurrent(&mut self, model: &str, k: usize, op: Op) -> Result<Vec<Duration>, String> {
        let [t0, t1] = self.tenants(model)?;
        let (device, dtype) = (self.device, self.dtype);
        let barrier = Barrier::new(k);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..k)
                .map(|i| {
                    let barrier = &barrier;
                    scope.spawn(move || -> Result<Duration, String> {
                        let e = |e: ptm_runtime::Error| e.to_string();
                        // Prepare outside the timed part.
                        let prepared = match op {
                            Op::Forward { batch, seq_len } => Some((
                                Model::engine(&t0.packed, &t0.cfg, device).map_err(e)?,
                                random_batch(&t0.cfg, batch, seq_len, i as u64 + 1)?,
                            )),
                            Op::Switch(_) => None,
                        };
                        barrier.wait();
                        let start = Instant::now();
                        match (op, prepared) {
                            (Op::Forward { .. }, Some((mut engine, batch))) => {
                                run(&mut engine, &batch).map_err(e)?;
                            }
                            (Op::Switch(SwitchMode::HostCache), _) => {
                                Model::engine(&t1.packed, &t1.cfg, device).map_err(e)?;
                            }
                            (Op::Switch(SwitchMode::FastPtm), _) => {
                                let w = PackedWeights::from_file(
                                    &t1.dir.join("model.safetensors"),
                                    &t1.cfg,
                                    dtype,
                                )
                                .map_err(e)?;
                                Model::engine(&w, &t1.cfg, device).map_err(e)?;
                            }
                            (Op::Switch(SwitchMode::Full), _) => {
                                Model::load(&t1.dir, device, dtype).map_err(e)?;
                            }
                            (Op::Forward { .. }, None) => {
                                unreachable!("forward engines are prepared")
                            }
                        }
                        Ok(start.elapsed())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| "a measuring thread panicked".to_string())?
                })
                .collect()
        })
    }
}

/// Makes a two-tenant zoo of `arch` in `dir` (for `--models`).
pub fn make_zoo(arch: &str, dtype: DType, dir: &Path) -> Result<PathBuf, String> {
    let a: ptm_runtime::Arch = arch
        .parse()
        .map_err(|e: ptm_runtime::Error| e.to_string())?;
    let out = dir.join(a.name());
    ptm_runtime::make_zoo(a, 2, &out, dtype, 0).map_err(|e| e.to_string())?;
    Ok(out)
}
