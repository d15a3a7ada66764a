//! The PET slot on a GPU: the backbone in one weight arena (a [`GpuModel`] of its bare
//! encoder), the segmented PET kernels compiled on the model's stream, the adapter pool and
//! pinned host tier (`pet_store.rs`), and the buffers of mixed-tenant passes (LoRA shrink
//! outputs, adapter bottlenecks, the tables, the heads' outputs), all allocated once for the
//! slot's largest bucket so that their addresses never change.
//!
//! A pass: pending loads are flushed (copies stage by stage on the copy stream), the batch's
//! plan is built (`pet_plan.rs`) and its tables uploaded on the compute stream, then the
//! bucket's graph for the plan's signature is replayed (captured on first use; a pass after
//! loads has its own graph whose per-stage waits are external event nodes). Outputs are
//! gathered per segment; the copy stream is synchronised before the pass returns if it ran
//! copies, so the next pass can replay the graph without waits.
//!
//! Use through [`crate::pet::PetSlot`] (the same API as the CPU twin).

use super::cuda::{cu, DevBuf};
use super::pet::{LoraKernels, PetKernels};
use super::pet_plan::{PetPlan, PlanSegment, PlanShape, SiteKey, SiteTable};
use super::pet_steps::{PetBuffers, PetPass};
use super::pet_store::GpuStore;
use super::weights::Linear;
use super::workspace::WorkspaceBytes;
use super::{bucket, GpuModel};
use crate::bert::HeadOutput;
use crate::config::Task;
use crate::error::{Error, Result};
use crate::pet::backbone::Backbone;
use crate::pet::block::Stage;
use crate::pet::slot::{Backend, Core, PetSlotConfig, Store};
use crate::tokenize::Batch;
use std::collections::BTreeMap;

/// Device time of the last pass's graph (or eager launches), for benchmarks.
pub struct PassTiming {
    start: cudarc::driver::CudaEvent,
    end: cudarc::driver::CudaEvent,
    recorded: bool,
}

/// A PET slot on a GPU (see the module docs).
pub struct GpuPetSlot {
    core: Core,
    store: GpuStore,
    model: GpuModel,
    kernels: PetKernels,
    bufs: PetBuffers,
    tables: DevBuf,
    /// The PET buffers (t, d, zero, pooler, logits, embeddings), kept alive.
    buffers: Vec<DevBuf>,
    /// Per tenant id, its sites (computed when it first runs).
    sites: Vec<Option<SiteTable>>,
    /// Ids of the signatures seen (with whether the pass waits for copies): graph keys.
    signatures: BTreeMap<(Vec<SiteKey>, bool), u64>,
    ordinal: usize,
    timing: PassTiming,
    /// The largest bucket the buffers hold.
    max_bucket: (usize, usize),
    /// Whether passes run eagerly with an event after every step (`ptm bench pet --profile`).
    profile_steps: bool,
    /// The last profiled pass's device milliseconds per step, summed over layers.
    last_steps: Vec<(&'static str, f64)>,
}

/// The mixed pass's buffers' sizes for a bucket of `bb × sb`.
fn buffer_bytes(c: &PetSlotConfig, h: usize, e: usize, bb: usize, sb: usize) -> [usize; 6] {
    let n = bb * sb;
    [
        n * 3 * c.max_rank * e,
        n * c.max_adapter_width * e,
        h * e,
        bb * c.max_labels * 4,
        n * c.max_labels * 4,
        bb * h * 4,
    ]
}

impl GpuPetSlot {
    /// The slot on GPU `ordinal`: `backbone`'s encoder in an arena, buffers for batches of
    /// `config`'s sizes, the pool and host tier allocated (refused where they do not fit).
    pub fn new(backbone: Backbone, config: PetSlotConfig, ordinal: usize) -> Result<Self> {
        config.check()?;
        let cfg = backbone.config().clone();
        let dtype = backbone.dtype;
        let (h, e) = (cfg.hidden_size, dtype.size_bytes());
        let mut model = GpuModel::new(&backbone.weights, &cfg, ordinal, config.options)?;
        model.reserve(config.max_batch, config.max_seq)?;
        let (bb, sb) = bucket(config.max_batch, config.max_seq, cfg.max_tokens());
        let ctx = model.gpu.ctx.clone();
        let kernels = PetKernels::new(
            model.stream(),
            dtype,
            LoraKernels::from_options(config.options),
        )?;
        let mut buffers = buffer_bytes(&config, h, e, bb, sb)
            .iter()
            .map(|&b| DevBuf::new(&ctx, b))
            .collect::<Result<Vec<_>>>()?;
        let pooler = match backbone.pooler_values()? {
            Some((w, b)) => {
                let mut bytes = Vec::new();
                dtype.encode_f32(&w, &mut bytes);
                let wb = bytes.len();
                dtype.encode_f32(&b, &mut bytes);
                let buf = DevBuf::new(&ctx, bytes.len())?;
                model.gpu.upload(buf.ptr, &bytes)?;
                let p = Linear {
                    w: buf.ptr,
                    b: buf.ptr + wb as u64,
                };
                buffers.push(buf);
                Some(p)
            }
            None => None,
        };
        let layers = cfg.num_hidden_layers;
        let tables = DevBuf::new(&ctx, PetPlan::bound_bytes(layers, bb))?;
        let bufs = PetBuffers {
            t: buffers[0].ptr,
            rank_cols: config.max_rank,
            d: buffers[1].ptr,
            width_cols: config.max_adapter_width,
            zero: buffers[2].ptr,
            pooler,
            cls: buffers[3].ptr,
            tok: buffers[4].ptr,
            emb: buffers[5].ptr,
            labels_cols: config.max_labels,
        };
        let store = GpuStore::new(
            &ctx,
            ordinal,
            model.stream(),
            (config.gpu_slots, config.host_slots, config.slot_bytes),
            Stage::count(layers),
        )?;
        let timing_flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let timing = PassTiming {
            start: cu(ctx.new_event(timing_flags), "cuEventCreate")?,
            end: cu(ctx.new_event(timing_flags), "cuEventCreate")?,
            recorded: false,
        };
        Ok(GpuPetSlot {
            core: Core::new(backbone, config)?,
            store,
            model,
            kernels,
            bufs,
            tables,
            buffers,
            sites: Vec::new(),
            signatures: BTreeMap::new(),
            ordinal,
            timing,
            max_bucket: (bb, sb),
            profile_steps: false,
            last_steps: Vec::new(),
        })
    }

