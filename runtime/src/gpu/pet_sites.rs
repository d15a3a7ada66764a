//! A tenant's sites as the device tables of a pass need them, computed once from its block
//! directory: per layer and head site, its LoRA pair, bias, adapter (with its wiring group) or
//! head layer as byte offsets into its block. A pass's plan (`pet_plan.rs`) then only adds each
//! segment's block address. Also here: the tables' entry types, laid out as `pet_kernels.cu`
//! reads them (`LoraSeg`, `AdapterSeg`, `LinearSeg`). No CUDA here.

use crate::bert::{LayerLinear, LnPos};
use crate::config::Task;
use crate::pet::block::{BlockLayout, Part};
use crate::pet::tenant::{AdapterResidual, AdapterStyle};
use crate::pet::Module;

/// One segment's LoRA pair at one linear (`struct LoraSeg`, 24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoraSegDev {
    /// Device address of A `[rank, in]` (0: no pair for this segment).
    pub a: u64,
    /// Device address of B `[out, rank]`.
    pub b: u64,
    /// Rank.
    pub rank: i32,
    /// alpha / rank.
    pub scale: f32,
}

impl LoraSegDev {
    /// The table's bytes as the kernels read them (little endian, 24 bytes each).
    pub fn to_bytes(table: &[LoraSegDev]) -> Vec<u8> {
        let mut v = Vec::with_capacity(table.len() * 24);
        for s in table {
            v.extend_from_slice(&s.a.to_le_bytes());
            v.extend_from_slice(&s.b.to_le_bytes());
            v.extend_from_slice(&s.rank.to_le_bytes());
            v.extend_from_slice(&s.scale.to_le_bytes());
        }
        v
    }
}

/// One segment's bottleneck adapter at one sublayer end (`struct AdapterSeg`, 48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AdapterSegDev {
    /// Down weight `[width, h]` (0: no adapter for this segment).
    pub down_w: u64,
    /// Down bias `[width]`.
    pub down_b: u64,
    /// Up weight `[h, width]`.
    pub up_w: u64,
    /// Up bias `[h]`.
    pub up_b: u64,
    /// Bottleneck width.
    pub width: i32,
    /// Activation code ([`crate::pet::tenant::AdapterAct::code`]).
    pub act: i32,
    /// Output scaling.
    pub scaling: f32,
    /// Padding to 8 bytes.
    pub pad: i32,
}

impl AdapterSegDev {
    /// The table's bytes as the kernels read them (little endian, 48 bytes each).
    pub fn to_bytes(table: &[AdapterSegDev]) -> Vec<u8> {
        let mut v = Vec::with_capacity(table.len() * 48);
        for s in table {
            for p in [s.down_w, s.down_b, s.up_w, s.up_b] {
                v.extend_from_slice(&p.to_le_bytes());
            }
            v.extend_from_slice(&s.width.to_le_bytes());
            v.extend_from_slice(&s.act.to_le_bytes());
            v.extend_from_slice(&s.scaling.to_le_bytes());
            v.extend_from_slice(&s.pad.to_le_bytes());
        }
        v
    }
}

/// One segment's dense layer of a head (`struct LinearSeg`, 24 bytes): a classifier, or a
/// tenant's own pooler.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinearSegDev {
    /// Weight `[out, in]` (0: nothing for this segment).
    pub w: u64,
    /// Bias `[out]` (0: none).
    pub b: u64,
    /// Output features.
    pub out: i32,
    /// Padding to 8 bytes.
    pub pad: i32,
}

impl LinearSegDev {
    /// The table's bytes as the kernels read them (little endian, 24 bytes each).
    pub fn to_bytes(table: &[LinearSegDev]) -> Vec<u8> {
        let mut v = Vec::with_capacity(table.len() * 24);
        for s in table {
            v.extend_from_slice(&s.w.to_le_bytes());
            v.extend_from_slice(&s.b.to_le_bytes());
            v.extend_from_slice(&s.out.to_le_bytes());
            v.extend_from_slice(&s.pad.to_le_bytes());
        }
        v
    }
}

