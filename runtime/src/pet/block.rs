//! A tenant's delta packed into one block of model-dtype bytes: what the tiers of a PET slot
//! hold (a GPU adapter-pool slot, a pinned host slot) and copy between them. The block is laid
//! out in **stages** in the order the forward pass reaches them — the embeddings' layer norm,
//! then each encoder layer, then the head — so a miss can be copied stage by stage while the
//! backbone computes the layers before the first one that needs it.
//!
//! [`BlockLayout`] is the block's directory (where each tensor lies, each stage's byte range)
//! plus the tenant's scalars (LoRA ranks and scales, adapter widths, activations, scaling and
//! wiring, the head's task and labels); it stays in host memory for every registered tenant.
//! [`pack`] writes a loaded [`PetTenant`]'s tensors into a block; [`BlockLayout::unpack`] reads
//! a block back into a [`PetTenant`] with exactly the same values (the tensors hold model-dtype
//! values, so the round trip is lossless): the CPU twin of the PET slot runs unpacked blocks, so
//! CI checks the format the GPU reads.
//!
//! Every tensor starts on an [`ALIGN_ELEMENTS`] boundary, and so does every stage.

use super::sites::Module;
use super::tenant::{AdapterAct, AdapterStyle, Bottleneck, LoraDelta, PetKind, PetTenant};
use super::tenant::{Structure, TenantHead};
use crate::bert::{Linear, LnPos};
use crate::config::{Config, Task};
use crate::dtype::DType;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

/// Every tensor (and stage) starts at a multiple of this many elements.
pub const ALIGN_ELEMENTS: usize = 8;

/// A tensor of a tenant's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// LoRA A `[rank, in]` of a linear.
    LoraA(Module),
    /// LoRA B `[out, rank]` of a linear.
    LoraB(Module),
    /// A bias replacing the backbone's (`[out]`, or `[h]` for a layer norm).
    Bias(Module),
    /// An adapter's down weight `[width, h]`.
    DownW(LnPos),
    /// An adapter's down bias `[width]`.
    DownB(LnPos),
    /// An adapter's up weight `[h, width]`.
    UpW(LnPos),
    /// An adapter's up bias `[h]`.
    UpB(LnPos),
    /// The tenant's own pooler weight `[h, h]`.
    PoolerW,
    /// The tenant's own pooler bias `[h]`.
    PoolerB,
    /// The classifier weight `[labels, h]`.
    ClassifierW,
    /// The classifier bias `[labels]`.
    ClassifierB,
}

/// Where in the forward pass a block's tensors are first needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The embeddings' layer norm.
    Embeddings,
    /// Encoder layer N.
    Layer(usize),
    /// The pooler and classifier.
    Head,
}

impl Stage {
    /// The stage's index among a model's `layers + 2` stages.
    pub fn index(self, layers: usize) -> usize {
        match self {
            Stage::Embeddings => 0,
            Stage::Layer(l) => 1 + l,
            Stage::Head => 1 + layers,
        }
    }

    /// Stages of a model of `layers` layers.
    pub fn count(layers: usize) -> usize {
        layers + 2
    }

    /// The stage of module `m`.
    pub fn of_module(m: Module) -> Stage {
        match m {
            Module::Ln(LnPos::Embeddings) => Stage::Embeddings,
            Module::Pooler | Module::Classifier => Stage::Head,
            m => Stage::Layer(m.layer().unwrap_or(0)),
        }
    }
}

impl Part {
    /// The stage the tensor belongs to.
    pub fn stage(self) -> Stage {
        match self {
            Part::LoraA(m) | Part::LoraB(m) | Part::Bias(m) => Stage::of_module(m),
            Part::DownW(p) | Part::DownB(p) | Part::UpW(p) | Part::UpB(p) => {
                Stage::of_module(Module::Ln(p))
            }
            Part::PoolerW | Part::PoolerB | Part::ClassifierW | Part::ClassifierB => Stage::Head,
        }
    }
}

