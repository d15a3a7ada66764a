//! A **PET slot**: one backbone loaded once, parameter-efficient tenants registered over it,
//! their delta blocks ([`crate::pet::block`]) in three tiers — a GPU adapter pool of
//! `gpu_slots` equal slots, `host_slots` in pinned host memory, the rest on disk — and forward
//! passes over batches whose rows belong to any of them. One closed type over the CPU twin
//! ([`CpuPetSlot`]: the CPU reference, tested in CI, unpacked blocks standing in for the pool)
//! and the GPU slot (`gpu::GpuPetSlot`: the backbone's arena, the segmented kernels in the
//! forward pass, one CUDA graph per bucket and signature); callers never match on the device.
//!
//! - [`PetSlot::register`] reads a tenant folder (any layout `crate::pet` reads), checks it
//!   against the backbone and the slot's limits, packs its block and keeps it in the host tier
//!   while that has a free slot (else it stays on disk).
//! - [`PetSlot::load`] moves a tenant's block into a tier (a slot the caller names, as the
//!   simulator's ledger does, or the tier's least recently used one) and reports each move as
//!   a [`Load`] from its source tier. On the GPU a load into the pool is asynchronous: copies
//!   on a copy stream, stage by stage (embeddings, each layer, head), that the next forward pass
//!   waits for layer by layer (vBERT's pipelining) — a miss costs little.
//! - [`PetSlot::forward_mixed`] runs one batch with a tenant per row: the rows are grouped by
//!   tenant into segments, tenants missing from the pool are loaded (pipelined under the
//!   backbone on the GPU), the backbone runs once for all rows, each tenant's delta on its rows,
//!   each row gets its tenant's head. Outputs come back in the caller's row order, with the
//!   loads the pass made.

mod cpu;
mod shared;

pub use self::cpu::CpuPetSlot;
pub(crate) use self::shared::Core;
pub(crate) use self::shared::{load, read_all, Src, Store};
use super::backbone::Backbone;
use super::block::BlockLayout;
use super::residency::Tier;
use super::zoo::{PetSpec, PetZoo};
use crate::bert::HeadOutput;
use crate::config::Config;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::KernelOptions;
use crate::tokenize::{Batch, TextEncoder};
use std::path::{Path, PathBuf};

/// The most tenants one PET slot registers.
pub const MAX_TENANTS: usize = 1_000_000;
/// The most slots of a tier.
pub const MAX_TIER_SLOTS: usize = 1_000_000;
/// The most bytes of one block (a pool slot).
pub const MAX_SLOT_BYTES: usize = 1 << 30;
/// The most rows of a batch (the segmented kernels' segment bound).
pub const MAX_BATCH: usize = 1024;
/// The largest LoRA rank a slot may be sized for.
pub const MAX_RANK: usize = 1024;

/// A registered tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PetId(pub u32);

/// The sizes of a PET slot (what its buffers are allocated for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PetSlotConfig {
    /// Slots of the GPU adapter pool (on the CPU twin: unpacked tenants kept).
    pub gpu_slots: usize,
    /// Slots of the pinned host tier (0: none; loads read the disk).
    pub host_slots: usize,
    /// Bytes of one slot of either tier: the largest block the slot takes.
    pub slot_bytes: usize,
    /// Most rows of a batch.
    pub max_batch: usize,
    /// Most tokens of a row.
    pub max_seq: usize,
    /// Largest LoRA rank.
    pub max_rank: usize,
    /// Widest adapter bottleneck.
    pub max_adapter_width: usize,
    /// Most classifier labels.
    pub max_labels: usize,
    /// The backbone's kernel options (GPU).
    pub options: KernelOptions,
}

impl PetSlotConfig {
    /// Refuses sizes out of bounds, naming the field.
    pub fn check(&self) -> Result<()> {
        let bad = |field: &str, v: usize, lo: usize, hi: usize| -> Result<()> {
            if v < lo || v > hi {
                return Err(Error::Input(format!(
                    "PET slot {field} = {v}: expected {lo} to {hi}"
                )));
            }
            Ok(())
        };
        bad("gpu_slots", self.gpu_slots, 1, MAX_TIER_SLOTS)?;
        bad("host_slots", self.host_slots, 0, MAX_TIER_SLOTS)?;
        bad("slot_bytes", self.slot_bytes, 1, MAX_SLOT_BYTES)?;
        bad("max_batch", self.max_batch, 1, MAX_BATCH)?;
        bad("max_seq", self.max_seq, 1, 1 << 16)?;
        bad("max_rank", self.max_rank, 1, MAX_RANK)?;
        bad("max_adapter_width", self.max_adapter_width, 1, 1 << 16)?;
        bad("max_labels", self.max_labels, 1, super::tenant::MAX_LABELS)
    }

