//! The device tables of one mixed-tenant pass, laid out on the host: which PET sites the
//! batch's tenants use (its **signature**: the launches a pass makes, so a CUDA graph is
//! captured once per bucket and signature), and per site a table of each segment's weight
//! addresses (`pet_kernels.cu`'s `LoraSeg`, `AdapterSeg`, `LinearSeg` or bias pointers), all in
//! one buffer written before each pass at a fixed device address. Tables always describe
//! `nseg` = the batch bucket's rows segments (absent and padding segments are empty or null),
//! so the kernels' arguments never change between passes of one graph.
//!
//! A segment's entries are its tenant's [`SiteTable`] (computed once per tenant) relocated to
//! the device address of the pool slot holding its block. No CUDA here: the plan is built and
//! tested without a GPU (`gpu::pet_steps` launches the kernels it describes).

pub use super::pet_sites::{
    AdapterGroup, AdapterSegDev, LinearSegDev, LoraSegDev, SiteTable, Skip, OTHERS,
};
use crate::bert::{LayerLinear, LnPos};
use crate::config::Task;
use crate::error::{Error, Result};

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
    /// The tenant's sites.
    pub sites: &'a SiteTable,
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
    OTHERS.iter().position(|&o| o == w)
}

/// Segment `s`'s sites in layer `l`.
fn layer<'b>(s: &PlanSegment<'b>, l: usize) -> &'b super::pet_sites::LayerSites {
    &s.sites.layers[l]
}

fn is_seq(s: &PlanSegment) -> bool {
    s.sites.task == Task::SequenceClassification
}

fn own_pooler(s: &PlanSegment) -> bool {
    is_seq(s) && s.sites.own_pooler.is_some()
}

fn lora_bytes(s: &PlanSegment, e: &[Option<super::pet_sites::LoraRel>]) -> Vec<u8> {
    let t: Vec<LoraSegDev> = e
        .iter()
        .map(|r| r.map_or(LoraSegDev::default(), |r| r.at(s.base)))
        .collect();
    LoraSegDev::to_bytes(&t)
}

fn ptr_bytes(s: &PlanSegment, e: &[Option<u64>]) -> Vec<u8> {
    e.iter()
        .flat_map(|r| r.map_or(0, |r| s.base + r).to_le_bytes())
        .collect()
}