/// One tensor's place in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Offset from the block's start, in elements.
    pub offset: usize,
    /// Shape (row-major).
    pub shape: Vec<usize>,
}

impl Entry {
    /// Elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A tenant's block directory and scalars (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockLayout {
    /// The tenant's name.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its kind.
    pub kind: PetKind,
    /// Elements of its own tensors (head included).
    pub parameters: usize,
    /// The dtype of the block's values.
    pub dtype: DType,
    pub(crate) entries: BTreeMap<Part, Entry>,
    /// Element offsets of the stages' starts, then the block's (aligned) length.
    pub(crate) stage_start: Vec<usize>,
    pub(crate) lora: BTreeMap<Module, (usize, f64)>,
    pub(crate) adapters: BTreeMap<LnPos, (usize, AdapterAct, f64)>,
    pub(crate) style: AdapterStyle,
    pub(crate) task: Task,
    pub(crate) labels: usize,
    pub(crate) label_names: Option<Vec<String>>,
    pub(crate) structure: Structure,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN_ELEMENTS) * ALIGN_ELEMENTS
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// The tensors of `t`, each with its part.
fn parts_of(t: &PetTenant) -> Vec<(Part, &Tensor)> {
    let mut v: Vec<(Part, &Tensor)> = Vec::new();
    for (m, d) in &t.lora {
        v.push((Part::LoraA(*m), &d.a));
        v.push((Part::LoraB(*m), &d.b));
    }
    for (m, b) in &t.biases {
        v.push((Part::Bias(*m), b));
    }
    for (p, a) in &t.adapters {
        v.push((Part::DownW(*p), &a.down.w));
        v.push((Part::DownB(*p), &a.down.b));
        v.push((Part::UpW(*p), &a.up.w));
        v.push((Part::UpB(*p), &a.up.b));
    }
    if let Some(p) = &t.head.pooler {
        v.push((Part::PoolerW, &p.w));
        v.push((Part::PoolerB, &p.b));
    }
    if let Some(c) = &t.head.classifier {
        v.push((Part::ClassifierW, &c.w));
        v.push((Part::ClassifierB, &c.b));
    }
    v.sort_by_key(|(p, _)| (p.stage(), *p));
    v
}

/// Packs tenant `t` (read against a backbone of `layers` layers) into a block of `dtype`
/// values: its layout and bytes.
pub fn pack(t: &PetTenant, layers: usize, dtype: DType) -> Result<(BlockLayout, Vec<u8>)> {
    let parts = parts_of(t);
    let mut entries = BTreeMap::new();
    let mut stage_start = vec![0usize; Stage::count(layers) + 1];
    let mut at = 0usize;
    let mut next_stage = 0usize;
    let mut values_in_order = Vec::with_capacity(parts.len());
    for (part, tensor) in parts {
        let si = part.stage().index(layers);
        if si >= Stage::count(layers) {
            return Err(Error::pet(
                &t.dir,
                format!("{part:?}"),
                format!("belongs to no stage of a {layers}-layer backbone"),
            ));
        }
        while next_stage <= si {
            stage_start[next_stage] = at;
            next_stage += 1;
        }
        let shape = tensor.dims().to_vec();
        let e = Entry { offset: at, shape };
        at = align(at + e.elements());
        entries.insert(part, e);
        values_in_order.push((part, values(tensor)?));
    }
    while next_stage <= Stage::count(layers) {
        stage_start[next_stage] = at;
        next_stage += 1;
    }
    let layout = BlockLayout {
        name: t.name.clone(),
        dir: t.dir.clone(),
        kind: t.kind,
        parameters: t.parameters,
        dtype,
        entries,
        stage_start,
        lora: t
            .lora
            .iter()
            .map(|(m, d)| (*m, (d.rank, d.scale)))
            .collect(),
        adapters: t
            .adapters
            .iter()
            .map(|(p, a)| (*p, (a.down.b.dims()[0], a.act, a.scaling)))
            .collect(),
        style: t.style,
        task: t.head.task,
        labels: t.head.labels,
        label_names: t.head.label_names.clone(),
        structure: t.structure.clone(),
    };
    let mut bytes = vec![0u8; layout.bytes()];
    let e = dtype.size_bytes();
    let mut enc = Vec::new();
    for (part, v) in values_in_order {
        let off = layout.entries[&part].offset * e;
        enc.clear();
        dtype.encode_f32(&v, &mut enc);
        bytes[off..off + enc.len()].copy_from_slice(&enc);
    }
    Ok((layout, bytes))
}

