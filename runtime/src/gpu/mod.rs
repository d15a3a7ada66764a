//! The GPU backend: cudarc with run-time loading of libcuda, cuBLAS and NVRTC.
//!
//! Weights live in one device arena per model with fixed addresses (the packed [`Layout`]);
//! activations in a workspace sized for the largest bucket seen. A forward pass for a
//! (batch, sequence) bucket runs once eagerly, is then captured as a CUDA graph and replayed.
//! Dense GEMMs go through cuBLASLt with f32 accumulation, the biases of the Q/K/V and FFN-up
//! projections added in the GEMM's epilogue (in f32, before the one rounding to the model
//! dtype); where cuBLASLt is missing or has no algorithm, cuBLAS strided-batched GEMMs and a bias
//! kernel do the same. Attention in fp16/bf16 models with head dimension 32, 64 or 128 is one
//! fused tensor-core kernel (`attention_d*` in `kernels.cu`: scores, mask, softmax and the
//! product with V per query tile, scores and softmax in f32 registers); otherwise (fp32, other
//! head sizes) two batched GEMMs around a masked softmax kernel. The rest are small NVRTC
//! kernels. GEMM operands are in the model dtype; the residual stream, the GEMM outputs that
//! feed a layer norm, attention scores and all kernel arithmetic are f32 — the precision recipe
//! that the CPU reference (`crate::bert`) follows for 16-bit models.
//!
//! For A/B measurements, `PTM_GPU_FUSED_ATTN=0` and `PTM_GPU_LT=0` in the environment (read
//! when a model is created) switch the fused attention kernel and cuBLASLt off;
//! `PTM_GPU_ATTN_V2=0` the single-pass attention kernel (`attention1_d*`: for buckets whose
//! keys fit one shared-memory stage, all scores of a query tile in registers, Q·Kᵀ and 2^x
//! computed once; otherwise the two-pass kernel runs). `PTM_GPU_RESID_EPI=1` switches the
//! residual epilogue on (the attention-output and FFN-down GEMMs add onto the f32 residual stream
//! in place, β = 1, so the bias + layer-norm kernel reads one f32 tensor instead of two): off by
//! default, since on the H200 it made BERT-base batch 32 slower (1.999 vs 1.964 ms, same call).
// Raw device pointers, kernel launches and cuBLAS calls are FFI: unsafe is needed here only.
#![allow(unsafe_code)]

mod cuda;
pub mod slots;
pub mod timing;

pub use cuda::PinnedBuf;

use crate::bert::HeadOutput;
use crate::checkpoint::PackedWeights;
use crate::config::{Activation, Config, Task};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::tokenize::Batch;
use cuda::{cu, Arg, DevBuf, Gpu, Kernel};
use cudarc::driver::{sys as drv_sys, CudaGraph};
use std::collections::BTreeMap;

struct LayerPtrs {
    qkv_w: u64,
    qkv_w_stride: usize,
    qkv_b: u64,
    qkv_b_stride: usize,
    o_w: u64,
    o_b: u64,
    ln1_g: u64,
    ln1_b: u64,
    up_w: u64,
    up_b: u64,
    down_w: u64,
    down_b: u64,
    ln2_g: u64,
    ln2_b: u64,
}

/// A captured forward pass.
struct Graph(CudaGraph);

// SAFETY: an instantiated graph belongs to the process-wide primary context; it is only launched
// through `GpuModel` methods, which bind that context to the calling thread first, and `&mut`
// access keeps one thread at a time on it.
unsafe impl Send for Graph {}

/// Activation buffers for one (batch, seq) capacity.
struct Workspace {
    batch: usize,
    seq: usize,
    ids: DevBuf,
    types: DevBuf,
    mask: DevBuf,
    x: DevBuf,
    x32: DevBuf,
    a: DevBuf,
    a32: DevBuf,
    tmp32: DevBuf,
    qkv: DevBuf,
    scores: DevBuf,
    probs: DevBuf,
    ctx: DevBuf,
    inter: DevBuf,
    first: DevBuf,
    out: DevBuf,
}

