//! A model on one GPU: its weight arena (fixed addresses, the packed [`Layout`]), the tensor
//! addresses in it, the activation workspace (sized for the largest bucket seen), and a CUDA
//! graph per (head, labels, batch bucket, sequence bucket): a bucket's pass runs once eagerly,
//! is then captured and replayed. The pass itself is `forward.rs`.

use super::cuda::{cu, DevBuf, Gpu};
use super::forward::no_workspace;
use super::kernels::Kernel;
use super::pet_steps::PetPass;
use super::weights::ArenaWeights;
use super::workspace::WorkspaceBytes;
use super::{bucket, KernelOptions};
use crate::bert::HeadOutput;
use crate::checkpoint::PackedWeights;
use crate::config::{Config, Task};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::tokenize::Batch;
use cudarc::driver::{sys as drv_sys, CudaGraph};
use std::collections::BTreeMap;

/// A captured forward pass.
struct Graph(CudaGraph);

// SAFETY: an instantiated graph belongs to the process-wide primary context; it is only launched
// through `GpuModel` methods, which bind that context to the calling thread first, and `&mut`
// access keeps one thread at a time on it.
unsafe impl Send for Graph {}

/// Activation buffers for one (batch, seq) capacity (sizes: [`WorkspaceBytes`]).
pub(super) struct Workspace {
    pub(super) batch: usize,
    pub(super) seq: usize,
    pub(super) ids: DevBuf,
    pub(super) types: DevBuf,
    pub(super) mask: DevBuf,
    pub(super) x: DevBuf,
    pub(super) x32: DevBuf,
    pub(super) a: DevBuf,
    pub(super) a32: DevBuf,
    pub(super) tmp32: DevBuf,
    pub(super) qkv: DevBuf,
    pub(super) scores: DevBuf,
    pub(super) probs: DevBuf,
    pub(super) ctx: DevBuf,
    pub(super) inter: DevBuf,
    pub(super) first: DevBuf,
    pub(super) out: DevBuf,
}

/// A graph's key: (task, labels, batch bucket, sequence bucket, PET signature id; 0 for the
/// plain pass).
type GraphKey = (usize, usize, usize, usize, u64);

/// A model on one GPU.
pub struct GpuModel {
    /// Per (task, labels, batch bucket, sequence bucket, PET signature).
    graphs: BTreeMap<GraphKey, Graph>,
    /// Per bucket: device arrays of attention operand pointers (K, Q, scores, V, probs, ctx).
    ptrs: BTreeMap<(usize, usize), DevBuf>,
    pub(super) ws: Option<Workspace>,
    pub(super) weights: ArenaWeights,
    arena: DevBuf,
    layout: Layout,
    pub(super) cfg: Config,
    pub(super) task: Task,
    use_graphs: bool,
    pub(super) options: KernelOptions,
    pub(super) gpu: Gpu,
}

impl GpuModel {
    /// Opens GPU `ordinal`, compiles the kernels and uploads the weights into the arena; runs
    /// the kernels `options` choose.
    pub fn new(
        w: &PackedWeights,
        cfg: &Config,
        ordinal: usize,
        options: KernelOptions,
    ) -> Result<Self> {
        let m = Self::with_layout(&w.layout, w.dtype, cfg, ordinal, options)?;
        m.gpu.upload(m.arena.ptr, &w.bytes)?;
        Ok(m)
    }

