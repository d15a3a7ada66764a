//! The device tables of one mixed-tenant pass, laid out on the host: which PET sites the
//! batch's tenants use (its **signature**: the launches a pass makes, so a CUDA graph is
//! captured once per bucket and signature), and per site a table of each segment's weight
//! addresses (`pet_kernels.cu`'s `LoraSeg`, `AdapterSeg`, `LinearSeg` or bias pointers), all in
//! one buffer written before each pass at a fixed device address. Tables always describe
//! `nseg` = the batch bucket's rows segments (absent and padding segments are empty or null),
//! so the kernels' arguments never change between passes of one graph.
//!
//! A segment's tables point into its tenant's block (`crate::pet::block`) at the device
//! address of the pool slot holding it. No CUDA here: the plan is built and tested without a
//! GPU (`gpu::pet_steps` launches the kernels it describes).

use crate::bert::{LayerLinear, LnPos};
use crate::config::Task;
use crate::error::{Error, Result};
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

/// A site a pass launches PET kernels at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SiteKey {
    /// BitFit bias of the embeddings' layer norm.
    EmbLnBias,
    /// Bias of Q, K and V of layer N (one launch over three sites).
    QkvBias(usize),
    /// LoRA of Q, K and V of layer N (one shrink and one expand over three sites).
    QkvLora(usize),
    /// Bias of layer N's attention output, FFN up or FFN down.
    Bias(usize, LayerLinear),
    /// LoRA of layer N's attention output, FFN up or FFN down.
    Lora(usize, LayerLinear),
    /// BitFit bias of a layer norm.
    LnBias(LnPos),
    /// Adapters of one wiring at a sublayer end.
    Adapter(LnPos, AdapterGroup),
    /// Sequence classification rows: first tokens, pooler tanh, classifier.
    Seq,
    /// Rows whose pooler is the backbone's (one GEMM over all rows).
    BackbonePooler,
    /// Rows of tenants with their own pooler.
    OwnPooler,
    /// A pooler bias replacing the backbone's.
    PoolerBias,
    /// LoRA on the pooler.
    PoolerLora,
    /// Token classification rows.
    Token,
    /// Embedding rows (masked mean pooling, L2-normalised).
    Embedding,
}

/// The tables of one layer's sites (device addresses; `None`: no launch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerPlan {
    /// Q/K/V biases: `[nseg][3]` pointers.
    pub qkv_bias: Option<u64>,
    /// Q/K/V LoRA: `[nseg][3]` `LoraSeg`.
    pub qkv_lora: Option<u64>,
    /// Biases of the attention output, FFN up, FFN down (`[nseg]` pointers each).
    pub bias: [Option<u64>; 3],
    /// LoRA of the attention output, FFN up, FFN down (`[nseg]` `LoraSeg` each).
    pub lora: [Option<u64>; 3],
    /// BitFit biases of the attention and FFN layer norms.
    pub ln_bias: [Option<u64>; 2],
    /// Adapter tables (`[nseg]` `AdapterSeg`) after attention and after the FFN, by wiring.
    pub adapters: [Vec<(AdapterGroup, u64)>; 2],
}

/// The head's sites (device addresses of `[nseg]` tables).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadPlan {
    /// Any sequence-classification rows.
    pub seq: bool,
    /// Any of them on the backbone's pooler.
    pub backbone_pooler: bool,
    /// Own poolers: `LinearSeg`.
    pub own_pooler: Option<u64>,
    /// Pooler biases (pointers).
    pub pooler_bias: Option<u64>,
    /// Pooler LoRA: `LoraSeg`.
    pub pooler_lora: Option<u64>,
    /// Sequence classifiers: `LinearSeg`.
    pub classifier: Option<u64>,
    /// Token classifiers: `LinearSeg`.
    pub token: Option<u64>,
    /// Any embedding rows.
    pub embedding: bool,
}

/// The shape of the passes a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanShape {
    /// Encoder layers.
    pub layers: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Batch bucket (rows): the tables' segment count.
    pub bb: usize,
    /// Sequence bucket.
    pub sb: usize,
}