fn classifier_bytes(s: &PlanSegment, task: Task) -> Vec<u8> {
    let e = match (s.sites.task == task, s.sites.classifier) {
        (true, Some(c)) => c.at(s.base),
        _ => LinearSegDev::default(),
    };
    LinearSegDev::to_bytes(&[e])
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
    pub fn build<'a>(shape: PlanShape, segs: &[PlanSegment<'a>], base: u64) -> Result<PetPlan> {
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
        if let Some(s) = segs.iter().find(|s| s.sites.stages != shape.layers + 2) {
            return Err(Error::Incompatible {
                tenant: s.sites.name.clone(),
                reason: format!(
                    "its block has {} stages, a {}-layer backbone {}",
                    s.sites.stages,
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
                b.extend_from_slice(&entry(s));
            }
            b.resize(nseg * size, 0);
            signature.push(key);
            Some(w.put(&b))
        };
        let emb_ln_bias = table(
            SiteKey::EmbLnBias,
            8,
            &|s| ptr_bytes(s, &[s.sites.emb_ln_bias]),
            segs.iter().any(|s| s.sites.emb_ln_bias.is_some()),
        );
        let mut layers = Vec::with_capacity(shape.layers);
        for l in 0..shape.layers {
            let mut lp = LayerPlan::default();
            let any = |f: &dyn Fn(&super::pet_sites::LayerSites) -> bool| {
                segs.iter().any(|s| f(layer(s, l)))
            };
            lp.qkv_bias = table(
                SiteKey::QkvBias(l),
                24,
                &|s| ptr_bytes(s, &layer(s, l).qkv_bias),
                any(&|x| x.qkv_bias.iter().any(Option::is_some)),
            );
            lp.qkv_lora = table(
                SiteKey::QkvLora(l),
                72,
                &|s| lora_bytes(s, &layer(s, l).qkv_lora),
                any(&|x| x.qkv_lora.iter().any(Option::is_some)),
            );
            for (i, which) in OTHERS.into_iter().enumerate() {
                lp.bias[i] = table(
                    SiteKey::Bias(l, which),
                    8,
                    &|s| ptr_bytes(s, &layer(s, l).bias[i..i + 1]),
                    any(&|x| x.bias[i].is_some()),
                );
                lp.lora[i] = table(
                    SiteKey::Lora(l, which),
                    24,
                    &|s| lora_bytes(s, &layer(s, l).lora[i..i + 1]),
                    any(&|x| x.lora[i].is_some()),
                );
            }
            for (i, pos) in [LnPos::Attention(l), LnPos::Output(l)]
                .into_iter()
                .enumerate()
            {
                lp.ln_bias[i] = table(
                    SiteKey::LnBias(pos),
                    8,
                    &|s| ptr_bytes(s, &layer(s, l).ln_bias[i..i + 1]),
                    any(&|x| x.ln_bias[i].is_some()),
                );
                for g in AdapterGroup::ALL {
                    let entry = |s: &PlanSegment| {
                        let e = match layer(s, l).adapters[i] {
                            Some((sg, a)) if sg == g => a.at(s.base),
                            _ => AdapterSegDev::default(),
                        };
                        AdapterSegDev::to_bytes(&[e])
                    };
                    let present = any(&|x| matches!(x.adapters[i], Some((sg, _)) if sg == g));
                    if let Some(at) = table(SiteKey::Adapter(pos, g), 48, &entry, present) {
                        lp.adapters[i].push((g, at));
                    }
                }
            }
            layers.push(lp);
        }
        let mut head = HeadPlan {
            seq: segs.iter().any(is_seq),
            ..HeadPlan::default()
        };
        let own = table(
            SiteKey::OwnPooler,
            24,
            &|s| {
                let e = match (own_pooler(s), s.sites.own_pooler) {
                    (true, Some(p)) => p.at(s.base),
                    _ => LinearSegDev::default(),
                };
                LinearSegDev::to_bytes(&[e])
            },
            segs.iter().any(own_pooler),
        );
        let backbone_pooler = |s: &PlanSegment| is_seq(s) && !own_pooler(s);
        let pooler_bias = table(
            SiteKey::PoolerBias,
            8,
            &|s| {
                let b = if backbone_pooler(s) {
                    s.sites.pooler_bias
                } else {
                    None
                };
                ptr_bytes(s, &[b])
            },
            segs.iter()
                .any(|s| backbone_pooler(s) && s.sites.pooler_bias.is_some()),
        );
        let pooler_lora = table(
            SiteKey::PoolerLora,
            24,
            &|s| {
                let e = if is_seq(s) { s.sites.pooler_lora } else { None };
                lora_bytes(s, &[e])
            },
            segs.iter()
                .any(|s| is_seq(s) && s.sites.pooler_lora.is_some()),
        );
        let classifier = table(
            SiteKey::Seq,
            24,
            &|s| classifier_bytes(s, Task::SequenceClassification),
            head.seq,
        );
        let token = table(
            SiteKey::Token,
            24,
            &|s| classifier_bytes(s, Task::TokenClassification),
            segs.iter()
                .any(|s| s.sites.task == Task::TokenClassification),
        );
        // `table` holds `signature` mutably: flags are pushed after its last use.
        head.backbone_pooler = segs.iter().any(backbone_pooler);
        if head.backbone_pooler {
            signature.push(SiteKey::BackbonePooler);
        }
        head.embedding = segs.iter().any(|s| s.sites.task == Task::Embedding);
        if head.embedding {
            signature.push(SiteKey::Embedding);
        }
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
    use crate::pet::block::{BlockLayout, Part};
    use crate::pet::Module;

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
        let st: Vec<SiteTable> = ls.iter().map(SiteTable::of).collect();
        let shape = PlanShape {
            layers: 2,
            hidden: 32,
            bb: 8,
            sb: 16,
        };
        let base = 1u64 << 30;
        let segs: Vec<PlanSegment> = st
            .iter()
            .enumerate()
            .map(|(i, s)| PlanSegment {
                sites: s,
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
                ls[s].addr(seg.base, Part::LoraA(q)).unwrap()
            );
            assert_eq!(
                u64_at(&p.tables, e + 8),
                ls[s].addr(seg.base, Part::LoraB(q)).unwrap()
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
                ls[s].addr(seg.base, Part::LoraA(v)).unwrap()
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
            ls[0].addr(segs[0].base, Part::ClassifierW).unwrap()
        );
        assert_eq!(
            u64_at(&p.tables, c + 24),
            0,
            "a token classifier is not a sequence one"
        );
        let tk = (p.head.token.unwrap() - base) as usize;
        assert_eq!(
            i32::from_le_bytes(p.tables[tk + 24 + 16..tk + 24 + 20].try_into().unwrap()) as usize,
            ls[1].labels()
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
        let (bs, ps) = (SiteTable::of(&bit[0]), SiteTable::of(&pf[0]));
        let shape = PlanShape {
            layers: 2,
            hidden: 32,
            bb: 4,
            sb: 16,
        };
        let segs = [
            PlanSegment {
                sites: &bs,
                base: 1 << 20,
                rows: 2,
            },
            PlanSegment {
                sites: &ps,
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