    /// Opens GPU `ordinal`, compiles the kernels and allocates a zeroed arena for `layout`
    /// (weights in `dtype`) running a model shaped like `cfg`: a slot that weights are
    /// switched into.
    pub fn with_layout(
        layout: &Layout,
        dtype: DType,
        cfg: &Config,
        ordinal: usize,
        options: KernelOptions,
    ) -> Result<Self> {
        let gpu = Gpu::new(ordinal, dtype)?;
        if options.pinned_staging {
            gpu.pin_staging(ordinal, super::cuda::STAGING_BYTES, options.pinned_uploads)?;
        }
        let arena = DevBuf::new(&gpu.ctx, layout.total_elements() * dtype.size_bytes())?;
        let weights = ArenaWeights::resolve(layout, cfg, arena.ptr, dtype.size_bytes())?;
        Ok(GpuModel {
            graphs: BTreeMap::new(),
            ptrs: BTreeMap::new(),
            ws: None,
            weights,
            layout: layout.clone(),
            arena,
            cfg: cfg.clone(),
            task: cfg.task(),
            use_graphs: true,
            options,
            gpu,
        })
    }

    /// The kernel options it runs with.
    pub fn options(&self) -> KernelOptions {
        self.options
    }

    /// Makes the model run the head of `cfg` (same encoder; its classifier must fit the
    /// arena's head region). Captured graphs stay: they are keyed by head and bucket.
    pub fn retarget(&mut self, cfg: &Config) -> Result<()> {
        let rows = self.head_rows();
        let mut a = cfg.clone();
        let mut b = self.cfg.clone();
        for c in [&mut a, &mut b] {
            c.architectures.clear();
            c.id2label = None;
            c.num_labels = None;
            c.torch_dtype = None;
        }
        if a != b {
            return Err(Error::Input(
                "retarget: the encoder configuration differs".into(),
            ));
        }
        if cfg.task() != Task::Embedding && cfg.labels() > rows {
            return Err(Error::Input(format!(
                "retarget: {} labels, the arena's classifier holds {rows}",
                cfg.labels()
            )));
        }
        if cfg.task() == Task::SequenceClassification && self.weights.pooler.is_none() {
            return Err(Error::Input("retarget: the arena has no pooler".into()));
        }
        self.cfg = cfg.clone();
        self.task = cfg.task();
        Ok(())
    }

    /// Rows of the classifier region of the arena (0 without a classifier).
    fn head_rows(&self) -> usize {
        self.layout
            .get("classifier.weight")
            .map_or(0, |e| e.shape[0])
    }

    /// Number of CUDA graphs captured so far (one per head and bucket).
    pub fn graph_count(&self) -> usize {
        self.graphs.len()
    }

    /// Allocates the activations for batches up to `batch` rows of `seq` tokens now.
    pub fn reserve(&mut self, batch: usize, seq: usize) -> Result<()> {
        cu(self.gpu.ctx.bind_to_thread(), "bind context")?;
        let (bb, sb) = bucket(batch, seq, self.cfg.max_tokens());
        self.ensure_workspace(bb, sb)
    }

    /// The graph key of bucket `(bb, sb)` under the current head (`pet`: a mixed-tenant
    /// pass's signature id, 0 for none).
    fn key(&self, bb: usize, sb: usize, pet: u64) -> GraphKey {
        (self.task as usize, self.cfg.labels(), bb, sb, pet)
    }

    /// Turns CUDA-graph capture and replay on (default) or off (eager launches).
    pub fn set_use_graphs(&mut self, on: bool) {
        self.use_graphs = on;
    }

    /// The fused attention kernel this model runs, if any.
    fn attention_kernel(&self) -> Option<Kernel> {
        let c = &self.cfg;
        if !self.options.fused_attention || self.gpu.dtype == DType::Fp32 {
            return None;
        }
        Kernel::attention(c.head_dim()).filter(|_| c.hidden_size % 8 == 0)
    }

    /// The fused attention kernel for a bucket of sequence length `sb`: the single-pass one
    /// where it is on and the keys fit its stage, else [`GpuModel::attention_kernel`]'s.
    pub(super) fn attention_kernel_for(&self, sb: usize) -> Option<Kernel> {
        let k = self.attention_kernel()?;
        let single = if self.options.single_pass_attention {
            Kernel::attention_single_pass(self.cfg.head_dim(), sb)
        } else {
            None
        };
        Some(single.unwrap_or(k))
    }