/// A model on one GPU.
pub struct GpuModel {
    /// Per (task, labels, batch bucket, sequence bucket).
    graphs: BTreeMap<(usize, usize, usize, usize), Graph>,
    /// Per bucket: device arrays of attention operand pointers (K, Q, scores, V, probs, ctx).
    ptrs: BTreeMap<(usize, usize), DevBuf>,
    ws: Option<Workspace>,
    layers: Vec<LayerPtrs>,
    arena: DevBuf,
    layout: Layout,
    cfg: Config,
    task: Task,
    use_graphs: bool,
    /// Fused tensor-core attention where the dtype and head size allow it.
    fused_attention: bool,
    /// cuBLASLt (with bias epilogues) for the dense GEMMs.
    use_lt: bool,
    /// The single-pass attention kernel where the sequence fits its one stage.
    attention_single_pass: bool,
    /// The residual added by the attention-output and FFN-down GEMMs (β = 1, in place).
    residual_epilogue: bool,

    gpu: Gpu,
}

/// Whether the switch `var` is on (anything but "0"; on when unset).
fn env_on(var: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.trim() != "0")
}

/// Whether the opt-in switch `var` is on (set to "1").
fn env_opt_in(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.trim() == "1")
}

/// The bucket a batch of `batch` rows and `seq` columns runs in.
pub fn bucket(batch: usize, seq: usize, max_seq: usize) -> (usize, usize) {
    (
        batch.next_power_of_two(),
        seq.max(16).next_power_of_two().min(max_seq),
    )
}

impl GpuModel {
    /// Opens GPU `ordinal`, compiles the kernels and uploads the weights into the arena.
    pub fn new(w: &PackedWeights, cfg: &Config, ordinal: usize) -> Result<Self> {
        let m = Self::with_layout(&w.layout, w.dtype, cfg, ordinal)?;
        m.gpu.upload(m.arena.ptr, &w.bytes)?;
        Ok(m)
    }

