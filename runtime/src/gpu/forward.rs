//! One forward pass of a GPU model, as named steps enqueued on its stream: the embeddings, per
//! layer the attention block and the FFN block, then the head. Each step says which kernels
//! and GEMMs it launches (see ARCHITECTURE.md's "One GPU forward pass"); the whole pass of a
//! (batch, sequence) bucket is what `GpuModel::run_bucket` captures as one CUDA graph.
//!
//! A mixed-tenant pass (`pet` set: parameter-efficient tenants over this model as backbone)
//! runs the same steps and the same backbone launches, and each step calls its PET hook
//! (`pet_steps.rs`) where a tenant's delta acts; the head is the segmented one. Without `pet`
//! every hook is skipped: the plain pass launches exactly what it did before.
//!
//! Precision: GEMM operands in the model dtype with f32 accumulation; the residual stream, the
//! GEMM outputs that feed a layer norm, attention scores and all kernel arithmetic in f32.

use super::cuda::{Arg, Gpu};
use super::gemm::{Bias, Gemm, Matrix, PointerGemm, Pointers};
use super::kernels::Kernel;
use super::model::{GpuModel, Workspace};
use super::pet_steps::PetPass;
use super::weights::{LayerWeights, Linear, Norm};
use crate::activation::Activation;
use crate::config::Task;
use crate::error::{Error, Result};
use Arg::{F, I, L, P};

/// Called after each step with its name (a no-op except when profiling).
pub type Mark<'a> = &'a mut dyn FnMut(&'static str) -> Result<()>;

/// The pass of one bucket: the model, its workspace, the bucket's sizes and launch geometry.
pub(super) struct Pass<'a> {
    pub(super) m: &'a GpuModel,
    pub(super) g: &'a Gpu,
    pub(super) ws: &'a Workspace,
    mark: Mark<'a>,
    /// Batch bucket and sequence bucket.
    pub(super) bb: usize,
    pub(super) sb: usize,
    /// Tokens (`bb × sb`), hidden width, bytes per model-dtype element.
    pub(super) n: usize,
    pub(super) h: usize,
    pub(super) e: usize,
    eps: f32,
    /// Threads and shared memory of the one-block-per-row kernels.
    pub(super) threads: u32,
    pub(super) smem: u32,
    /// Elements per 16-byte vector; whether rows of H take the one-warp-per-row kernels.
    vec: usize,
    rows_v: bool,
    /// The tenants' deltas of a mixed-tenant pass.
    pub(super) pet: Option<&'a PetPass<'a>>,
}

impl GpuModel {
    /// Enqueues the forward pass of bucket `(bb, sb)` on inputs already in the workspace, with
    /// the tenants' deltas of `pet` where it is given; `mark(step)` is called after each step.
    pub(super) fn enqueue_pass(
        &self,
        bb: usize,
        sb: usize,
        pet: Option<&PetPass<'_>>,
        mark: Mark<'_>,
    ) -> Result<()> {
        let ws = self.workspace()?;
        let c = &self.cfg;
        let (h, e) = (c.hidden_size, self.gpu.dtype.size_bytes());
        let vec = 16 / e;
        let mut pass = Pass {
            m: self,
            g: &self.gpu,
            ws,
            mark,
            bb,
            sb,
            n: bb * sb,
            h,
            e,
            eps: c.layer_norm_eps as f32,
            threads: (h.div_ceil(32) * 32).clamp(32, 256) as u32,
            smem: ((32 + h) * 4) as u32,
            vec,
            // 16-byte vector paths where the shapes allow them (all real BERT shapes do).
            rows_v: h % vec == 0 && h / vec <= 32 * 8,
            pet,
        };
        if let Some(p) = pet {
            p.start();
        }
        pass.embeddings()?;
        for (i, layer) in self.weights.layers.iter().enumerate() {
            pass.attention_block(i, layer)?;
            pass.ffn_block(i, layer)?;
        }
        pass.head()
    }

    /// Enqueues the forward pass of bucket `(bb, sb)` (with the tenants' deltas of `pet`).
    pub(super) fn enqueue(&self, bb: usize, sb: usize, pet: Option<&PetPass<'_>>) -> Result<()> {
        self.enqueue_pass(bb, sb, pet, &mut |_| Ok(()))
    }
}

