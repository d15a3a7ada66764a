//! The runtime on a GPU as a calibration target: switching slots over a pinned host cache.
//!
//! Every figure times what a live instance (`ptm run --live`, `ptm serve`) does. For each zoo:
//! an [`ArchLayout`] for its widest head, a pinned [`HostCache`] holding up to [`ROTATION`] of
//! its tenants, and `max_instances` slots ([`SlotSet`], workspace for the largest grid shape);
//! slot i starts on tenant i and every switch moves it to the next tenant of the rotation, so
//! switches read blocks all over the cache as a multi-tenant server does. Timed on the host
//! clock after the device has finished (CUDA events for forward passes):
//! - cold load: an executor reads the next tenant's checkpoint into its arena through the cold
//!   path ([`crate::tiers`]: threaded reads into pinned staging, chunks copied as they land) —
//!   a live instance's load when it held nothing;
//! - weight-pool load with k executors ([`crate::tiers`]): executors over a weight pool that
//!   holds the rotation's tenants load their next one from it at once (device to device);
//! - host-cache switch with k instances: slots 0..k each switch to their next tenant at once;
//!   the copies share one copy stream (one PCIe link), each slot's latency is until its
//!   weights have landed;
//! - FastPTM-mode and full switches with k instances: one after the other from a common start
//!   (they are host-bound: file reads and synchronous copies), each slot's latency from that
//!   start; full builds a new model (kernels, cuBLAS, arena) as well;
//! - forward with k instances: each slot runs 5 staged passes of the shape back to back on its
//!   own stream (inputs copied in, CUDA-graph replay, outputs gathered: a request's passes);
//!   latency per pass from the slot's events.

use crate::identity::{driver_version, model_identity, this_build};
use crate::slot_path::{LivePath, LivePaths};
use crate::tiers::TierSlots;
use crate::{DeviceInfo, Error, Op, Result, SwitchMode, Target};
use ptm_runtime::gpu::slots::{load_full, slot_budget, SlotSet};
use ptm_runtime::switch::{ArchLayout, Eviction, HostCache};
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{Batch, Config, DType, Device, KernelOptions, Zoo};
use ptm_sim::profile::{DeviceKind, ModelIdentity, RuntimeBuild};
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
    identity: ModelIdentity,
    /// The tenants in a host with a weight pool, and executors over it (cold and pool loads).
    tiers: TierSlots,
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
    options: KernelOptions,
    models: BTreeMap<String, ZooSlots>,
    device: DeviceInfo,
    /// The zoo of each model.
    zoos: BTreeMap<String, PathBuf>,
    /// The live path's figures ([`GpuTarget::with_live_paths`]).
    paths: Option<LivePaths>,
}