/// What an adapter reads and what its output is added to (its tenant's wiring).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    /// The sublayer's output `h`.
    Sublayer,
    /// The first layer norm's output `LN(h + residual)` (Pfeiffer, `residual_before_ln: false`).
    LnOut,
    /// `h + residual` (`residual_before_ln: post_add`).
    SublayerRes,
}

/// The adapters of one launch: those wired alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdapterGroup {
    /// The adapter reads `LN(h + residual)` (Pfeiffer) rather than `h` (Houlsby).
    pub reads_ln: bool,
    /// What its output is added to.
    pub skip: Skip,
}

impl AdapterGroup {
    /// The group of a tenant wired as `style`.
    pub fn of(style: AdapterStyle) -> Self {
        let skip = match (style.residual, style.original_ln_before) {
            (AdapterResidual::Sublayer, _) | (AdapterResidual::AdapterInput, false) => {
                Skip::Sublayer
            }
            (AdapterResidual::AdapterInput, true) => Skip::LnOut,
            (AdapterResidual::PostAdd, _) => Skip::SublayerRes,
        };
        AdapterGroup {
            reads_ln: style.original_ln_before,
            skip,
        }
    }

    /// Every group, in launch order.
    pub const ALL: [AdapterGroup; 5] = [
        AdapterGroup {
            reads_ln: false,
            skip: Skip::Sublayer,
        },
        AdapterGroup {
            reads_ln: false,
            skip: Skip::SublayerRes,
        },
        AdapterGroup {
            reads_ln: true,
            skip: Skip::Sublayer,
        },
        AdapterGroup {
            reads_ln: true,
            skip: Skip::LnOut,
        },
        AdapterGroup {
            reads_ln: true,
            skip: Skip::SublayerRes,
        },
    ];
}

/// A LoRA pair's entry, addresses relative to its block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraRel {
    /// Byte offset of A.
    pub a: u64,
    /// Byte offset of B.
    pub b: u64,
    /// Rank.
    pub rank: i32,
    /// alpha / rank.
    pub scale: f32,
}

impl LoraRel {
    /// The entry of a block at device address `base`.
    pub fn at(self, base: u64) -> LoraSegDev {
        LoraSegDev {
            a: base + self.a,
            b: base + self.b,
            rank: self.rank,
            scale: self.scale,
        }
    }
}

/// An adapter's entry, addresses relative to its block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdapterRel {
    /// Byte offsets of the down weight and bias, the up weight and bias.
    pub down_w: u64,
    /// See [`AdapterRel::down_w`].
    pub down_b: u64,
    /// See [`AdapterRel::down_w`].
    pub up_w: u64,
    /// See [`AdapterRel::down_w`].
    pub up_b: u64,
    /// Bottleneck width.
    pub width: i32,
    /// Activation code.
    pub act: i32,
    /// Output scaling.
    pub scaling: f32,
}

impl AdapterRel {
    /// The entry of a block at device address `base`.
    pub fn at(self, base: u64) -> AdapterSegDev {
        AdapterSegDev {
            down_w: base + self.down_w,
            down_b: base + self.down_b,
            up_w: base + self.up_w,
            up_b: base + self.up_b,
            width: self.width,
            act: self.act,
            scaling: self.scaling,
            pad: 0,
        }
    }
}

/// A head layer's entry (weight, bias), relative to its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearRel {
    /// Byte offset of the weight.
    pub w: u64,
    /// Byte offset of the bias, if any.
    pub b: Option<u64>,
    /// Output features.
    pub out: i32,
}

impl LinearRel {
    /// The entry of a block at device address `base`.
    pub fn at(self, base: u64) -> LinearSegDev {
        LinearSegDev {
            w: base + self.w,
            b: self.b.map_or(0, |b| base + b),
            out: self.out,
            pad: 0,
        }
    }
}