    /// Refuses a tenant whose block does not fit these sizes, naming the size.
    pub fn admits(&self, l: &BlockLayout, dir: &Path) -> Result<()> {
        let checks = [
            ("block bytes", l.bytes(), self.slot_bytes, "slot_bytes"),
            ("LoRA rank", l.max_rank(), self.max_rank, "max_rank"),
            (
                "adapter width",
                l.max_width(),
                self.max_adapter_width,
                "max_adapter_width",
            ),
            ("labels", l.labels(), self.max_labels, "max_labels"),
        ];
        for (what, v, most, field) in checks {
            if v > most {
                return Err(Error::pet(
                    dir,
                    what,
                    format!("{v}, more than this PET slot's {field} ({most})"),
                ));
            }
        }
        Ok(())
    }

    /// Sizes for every tenant of `zoo` (backbone `cfg`, blocks in `dtype`): the slot bytes
    /// bound the largest tenant's block, ranks and widths come from the zoo's spec, labels from
    /// its tenants. Tiers of `gpu_slots` and `host_slots`, batches up to `max_batch × max_seq`.
    pub fn for_zoo(
        zoo: &PetZoo,
        cfg: &Config,
        dtype: DType,
        (gpu_slots, host_slots): (usize, usize),
        (max_batch, max_seq): (usize, usize),
    ) -> Self {
        let params = zoo.tenants.iter().map(|t| t.parameters).max().unwrap_or(0);
        let h = cfg.hidden_size;
        let (rank, width) = match &zoo.spec {
            PetSpec::Lora { rank, .. } => (*rank, 1),
            PetSpec::Adapter {
                reduction_factor, ..
            } => (1, h.div_ceil((*reduction_factor).max(1))),
            PetSpec::Bitfit => (1, 1),
        };
        PetSlotConfig {
            gpu_slots,
            host_slots,
            slot_bytes: BlockLayout::bound_bytes(params, cfg, dtype),
            max_batch,
            max_seq,
            max_rank: rank.max(1),
            max_adapter_width: width.max(1),
            max_labels: zoo
                .tenants
                .iter()
                .map(|t| t.labels)
                .max()
                .unwrap_or(1)
                .max(1),
            options: KernelOptions::default(),
        }
    }
}

/// A tenant's block moved into a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// The tenant.
    pub tenant: PetId,
    /// Where it came from.
    pub from: Tier,
    /// Where it went.
    pub to: Tier,
    /// The slot of `to` it went to.
    pub slot: u32,
    /// Bytes of its block.
    pub bytes: usize,
    /// The tenant that slot held before.
    pub evicted: Option<PetId>,
}

/// The result of a mixed-tenant pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixed {
    /// One output per row of the batch, in its order (shape `[1, …]`: the row's tenant's head).
    pub outputs: Vec<HeadOutput>,
    /// The loads the pass made (tenants that were not in the GPU pool).
    pub loads: Vec<Load>,
}

/// Memory of a PET slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PetMemory {
    /// Registered tenants.
    pub tenants: usize,
    /// Bytes of all registered tenants' blocks.
    pub block_bytes: usize,
    /// Bytes of one slot of a tier.
    pub slot_bytes: usize,
    /// Tenants in the GPU pool.
    pub gpu_tenants: usize,
    /// Tenants in the host tier.
    pub host_tenants: usize,
    /// Device bytes of the adapter pool (all its slots).
    pub gpu_pool_bytes: usize,
    /// Device bytes of the backbone's weights.
    pub gpu_backbone_bytes: usize,
    /// Device bytes of activations, PET buffers and tables.
    pub gpu_work_bytes: usize,
    /// Host bytes of the host tier (all its slots; pinned on a GPU).
    pub host_tier_bytes: usize,
    /// Host bytes of the tenants' block directories (an estimate of their maps and strings).
    pub host_directory_bytes: usize,
}