impl GpuTarget {
    /// Prepares slots and caches for each zoo (each needs ≥ 2 tenants) on GPU `ordinal`, sized
    /// for `(max_instances, max_batch, max_seq)`: instances and forward passes up to
    /// `max_batch × max_seq`; the slots run the kernels `options` choose.
    pub fn new(
        zoos: &[PathBuf],
        ordinal: usize,
        dtype: DType,
        (max_instances, max_batch, max_seq): (usize, usize, usize),
        options: KernelOptions,
    ) -> Result<Self> {
        let mut models = BTreeMap::new();
        let mut zoo_dirs = BTreeMap::new();
        let mut device = DeviceInfo {
            kind: DeviceKind::Cuda,
            name: "unknown GPU".into(),
            driver: driver_version(),
            memory_bytes: 0,
        };
        for dir in zoos {
            let zoo = Zoo::read(dir)?;
            if zoo.models.len() < 2 {
                return Err(Error::Invalid(format!(
                    "{}: calibration needs a zoo of at least 2 tenants",
                    dir.display()
                )));
            }
            let n = zoo.models.len().min(ROTATION);
            let names: Vec<String> = zoo.models[..n].iter().map(|m| m.name.clone()).collect();
            let dirs: Vec<PathBuf> = names.iter().map(|m| model_dir(dir, m)).collect();
            let cfg = Config::from_file(&dirs[0].join("config.json"))?;
            let max_labels = zoo
                .models
                .iter()
                .map(|m| m.labels)
                .max()
                .unwrap_or(1)
                .max(1);
            let arch = ArchLayout::new(&cfg, max_labels, dtype)?;
            let budget = slot_budget(ordinal, &arch, max_batch, max_seq)?;
            if device.memory_bytes == 0 {
                device.memory_bytes = budget.free_bytes as u64;
            }
            let mut cache = HostCache::pinned(arch.clone(), n, ordinal, Eviction::Refuse)?;
            for (name, d) in names.iter().zip(&dirs) {
                cache.register(name, d)?;
            }
            let mut slots =
                SlotSet::new(ordinal, &arch, max_instances, max_batch, max_seq, options)?;
            let holds: Vec<usize> = (0..max_instances).map(|i| i % n).collect();
            for (i, &t) in holds.iter().enumerate() {
                slots.switch(i, &mut cache, &names[t])?;
                slots.wait(i)?;
            }
            device.name = slots.model_mut(0)?.device_name();
            let identity = model_identity(zoo.arch, dtype, &cfg);
            let tiers = TierSlots::new(
                Device::Cuda(ordinal),
                arch.clone(),
                names.clone(),
                dirs.clone(),
                max_instances,
                options,
            )?;
            zoo_dirs.insert(format!("{}-{dtype}", zoo.arch.name()), dir.clone());
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
                    identity,
                    tiers,
                },
            );
        }
        Ok(GpuTarget {
            ordinal,
            dtype,
            options,
            models,
            device,
            zoos: zoo_dirs,
            paths: None,
        })
    }

    /// The same target measuring the live path too ([`crate::contention`]): `instances` more
    /// slots per zoo (through `Slot`, as live instances run) for passes of the `shapes`
    /// (rows, tokens), made when first measured.
    pub fn with_live_paths(mut self, instances: usize, shapes: Vec<(usize, usize)>) -> Self {
        self.paths = Some(LivePaths::new(
            ptm_runtime::Device::Cuda(self.ordinal),
            self.dtype,
            instances,
            shapes,
            self.zoos.clone(),
        ));
        self
    }

    fn zoo(&mut self, model: &str) -> Result<&mut ZooSlots> {
        let known = self.model_names().join(", ");
        self.models
            .get_mut(model)
            .ok_or_else(|| Error::UnknownModel {
                model: model.to_string(),
                known,
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

    fn runtime(&self) -> Option<RuntimeBuild> {
        Some(this_build(Some(self.options)))
    }

    fn model_identity(&self, model: &str) -> Option<ModelIdentity> {
        self.models.get(model).map(|z| z.identity.clone())
    }

    fn memory_per_instance_bytes(&mut self, model: &str) -> Result<u64> {
        Ok(self.zoo(model)?.per_slot_bytes)
    }

    fn live_path(&mut self, model: &str) -> Result<Option<&mut dyn LivePath>> {
        match &mut self.paths {
            Some(p) => p.get(model),
            None => Ok(None),
        }
    }

    fn cold_load(&mut self, model: &str) -> Result<Duration> {
        self.zoo(model)?.tiers.cold_load()
    }

    fn weights_bytes(&mut self, model: &str) -> Result<Option<u64>> {
        Ok(Some(self.zoo(model)?.tiers.weights_bytes()))
    }

    fn pool_loads(&mut self, model: &str, instances: usize) -> Result<Option<Vec<Duration>>> {
        Ok(Some(self.zoo(model)?.tiers.pool_loads(instances)?))
    }

    fn concurrent(&mut self, model: &str, k: usize, op: Op) -> Result<Vec<Duration>> {
        let (dtype, ordinal, options) = (self.dtype, self.ordinal, self.options);
        let z = self.zoo(model)?;
        if k > z.holds.len() {
            return Err(Error::Invalid(format!(
                "{k} instances asked, {} slots made",
                z.holds.len()
            )));
        }
        for i in 0..k {
            z.slots.wait(i)?;
        }
        match op {
            Op::Switch(mode) => {
                let start = Instant::now();
                let mut out = Vec::with_capacity(k);
                for i in 0..k {
                    let next = z.next(i);
                    match mode {
                        SwitchMode::HostCache => z.slots.switch(i, &mut z.cache, &z.names[next])?,
                        SwitchMode::FastPtm => {
                            z.slots.switch_fastptm(i, &z.names[next], &z.dirs[next])?;
                            out.push(start.elapsed());
                        }
                        SwitchMode::Full => {
                            let m = load_full(&z.dirs[next], dtype, ordinal, options)?;
                            m.synchronize()?;
                            out.push(start.elapsed());
                        }
                    }
                    z.holds[i] = next;
                }
                if mode == SwitchMode::Full {
                    // The slots themselves take the tenants through the cache (untimed).
                    for i in 0..k {
                        z.slots.switch(i, &mut z.cache, &z.names[z.holds[i]])?;
                    }
                }
                if mode == SwitchMode::HostCache {
                    // Copies complete in issue order on the one copy stream.
                    for i in 0..k {
                        z.slots.wait(i)?;
                        out.push(start.elapsed());
                    }
                } else {
                    for i in 0..k {
                        z.slots.wait(i)?;
                    }
                }
                Ok(out)
            }
            Op::Forward { batch, seq_len } => {
                let rows = forward_rows(z.cfg.vocab_size as u32, batch, seq_len);
                let input = Batch::from_rows(&rows, z.cfg.pad_token_id, None)?;
                // Stage the inputs and capture the graph of this shape in every slot.
                for i in 0..k {
                    z.slots.forward(i, &input)?;
                }
                const PASSES: usize = 5;
                let passes = vec![input; PASSES];
                Ok(z.slots
                    .time_passes(k, &passes)?
                    .into_iter()
                    .map(|ms| Duration::from_secs_f64(ms / 1e3 / PASSES as f64))
                    .collect())
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