/// A tenant's sites in one layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerSites {
    /// LoRA on Q, K, V.
    pub qkv_lora: [Option<LoraRel>; 3],
    /// Biases of Q, K, V.
    pub qkv_bias: [Option<u64>; 3],
    /// LoRA on the attention output, FFN up, FFN down.
    pub lora: [Option<LoraRel>; 3],
    /// Biases of the attention output, FFN up, FFN down.
    pub bias: [Option<u64>; 3],
    /// Layer-norm biases after attention and after the FFN.
    pub ln_bias: [Option<u64>; 2],
    /// Adapters after attention and after the FFN, with their wiring.
    pub adapters: [Option<(AdapterGroup, AdapterRel)>; 2],
}

/// A tenant's sites (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct SiteTable {
    /// The tenant's name (for errors).
    pub name: String,
    /// Stages of its block (the backbone's layers + 2).
    pub stages: usize,
    /// Per layer.
    pub layers: Vec<LayerSites>,
    /// The embeddings' layer-norm bias.
    pub emb_ln_bias: Option<u64>,
    /// The head's task.
    pub task: Task,
    /// Its own pooler (its bias the replaced one where the tenant has it).
    pub own_pooler: Option<LinearRel>,
    /// A bias replacing the backbone pooler's.
    pub pooler_bias: Option<u64>,
    /// LoRA on the pooler.
    pub pooler_lora: Option<LoraRel>,
    /// The classifier.
    pub classifier: Option<LinearRel>,
}

const QKV: [LayerLinear; 3] = [LayerLinear::Query, LayerLinear::Key, LayerLinear::Value];

/// The non-QKV linears, in the order of [`LayerSites`]' arrays.
pub const OTHERS: [LayerLinear; 3] = [LayerLinear::AttnOut, LayerLinear::Up, LayerLinear::Down];

impl SiteTable {
    /// The sites of the tenant whose block `l` describes.
    pub fn of(l: &BlockLayout) -> Self {
        let off = |p: Part| l.addr(0, p);
        let lora = |m: Module| -> Option<LoraRel> {
            let (rank, scale) = l.lora(m)?;
            Some(LoraRel {
                a: off(Part::LoraA(m))?,
                b: off(Part::LoraB(m))?,
                rank: rank as i32,
                scale: scale as f32,
            })
        };
        let bias = |m: Module| off(Part::Bias(m));
        let group = AdapterGroup::of(l.style());
        let adapter = |pos: LnPos| -> Option<(AdapterGroup, AdapterRel)> {
            let (width, act, scaling) = l.adapter(pos)?;
            Some((
                group,
                AdapterRel {
                    down_w: off(Part::DownW(pos))?,
                    down_b: off(Part::DownB(pos))?,
                    up_w: off(Part::UpW(pos))?,
                    up_b: off(Part::UpB(pos))?,
                    width: width as i32,
                    act: act.code(),
                    scaling: scaling as f32,
                },
            ))
        };
        let layers = (0..l.stages().saturating_sub(2))
            .map(|i| {
                let lin = |w| Module::Linear(i, w);
                LayerSites {
                    qkv_lora: QKV.map(|w| lora(lin(w))),
                    qkv_bias: QKV.map(|w| bias(lin(w))),
                    lora: OTHERS.map(|w| lora(lin(w))),
                    bias: OTHERS.map(|w| bias(lin(w))),
                    ln_bias: [LnPos::Attention(i), LnPos::Output(i)].map(|p| bias(Module::Ln(p))),
                    adapters: [LnPos::Attention(i), LnPos::Output(i)].map(adapter),
                }
            })
            .collect();
        let own_pooler = off(Part::PoolerW).map(|w| LinearRel {
            w,
            b: bias(Module::Pooler).or_else(|| off(Part::PoolerB)),
            out: l.entry(Part::PoolerW).map_or(0, |e| e.shape[0] as i32),
        });
        let classifier = off(Part::ClassifierW).map(|w| LinearRel {
            w,
            b: off(Part::ClassifierB),
            out: l.labels() as i32,
        });
        SiteTable {
            name: l.name.clone(),
            stages: l.stages(),
            layers,
            emb_ln_bias: bias(Module::Ln(LnPos::Embeddings)),
            task: l.task(),
            own_pooler,
            pooler_bias: bias(Module::Pooler),
            pooler_lora: lora(Module::Pooler),
            classifier,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<LoraSegDev>(), 24);
        assert_eq!(std::mem::offset_of!(LoraSegDev, rank), 16);
        assert_eq!(std::mem::offset_of!(LoraSegDev, scale), 20);
        assert_eq!(std::mem::size_of::<AdapterSegDev>(), 48);
        assert_eq!(std::mem::offset_of!(AdapterSegDev, width), 32);
        assert_eq!(std::mem::offset_of!(AdapterSegDev, scaling), 40);
        let t = [LoraSegDev {
            a: 0x0102,
            b: 3,
            rank: 8,
            scale: 2.0,
        }];
        let b = LoraSegDev::to_bytes(&t);
        assert_eq!(b.len(), 24);
        assert_eq!(&b[..2], &[2, 1]);
        assert_eq!(&b[16..20], &8i32.to_le_bytes());
        assert_eq!(&b[20..24], &2f32.to_le_bytes());
        assert_eq!(
            AdapterSegDev::to_bytes(&[AdapterSegDev::default(); 2]).len(),
            96
        );
        assert_eq!(std::mem::size_of::<LinearSegDev>(), 24);
        assert_eq!(std::mem::offset_of!(LinearSegDev, out), 16);
        let l = LinearSegDev::to_bytes(&[LinearSegDev {
            w: 1,
            b: 2,
            out: 5,
            pad: 0,
        }]);
        assert_eq!(
            (&l[8..9], &l[16..20]),
            (&[2u8][..], &5i32.to_le_bytes()[..])
        );
    }