/// A segment of a pass: consecutive rows of one tenant whose block is at device address
/// `base`.
#[derive(Debug, Clone, Copy)]
pub struct PlanSegment<'a> {
    /// The tenant's block directory.
    pub layout: &'a BlockLayout,
    /// Device address of its block.
    pub base: u64,
    /// Rows (texts).
    pub rows: usize,
}

/// The tables of one pass (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PetPlan {
    /// The sites launched, in launch order: with the bucket, what a captured graph depends on.
    pub signature: Vec<SiteKey>,
    /// The buffer's bytes (segment offsets first, then every table), written at the base
    /// address the plan was built for.
    pub tables: Vec<u8>,
    /// Device address of the segments' token-row offsets (`nseg + 1` `i32`).
    pub seg_tok: u64,
    /// Device address of the segments' batch-row offsets.
    pub seg_row: u64,
    /// Segments the tables describe (the batch bucket).
    pub nseg: usize,
    /// The embeddings' layer-norm bias table.
    pub emb_ln_bias: Option<u64>,
    /// Per layer.
    pub layers: Vec<LayerPlan>,
    /// The head.
    pub head: HeadPlan,
}

/// Bytes every table starts at a multiple of.
const TABLE_ALIGN: usize = 16;

/// Index of a non-QKV linear in [`LayerPlan`]'s arrays.
pub fn other_index(w: LayerLinear) -> Option<usize> {
    match w {
        LayerLinear::AttnOut => Some(0),
        LayerLinear::Up => Some(1),
        LayerLinear::Down => Some(2),
        _ => None,
    }
}

/// The non-QKV linears, in [`other_index`] order.
pub const OTHERS: [LayerLinear; 3] = [LayerLinear::AttnOut, LayerLinear::Up, LayerLinear::Down];

const QKV: [LayerLinear; 3] = [LayerLinear::Query, LayerLinear::Key, LayerLinear::Value];

fn lora_entry(s: &PlanSegment, m: Module) -> LoraSegDev {
    let l = s.layout;
    match (
        l.lora(m),
        l.addr(s.base, Part::LoraA(m)),
        l.addr(s.base, Part::LoraB(m)),
    ) {
        (Some((rank, scale)), Some(a), Some(b)) => LoraSegDev {
            a,
            b,
            rank: rank as i32,
            scale: scale as f32,
        },
        _ => LoraSegDev::default(),
    }
}

fn bias_entry(s: &PlanSegment, m: Module) -> u64 {
    s.layout.addr(s.base, Part::Bias(m)).unwrap_or(0)
}

fn adapter_entry(s: &PlanSegment, pos: LnPos, g: AdapterGroup) -> AdapterSegDev {
    let l = s.layout;
    let addr = |p| l.addr(s.base, p).unwrap_or(0);
    match l.adapter(pos) {
        Some((width, act, scaling)) if AdapterGroup::of(l.style()) == g => AdapterSegDev {
            down_w: addr(Part::DownW(pos)),
            down_b: addr(Part::DownB(pos)),
            up_w: addr(Part::UpW(pos)),
            up_b: addr(Part::UpB(pos)),
            width: width as i32,
            act: act.code(),
            scaling: scaling as f32,
            pad: 0,
        },
        _ => AdapterSegDev::default(),
    }
}

fn is_seq(s: &PlanSegment) -> bool {
    s.layout.task() == Task::SequenceClassification
}

fn own_pooler(s: &PlanSegment) -> bool {
    is_seq(s) && s.layout.entry(Part::PoolerW).is_some()
}

fn classifier_entry(s: &PlanSegment, task: Task) -> LinearSegDev {
    let l = s.layout;
    match (l.task() == task, l.addr(s.base, Part::ClassifierW)) {
        (true, Some(w)) => LinearSegDev {
            w,
            b: l.addr(s.base, Part::ClassifierB).unwrap_or(0),
            out: l.labels() as i32,
            pad: 0,
        },
        _ => LinearSegDev::default(),
    }
}

/// Appends tables to one buffer at a base address.
struct Writer {
    base: u64,
    bytes: Vec<u8>,
}

impl Writer {
    fn put(&mut self, b: &[u8]) -> u64 {
        let at = self.bytes.len().div_ceil(TABLE_ALIGN) * TABLE_ALIGN;
        self.bytes.resize(at, 0);
        self.bytes.extend_from_slice(b);
        self.base + at as u64
    }
}