    /// Whether the fused attention kernel runs (fp16/bf16, head dimension 32, 64 or 128).
    pub fn uses_fused_attention(&self) -> bool {
        self.attention_kernel().is_some()
    }

    /// The device address and size in bytes of the weight arena (fixed for the model's life).
    pub fn arena(&self) -> (u64, usize) {
        (self.arena.ptr, self.arena.bytes)
    }

    /// The GPU's name.
    pub fn device_name(&self) -> String {
        self.gpu.ctx.name().unwrap_or_else(|_| "unknown GPU".into())
    }

    /// The workspace, once allocated.
    pub(super) fn workspace(&self) -> Result<&Workspace> {
        self.ws.as_ref().ok_or_else(no_workspace)
    }

    /// The bytes of the workspace for `batch × seq` tokens (the head region's rows included).
    fn workspace_bytes(&self, batch: usize, seq: usize) -> WorkspaceBytes {
        let rows = self.cfg.labels().max(self.head_rows());
        WorkspaceBytes::new(&self.cfg, rows, batch, seq, self.gpu.dtype)
    }

    pub(super) fn ensure_workspace(&mut self, batch: usize, seq: usize) -> Result<()> {
        if let Some(ws) = &self.ws {
            if ws.batch >= batch && ws.seq >= seq {
                return Ok(());
            }
        }
        let (b, s) = (
            batch.max(self.ws.as_ref().map_or(0, |w| w.batch)),
            seq.max(self.ws.as_ref().map_or(0, |w| w.seq)),
        );
        // New addresses: every captured graph and pointer array is stale.
        self.graphs.clear();
        self.ptrs.clear();
        self.ws = None;
        let bytes = self.workspace_bytes(b, s);
        let ctx = &self.gpu.ctx;
        let buf = |bytes: usize| DevBuf::new(ctx, bytes);
        self.ws = Some(Workspace {
            batch: b,
            seq: s,
            ids: buf(bytes.ids)?,
            types: buf(bytes.types)?,
            mask: buf(bytes.mask)?,
            x: buf(bytes.x)?,
            x32: buf(bytes.x32)?,
            a: buf(bytes.a)?,
            a32: buf(bytes.a32)?,
            tmp32: buf(bytes.tmp32)?,
            qkv: buf(bytes.qkv)?,
            scores: buf(bytes.scores)?,
            probs: buf(bytes.probs)?,
            ctx: buf(bytes.ctx)?,
            inter: buf(bytes.inter)?,
            first: buf(bytes.first)?,
            out: buf(bytes.out)?,
        });
        Ok(())
    }

    /// The device address of bucket `(bb, sb)`'s attention pointer arrays.
    pub(super) fn pointer_arrays(&self, bb: usize, sb: usize) -> Result<u64> {
        self.ptrs
            .get(&(bb, sb))
            .map(|b| b.ptr)
            .ok_or_else(|| Error::Cuda(format!("no attention pointer arrays for bucket {bb}×{sb}")))
    }

    pub(super) fn ensure_pointer_arrays(&mut self, bb: usize, sb: usize) -> Result<()> {
        if self.ptrs.contains_key(&(bb, sb)) {
            return Ok(());
        }
        let ws = self.workspace()?;
        let (h, nh, dh) = (
            self.cfg.hidden_size,
            self.cfg.num_attention_heads,
            self.cfg.head_dim(),
        );
        let e = self.gpu.dtype.size_bytes();
        let se = if self.gpu.scores_in_dtype() { e } else { 4 };
        let n = bb * sb;
        let mut arrays: Vec<Vec<u64>> = vec![Vec::new(); 6];
        for b in 0..bb {
            for hd in 0..nh {
                let i = b * nh + hd;
                let row = ((b * sb * h + hd * dh) * e) as u64;
                arrays[0].push(ws.qkv.ptr + (n * h * e) as u64 + row); // K
                arrays[1].push(ws.qkv.ptr + row); // Q
                arrays[2].push(ws.scores.ptr + (i * sb * sb * se) as u64);
                arrays[3].push(ws.qkv.ptr + (2 * n * h * e) as u64 + row); // V
                arrays[4].push(ws.probs.ptr + (i * sb * sb * e) as u64);
                arrays[5].push(ws.ctx.ptr + row);
            }
        }
        let flat: Vec<u8> = arrays
            .concat()
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect();
        let buf = DevBuf::new(&self.gpu.ctx, flat.len())?;
        self.gpu.upload(buf.ptr, &flat)?;
        self.ptrs.insert((bb, sb), buf);
        Ok(())
    }

