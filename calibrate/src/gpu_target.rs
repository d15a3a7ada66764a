//! The runtime on a GPU as a calibration target: switching slots over a pinned host cache.
//!
//! Every figure times what a live instance (`ptm run --live`, `ptm serve`) does. For each zoo:
//! an [`ArchLayout`] for its widest head, a pinned [`HostCache`] holding up to [`ROTATION`] of
//! its tenants, and `max_instances` slots ([`SlotSet`], workspace for the largest grid shape);
//! slot i starts on tenant i and every switch moves it to the next tenant of the rotation, so
//! switches read blocks all over the cache as a multi-tenant server does. Timed on the host
//! clock after the device has finished (CUDA events for forward passes):
//! - cold load: slot 0 reads the next tenant's checkpoint into its arena (file read, tensors
//!   copied synchronously) — a live instance's load when it held nothing;
//! - host-cache switch with k instances: slots 0..k each switch to their next tenant at once;
//!   the copies share one copy stream (one PCIe link), each slot's latency is until its
//!   weights have landed;
//! - FastPTM-mode and full switches with k instances: one after the other from a common start
//!   (they are host-bound: file reads and synchronous copies), each slot's latency from that
//!   start; full builds a new model (kernels, cuBLAS, arena) as well;
//! - forward with k instances: each slot runs 5 staged passes of the shape back to back on its
//!   own stream (inputs copied in, CUDA-graph replay, outputs gathered: a request's passes);
//!   latency per pass from the slot's events.

use crate::{DeviceInfo, Op, SwitchMode, Target};
use ptm_runtime::gpu::slots::{load_full, slot_budget, SlotSet};
use ptm_runtime::switch::{ArchLayout, Eviction, HostCache};
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{Batch, Config, DType, Zoo};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Tenants a zoo's switches rotate over, at most.
pub const ROTATION: usize = 12;

struct ZooSlots {
    slots: SlotSet,
    cache: HostCache,
    names: Vec<String>,
    dirs: Vec<PathBuf>,
    cfg: Config,
    /// Which tenant of the rotation each slot holds.
    holds: Vec<usize>,
    per_slot_bytes: u64,
}

impl ZooSlots {
    /// The tenant slot `i` switches to next.
    fn next(&self, i: usize) -> usize {
        (self.holds[i] + 1) % self.names.len()
    }
}

/// Zoo models on GPU `ordinal`, by profile model name (`<arch>-<dtype>`).
pub struct GpuTarget {
    ordinal: usize,
    dtype: DType,
    models: BTreeMap<String, ZooSlots>,
    device: DeviceInfo,
}

fn driver_version() -> String {
    std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "Module")
                    .nth(1)
                    .unwrap_or(l)
                    .to_string()
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

impl GpuTarget {
    /// Prepares slots and caches for each zoo (each needs ≥ 2 tenants) on GPU `ordinal`, sized
    /// for `max_instances` instances and forward passes up to `max_batch × max_seq`.
    pub fn new(
        zoos: &[PathBuf],
        ordinal: usize,
        dtype: DType,
        max_instances: usize,
        max_batch: usize,
        max_seq: usize,
    ) -> Result<Self, String> {
        let e = |e: ptm_runtime::Error| e.to_string();
        let mut models = BTreeMap::new();
        let mut device = DeviceInfo {
            name: "unknown GPU".into(),
            driver: driver_version(),
            memory_bytes: 0,
        };
        for dir in zoos {
            let zoo = Zoo::read(dir).map_err(e)?;
            if zoo.models.len() < 2 {
                return Err(format!(
                    "{}: calibration needs a zoo of at least 2 tenants",
                    dir.display()
                ));
            }
            let n = zoo.models.len().min(ROTATION);
            let names: Vec<String> = zoo.models[..n].iter().map(|m| m.name.clone()).collect();
            let dirs: Vec<PathBuf> = names.iter().map(|m| model_dir(dir, m)).collect();
            let cfg = Config::from_file(&dirs[0].join("config.json")).map_err(e)?;
            let max_labels = zoo
                .models
                .iter()
                .map(|m| m.labels)
                .max()
                .unwrap_or(1)
                .max(1);
            let arch = ArchLayout::new(&cfg, max_labels, dtype).map_err(e)?;
            let budget = slot_budget(ordinal, &arch, max_batch, max_seq).map_err(e)?;
            if device.memory_bytes == 0 {
                device.memory_bytes = budget.free_bytes as u64;
            }
            let mut cache =
                HostCache::pinned(arch.clone(), n, ordinal, Eviction::Refuse).map_err(e)?;
            for (name, d) in names.iter().zip(&dirs) {
                cache.register(name, d).map_err(e)?;
            }
            let mut slots =
                SlotSet::new(ordinal, &arch, max_instances, max_batch, max_seq).map_err(e)?;
            let holds: Vec<usize> = (0..max_instances).map(|i| i % n).collect();
            for (i, &t) in holds.iter().enumerate() {
                slots.switch(i, &mut cache, &names[t]).map_err(e)?;
                slots.wait(i).map_err(e)?;
            }
            device.name = slots.model_mut(0).map_err(e)?.device_name();
            models.insert(
                format!("{}-{dtype}", zoo.arch.name()),
                ZooSlots {
                    slots,
                    cache,
                    names,
                    dirs,
                    cfg,
                    holds,
                    per_slot_bytes: budget.per_slot_bytes as u64,
                },
            );
        }
        Ok(GpuTarget {
            ordinal,
            dtype,
            models,
            device,
        })
    }