impl PetPlan {
    /// The most bytes a plan's buffer takes for `layers` layers and a bucket of `bb` rows.
    pub fn bound_bytes(layers: usize, bb: usize) -> usize {
        let a = TABLE_ALIGN;
        let segs = 2 * ((bb + 1) * 4 + a);
        // Per segment and layer: QKV LoRA and bias, three LoRA and bias tables, two layer-norm
        // biases, every adapter group at both sublayer ends.
        let per_layer = bb * (3 * 24 + 3 * 8 + 3 * 24 + 3 * 8 + 2 * 8 + 2 * 5 * 48) + 20 * a;
        let head = bb * (5 * 24 + 8) + 6 * a;
        segs + bb * 8 + a + layers * per_layer + head
    }

    /// The plan of a pass over `segs` (in row order) in buckets of `shape`, for a buffer at
    /// device address `base`.
    pub fn build(shape: PlanShape, segs: &[PlanSegment], base: u64) -> Result<PetPlan> {
        let rows: usize = segs.iter().map(|s| s.rows).sum();
        if segs.is_empty()
            || segs.len() > shape.bb
            || rows > shape.bb
            || segs.iter().any(|s| s.rows == 0)
        {
            return Err(Error::Input(format!(
                "{} segments of {rows} rows: a pass of bucket {} takes 1 to {} segments of at least one row",
                segs.len(),
                shape.bb,
                shape.bb
            )));
        }
        if let Some(s) = segs.iter().find(|s| s.layout.stages() != shape.layers + 2) {
            return Err(Error::Incompatible {
                tenant: s.layout.name.clone(),
                reason: format!(
                    "its block has {} stages, a {}-layer backbone {}",
                    s.layout.stages(),
                    shape.layers,
                    shape.layers + 2
                ),
            });
        }
        let nseg = shape.bb;
        let mut seg_row = vec![0i32; nseg + 1];
        let mut acc = 0usize;
        for (i, v) in seg_row.iter_mut().enumerate().skip(1) {
            acc += segs.get(i - 1).map_or(0, |s| s.rows);
            *v = acc as i32;
        }
        let seg_tok: Vec<i32> = seg_row.iter().map(|r| r * shape.sb as i32).collect();
        let mut w = Writer {
            base,
            bytes: Vec::new(),
        };
        let le = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let seg_tok_at = w.put(&le(&seg_tok));
        let seg_row_at = w.put(&le(&seg_row));
        let mut signature = Vec::new();
        // One table per site with any entry: `entry(segment)` for each real segment, padded.
        let mut table = |key: SiteKey,
                         size: usize,
                         entry: &dyn Fn(&PlanSegment) -> Vec<u8>,
                         any: bool|
         -> Option<u64> {
            if !any {
                return None;
            }
            let mut b = Vec::with_capacity(nseg * size);
            for s in segs {
                let e = entry(s);
                debug_assert_eq!(e.len(), size);
                b.extend_from_slice(&e);
            }
            b.resize(nseg * size, 0);
            signature.push(key);
            Some(w.put(&b))
        };
        let ptr_bytes = |p: u64| p.to_le_bytes().to_vec();
        let emb = Module::Ln(LnPos::Embeddings);
        let emb_ln_bias = table(
            SiteKey::EmbLnBias,
            8,
            &|s| ptr_bytes(bias_entry(s, emb)),
            segs.iter().any(|s| bias_entry(s, emb) != 0),
        );
        let mut layers = Vec::with_capacity(shape.layers);
        for l in 0..shape.layers {
            let mut lp = LayerPlan::default();
            let qkv = QKV.map(|q| Module::Linear(l, q));
            lp.qkv_bias = table(
                SiteKey::QkvBias(l),
                24,
                &|s| {
                    qkv.iter()
                        .flat_map(|m| bias_entry(s, *m).to_le_bytes())
                        .collect()
                },
                segs.iter()
                    .any(|s| qkv.iter().any(|m| bias_entry(s, *m) != 0)),
            );
            lp.qkv_lora = table(
                SiteKey::QkvLora(l),
                72,
                &|s| LoraSegDev::to_bytes(&qkv.map(|m| lora_entry(s, m))),
                segs.iter()
                    .any(|s| qkv.iter().any(|m| s.layout.lora(*m).is_some())),
            );
            for (i, which) in OTHERS.into_iter().enumerate() {
                let m = Module::Linear(l, which);
                lp.bias[i] = table(
                    SiteKey::Bias(l, which),
                    8,
                    &|s| ptr_bytes(bias_entry(s, m)),
                    segs.iter().any(|s| bias_entry(s, m) != 0),
                );
                lp.lora[i] = table(
                    SiteKey::Lora(l, which),
                    24,
                    &|s| LoraSegDev::to_bytes(&[lora_entry(s, m)]),
                    segs.iter().any(|s| s.layout.lora(m).is_some()),
                );
            }
            for (i, pos) in [LnPos::Attention(l), LnPos::Output(l)]
                .into_iter()
                .enumerate()
            {
                let m = Module::Ln(pos);
                lp.ln_bias[i] = table(
                    SiteKey::LnBias(pos),
                    8,
                    &|s| ptr_bytes(bias_entry(s, m)),
                    segs.iter().any(|s| bias_entry(s, m) != 0),
                );
                for g in AdapterGroup::ALL {
                    let any = segs.iter().any(|s| {
                        s.layout.adapter(pos).is_some() && AdapterGroup::of(s.layout.style()) == g
                    });
                    if let Some(at) = table(
                        SiteKey::Adapter(pos, g),
                        48,
                        &|s| AdapterSegDev::to_bytes(&[adapter_entry(s, pos, g)]),
                        any,
                    ) {
                        lp.adapters[i].push((g, at));
                    }
                }
            }
            layers.push(lp);
        }
        let mut head = HeadPlan::default();
        let seq: Vec<bool> = segs.iter().map(is_seq).collect();
        head.seq = seq.iter().any(|&q| q);
        let flag = |key, on: bool, sig: &mut Vec<SiteKey>| {
            if on {
                sig.push(key);
            }
            on
        };
        // `table` holds `signature` mutably: flags are pushed through it after its last use.
        let own = table(
            SiteKey::OwnPooler,
            24,
            &|s| {
                let l = s.layout;
                let e = match (own_pooler(s), l.addr(s.base, Part::PoolerW)) {
                    (true, Some(pw)) => LinearSegDev {
                        w: pw,
                        b: l.addr(s.base, Part::Bias(Module::Pooler))
                            .or_else(|| l.addr(s.base, Part::PoolerB))
                            .unwrap_or(0),
                        out: shape.hidden as i32,
                        pad: 0,
                    },
                    _ => LinearSegDev::default(),
                };
                LinearSegDev::to_bytes(&[e])
            },
            segs.iter().any(own_pooler),
        );
        let pooler_bias = table(
            SiteKey::PoolerBias,
            8,
            &|s| {
                let on = is_seq(s) && !own_pooler(s);
                ptr_bytes(if on { bias_entry(s, Module::Pooler) } else { 0 })
            },
            segs.iter()
                .any(|s| is_seq(s) && !own_pooler(s) && bias_entry(s, Module::Pooler) != 0),
        );
        let pooler_lora = table(
            SiteKey::PoolerLora,
            24,
            &|s| {
                let e = if is_seq(s) {
                    lora_entry(s, Module::Pooler)
                } else {
                    LoraSegDev::default()
                };
                LoraSegDev::to_bytes(&[e])
            },
            segs.iter()
                .any(|s| is_seq(s) && s.layout.lora(Module::Pooler).is_some()),
        );
        let classifier = table(
            SiteKey::Seq,
            24,
            &|s| LinearSegDev::to_bytes(&[classifier_entry(s, Task::SequenceClassification)]),
            head.seq,
        );
        let token = table(
            SiteKey::Token,
            24,
            &|s| LinearSegDev::to_bytes(&[classifier_entry(s, Task::TokenClassification)]),
            segs.iter()
                .any(|s| s.layout.task() == Task::TokenClassification),
        );
        head.backbone_pooler = flag(
            SiteKey::BackbonePooler,
            segs.iter().any(|s| is_seq(s) && !own_pooler(s)),
            &mut signature,
        );
        head.embedding = flag(
            SiteKey::Embedding,
            segs.iter().any(|s| s.layout.task() == Task::Embedding),
            &mut signature,
        );
        head.own_pooler = own;
        head.pooler_bias = pooler_bias;
        head.pooler_lora = pooler_lora;
        head.classifier = classifier;
        head.token = token;
        let bound = Self::bound_bytes(shape.layers, shape.bb);
        if w.bytes.len() > bound {
            return Err(Error::Input(format!(
                "PET tables of {} bytes exceed their bound of {bound}",
                w.bytes.len()
            )));
        }
        Ok(PetPlan {
            signature,
            tables: w.bytes,
            seg_tok: seg_tok_at,
            seg_row: seg_row_at,
            nseg,
            emb_ln_bias,
            layers,
            head,
        })
    }