    /// Runs the encoder and head on a batch (padded up to its bucket on the device).
    pub fn forward(&mut self, batch: &Batch) -> Result<HeadOutput> {
        batch.check(&self.cfg)?;
        cu(self.gpu.ctx.bind_to_thread(), "bind context")?;
        let (bb, sb) = bucket(batch.batch, batch.seq, self.cfg.max_tokens());
        self.ensure_workspace(bb, sb)?;
        let _inputs = self.stage(batch, bb, sb)?;
        self.run_bucket(bb, sb)?;
        let out = self.workspace()?.out.ptr;
        let values = self.gpu.download_f32(out, self.out_floats(batch, bb, sb))?;
        Ok(self.head_output(batch, sb, &values))
    }

    /// Copies `batch`'s inputs, padded to bucket `(bb, sb)`, into the workspace on the stream;
    /// returns the host copies, which must stay alive until the stream has read them.
    pub(super) fn stage(
        &self,
        batch: &Batch,
        bb: usize,
        sb: usize,
    ) -> Result<(Vec<i32>, Vec<i32>, Vec<i32>)> {
        let (ids, types, mask) = pad_inputs(batch, bb, sb, self.cfg.pad_token_id);
        let ws = self.workspace()?;
        self.gpu.upload_async(ws.ids.ptr, &ids)?;
        self.gpu.upload_async(ws.types.ptr, &types)?;
        self.gpu.upload_async(ws.mask.ptr, &mask)?;
        Ok((ids, types, mask))
    }

    /// The output floats a pass of `batch` in bucket `(bb, sb)` leaves at the start of the
    /// workspace's `out` (token classification: every padded position).
    pub(super) fn out_floats(&self, batch: &Batch, bb: usize, sb: usize) -> usize {
        match self.task {
            Task::SequenceClassification => batch.batch * self.cfg.labels(),
            Task::TokenClassification => bb * sb * self.cfg.labels(),
            Task::Embedding => batch.batch * self.cfg.hidden_size,
        }
    }

    /// The head's output of `batch` from the `out` floats of its pass (sequence bucket `sb`):
    /// token classification keeps each row's own positions.
    pub(super) fn head_output(&self, batch: &Batch, sb: usize, out: &[f32]) -> HeadOutput {
        let (b, s, l, h) = (
            batch.batch,
            batch.seq,
            self.cfg.labels(),
            self.cfg.hidden_size,
        );
        let (values, shape) = match self.task {
            Task::SequenceClassification => (out.to_vec(), vec![b, l]),
            Task::TokenClassification => {
                let mut v = Vec::with_capacity(b * s * l);
                for r in 0..b {
                    v.extend_from_slice(&out[r * sb * l..(r * sb + s) * l]);
                }
                (v, vec![b, s, l])
            }
            Task::Embedding => (out.to_vec(), vec![b, h]),
        };
        HeadOutput {
            task: self.task,
            values,
            shape,
        }
    }

    /// Enqueues the forward pass of bucket `(bb, sb)` on inputs already in the workspace:
    /// replays its graph (capturing it on first use) or launches eagerly.
    pub fn run_bucket(&mut self, bb: usize, sb: usize) -> Result<()> {
        self.run_bucket_with(bb, sb, None)
    }