impl BlockLayout {
    /// Bytes of the block.
    pub fn bytes(&self) -> usize {
        self.stage_start.last().copied().unwrap_or(0) * self.dtype.size_bytes()
    }

    /// Stages of the block (the backbone's layers + 2).
    pub fn stages(&self) -> usize {
        self.stage_start.len() - 1
    }

    /// The byte range of stage `i` (empty where the tenant has nothing there).
    pub fn stage_bytes(&self, i: usize) -> Range<usize> {
        let e = self.dtype.size_bytes();
        self.stage_start[i] * e..self.stage_start[i + 1] * e
    }

    /// The place of `part`, if the tenant has it.
    pub fn entry(&self, part: Part) -> Option<&Entry> {
        self.entries.get(&part)
    }

    /// The address of `part` in a block at `base` (device or host address), if present.
    pub fn addr(&self, base: u64, part: Part) -> Option<u64> {
        self.entries
            .get(&part)
            .map(|e| base + (e.offset * self.dtype.size_bytes()) as u64)
    }

    /// The LoRA rank and scale on `m`, if any.
    pub fn lora(&self, m: Module) -> Option<(usize, f64)> {
        self.lora.get(&m).copied()
    }

    /// The adapter at the end of sublayer `pos`: width, activation, scaling.
    pub fn adapter(&self, pos: LnPos) -> Option<(usize, AdapterAct, f64)> {
        self.adapters.get(&pos).copied()
    }

    /// The tenant's adapter wiring.
    pub fn style(&self) -> AdapterStyle {
        self.style
    }

    /// The head's task.
    pub fn task(&self) -> Task {
        self.task
    }

    /// The head's labels (0 for embeddings).
    pub fn labels(&self) -> usize {
        self.labels
    }

    /// The largest LoRA rank of the tenant (0 without LoRA).
    pub fn max_rank(&self) -> usize {
        self.lora.values().map(|l| l.0).max().unwrap_or(0)
    }

    /// The widest adapter bottleneck of the tenant (0 without adapters).
    pub fn max_width(&self) -> usize {
        self.adapters.values().map(|a| a.0).max().unwrap_or(0)
    }