impl Pass<'_> {
    pub(super) fn mark(&mut self, step: &'static str) -> Result<()> {
        (self.mark)(step)
    }

    /// The step name of a sublayer's end (a PET pass adds the tenants' deltas there).
    fn sublayer_end_step(&self) -> &'static str {
        match self.pet {
            Some(_) => "PET: bias + residual + layer norm (+ deltas)",
            None => "bias + residual + layer norm",
        }
    }

    /// Word + position + token-type embeddings and their layer norm: `x` (model dtype) and
    /// `x32` (f32, the residual stream).
    fn embeddings(&mut self) -> Result<()> {
        let (ws, emb, c) = (self.ws, self.m.weights.embeddings, &self.m.cfg);
        let args = [
            P(ws.ids.ptr),
            P(ws.types.ptr),
            P(emb.word),
            P(emb.position),
            P(emb.token_type),
            P(emb.norm.gamma),
            P(emb.norm.beta),
            P(ws.x.ptr),
            P(ws.x32.ptr),
        ];
        let tail = [
            I(self.sb as i32),
            I(self.h as i32),
            I(c.position_offset() as i32),
            F(self.eps),
        ];
        if self.rows_v {
            let args: Vec<Arg> = args
                .into_iter()
                .chain([I(self.n as i32)])
                .chain(tail)
                .collect();
            self.g
                .launch(Kernel::EmbedLnV, self.rows8(), 256, 0, &args)?;
        } else {
            let args: Vec<Arg> = args.into_iter().chain(tail).collect();
            self.g.launch(
                Kernel::EmbedLn,
                (self.n as u32, 1),
                self.threads,
                self.smem,
                &args,
            )?;
        }
        if let Some(p) = self.pet {
            self.pet_embeddings(p)?;
        }
        self.mark("embeddings + layer norm")
    }

    /// Q, K and V (one batched GEMM over the three evenly spaced weights, biases in its
    /// epilogue or a bias kernel), attention (fused, or two batched GEMMs around a masked
    /// softmax), the output projection and bias + residual + layer norm: `a`, `a32`.
    fn attention_block(&mut self, i: usize, l: &LayerWeights) -> Result<()> {
        let (ws, n, h) = (self.ws, self.n, self.h);
        let qkv = Gemm::weights(
            h,
            n,
            h,
            Matrix::strided(l.qkv_w, h, l.qkv_w_stride),
            Matrix::new(ws.x.ptr, h),
            Matrix::strided(ws.qkv.ptr, h, n * h),
        )
        .batched(3);
        let bias = Bias {
            ptr: l.qkv_b,
            stride: l.qkv_b_stride,
        };
        let biased = self.dense(&qkv, Some(bias))?;
        self.mark("QKV GEMM (+ bias)")?;
        if !biased {
            self.bias_act(
                ws.qkv.ptr,
                l.qkv_b,
                (n, h, 3),
                (n * h, l.qkv_b_stride),
                Activation::Identity,
            )?;
            self.mark("QKV bias")?;
        }
        if let Some(p) = self.pet {
            self.pet_qkv(p, i, l)?;
            self.mark("PET: Q/K/V deltas")?;
        }
        match self.m.attention_kernel_for(self.sb) {
            Some(k) => self.fused_attention(k)?,
            None => self.gemm_attention()?,
        }
        // x32 is read only by this layer norm (the next layer norm writes it anew), a32 only
        // by the second: each can take its GEMM's product in place.
        let (y, res) = self.product_for_norm(
            Matrix::new(l.attn_out.w, h),
            Matrix::new(ws.ctx.ptr, h),
            (h, h),
            ws.x32.ptr,
            self.residual_epilogue(i, 0),
        )?;
        self.mark("attention output GEMM")?;
        let out = (ws.a.ptr, ws.a32.ptr);
        match self.pet {
            Some(p) => {
                self.pet_sublayer_end(p, i, 0, (y, ws.ctx.ptr), l.attn_out, res, l.attn_norm, out)?
            }
            None => self.layer_norm(y, l.attn_out, res, l.attn_norm, out)?,
        }
        self.mark(self.sublayer_end_step())
    }

    /// The fused tensor-core attention kernel `k`: one block of 4 warps per 64 query rows of
    /// one head of one batch row; Q, K, V read in place from their `[n, H]` blocks.
    fn fused_attention(&mut self, k: Kernel) -> Result<()> {
        let (ws, c, (n, h, e)) = (self.ws, &self.m.cfg, (self.n, self.h, self.e));
        let q = ws.qkv.ptr;
        let scale = 1.0 / (c.head_dim() as f32).sqrt();
        self.g.launch3(
            k,
            (
                self.sb.div_ceil(64) as u32,
                c.num_attention_heads as u32,
                self.bb as u32,
            ),
            128,
            0,
            &[
                P(q),
                P(q + (n * h * e) as u64),
                P(q + (2 * n * h * e) as u64),
                P(ws.mask.ptr),
                P(ws.ctx.ptr),
                I(self.sb as i32),
                I(h as i32),
                F(scale),
            ],
        )?;
        self.mark("fused attention")
    }

    /// Attention as two batched GEMMs around a masked softmax (fp32 models, other head sizes,
    /// or the fused kernel switched off). Heads are read in place from the `[n, H]` Q/K/V
    /// blocks (leading dimension H) through the bucket's pointer arrays, i = b·nh + h.
    fn gemm_attention(&mut self) -> Result<()> {
        let (ws, c, g, (bb, sb, h)) = (self.ws, &self.m.cfg, self.g, (self.bb, self.sb, self.h));
        let (nh, dh) = (c.num_attention_heads, c.head_dim());
        let arrays = self.m.pointer_arrays(bb, sb)?;
        let count = bb * nh;
        let at = |j: usize, ld: usize| Pointers {
            array: arrays + (j * count * 8) as u64,
            ld,
        };
        // scores[i] (Sq × Sk, row-major) = scale · Q_i K_iᵀ.
        g.gemm_batched(&PointerGemm {
            trans_a: true,
            m: sb,
            n: sb,
            k: dh,
            a: at(0, h),
            b: at(1, h),
            c: at(2, sb),
            batch: count,
            alpha: 1.0 / (dh as f32).sqrt(),
            c_f32: !g.scores_in_dtype(),
        })?;
        self.mark("attention scores GEMM")?;
        let softmax = match sb {
            s if s <= 512 && s % 4 == 0 => Kernel::MaskedSoftmaxV4,
            s if s <= 512 => Kernel::MaskedSoftmaxV,
            _ => Kernel::MaskedSoftmax,
        };
        let rows = bb * nh * sb;
        g.launch(
            softmax,
            (rows.div_ceil(8) as u32, 1),
            256,
            0,
            &[
                P(ws.scores.ptr),
                P(ws.mask.ptr),
                P(ws.probs.ptr),
                L(rows as i64),
                I(sb as i32),
                I(nh as i32),
            ],
        )?;
        self.mark("masked softmax")?;
        // ctx[i] (Sq × dh) = P_i V_i, written straight into the [n, H] context rows.
        g.gemm_batched(&PointerGemm {
            trans_a: false,
            m: dh,
            n: sb,
            k: sb,
            a: at(3, h),
            b: at(4, sb),
            c: at(5, h),
            batch: count,
            alpha: 1.0,
            c_f32: false,
        })?;
        self.mark("attention context GEMM")
    }

    /// FFN up (bias in the epilogue), the activation (+ bias where the epilogue did not add
    /// it), FFN down and bias + residual + layer norm: `x`, `x32`.
    fn ffn_block(&mut self, i: usize, l: &LayerWeights) -> Result<()> {
        let (ws, n, h) = (self.ws, self.n, self.h);
        let im = self.m.cfg.intermediate_size;
        let up = Gemm::weights(
            im,
            n,
            h,
            Matrix::new(l.ffn_up.w, h),
            Matrix::new(ws.a.ptr, h),
            Matrix::new(ws.inter.ptr, im),
        );
        let bias = Bias {
            ptr: l.ffn_up.b,
            stride: 0,
        };
        let biased = self.dense(&up, Some(bias))?;
        self.mark("FFN up GEMM (+ bias)")?;
        if let Some(p) = self.pet {
            self.pet_up(p, i, l)?;
            self.mark("PET: FFN-up deltas")?;
        }
        let act = self.m.cfg.activation()?;
        let b = if biased { 0 } else { l.ffn_up.b };
        self.bias_act(ws.inter.ptr, b, (n, im, 1), (0, 0), act)?;
        self.mark("GELU (+ bias)")?;
        let (y, res) = self.product_for_norm(
            Matrix::new(l.ffn_down.w, im),
            Matrix::new(ws.inter.ptr, im),
            (h, im),
            ws.a32.ptr,
            self.residual_epilogue(i, 1),
        )?;
        self.mark("FFN down GEMM")?;
        let out = (ws.x.ptr, ws.x32.ptr);
        match self.pet {
            Some(p) => {
                self.pet_sublayer_end(p, i, 1, (y, ws.inter.ptr), l.ffn_down, res, l.ffn_norm, out)?
            }
            None => self.layer_norm(y, l.ffn_down, res, l.ffn_norm, out)?,
        }
        self.mark(self.sublayer_end_step())
    }

    /// The task's head on `x`: pooler (first token, dense, tanh) and classifier; a classifier
    /// on every token; or masked mean pooling + L2 normalisation. Logits and embeddings are f32.
    fn head(&mut self) -> Result<()> {
        if let Some(p) = self.pet {
            self.pet_head(p)?;
            return self.mark("PET: segmented head");
        }
        let (ws, g, m) = (self.ws, self.g, self.m);
        let (bb, h, e) = (self.bb, self.h, self.e);
        let (sbi, hi) = (I(self.sb as i32), I(h as i32));
        match m.task {
            Task::SequenceClassification => {
                let (pooler, classifier) = (m.weights.pooler()?, m.weights.classifier()?);
                let pooled = ws.first.ptr + (bb * h * e) as u64;
                g.launch(
                    Kernel::GatherFirst,
                    (bb as u32, 1),
                    self.threads,
                    0,
                    &[P(ws.x.ptr), P(ws.first.ptr), sbi, hi],
                )?;
                let dense = Gemm::weights(
                    h,
                    bb,
                    h,
                    Matrix::new(pooler.w, h),
                    Matrix::new(ws.first.ptr, h),
                    Matrix::new(pooled, h),
                );
                let bias = Bias {
                    ptr: pooler.b,
                    stride: 0,
                };
                let biased = self.dense(&dense, Some(bias))?;
                let b = if biased { 0 } else { pooler.b };
                self.bias_act(pooled, b, (bb, h, 1), (0, 0), Activation::Tanh)?;
                self.classify(classifier, Matrix::new(pooled, h), bb)?;
            }
            Task::TokenClassification => {
                let classifier = m.weights.classifier()?;
                self.classify(classifier, Matrix::new(ws.x.ptr, h), self.n)?;
            }
            Task::Embedding => {
                g.launch(
                    Kernel::MeanPoolNorm,
                    (bb as u32, 1),
                    self.threads,
                    self.smem,
                    &[P(ws.x.ptr), P(ws.mask.ptr), P(ws.out.ptr), sbi, hi],
                )?;
            }
        }
        self.mark("head")
    }

    /// f32 logits of `rows` rows of `input` (model dtype, `[rows, H]`) through `classifier`
    /// into `out`: a cuBLAS GEMM, then the bias.
    fn classify(&mut self, classifier: Linear, input: Matrix, rows: usize) -> Result<()> {
        let (ws, labels) = (self.ws, self.m.cfg.labels());
        self.g.gemm(
            &Gemm::weights(
                labels,
                rows,
                self.h,
                Matrix::new(classifier.w, self.h),
                input,
                Matrix::new(ws.out.ptr, labels),
            )
            .f32_out(),
        )?;
        self.g.launch(
            Kernel::BiasF32,
            (rows as u32, 1),
            32,
            0,
            &[P(ws.out.ptr), P(classifier.b), I(labels as i32)],
        )
    }

    /// A dense GEMM through cuBLASLt (the bias in its epilogue) or, where that is off,
    /// missing or has no algorithm, cuBLAS; returns whether the bias is already added.
    pub(super) fn dense(&self, gemm: &Gemm, bias: Option<Bias>) -> Result<bool> {
        if self.m.options.cublaslt && self.g.gemm_lt(gemm, bias)? {
            return Ok(bias.is_some());
        }
        self.g.gemm(gemm)?;
        Ok(false)
    }

    /// Whether the GEMM ending sublayer `sub` (0: attention, 1: FFN) of layer `i` adds the
    /// residual in place: the kernel option, except where a tenant's adapter there reads the
    /// sublayer's output alone.
    fn residual_epilogue(&self, i: usize, sub: usize) -> bool {
        self.m.options.residual_epilogue && !self.pet.is_some_and(|p| p.plan.has_adapters(i, sub))
    }

    /// A GEMM (`m × k` weight `w` times `input`) whose f32 product feeds a layer norm, `res`
    /// the residual (f32, `[n, H]`): with the residual epilogue (`epilogue`), added onto `res`
    /// in place (β = 1) and returned as the layer norm's input with no separate residual (0);
    /// else written to `tmp32`, the residual separate.
    fn product_for_norm(
        &self,
        w: Matrix,
        input: Matrix,
        (m, k): (usize, usize),
        res: u64,
        epilogue: bool,
    ) -> Result<(u64, u64)> {
        let h = self.h;
        if epilogue {
            let g = Gemm::weights(m, self.n, k, w, input, Matrix::new(res, h));
            self.dense(&g.f32_out().accumulate(), None)?;
            Ok((res, 0))
        } else {
            let g = Gemm::weights(m, self.n, k, w, input, Matrix::new(self.ws.tmp32.ptr, h));
            self.dense(&g.f32_out(), None)?;
            Ok((self.ws.tmp32.ptr, res))
        }
    }

    /// `out`, `out32` = LN(y + bias + res) (no `res` when it is 0: already in y).
    pub(super) fn layer_norm(
        &self,
        y: u64,
        linear: Linear,
        res: u64,
        norm: Norm,
        (out, out32): (u64, u64),
    ) -> Result<()> {
        let (n, hi, eps) = (self.n, I(self.h as i32), F(self.eps));
        let ptrs = [
            P(y),
            P(linear.b),
            P(res),
            P(norm.gamma),
            P(norm.beta),
            P(out),
            P(out32),
        ];
        if self.rows_v {
            let args: Vec<Arg> = ptrs.into_iter().chain([I(n as i32), hi, eps]).collect();
            self.g
                .launch(Kernel::BiasResLnV, self.rows8(), 256, 0, &args)
        } else {
            let args: Vec<Arg> = ptrs.into_iter().chain([hi, eps]).collect();
            self.g.launch(
                Kernel::BiasResLn,
                (n as u32, 1),
                self.threads,
                self.smem,
                &args,
            )
        }
    }

    /// `act(x + bias)` over `mats` matrices of rows × cols, `x_stride` / `b_stride` elements
    /// apart (a zero bias adds nothing).
    pub(super) fn bias_act(
        &self,
        x: u64,
        bias: u64,
        (rows, cols, mats): (usize, usize, u32),
        (x_stride, b_stride): (usize, usize),
        act: Activation,
    ) -> Result<()> {
        let args = [
            P(x),
            P(bias),
            L(x_stride as i64),
            L(b_stride as i64),
            I(cols as i32),
            I(act.code()),
        ];
        if cols % self.vec == 0 {
            let threads = (cols.div_ceil(self.vec).div_ceil(32) * 32).clamp(32, 256) as u32;
            self.g
                .launch(Kernel::BiasActV, (rows as u32, mats), threads, 0, &args)
        } else {
            self.g
                .launch(Kernel::BiasAct, (rows as u32, mats), 256, 0, &args)
        }
    }

    /// The grid of the one-warp-per-row kernels: blocks of 8 rows.
    fn rows8(&self) -> (u32, u32) {
        (self.n.div_ceil(8) as u32, 1)
    }
}

/// The error for a pass enqueued before its workspace exists.
pub(super) fn no_workspace() -> Error {
    Error::Cuda("no workspace: reserve or forward first".into())
}