    /// The profile model names this target measures.
    pub fn model_names(&self) -> Vec<String> {
        self.models.keys().cloned().collect()
    }
}

/// The deterministic token ids of a forward figure: ids from 1000 up (past BERT's special and
/// unused ids) as the shipped profiles were measured, or from a quarter of the vocabulary for
/// vocabularies of 2000 or less (the tiny test models).
fn forward_rows(vocab: u32, batch: u32, seq_len: u32) -> Vec<Vec<u32>> {
    let base = if vocab > 2000 { 1000 } else { vocab / 4 };
    let span = vocab.saturating_sub(base).max(1);
    (0..batch)
        .map(|r| {
            (0..seq_len)
                .map(|c| base + (r * 7919 + c * 104_729) % span)
                .collect()
        })
        .collect()
}

impl Target for GpuTarget {
    fn device(&self) -> DeviceInfo {
        self.device.clone()
    }

    fn memory_per_instance_bytes(&mut self, model: &str) -> Result<u64, String> {
        self.models
            .get(model)
            .map(|z| z.per_slot_bytes)
            .ok_or_else(|| format!("no zoo for model {model}"))
    }

    fn cold_load(&mut self, model: &str) -> Result<Duration, String> {
        let z = self
            .models
            .get_mut(model)
            .ok_or_else(|| format!("no zoo for model {model}"))?;
        let e = |e: ptm_runtime::Error| e.to_string();
        z.slots.wait(0).map_err(e)?;
        let next = z.next(0);
        let t = Instant::now();
        z.slots
            .switch_fastptm(0, &z.names[next], &z.dirs[next])
            .map_err(e)?;
        let d = t.elapsed();
        z.holds[0] = next;
        Ok(d)
    }

    fn concurrent(&mut self, model: &str, k: usize, op: Op) -> Result<Vec<Duration>, String> {
        let (dtype, ordinal) = (self.dtype, self.ordinal);
        let z = self
            .models
            .get_mut(model)
            .ok_or_else(|| format!("no zoo for model {model}"))?;
        if k > z.holds.len() {
            return Err(format!("{k} instances asked, {} slots made", z.holds.len()));
        }
        let e = |e: ptm_runtime::Error| e.to_string();
        for i in 0..k {
            z.slots.wait(i).map_err(e)?;
        }
        match op {
            Op::Switch(mode) => {
                let start = Instant::now();
                let mut out = Vec::with_capacity(k);
                for i in 0..k {
                    let next = z.next(i);
                    match mode {
                        SwitchMode::HostCache => {
                            z.slots.switch(i, &mut z.cache, &z.names[next]).map_err(e)?
                        }
                        SwitchMode::FastPtm => {
                            z.slots
                                .switch_fastptm(i, &z.names[next], &z.dirs[next])
                                .map_err(e)?;
                            out.push(start.elapsed());
                        }
                        SwitchMode::Full => {
                            let m = load_full(&z.dirs[next], dtype, ordinal).map_err(e)?;
                            m.synchronize().map_err(e)?;
                            out.push(start.elapsed());
                        }
                    }
                    z.holds[i] = next;
                }
                if mode == SwitchMode::Full {
                    // The slots themselves take the tenants through the cache (untimed).
                    for i in 0..k {
                        z.slots
                            .switch(i, &mut z.cache, &z.names[z.holds[i]])
                            .map_err(e)?;
                    }
                }
                if mode == SwitchMode::HostCache {
                    // Copies complete in issue order on the one copy stream.
                    for i in 0..k {
                        z.slots.wait(i).map_err(e)?;
                        out.push(start.elapsed());
                    }
                } else {
                    for i in 0..k {
                        z.slots.wait(i).map_err(e)?;
                    }
                }
                Ok(out)
            }
            Op::Forward { batch, seq_len } => {
                let rows = forward_rows(z.cfg.vocab_size as u32, batch, seq_len);
                let input = Batch::from_rows(&rows, z.cfg.pad_token_id, None).map_err(e)?;
                // Stage the inputs and capture the graph of this shape in every slot.
                for i in 0..k {
                    z.slots.forward(i, &input).map_err(e)?;
                }
                const PASSES: usize = 5;
                let passes = vec![input; PASSES];
                z.slots
                    .time_passes(k, &passes)
                    .map_err(e)?
                    .into_iter()
                    .map(|ms| Ok(Duration::from_secs_f64(ms / 1e3 / PASSES as f64)))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::forward_rows;

    #[test]
    fn forward_rows_stay_in_the_vocabulary_and_keep_the_shipped_ids() {
        for vocab in [2u32, 100, 1000, 2000, 2001, 30522] {
            let rows = forward_rows(vocab, 3, 40);
            assert_eq!(rows.len(), 3);
            assert!(rows.iter().flatten().all(|&t| t < vocab), "vocab {vocab}");
        }
        // BERT's vocabulary: the formula the shipped profiles were measured with.
        let rows = forward_rows(30522, 2, 3);
        let old = |r: u32, c: u32| 1000 + (r * 7919 + c * 104_729) % (30522 - 1000);
        assert_eq!(rows[1][2], old(1, 2));
    }
}