    /// Whether layer `layer`'s sublayer end `sub` (0: attention, 1: FFN) runs adapters.
    pub fn has_adapters(&self, layer: usize, sub: usize) -> bool {
        self.layers
            .get(layer)
            .is_some_and(|l| !l.adapters[sub].is_empty())
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

    fn tenants(spec: &crate::pet::PetSpec, n: usize) -> (tempfile::TempDir, Vec<BlockLayout>) {
        let d = tempfile::tempdir().unwrap();
        let z = crate::pet::make_pet_zoo(
            crate::zoo::Arch::Tiny,
            spec,
            n,
            d.path(),
            crate::DType::Fp16,
            5,
            1,
        )
        .unwrap();
        let b =
            crate::pet::Backbone::load(&d.path().join(&z.backbone), crate::DType::Fp16).unwrap();
        let layers = b.config().num_hidden_layers;
        let v = z
            .tenants
            .iter()
            .map(|t| {
                let pt = crate::pet::PetTenant::load(&d.path().join(&t.name), &b).unwrap();
                crate::pet::block::pack(&pt, layers, crate::DType::Fp16)
                    .unwrap()
                    .0
            })
            .collect();
        (d, v)
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn lora_tables_point_into_each_segments_block() {
        let spec = crate::pet::PetSpec::Lora {
            rank: 4,
            alpha: 8.0,
            targets: vec![LayerLinear::Query, LayerLinear::Value],
        };
        let (_d, ls) = tenants(&spec, 3);
        let shape = PlanShape {
            layers: 2,
            hidden: 32,
            bb: 8,
            sb: 16,
        };
        let base = 1u64 << 30;
        let segs: Vec<PlanSegment> = ls
            .iter()
            .enumerate()
            .map(|(i, l)| PlanSegment {
                layout: l,
                base: (i as u64 + 1) << 20,
                rows: i + 1,
            })
            .collect();
        let p = PetPlan::build(shape, &segs, base).unwrap();
        assert!(p.tables.len() <= PetPlan::bound_bytes(2, 8));
        let i32s = |at: u64, n: usize| -> Vec<i32> {
            let o = (at - base) as usize;
            (0..n)
                .map(|k| i32::from_le_bytes(p.tables[o + 4 * k..o + 4 * k + 4].try_into().unwrap()))
                .collect()
        };
        assert_eq!(i32s(p.seg_row, 9), vec![0, 1, 3, 6, 6, 6, 6, 6, 6]);
        assert_eq!(i32s(p.seg_tok, 9)[3], 6 * 16);
        // Q and V of both layers, one launch each; nothing else in the encoder.
        assert!(
            p.signature.contains(&SiteKey::QkvLora(0))
                && p.signature.contains(&SiteKey::QkvLora(1))
        );
        assert!(!p
            .signature
            .iter()
            .any(|k| matches!(k, SiteKey::Lora(..) | SiteKey::QkvBias(_))));
        let t = (p.layers[1].qkv_lora.unwrap() - base) as usize;
        for (s, seg) in segs.iter().enumerate() {
            let e = t + s * 72;
            let q = Module::Linear(1, LayerLinear::Query);
            let v = Module::Linear(1, LayerLinear::Value);
            assert_eq!(
                u64_at(&p.tables, e),
                seg.layout.addr(seg.base, Part::LoraA(q)).unwrap()
            );
            assert_eq!(
                u64_at(&p.tables, e + 8),
                seg.layout.addr(seg.base, Part::LoraB(q)).unwrap()
            );
            assert_eq!(
                i32::from_le_bytes(p.tables[e + 16..e + 20].try_into().unwrap()),
                4
            );
            assert_eq!(
                f32::from_le_bytes(p.tables[e + 20..e + 24].try_into().unwrap()),
                2.0
            );
            assert_eq!(u64_at(&p.tables, e + 24), 0, "no pair on K");
            assert_eq!(
                u64_at(&p.tables, e + 48),
                seg.layout.addr(seg.base, Part::LoraA(v)).unwrap()
            );
        }
        assert!(
            p.tables[t + 3 * 72..t + 8 * 72].iter().all(|&b| b == 0),
            "padding segments"
        );
        // The zoo's heads cycle: sequence classification, token classification, embeddings.
        assert!(p.head.seq && p.head.backbone_pooler && p.head.embedding);
        assert!(p.head.token.is_some() && p.head.own_pooler.is_none());
        let c = (p.head.classifier.unwrap() - base) as usize;
        assert_eq!(
            u64_at(&p.tables, c),
            segs[0]
                .layout
                .addr(segs[0].base, Part::ClassifierW)
                .unwrap()
        );
        assert_eq!(
            u64_at(&p.tables, c + 24),
            0,
            "a token classifier is not a sequence one"
        );
        let tk = (p.head.token.unwrap() - base) as usize;
        assert_eq!(
            i32::from_le_bytes(p.tables[tk + 24 + 16..tk + 24 + 20].try_into().unwrap()) as usize,
            segs[1].layout.labels()
        );
        // The same tenants in another order: the same signature (one graph), other tables.
        let rev: Vec<PlanSegment> = segs.iter().rev().copied().collect();
        let q = PetPlan::build(shape, &rev, base).unwrap();
        assert_eq!(q.signature, p.signature);
        assert_ne!(q.tables, p.tables);
        // Too many rows, or a block of another depth, are refused.
        let big = [PlanSegment { rows: 9, ..segs[0] }];
        assert!(PetPlan::build(shape, &big, base).is_err());
        let deep = PlanShape { layers: 3, ..shape };
        assert!(PetPlan::build(deep, &segs, base).is_err());
    }

    #[test]
    fn bitfit_and_adapter_sites() {
        let (_d, bit) = tenants(&crate::pet::PetSpec::Bitfit, 1);
        let spec = crate::pet::PetSpec::Adapter {
            placement: crate::pet::zoo::Placement::Pfeiffer,
            reduction_factor: 4,
        };
        let (_e, pf) = tenants(&spec, 1);
        let shape = PlanShape {
            layers: 2,
            hidden: 32,
            bb: 4,
            sb: 16,
        };
        let segs = [
            PlanSegment {
                layout: &bit[0],
                base: 1 << 20,
                rows: 2,
            },
            PlanSegment {
                layout: &pf[0],
                base: 2 << 20,
                rows: 1,
            },
        ];
        let p = PetPlan::build(shape, &segs, 0).unwrap();
        assert!(p.emb_ln_bias.is_some() && p.layers[0].qkv_bias.is_some());
        assert!(p.layers[1].bias.iter().all(Option::is_some));
        assert!(p.layers[1].ln_bias.iter().all(Option::is_some));
        // Pfeiffer: after the FFN only, reading the layer norm's output.
        assert!(!p.has_adapters(0, 0) && p.has_adapters(0, 1));
        let (g, at) = p.layers[0].adapters[1][0];
        assert!(g.reads_ln && g.skip == Skip::Sublayer);
        let e = at as usize + 48;
        let width = i32::from_le_bytes(p.tables[e + 32..e + 36].try_into().unwrap());
        assert_eq!(width as usize, pf[0].adapter(LnPos::Output(0)).unwrap().0);
        assert_eq!(
            u64_at(&p.tables, at as usize),
            0,
            "the BitFit segment has no adapter"
        );
        let qb = u64_at(&p.tables, p.layers[0].qkv_bias.unwrap() as usize + 8);
        let kq = Module::Linear(0, LayerLinear::Key);
        assert_eq!(qb, bit[0].addr(1 << 20, Part::Bias(kq)).unwrap());
    }
}