    /// The GPU's ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Device milliseconds of the last pass's graph replay (tables and inputs already
    /// uploaded; copy waits included).
    pub fn last_pass_ms(&self) -> Result<f64> {
        if !self.timing.recorded {
            return Err(Error::Input("no pass has run yet".into()));
        }
        Ok(f64::from(cu(
            self.timing.start.elapsed_ms(&self.timing.end),
            "cuEventElapsedTime",
        )?))
    }

    /// Turns CUDA-graph capture and replay on (default) or off (eager launches).
    pub fn set_use_graphs(&mut self, on: bool) {
        self.model.set_use_graphs(on);
    }

    /// Turns the step profile on (passes run eagerly, an event after every step) or off.
    pub fn set_profile_steps(&mut self, on: bool) {
        self.profile_steps = on;
    }

    /// The last profiled pass's device milliseconds per step (summed over layers, in order of
    /// first appearance); empty before one ran.
    pub fn last_steps(&self) -> &[(&'static str, f64)] {
        &self.last_steps
    }

    /// CUDA graphs captured so far (one per bucket and signature).
    pub fn graph_count(&self) -> usize {
        self.model.graph_count()
    }

    /// The id of a plan's signature (graph key), new ones numbered from 1.
    fn signature_id(&mut self, sig: &[SiteKey], waits: bool) -> u64 {
        let next = self.signatures.len() as u64 + 1;
        *self.signatures.entry((sig.to_vec(), waits)).or_insert(next)
    }

    /// Per segment, its rows' outputs from the pass's output buffers.
    fn outputs(
        &self,
        batch: &Batch,
        segments: &[(u32, usize)],
        sb: usize,
        plan: &PetPlan,
    ) -> Result<Vec<HeadOutput>> {
        let g = &self.model.gpu;
        let (h, lc) = (
            self.core.backbone.config().hidden_size,
            self.bufs.labels_cols,
        );
        let b = batch.batch;
        let cls = if plan.head.seq {
            g.download_f32(self.bufs.cls, b * lc)?
        } else {
            Vec::new()
        };
        let tok = if plan.head.token.is_some() {
            g.download_f32(self.bufs.tok, b * sb * lc)?
        } else {
            Vec::new()
        };
        let emb = if plan.head.embedding {
            g.download_f32(self.bufs.emb, b * h)?
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(segments.len());
        let mut r0 = 0;
        for &(t, rows) in segments {
            let l = self.core.layout(t)?;
            let labels = l.labels();
            let (values, shape) = match l.task() {
                Task::SequenceClassification => (
                    (r0..r0 + rows)
                        .flat_map(|r| cls[r * lc..r * lc + labels].iter().copied())
                        .collect(),
                    vec![rows, labels],
                ),
                Task::TokenClassification => {
                    let mut v = Vec::with_capacity(rows * batch.seq * labels);
                    for r in r0..r0 + rows {
                        for p in 0..batch.seq {
                            let at = (r * sb + p) * lc;
                            v.extend_from_slice(&tok[at..at + labels]);
                        }
                    }
                    (v, vec![rows, batch.seq, labels])
                }
                Task::Embedding => (emb[r0 * h..(r0 + rows) * h].to_vec(), vec![rows, h]),
            };
            out.push(HeadOutput {
                task: l.task(),
                values,
                shape,
            });
            r0 += rows;
        }
        Ok(out)
    }
}

impl Backend for GpuPetSlot {
    fn core(&self) -> &Core {
        &self.core
    }

    fn parts(&mut self) -> (&mut Core, &mut dyn Store) {
        (&mut self.core, &mut self.store)
    }

    fn run(&mut self, batch: &Batch, segments: &[(u32, usize)]) -> Result<Vec<HeadOutput>> {
        let cfg = self.core.backbone.config().clone();
        batch.check(&cfg)?;
        let (bb, sb) = bucket(batch.batch, batch.seq, cfg.max_tokens());
        if bb > self.max_bucket.0 || sb > self.max_bucket.1 {
            return Err(Error::Input(format!(
                "bucket {bb} × {sb} exceeds this PET slot's {} × {}",
                self.max_bucket.0, self.max_bucket.1
            )));
        }
        let flushed = self.store.flush()?;
        let waits = flushed || self.store.in_flight;
        for &(t, _) in segments {
            let i = t as usize;
            if self.sites.len() <= i {
                self.sites.resize(i + 1, None);
            }
            if self.sites[i].is_none() {
                self.sites[i] = Some(SiteTable::of(self.core.layout(t)?));
            }
        }
        let mut segs = Vec::with_capacity(segments.len());
        for &(t, rows) in segments {
            let slot = self.core.residency.gpu.slot(t).ok_or_else(|| {
                Error::Input(format!("tenant {t} is not in the pool for this pass"))
            })?;
            let sites = self.sites[t as usize]
                .as_ref()
                .ok_or_else(|| Error::Input(format!("tenant {t} has no site table")))?;
            segs.push(PlanSegment {
                sites,
                base: self.store.slot_addr(slot),
                rows,
            });
        }
        let shape = PlanShape {
            layers: cfg.num_hidden_layers,
            hidden: cfg.hidden_size,
            bb,
            sb,
        };
        let plan = PetPlan::build(shape, &segs, self.tables.ptr)?;
        let id = self.signature_id(&plan.signature, waits);
        cu(self.model.gpu.ctx.bind_to_thread(), "bind context")?;
        // Host copies stay alive until the downloads below have synchronised the stream.
        let _inputs = self.model.stage(batch, bb, sb)?;
        self.model.gpu.upload_async(self.tables.ptr, &plan.tables)?;
        let pass = PetPass::new(
            &plan,
            &self.kernels,
            self.bufs,
            waits.then_some(self.store.events.as_slice()),
        );
        cu(
            self.timing.start.record(self.model.stream()),
            "cuEventRecord",
        )?;
        if self.profile_steps {
            self.last_steps = self.model.profile_pass(bb, sb, Some(&pass))?;
        } else {
            self.model.run_bucket_with(bb, sb, Some((&pass, id)))?;
        }
        cu(self.timing.end.record(self.model.stream()), "cuEventRecord")?;
        self.timing.recorded = true;
        let out = self.outputs(batch, segments, sb, &plan)?;
        if self.store.in_flight {
            self.store.sync()?;
        }
        Ok(out)
    }

    fn wait_loads(&mut self) -> Result<()> {
        self.store.sync()
    }

    fn device_bytes(&self) -> (usize, usize) {
        let cfg = self.core.backbone.config();
        let (bb, sb) = self.max_bucket;
        let ws = WorkspaceBytes::new(cfg, 1, bb, sb, self.core.backbone.dtype).device_bytes();
        let pet: usize = self.buffers.iter().map(|b| b.bytes).sum::<usize>() + self.tables.bytes;
        (self.model.arena().1, ws + pet)
    }
}