    /// Host bytes of this directory (an estimate: the maps' entries and strings).
    pub fn host_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(Part, Entry)>() + 2 * std::mem::size_of::<usize>();
        std::mem::size_of::<Self>()
            + self.name.len()
            + self.dir.as_os_str().len()
            + self.entries.len() * (per_entry + 32)
            + self.stage_start.len() * std::mem::size_of::<usize>()
            + (self.lora.len() + self.adapters.len()) * 48
            + self
                .label_names
                .as_ref()
                .map_or(0, |v| v.iter().map(|s| s.len() + 24).sum())
    }

    /// The most bytes a tenant of `parameters` elements of a `cfg`-shaped backbone packs to in
    /// `dtype` (its tensors plus the alignment of every possible tensor): a safe pool slot size
    /// for every tenant of a zoo.
    pub fn bound_bytes(parameters: usize, cfg: &Config, dtype: DType) -> usize {
        let l = cfg.num_hidden_layers;
        // LoRA pairs on every linear and the pooler, every bias, two adapters per layer, head.
        let tensors = 2 * (6 * l + 1) + (8 * l + 2) + 8 * l + 4;
        align(parameters + tensors * (ALIGN_ELEMENTS - 1)) * dtype.size_bytes()
    }

    /// Reads a block of this layout back into a tenant (exactly the packed values).
    pub fn unpack(&self, bytes: &[u8]) -> Result<PetTenant> {
        if bytes.len() < self.bytes() {
            return Err(Error::pet(
                &self.dir,
                "block",
                format!(
                    "{} bytes, the tenant's block has {}",
                    bytes.len(),
                    self.bytes()
                ),
            ));
        }
        let e = self.dtype.size_bytes();
        let get = |part: Part| -> Result<Tensor> {
            let en = self.entries.get(&part).ok_or_else(|| {
                Error::pet(&self.dir, format!("{part:?}"), "missing from the block")
            })?;
            let at = en.offset * e;
            let v = self.dtype.decode_f32(&bytes[at..at + en.elements() * e]);
            Ok(Tensor::from_vec(v, en.shape.as_slice(), &Device::Cpu)?)
        };
        let lin = |w: Part, b: Part| -> Result<Linear> {
            Ok(Linear {
                w: get(w)?,
                b: get(b)?,
            })
        };
        let mut lora = BTreeMap::new();
        for (m, (rank, scale)) in &self.lora {
            lora.insert(
                *m,
                LoraDelta {
                    a: get(Part::LoraA(*m))?,
                    b: get(Part::LoraB(*m))?,
                    scale: *scale,
                    rank: *rank,
                },
            );
        }
        let mut biases = BTreeMap::new();
        for p in self.entries.keys() {
            if let Part::Bias(m) = p {
                biases.insert(*m, get(*p)?);
            }
        }
        let mut adapters = BTreeMap::new();
        for (pos, (_, act, scaling)) in &self.adapters {
            adapters.insert(
                *pos,
                Bottleneck {
                    down: lin(Part::DownW(*pos), Part::DownB(*pos))?,
                    up: lin(Part::UpW(*pos), Part::UpB(*pos))?,
                    act: *act,
                    scaling: *scaling,
                },
            );
        }
        let has = |p: Part| self.entries.contains_key(&p);
        let pooler = if has(Part::PoolerW) {
            Some(lin(Part::PoolerW, Part::PoolerB)?)
        } else {
            None
        };
        let classifier = if has(Part::ClassifierW) {
            Some(lin(Part::ClassifierW, Part::ClassifierB)?)
        } else {
            None
        };
        Ok(PetTenant {
            name: self.name.clone(),
            dir: self.dir.clone(),
            kind: self.kind,
            parameters: self.parameters,
            lora,
            biases,
            adapters,
            style: self.style,
            head: TenantHead {
                task: self.task,
                labels: self.labels,
                pooler,
                classifier,
                label_names: self.label_names.clone(),
            },
            structure: self.structure.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bert::LayerLinear;

    #[test]
    fn stages_follow_the_forward_pass() {
        let q3 = Module::Linear(3, LayerLinear::Query);
        assert_eq!(Part::LoraA(q3).stage(), Stage::Layer(3));
        assert_eq!(
            Part::Bias(Module::Ln(LnPos::Embeddings)).stage(),
            Stage::Embeddings
        );
        assert_eq!(
            Part::Bias(Module::Ln(LnPos::Output(2))).stage(),
            Stage::Layer(2)
        );
        assert_eq!(Part::UpB(LnPos::Attention(1)).stage(), Stage::Layer(1));
        assert_eq!(Part::LoraB(Module::Pooler).stage(), Stage::Head);
        assert_eq!(Part::ClassifierW.stage(), Stage::Head);
        assert_eq!(Stage::Head.index(12), 13);
        assert_eq!(Stage::count(12), 14);
        assert!(Stage::Embeddings < Stage::Layer(0) && Stage::Layer(11) < Stage::Head);
    }

    #[test]
    fn the_bound_covers_every_alignment() {
        let cfg = crate::zoo::Arch::BertBase.config(Task::Embedding, 0);
        let b = BlockLayout::bound_bytes(298_244, &cfg, DType::Fp16);
        assert!(b >= 298_244 * 2 && b % (ALIGN_ELEMENTS * 2) == 0);
        assert!(b < 298_244 * 2 + 64 * 1024, "{b}");
    }
}