    #[test]
    fn sites_point_into_the_block() {
        let d = tempfile::tempdir().unwrap();
        let spec = crate::pet::PetSpec::Lora {
            rank: 4,
            alpha: 8.0,
            targets: vec![LayerLinear::Query, LayerLinear::Down],
        };
        let z = crate::pet::make_pet_zoo(
            crate::zoo::Arch::Tiny,
            &spec,
            1,
            d.path(),
            crate::DType::Fp16,
            5,
            1,
        )
        .unwrap();
        let b =
            crate::pet::Backbone::load(&d.path().join(&z.backbone), crate::DType::Fp16).unwrap();
        let t = crate::pet::PetTenant::load(&d.path().join(&z.tenants[0].name), &b).unwrap();
        let (l, _) = crate::pet::block::pack(&t, 2, crate::DType::Fp16).unwrap();
        let s = SiteTable::of(&l);
        assert_eq!((s.layers.len(), s.stages), (2, 4));
        let q1 = Module::Linear(1, LayerLinear::Query);
        let e = s.layers[1].qkv_lora[0].unwrap().at(1000);
        assert_eq!(e.a, l.addr(1000, Part::LoraA(q1)).unwrap());
        assert_eq!((e.rank, e.scale), (4, 2.0));
        assert!(s.layers[1].qkv_lora[1].is_none() && s.layers[0].lora[2].is_some());
        assert!(s.layers[0].lora[0].is_none() && s.adapters_none());
        assert_eq!(s.task, crate::Task::SequenceClassification);
        let c = s.classifier.unwrap();
        assert_eq!(c.out as usize, l.labels());
        assert_eq!(c.at(7).b, l.addr(7, Part::ClassifierB).unwrap());
        assert!(s.own_pooler.is_none() && s.pooler_bias.is_none());
    }

    impl SiteTable {
        fn adapters_none(&self) -> bool {
            self.layers
                .iter()
                .all(|l| l.adapters.iter().all(Option::is_none))
        }
    }
}