    /// Opens GPU `ordinal`, compiles the kernels and allocates a zeroed arena for `layout`
    /// (weights in `dtype`) running a model shaped like `cfg`: a slot that weights are
    /// switched into.
    pub fn with_layout(
        layout: &Layout,
        dtype: crate::dtype::DType,
        cfg: &Config,
        ordinal: usize,
    ) -> Result<Self> {
        let gpu = Gpu::new(ordinal, dtype)?;
        let arena = DevBuf::new(&gpu.ctx, layout.total_elements() * dtype.size_bytes())?;
        let esz = dtype.size_bytes() as u64;
        let ptr = |name: &str| -> Result<u64> {
            let e = layout.get(name).ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                tried: "the packed layout".into(),
                expected: vec![],
            })?;
            Ok(arena.ptr + e.offset as u64 * esz)
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|n| {
                let p = format!("encoder.layer.{n}");
                let q = |m: &str, s: &str| ptr(&format!("{p}.attention.self.{m}.{s}"));
                let (qw, kw, vw) = (
                    q("query", "weight")?,
                    q("key", "weight")?,
                    q("value", "weight")?,
                );
                let (qb, kb, vb) = (q("query", "bias")?, q("key", "bias")?, q("value", "bias")?);
                if kw - qw != vw - kw || kb - qb != vb - kb {
                    return Err(Error::Cuda(
                        "query/key/value are not evenly spaced in the arena".into(),
                    ));
                }
                Ok(LayerPtrs {
                    qkv_w: qw,
                    qkv_w_stride: ((kw - qw) / esz) as usize,
                    qkv_b: qb,
                    qkv_b_stride: ((kb - qb) / esz) as usize,
                    o_w: ptr(&format!("{p}.attention.output.dense.weight"))?,
                    o_b: ptr(&format!("{p}.attention.output.dense.bias"))?,
                    ln1_g: ptr(&format!("{p}.attention.output.LayerNorm.weight"))?,
                    ln1_b: ptr(&format!("{p}.attention.output.LayerNorm.bias"))?,
                    up_w: ptr(&format!("{p}.intermediate.dense.weight"))?,
                    up_b: ptr(&format!("{p}.intermediate.dense.bias"))?,
                    down_w: ptr(&format!("{p}.output.dense.weight"))?,
                    down_b: ptr(&format!("{p}.output.dense.bias"))?,
                    ln2_g: ptr(&format!("{p}.output.LayerNorm.weight"))?,
                    ln2_b: ptr(&format!("{p}.output.LayerNorm.bias"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuModel {
            graphs: BTreeMap::new(),
            ptrs: BTreeMap::new(),
            ws: None,
            layers,
            layout: layout.clone(),
            arena,
            cfg: cfg.clone(),
            task: cfg.task(),
            use_graphs: true,
            fused_attention: env_on("PTM_GPU_FUSED_ATTN"),
            use_lt: env_on("PTM_GPU_LT"),
            attention_single_pass: env_on("PTM_GPU_ATTN_V2"),
            residual_epilogue: env_opt_in("PTM_GPU_RESID_EPI"),

            gpu,
        })
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
        if cfg.task() == Task::SequenceClassification
            && self.layout.get("pooler.dense.weight").is_none()
        {
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

    /// The graph key of bucket `(bb, sb)` under the current head.
    fn key(&self, bb: usize, sb: usize) -> (usize, usize, usize, usize) {
        (self.task as usize, self.cfg.labels(), bb, sb)
    }

    /// Turns CUDA-graph capture and replay on (default) or off (eager launches).
    pub fn set_use_graphs(&mut self, on: bool) {
        self.use_graphs = on;
    }

    /// Turns the fused attention kernel on (default where the dtype and head size allow it)
    /// or off (batched GEMMs around a softmax kernel). Drops captured graphs.
    pub fn set_fused_attention(&mut self, on: bool) {
        self.fused_attention = on;
        self.graphs.clear();
    }

    /// Turns cuBLASLt with bias epilogues on (default where it loads) or off (cuBLAS and bias
    /// kernels). Drops captured graphs.
    pub fn set_cublaslt(&mut self, on: bool) {
        self.use_lt = on;
        self.graphs.clear();
    }

    /// Turns the single-pass attention kernel on (default; used where the fused kernel runs
    /// and the bucket's sequence fits its one stage) or off (the two-pass kernel). Drops
    /// captured graphs.
    pub fn set_attention_single_pass(&mut self, on: bool) {
        self.attention_single_pass = on;
        self.graphs.clear();
    }

    /// Turns the residual epilogue on (`PTM_GPU_RESID_EPI=1`: the attention-output and FFN-down GEMMs add
    /// their product onto the f32 residual stream in place, and the layer norm reads that one
    /// tensor) or off (the GEMMs write a separate f32 tensor; the layer-norm kernel adds the
    /// residual; the default). Drops captured graphs.
    pub fn set_residual_epilogue(&mut self, on: bool) {
        self.residual_epilogue = on;
        self.graphs.clear();
    }

    /// The fused attention kernel this model runs, if any.
    fn attention_kernel(&self) -> Option<Kernel> {
        let c = &self.cfg;
        if !self.fused_attention || self.gpu.dtype == crate::dtype::DType::Fp32 {
            return None;
        }
        Kernel::attention(c.head_dim()).filter(|_| c.hidden_size % 8 == 0)
    }

    /// The fused attention kernel for a bucket of sequence length `sb`: the single-pass one
    /// where it is on and the keys fit its stage, else [`GpuModel::attention_kernel`]'s.
    fn attention_kernel_for(&self, sb: usize) -> Option<Kernel> {
        let k = self.attention_kernel()?;
        let single = if self.attention_single_pass {
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

    fn w(&self, name: &str) -> u64 {
        let esz = self.gpu.dtype.size_bytes() as u64;
        self.layout
            .get(name)
            .map(|e| self.arena.ptr + e.offset as u64 * esz)
            .unwrap_or(0)
    }

    fn ensure_workspace(&mut self, batch: usize, seq: usize) -> Result<()> {
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
        let c = &self.cfg;
        let (n, h, e) = (b * s, c.hidden_size, self.gpu.dtype.size_bytes());
        let nh = c.num_attention_heads;
        let out_f32 = (n * c.labels().max(self.head_rows()).max(1)).max(b * h);
        let ctx = &self.gpu.ctx;
        let buf = |bytes: usize| DevBuf::new(ctx, bytes);
        self.ws = Some(Workspace {
            batch: b,
            seq: s,
            ids: buf(n * 4)?,
            types: buf(n * 4)?,
            mask: buf(n * 4)?,
            x: buf(n * h * e)?,
            x32: buf(n * h * 4)?,
            a: buf(n * h * e)?,
            a32: buf(n * h * 4)?,
            tmp32: buf(n * h * 4)?,
            qkv: buf(3 * n * h * e)?,
            scores: buf(b * nh * s * s * 4)?,
            probs: buf(b * nh * s * s * e)?,
            ctx: buf(n * h * e)?,
            inter: buf(n * c.intermediate_size * e)?,
            first: buf(2 * b * h * e)?,
            out: buf(out_f32 * 4)?,
        });
        Ok(())
    }

    fn ensure_pointer_arrays(&mut self, bb: usize, sb: usize) -> Result<()> {
        if self.ptrs.contains_key(&(bb, sb)) {
            return Ok(());
        }
        let ws = self
            .ws
            .as_ref()
            .ok_or_else(|| Error::Cuda("no workspace".into()))?;
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
        let out = self
            .ws
            .as_ref()
            .ok_or_else(|| Error::Cuda("no workspace".into()))?
            .out
            .ptr;
        let values = self.gpu.download_f32(out, self.out_floats(batch, bb, sb))?;
        Ok(self.head_output(batch, sb, &values))
    }

    /// Copies `batch`'s inputs, padded to bucket `(bb, sb)`, into the workspace on the stream;
    /// returns the host copies, which must stay alive until the stream has read them.
    fn stage(&self, batch: &Batch, bb: usize, sb: usize) -> Result<(Vec<i32>, Vec<i32>, Vec<i32>)> {
        let (ids, types, mask) = pad_inputs(batch, bb, sb, self.cfg.pad_token_id);
        let ws = self
            .ws
            .as_ref()
            .ok_or_else(|| Error::Cuda("no workspace".into()))?;
        self.gpu.upload_async(ws.ids.ptr, &ids)?;
        self.gpu.upload_async(ws.types.ptr, &types)?;
        self.gpu.upload_async(ws.mask.ptr, &mask)?;
        Ok((ids, types, mask))
    }

    /// The output floats a pass of `batch` in bucket `(bb, sb)` leaves at the start of the
    /// workspace's `out` (token classification: every padded position).
    fn out_floats(&self, batch: &Batch, bb: usize, sb: usize) -> usize {
        match self.task {
            Task::SequenceClassification => batch.batch * self.cfg.labels(),
            Task::TokenClassification => bb * sb * self.cfg.labels(),
            Task::Embedding => batch.batch * self.cfg.hidden_size,
        }
    }

    /// The head's output of `batch` from the `out` floats of its pass (sequence bucket `sb`):
    /// token classification keeps each row's own positions.
    fn head_output(&self, batch: &Batch, sb: usize, out: &[f32]) -> HeadOutput {
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
        cu(self.gpu.ctx.bind_to_thread(), "bind context")?;
        self.ensure_workspace(bb, sb)?;
        self.ensure_pointer_arrays(bb, sb)?;
        if !self.use_graphs {
            return self.enqueue(bb, sb);
        }
        let key = self.key(bb, sb);
        if !self.graphs.contains_key(&key) {
            // Warm up eagerly (cuBLAS picks its kernels), then capture.
            self.enqueue(bb, sb)?;
            cu(self.gpu.stream.synchronize(), "cuStreamSynchronize")?;
            cu(
                self.gpu.stream.begin_capture(
                    drv_sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                ),
                "cuStreamBeginCapture",
            )?;
            let enq = self.enqueue(bb, sb);
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

    /// Enqueues the forward pass of bucket `(bb, sb)`; `mark(name)` is called after each step
    /// (a no-op except when profiling).
    #[rustfmt::skip]
    fn enqueue_marked(&self, bb: usize, sb: usize, mark: &mut dyn FnMut(&'static str) -> Result<()>) -> Result<()> {
        use Arg::{F, I, L, P};
        let ws = self.ws.as_ref().ok_or_else(|| Error::Cuda("no workspace".into()))?;
        let g = &self.gpu;
        let c = &self.cfg;
        let (h, nh, dh, im) = (c.hidden_size, c.num_attention_heads, c.head_dim(), c.intermediate_size);
        let (n, e, eps) = (bb * sb, g.dtype.size_bytes(), c.layer_norm_eps as f32);
        let threads = (h.div_ceil(32) * 32).clamp(32, 256) as u32;
        let smem = ((32 + h) * 4) as u32;
        let (nu, bu) = ((n as u32, 1), (bb as u32, 1));
        let (hi, sbi) = (I(h as i32), I(sb as i32));
        // 16-byte vector paths where the shapes allow them (all real BERT shapes do).
        let vec = 16 / e;
        let rows_v = h % vec == 0 && h / vec <= 32 * 8;
        let threads_of = |cols: usize| (cols.div_ceil(vec).div_ceil(32) * 32).clamp(32, 256) as u32;
        let rows8 = (n.div_ceil(8) as u32, 1);
        let emb_args = [
            P(ws.ids.ptr), P(ws.types.ptr),
            P(self.w("embeddings.word_embeddings.weight")),
            P(self.w("embeddings.position_embeddings.weight")),
            P(self.w("embeddings.token_type_embeddings.weight")),
            P(self.w("embeddings.LayerNorm.weight")), P(self.w("embeddings.LayerNorm.bias")),
            P(ws.x.ptr), P(ws.x32.ptr),
        ];
        let tail = [sbi, hi, I(c.position_offset() as i32), F(eps)];
        if rows_v {
            let args: Vec<Arg> = emb_args.iter().copied().chain([I(n as i32)]).chain(tail).collect();
            g.launch(Kernel::EmbedLnV, rows8, 256, 0, &args)?;
        } else {
            let args: Vec<Arg> = emb_args.iter().copied().chain(tail).collect();
            g.launch(Kernel::EmbedLn, nu, threads, smem, &args)?;
        }
        mark("embeddings + layer norm")?;
        let ln = |y: u64, bias: u64, res: u64, gam: u64, bet: u64, out: u64, out32: u64| -> Result<()> {
            if rows_v {
                g.launch(Kernel::BiasResLnV, rows8, 256, 0, &[
                    P(y), P(bias), P(res), P(gam), P(bet), P(out), P(out32), I(n as i32), hi, F(eps),
                ])
            } else {
                g.launch(Kernel::BiasResLn, nu, threads, smem, &[
                    P(y), P(bias), P(res), P(gam), P(bet), P(out), P(out32), hi, F(eps),
                ])
            }
        };
        // act(x + bias) over `mats` matrices of rows × cols, `x_stride` / `b_stride` apart.
        let bias_act = |x: u64, bias: u64, (rows, cols, mats): (usize, usize, u32), (x_stride, b_stride): (usize, usize), act: i32| -> Result<()> {
            let args = [P(x), P(bias), L(x_stride as i64), L(b_stride as i64), I(cols as i32), I(act)];
            if cols % vec == 0 {
                g.launch(Kernel::BiasActV, (rows as u32, mats), threads_of(cols), 0, &args)
            } else {
                g.launch(Kernel::BiasAct, (rows as u32, mats), 256, 0, &args)
            }
        };
        let act = match c.activation()? {
            Activation::GeluErf => 1,
            Activation::GeluTanh => 2,
            Activation::Relu => 3,
        };
        let scale = 1.0 / (dh as f32).sqrt();
        let arr = self.ptrs.get(&(bb, sb)).ok_or_else(|| Error::Cuda("no attention pointer arrays".into()))?;
        let count = bb * nh;
        let at = |j: usize| arr.ptr + (j * count * 8) as u64;
        let k_soft = match sb {
            s if s <= 512 && s % 4 == 0 => Kernel::MaskedSoftmaxV4,
            s if s <= 512 => Kernel::MaskedSoftmaxV,
            _ => Kernel::MaskedSoftmax,
        };
        let scores_f32 = !g.scores_in_dtype();
        let fused = self.attention_kernel_for(sb);

        // A dense GEMM through cuBLASLt (bias in its epilogue) or, failing that, cuBLAS; returns
        // whether the bias is already added.
        #[allow(clippy::too_many_arguments)]
        let dense_beta = |mnk: (usize, usize, usize), a: (u64, usize, usize), b: (u64, usize, usize), c: (u64, usize, usize), batch: usize, c_f32: bool, bias: Option<(u64, usize)>, beta: f32| -> Result<bool> {
            if self.use_lt && g.gemm_lt(true, mnk, (1.0, beta), a, b, c, batch, c_f32, bias)? {
                return Ok(bias.is_some());
            }
            g.gemm(true, mnk, (1.0, beta), a, b, c, batch, c_f32)?;
            Ok(false)
        };
        let dense = |mnk, a, b, c, batch, c_f32, bias| dense_beta(mnk, a, b, c, batch, c_f32, bias, 0.0);
        // A GEMM whose f32 product feeds a layer norm, `res` the residual (f32, [n, H]): with the
        // residual epilogue, added onto `res` in place (β = 1) and returned as the layer norm's
        // input with no separate residual (0); else written to `tmp32`, the residual separate.
        let to_ln = |mnk: (usize, usize, usize), a: (u64, usize, usize), b: (u64, usize, usize), res: u64| -> Result<(u64, u64)> {
            if self.residual_epilogue {
                dense_beta(mnk, a, b, (res, h, 0), 1, true, None, 1.0)?;
                Ok((res, 0))
            } else {
                dense(mnk, a, b, (ws.tmp32.ptr, h, 0), 1, true, None)?;
                Ok((ws.tmp32.ptr, res))
            }
        };
        for l in &self.layers {
            // Q, K, V: one batched GEMM over the three evenly spaced weight matrices.
            let biased = dense((h, n, h), (l.qkv_w, h, l.qkv_w_stride), (ws.x.ptr, h, 0), (ws.qkv.ptr, h, n * h), 3, false, Some((l.qkv_b, l.qkv_b_stride)))?;
            mark("QKV GEMM (+ bias)")?;
            if !biased {
                bias_act(ws.qkv.ptr, l.qkv_b, (n, h, 3), (n * h, l.qkv_b_stride), 0)?;
                mark("QKV bias")?;
            }
            if let Some(k) = fused {
                let q = ws.qkv.ptr;
                // One block of 4 warps per 64 query rows of one head of one batch row.
                g.launch3(k, (sb.div_ceil(64) as u32, nh as u32, bb as u32), 128, 0, &[
                    P(q), P(q + (n * h * e) as u64), P(q + (2 * n * h * e) as u64), P(ws.mask.ptr),
                    P(ws.ctx.ptr), sbi, hi, F(scale),
                ])?;
                mark("fused attention")?;
            } else {
                // Heads are read in place from the [n, H] Q/K/V blocks (leading dimension H)
                // through pointer arrays, i = b·nh + h. scores[i] (Sq × Sk, row-major) =
                // scale · Q_i K_iᵀ.
                g.gemm_batched(true, (sb, sb, dh), scale, (at(0), h), (at(1), h), (at(2), sb), count, scores_f32)?;
                mark("attention scores GEMM")?;
                let rows = bb * nh * sb;
                g.launch(k_soft, (rows.div_ceil(8) as u32, 1), 256, 0, &[
                    P(ws.scores.ptr), P(ws.mask.ptr), P(ws.probs.ptr), L(rows as i64), sbi, I(nh as i32),
                ])?;
                mark("masked softmax")?;
                // ctx[i] (Sq × dh) = P_i V_i, written straight into the [n, H] context rows.
                g.gemm_batched(false, (dh, sb, sb), 1.0, (at(3), h), (at(4), sb), (at(5), h), count, false)?;
                mark("attention context GEMM")?;
            }
            // x32 is read only by this layer norm (the next layer norm writes it anew), a32 only
            // by the second: each can take its GEMM's product in place.
            let (y, res) = to_ln((h, n, h), (l.o_w, h, 0), (ws.ctx.ptr, h, 0), ws.x32.ptr)?;
            mark("attention output GEMM")?;
            ln(y, l.o_b, res, l.ln1_g, l.ln1_b, ws.a.ptr, ws.a32.ptr)?;
            mark("bias + residual + layer norm")?;
            let biased = dense((im, n, h), (l.up_w, h, 0), (ws.a.ptr, h, 0), (ws.inter.ptr, im, 0), 1, false, Some((l.up_b, 0)))?;
            mark("FFN up GEMM (+ bias)")?;
            bias_act(ws.inter.ptr, if biased { 0 } else { l.up_b }, (n, im, 1), (0, 0), act)?;
            mark("GELU (+ bias)")?;
            let (y, res) = to_ln((h, n, im), (l.down_w, im, 0), (ws.inter.ptr, im, 0), ws.a32.ptr)?;
            mark("FFN down GEMM")?;
            ln(y, l.down_b, res, l.ln2_g, l.ln2_b, ws.x.ptr, ws.x32.ptr)?;
            mark("bias + residual + layer norm")?;
        }
        let labels = c.labels();
        let li = I(labels as i32);
        match self.task {
            Task::SequenceClassification => {
                let pooled = ws.first.ptr + (bb * h * e) as u64;
                g.launch(Kernel::GatherFirst, bu, threads, 0, &[P(ws.x.ptr), P(ws.first.ptr), sbi, hi])?;
                let pb = self.w("pooler.dense.bias");
                let biased = dense((h, bb, h), (self.w("pooler.dense.weight"), h, 0), (ws.first.ptr, h, 0), (pooled, h, 0), 1, false, Some((pb, 0)))?;
                bias_act(pooled, if biased { 0 } else { pb }, (bb, h, 1), (0, 0), 4)?;
                g.gemm(true, (labels, bb, h), (1.0, 0.0), (self.w("classifier.weight"), h, 0), (pooled, h, 0), (ws.out.ptr, labels, 0), 1, true)?;
                g.launch(Kernel::BiasF32, bu, 32, 0, &[P(ws.out.ptr), P(self.w("classifier.bias")), li])?;
            }
            Task::TokenClassification => {
                g.gemm(true, (labels, n, h), (1.0, 0.0), (self.w("classifier.weight"), h, 0), (ws.x.ptr, h, 0), (ws.out.ptr, labels, 0), 1, true)?;
                g.launch(Kernel::BiasF32, nu, 32, 0, &[P(ws.out.ptr), P(self.w("classifier.bias")), li])?;
            }
            Task::Embedding => {
                g.launch(Kernel::MeanPoolNorm, bu, threads, smem, &[P(ws.x.ptr), P(ws.mask.ptr), P(ws.out.ptr), sbi, hi])?;
            }
        }
        mark("head")
    }

    fn enqueue(&self, bb: usize, sb: usize) -> Result<()> {
        self.enqueue_marked(bb, sb, &mut |_| Ok(()))
    }

    /// Runs one eager forward pass of `batch` with a CUDA event after every step and returns
    /// the device time per step name, summed over layers, in milliseconds (in order of first
    /// appearance).
    pub fn profile(&mut self, batch: &Batch) -> Result<Vec<(&'static str, f64)>> {
        self.forward(batch)?;
        let (bb, sb) = bucket(batch.batch, batch.seq, self.cfg.max_tokens());
        let ctx = self.gpu.ctx.clone();
        let stream = self.gpu.stream.clone();
        let flags = Some(drv_sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = cu(ctx.new_event(flags), "cuEventCreate")?;
        cu(start.record(&stream), "cuEventRecord")?;
        let mut marks = Vec::new();
        self.enqueue_marked(bb, sb, &mut |name| {
            let ev = cu(ctx.new_event(flags), "cuEventCreate")?;
            cu(ev.record(&stream), "cuEventRecord")?;
            marks.push((name, ev));
            Ok(())
        })?;
        cu(stream.synchronize(), "cuStreamSynchronize")?;
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        let mut prev = &start;
        for (name, ev) in &marks {
            let ms = f64::from(cu(prev.elapsed_ms(ev), "cuEventElapsedTime")?);
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, t)) => *t += ms,
                None => out.push((name, ms)),
            }
            prev = ev;
        }
        Ok(out)
    }
}

/// Pads a batch to `(bb, sb)`; extra rows are fully masked.
fn pad_inputs(b: &Batch, bb: usize, sb: usize, pad: u32) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
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
    fn buckets_round_up() {
        assert_eq!(bucket(1, 9, 512), (1, 16));
        assert_eq!(bucket(5, 128, 512), (8, 128));
        assert_eq!(bucket(32, 300, 512), (32, 512));
        assert_eq!(bucket(3, 60, 62), (4, 62));
    }

    #[test]
    fn padding_masks_extra_rows() {
        let b = Batch::from_rows(&[vec![5, 6], vec![7]], 0, None).unwrap();
        let (ids, _, mask) = pad_inputs(&b, 4, 4, 0);
        assert_eq!(ids[..8], [5, 6, 0, 0, 7, 0, 0, 0]);
        assert_eq!(mask, vec![1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