    /// [`GpuModel::run_bucket`] for a mixed-tenant pass `pet` whose signature has id `key`
    /// (at least 1: one graph per bucket and signature; its tables are device data, rewritten
    /// before each replay).
    pub(super) fn run_bucket_with(
        &mut self,
        bb: usize,
        sb: usize,
        pet: Option<(&PetPass<'_>, u64)>,
    ) -> Result<()> {
        cu(self.gpu.ctx.bind_to_thread(), "bind context")?;
        self.ensure_workspace(bb, sb)?;
        self.ensure_pointer_arrays(bb, sb)?;
        let (pass, id) = match pet {
            Some((p, id)) if id > 0 => (Some(p), id),
            Some(_) => return Err(Error::Input("a PET pass's signature id is 0".into())),
            None => (None, 0),
        };
        if !self.use_graphs {
            return self.enqueue(bb, sb, pass);
        }
        let key = self.key(bb, sb, id);
        if !self.graphs.contains_key(&key) {
            // Warm up eagerly (cuBLAS picks its kernels), then capture.
            self.enqueue(bb, sb, pass)?;
            cu(self.gpu.stream.synchronize(), "cuStreamSynchronize")?;
            cu(
                self.gpu.stream.begin_capture(
                    drv_sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                ),
                "cuStreamBeginCapture",
            )?;
            let enq = self.enqueue(bb, sb, pass);
            let graph = cu(
                self.gpu
                    .stream
                    .end_capture(drv_sys::CUgraphInstantiate_flags(0)),
                "cuStreamEndCapture",
            );
            enq?;
            let graph = graph?.ok_or_else(|| Error::Cuda("captured an empty graph".into()))?;
            cu(graph.upload(), "cuGraphUpload")?;
            self.graphs.insert(key, Graph(graph));
        }
        let g = self
            .graphs
            .get(&key)
            .ok_or_else(|| Error::Cuda("graph missing".into()))?;
        cu(g.0.launch(), "cuGraphLaunch")
    }

    /// Waits for the stream.
    pub fn synchronize(&self) -> Result<()> {
        cu(self.gpu.stream.synchronize(), "cuStreamSynchronize")
    }

    /// The stream's raw handle (for timing with events).
    pub fn stream(&self) -> &std::sync::Arc<cudarc::driver::CudaStream> {
        &self.gpu.stream
    }
}

/// Pads a batch to `(bb, sb)`; extra rows are fully masked.
pub(super) fn pad_inputs(
    b: &Batch,
    bb: usize,
    sb: usize,
    pad: u32,
) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let mut ids = vec![pad as i32; bb * sb];
    let mut types = vec![0i32; bb * sb];
    let mut mask = vec![0i32; bb * sb];
    for r in 0..b.batch {
        for s in 0..b.seq {
            let (src, dst) = (r * b.seq + s, r * sb + s);
            ids[dst] = b.ids[src] as i32;
            types[dst] = b.type_ids[src] as i32;
            mask[dst] = b.mask[src] as i32;
        }
    }
    (ids, types, mask)
}

impl Drop for GpuModel {
    fn drop(&mut self) {
        let _ = self.gpu.ctx.bind_to_thread();
        let _ = self.gpu.stream.synchronize();
        self.graphs.clear();
        self.ptrs.clear();
        self.ws = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<GpuModel>();
        assert_send::<crate::Model>();
    }

    #[test]
    fn padding_masks_extra_rows() {
        let b = Batch::from_rows(&[vec![5, 6], vec![7]], 0, None).unwrap();
        let (ids, _, mask) = pad_inputs(&b, 4, 4, 0);
        assert_eq!(ids[..8], [5, 6, 0, 0, 7, 0, 0, 0]);
        assert_eq!(mask, vec![1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