/// What a device backend does beyond the shared bookkeeping.
pub(crate) trait Backend {
    /// The shared registry and tiers.
    fn core(&self) -> &Core;
    /// The registry and the byte mover, apart.
    fn parts(&mut self) -> (&mut Core, &mut dyn Store);
    /// Runs a batch whose rows come in `segments` (tenant, rows), every tenant in the device
    /// tier; one output per segment.
    fn run(&mut self, batch: &Batch, segments: &[(u32, usize)]) -> Result<Vec<HeadOutput>>;
    /// Completes every load made so far.
    fn wait_loads(&mut self) -> Result<()>;
    /// Device bytes of the backbone, and of activations and buffers.
    fn device_bytes(&self) -> (usize, usize);
}

/// A PET slot on the CPU or a GPU (see the module docs).
pub enum PetSlot {
    /// The CPU twin.
    Cpu(Box<CpuPetSlot>),
    /// On a GPU.
    Gpu(Box<crate::gpu::GpuPetSlot>),
}

impl PetSlot {
    /// The backbone in `backbone_dir`, loaded once in `dtype` on `device`, with tiers and
    /// buffers of `config`'s sizes; no tenant yet.
    pub fn new(
        backbone_dir: &Path,
        dtype: DType,
        device: Device,
        config: PetSlotConfig,
    ) -> Result<Self> {
        config.check()?;
        let backbone = Backbone::load(backbone_dir, dtype)?;
        Ok(match device {
            Device::Cpu => PetSlot::Cpu(Box::new(CpuPetSlot::new(backbone, config)?)),
            Device::Cuda(n) => {
                PetSlot::Gpu(Box::new(crate::gpu::GpuPetSlot::new(backbone, config, n)?))
            }
        })
    }

    /// The tenant in folder `dir` alone, over the backbone it names, on `device`: a slot sized
    /// for its block and batches of up to `max_batch` rows of `max_seq` tokens (at most the
    /// backbone's positions), its tenant registered as id 0 (what `ptm infer` runs).
    pub fn single(
        dir: &Path,
        dtype: DType,
        device: Device,
        max_batch: usize,
        max_seq: usize,
    ) -> Result<Self> {
        let backbone_dir = super::backbone_of(dir)?;
        let backbone = Backbone::load(&backbone_dir, dtype)?;
        let t = super::PetTenant::load(dir, &backbone)?;
        let layers = backbone.config().num_hidden_layers;
        let (l, _) = super::block::pack(&t, layers, dtype)?;
        let config = PetSlotConfig {
            gpu_slots: 1,
            host_slots: 1,
            slot_bytes: l.bytes().max(1),
            max_batch,
            max_seq: max_seq.min(backbone.config().max_tokens()).max(1),
            max_rank: l.max_rank().max(1),
            max_adapter_width: l.max_width().max(1),
            max_labels: l.labels().max(1),
            options: KernelOptions::default(),
        };
        let mut slot = match device {
            Device::Cpu => PetSlot::Cpu(Box::new(CpuPetSlot::new(backbone, config)?)),
            Device::Cuda(n) => {
                PetSlot::Gpu(Box::new(crate::gpu::GpuPetSlot::new(backbone, config, n)?))
            }
        };
        slot.register(dir)?;
        Ok(slot)
    }

    fn backend(&self) -> &dyn Backend {
        match self {
            PetSlot::Cpu(s) => s.as_ref(),
            PetSlot::Gpu(s) => s.as_ref(),
        }
    }

    fn backend_mut(&mut self) -> &mut dyn Backend {
        match self {
            PetSlot::Cpu(s) => s.as_mut(),
            PetSlot::Gpu(s) => s.as_mut(),
        }
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        match self {
            PetSlot::Cpu(_) => Device::Cpu,
            PetSlot::Gpu(s) => Device::Cuda(s.ordinal()),
        }
    }

    /// Its sizes.
    pub fn config(&self) -> &PetSlotConfig {
        &self.backbone_core().config
    }

    fn backbone_core(&self) -> &Core {
        self.backend().core()
    }

    /// The shared backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone_core().backbone
    }

    /// Reads, checks and registers the tenant in `dir` under its folder name; its block goes
    /// to the host tier if that has a free slot. Returns its id.
    pub fn register(&mut self, dir: &Path) -> Result<PetId> {
        let (layout, bytes) = self.backbone_core().read(dir)?;
        self.insert(layout, &bytes)
    }

    /// [`PetSlot::register`] for every folder of `dirs`, read on `threads` threads (in order;
    /// the first failure is returned).
    pub fn register_all(&mut self, dirs: &[PathBuf], threads: usize) -> Result<Vec<PetId>> {
        let mut ids = Vec::with_capacity(dirs.len());
        for chunk in dirs.chunks(threads.clamp(1, 64) * 16) {
            let read = read_all(self.backbone_core(), chunk, threads);
            for r in read {
                let (layout, bytes) = r?;
                ids.push(self.insert(layout, &bytes)?);
            }
        }
        Ok(ids)
    }

    fn insert(&mut self, layout: BlockLayout, bytes: &[u8]) -> Result<PetId> {
        let (core, store) = self.backend_mut().parts();
        let t = core.insert(layout)?;
        if core.residency.host.len() < core.residency.host.capacity() {
            let (s, _) = core.residency.place(t, Tier::Host, None, &|_| true)?;
            store.write_host(s, bytes)?;
        }
        Ok(PetId(t))
    }

    /// Registered tenants.
    pub fn len(&self) -> usize {
        self.backbone_core().layouts.len()
    }

    /// Whether no tenant is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the tenant named `name`.
    pub fn id(&self, name: &str) -> Option<PetId> {
        self.backbone_core().id(name)
    }

    /// The block directory of tenant `t`.
    pub fn layout(&self, t: PetId) -> Result<&BlockLayout> {
        self.backbone_core().layout(t.0)
    }

    /// The whole model tenant `t` is (the backbone's encoder with its head).
    pub fn tenant_config(&self, t: PetId) -> Result<Config> {
        let l = self.layout(t)?;
        let core = self.backbone_core();
        let mut cfg = core.backbone.config().clone();
        let family = match cfg.kind()? {
            crate::config::ModelType::Bert => "Bert",
            crate::config::ModelType::Roberta => "Roberta",
        };
        cfg.architectures = vec![match l.task() {
            crate::config::Task::SequenceClassification => {
                format!("{family}ForSequenceClassification")
            }
            crate::config::Task::TokenClassification => format!("{family}ForTokenClassification"),
            crate::config::Task::Embedding => format!("{family}Model"),
        }];
        cfg.id2label = l.label_names.as_ref().map(|names| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), n.clone()))
                .collect()
        });
        cfg.num_labels = (l.task() != crate::config::Task::Embedding).then_some(l.labels());
        Ok(cfg)
    }

    /// The backbone's tokenizer.
    pub fn text_encoder(&self) -> Result<TextEncoder> {
        self.backbone().text_encoder()
    }

    /// The highest tier holding tenant `t`.
    pub fn tier(&self, t: PetId) -> Tier {
        self.backbone_core().residency.tier(t.0)
    }

    /// The slot of `tier` holding tenant `t`.
    pub fn slot_of(&self, t: PetId, tier: Tier) -> Option<u32> {
        let r = &self.backbone_core().residency;
        match tier {
            Tier::Gpu => r.gpu.slot(t.0),
            Tier::Host => r.host.slot(t.0),
            Tier::Disk => None,
        }
    }

    /// Loads tenant `t`'s block into tier `to` (`Gpu` or `Host`), into `slot` where given (the
    /// tenant there is evicted) or the tier's choice (a free slot, else the least recently
    /// used); nothing where it is there already. Returns the moves made, each from its source
    /// tier. On a GPU a load into the pool completes under the next forward pass (or at
    /// [`PetSlot::wait_loads`]).
    pub fn load(&mut self, t: PetId, to: Tier, slot: Option<u32>) -> Result<Vec<Load>> {
        let (core, store) = self.backend_mut().parts();
        core.layout(t.0)?;
        let mut out = Vec::new();
        load(core, store, t.0, to, slot, &|_| false, &mut out)?;
        Ok(out)
    }

    /// Removes tenant `t` from tier `from` (`Gpu` or `Host`); whether it was there.
    pub fn evict(&mut self, t: PetId, from: Tier) -> Result<bool> {
        self.backend_mut().wait_loads()?;
        let (core, _) = self.backend_mut().parts();
        core.layout(t.0)?;
        Ok(core.residency.remove(t.0, from)?.is_some())
    }

    /// Waits until every load made so far has landed.
    pub fn wait_loads(&mut self) -> Result<()> {
        self.backend_mut().wait_loads()
    }

    /// Runs `batch` with `tenants[r]` the tenant of row `r` (see the module docs).
    pub fn forward_mixed(&mut self, batch: &Batch, tenants: &[PetId]) -> Result<Mixed> {
        let b = self.backend_mut();
        let grouped = b.core().group(batch, tenants)?;
        let protect = grouped.tenants();
        let mut loads = Vec::new();
        {
            let (core, store) = b.parts();
            for &(t, _) in &grouped.segments {
                if core.residency.gpu.slot(t).is_some() {
                    core.residency.touch(t);
                } else {
                    load(
                        core,
                        store,
                        t,
                        Tier::Gpu,
                        None,
                        &|x| protect.contains(&x),
                        &mut loads,
                    )?;
                }
            }
        }
        let regrouped = Core::regroup(batch, &grouped.order);
        let outs = b.run(&regrouped, &grouped.segments)?;
        let mut rows: Vec<Option<HeadOutput>> = vec![None; batch.batch];
        let mut k = 0;
        for (o, &(_, n)) in outs.iter().zip(&grouped.segments) {
            for r in 0..n {
                let mut shape = vec![1];
                shape.extend_from_slice(&o.shape[1..]);
                rows[grouped.order[k]] = Some(HeadOutput {
                    task: o.task,
                    values: o.row(r).to_vec(),
                    shape,
                });
                k += 1;
            }
        }
        let outputs = rows
            .into_iter()
            .map(|o| o.ok_or_else(|| Error::Input("a row got no output".into())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mixed { outputs, loads })
    }

    /// Device milliseconds of the last pass's graph replay (a GPU slot; copy waits included).
    pub fn last_pass_ms(&self) -> Result<f64> {
        match self {
            PetSlot::Cpu(_) => Err(Error::Input(
                "device times are measured on a GPU, not the CPU twin".into(),
            )),
            PetSlot::Gpu(g) => g.last_pass_ms(),
        }
    }

    /// Turns a GPU slot's step profile on or off: passes run eagerly with a CUDA event after
    /// every step, read by [`PetSlot::last_steps`] (`ptm bench pet --profile`). An error on the
    /// CPU twin, which has no device times.
    pub fn set_profile_steps(&mut self, on: bool) -> Result<()> {
        match self {
            PetSlot::Cpu(_) => Err(Error::Input(
                "a step profile is measured on a GPU, not the CPU twin".into(),
            )),
            PetSlot::Gpu(g) => {
                g.set_profile_steps(on);
                Ok(())
            }
        }
    }

    /// The last profiled pass's device milliseconds per step (summed over layers, in order of
    /// first appearance); empty on the CPU or before a profiled pass.
    pub fn last_steps(&self) -> &[(&'static str, f64)] {
        match self {
            PetSlot::Cpu(_) => &[],
            PetSlot::Gpu(g) => g.last_steps(),
        }
    }

    /// Its memory.
    pub fn memory(&self) -> PetMemory {
        let b = self.backend();
        let core = b.core();
        let c = &core.config;
        let (gpu_backbone_bytes, gpu_work_bytes) = b.device_bytes();
        PetMemory {
            tenants: core.layouts.len(),
            block_bytes: core.layouts.iter().map(BlockLayout::bytes).sum(),
            slot_bytes: c.slot_bytes,
            gpu_tenants: core.residency.gpu.len(),
            host_tenants: core.residency.host.len(),
            gpu_pool_bytes: c.gpu_slots * c.slot_bytes,
            gpu_backbone_bytes,
            gpu_work_bytes,
            host_tier_bytes: c.host_slots * c.slot_bytes,
            host_directory_bytes: core.directory_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pet_slot_can_move_to_a_worker_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<PetSlot>();
        assert_send::<Mixed>();
    }
}
