//! The PET hooks of the forward pass (`forward.rs` calls them only in a mixed-tenant pass):
//! where each tenant's delta acts on its segment of rows, with the segmented kernels of
//! `pet_kernels.cu` reading the tables of the pass's [`PetPlan`]. The backbone's launches are
//! the plain pass's; these run between them:
//!
//! - **Embeddings**: a BitFit layer-norm bias, onto the f32 stream and its model-dtype copy.
//! - **Q, K, V** (after the GEMM and its bias): BitFit biases, then LoRA (one shrink of `x` and
//!   one expand over the three outputs), each `y = round(y + delta)` — one rounding more than
//!   the CPU reference's single rounding of `xW + b + delta`.
//! - **FFN up** (after the GEMM, before the activation): the same, on `inter`.
//! - **Attention output, FFN down** (f32 GEMM outputs): biases and LoRA added in f32 before
//!   the layer norm, exactly as the reference. Where a tenant has an adapter there, the
//!   backbone's bias is added to the f32 output first (`h`), the adapters of each wiring group
//!   run (Houlsby reading `round(h)`, Pfeiffer the first layer norm's output) and write
//!   `skip + up` into `h` for their rows; the layer norm then reads `h` with a zero bias (the
//!   same sum `y + b + residual` for rows without an adapter).
//! - **Layer norms**: BitFit biases after the kernel.
//! - **Head**: first tokens of every row, the backbone's pooler GEMM where any row uses it,
//!   tenants' own poolers, pooler biases and LoRA, tanh, then each segment's classifier
//!   (sequence rows and token rows) and the mean-pooled embedding where any row is an
//!   embedding tenant's. Outputs are f32, `labels_cols` floats per row.
//!
//! Pipelined loads: where the pass follows loads whose copies may still be running, each hook
//! first makes the stream wait for the copy event of its stage (the embeddings, layer N, the
//! head) — captured as external event-wait nodes, so a layer's deltas need only have arrived
//! by the time the backbone reaches it.

use super::cuda::{cu, Arg};
use super::forward::Pass;
use super::gemm::{Bias, Gemm, Matrix};
use super::kernels::Kernel;
use super::pet::{DevMat, DevSegments, Input, Output, PetKernels, Sites};
use super::pet_plan::{PetPlan, Skip, OTHERS};
use super::weights::{LayerWeights, Linear, Norm};
use crate::activation::Activation;
use crate::error::Result;
use cudarc::driver::{result as drv, sys as drv_sys, CudaEvent};
use std::cell::Cell;

/// The device buffers of mixed-tenant passes (fixed addresses, sized for the largest bucket).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PetBuffers {
    /// LoRA shrink outputs, `[n, 3 × rank_cols]` model dtype.
    pub t: u64,
    /// Columns of `t` per site (the largest rank a tenant may have).
    pub rank_cols: usize,
    /// Adapter bottlenecks, `[n, width_cols]` model dtype.
    pub d: u64,
    /// Columns of `d` (the widest bottleneck a tenant may have).
    pub width_cols: usize,
    /// `hidden` zeros in the model dtype (the layer norm's bias once `h` holds it).
    pub zero: u64,
    /// The backbone's pooler, where it has one.
    pub pooler: Option<Linear>,
    /// Sequence-classification logits, `[bb, labels_cols]` f32.
    pub cls: u64,
    /// Token-classification logits, `[n, labels_cols]` f32.
    pub tok: u64,
    /// Embeddings, `[bb, hidden]` f32.
    pub emb: u64,
    /// Columns of the logits buffers (the most labels a tenant may have).
    pub labels_cols: usize,
}

/// One mixed-tenant pass: its plan, the kernels, the buffers and the copy events to wait on.
pub(crate) struct PetPass<'a> {
    pub(crate) plan: &'a PetPlan,
    pub(crate) kernels: &'a PetKernels,
    pub(crate) bufs: PetBuffers,
    /// Per stage, the event its copies complete with (`None`: every delta is resident).
    pub(crate) waits: Option<&'a [CudaEvent]>,
    /// Stages already waited for in the pass being enqueued.
    waited: Cell<usize>,
}

impl<'a> PetPass<'a> {
    /// A pass over `plan`'s tables.
    pub(crate) fn new(
        plan: &'a PetPlan,
        kernels: &'a PetKernels,
        bufs: PetBuffers,
        waits: Option<&'a [CudaEvent]>,
    ) -> Self {
        PetPass {
            plan,
            kernels,
            bufs,
            waits,
            waited: Cell::new(0),
        }
    }

    /// Called as a pass starts being enqueued (eagerly, or for capture).
    pub(super) fn start(&self) {
        self.waited.set(0);
    }

    fn seg_tok(&self) -> DevSegments {
        DevSegments {
            seg_start: self.plan.seg_tok,
            nseg: self.plan.nseg as i32,
        }
    }

    fn seg_row(&self) -> DevSegments {
        DevSegments {
            seg_start: self.plan.seg_row,
            nseg: self.plan.nseg as i32,
        }
    }

    fn t(&self) -> DevMat {
        DevMat {
            ptr: self.bufs.t,
            ld: (3 * self.bufs.rank_cols) as i64,
        }
    }

    fn one(&self) -> Sites {
        Sites::one(self.bufs.rank_cols as i32)
    }
}

impl Pass<'_> {
    /// Makes the stream wait for the copies of stage `stage` (0: embeddings, 1 + N: layer N,
    /// layers + 1: head) where the pass follows loads; once per stage and pass.
    fn pet_wait(&self, p: &PetPass, stage: usize) -> Result<()> {
        let Some(events) = p.waits else {
            return Ok(());
        };
        if p.waited.get() > stage {
            return Ok(());
        }
        let ev = events.get(stage).ok_or_else(|| {
            crate::error::Error::Cuda(format!("no copy event for PET stage {stage}"))
        })?;
        let status = cu(self.g.stream.capture_status(), "cuStreamIsCapturing")?;
        let flags = if status == drv_sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE {
            drv_sys::CUevent_wait_flags::CU_EVENT_WAIT_EXTERNAL
        } else {
            drv_sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT
        };
        // SAFETY: the stream and the event are alive (the event outlives the pass).
        cu(
            unsafe { drv::stream::wait_event(self.g.stream.cu_stream(), ev.cu_event(), flags) },
            "cuStreamWaitEvent (PET copies)",
        )?;
        p.waited.set(stage + 1);
        Ok(())
    }

    /// A LoRA table's shrink of `x` (`in_dim` wide) and expand onto `y` (`out_dim` wide).
    #[allow(clippy::too_many_arguments)]
    fn pet_lora(
        &self,
        p: &PetPass,
        seg: DevSegments,
        table: u64,
        sites: Sites,
        x: DevMat,
        in_dim: usize,
        out: Output,
        y: DevMat,
        out_dim: usize,
    ) -> Result<()> {
        let k = p.kernels;
        // SAFETY: the tables were built for this bucket from blocks resident in the pool; x, t
        // and y are workspace buffers sized for the slot's largest bucket.
        unsafe {
            k.lora(
                out,
                x,
                in_dim as i32,
                seg,
                table,
                sites,
                p.t(),
                y,
                out_dim as i32,
            )
        }
    }

    /// BitFit on the embeddings' layer norm.
    pub(super) fn pet_embeddings(&self, p: &PetPass) -> Result<()> {
        let Some(table) = p.plan.emb_ln_bias else {
            return Ok(());
        };
        self.pet_wait(p, 0)?;
        let (ws, h) = (self.ws, self.h);
        let beta = self.m.weights.embeddings.norm.beta;
        // SAFETY: as in `pet_lora`.
        unsafe {
            p.kernels.bias_seg_dual(
                ws.x32.ptr,
                ws.x.ptr,
                h as i64,
                p.seg_tok(),
                table,
                beta,
                h as i32,
            )
        }
    }

    /// Biases and LoRA of Q, K and V of layer `i` (the three outputs `n × h` apart).
    pub(super) fn pet_qkv(&self, p: &PetPass, i: usize, l: &LayerWeights) -> Result<()> {
        let lp = &p.plan.layers[i];
        if lp.qkv_bias.is_none() && lp.qkv_lora.is_none() {
            return Ok(());
        }
        self.pet_wait(p, 1 + i)?;
        let (ws, n, h) = (self.ws, self.n, self.h);
        let y = DevMat {
            ptr: ws.qkv.ptr,
            ld: h as i64,
        };
        let three = Sites {
            count: 3,
            t_cols: p.bufs.rank_cols as i32,
            y_stride: (n * h) as i64,
        };
        if let Some(table) = lp.qkv_bias {
            let base = DevMat {
                ptr: l.qkv_b,
                ld: l.qkv_b_stride as i64,
            };
            // SAFETY: as in `pet_lora`; the backbone's biases are `qkv_b_stride` apart.
            unsafe {
                p.kernels
                    .bias_seg(Output::Model, y, p.seg_tok(), table, three, base, h as i32)?;
            }
        }
        if let Some(table) = lp.qkv_lora {
            let x = DevMat {
                ptr: ws.x.ptr,
                ld: h as i64,
            };
            self.pet_lora(p, p.seg_tok(), table, three, x, h, Output::Model, y, h)?;
        }
        Ok(())
    }

    /// Bias and LoRA of layer `i`'s FFN up projection, before the activation.
    pub(super) fn pet_up(&self, p: &PetPass, i: usize, l: &LayerWeights) -> Result<()> {
        let lp = &p.plan.layers[i];
        let (bias, lora) = (lp.bias[1], lp.lora[1]);
        if bias.is_none() && lora.is_none() {
            return Ok(());
        }
        self.pet_wait(p, 1 + i)?;
        let (ws, h) = (self.ws, self.h);
        let im = self.m.cfg.intermediate_size;
        let y = DevMat {
            ptr: ws.inter.ptr,
            ld: im as i64,
        };
        if let Some(table) = bias {
            let base = DevMat {
                ptr: l.ffn_up.b,
                ld: 0,
            };
            // SAFETY: as in `pet_lora`.
            unsafe {
                p.kernels.bias_seg(
                    Output::Model,
                    y,
                    p.seg_tok(),
                    table,
                    p.one(),
                    base,
                    im as i32,
                )?;
            }
        }
        if let Some(table) = lora {
            let x = DevMat {
                ptr: ws.a.ptr,
                ld: h as i64,
            };
            self.pet_lora(p, p.seg_tok(), table, p.one(), x, h, Output::Model, y, im)?;
        }
        Ok(())
    }

    /// The end of sublayer `sub` (0: attention, 1: FFN) of layer `i`: the tenants' bias and
    /// LoRA on its f32 output `y` (whose input is `x`), adapters, the layer norm into `out`,
    /// and BitFit layer-norm biases (see the module docs).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pet_sublayer_end(
        &self,
        p: &PetPass,
        i: usize,
        sub: usize,
        (y, x): (u64, u64),
        linear: Linear,
        res: u64,
        norm: Norm,
        (out, out32): (u64, u64),
    ) -> Result<()> {
        let lp = &p.plan.layers[i];
        let which = OTHERS[2 * sub]; // attention output, or FFN down
        let wi = 2 * sub;
        let (n, h) = (self.n, self.h);
        let in_dim = if sub == 0 {
            h
        } else {
            self.m.cfg.intermediate_size
        };
        debug_assert_eq!(super::pet_plan::other_index(which), Some(wi));
        let (bias, lora, ln_bias) = (lp.bias[wi], lp.lora[wi], lp.ln_bias[sub]);
        let adapters = &lp.adapters[sub];
        if bias.is_some() || lora.is_some() || ln_bias.is_some() || !adapters.is_empty() {
            self.pet_wait(p, 1 + i)?;
        }
        let yd = DevMat {
            ptr: y,
            ld: h as i64,
        };
        if let Some(table) = bias {
            let base = DevMat {
                ptr: linear.b,
                ld: 0,
            };
            // SAFETY: as in `pet_lora`.
            unsafe {
                p.kernels
                    .bias_seg(Output::F32, yd, p.seg_tok(), table, p.one(), base, h as i32)?;
            }
        }
        if let Some(table) = lora {
            let xd = DevMat {
                ptr: x,
                ld: in_dim as i64,
            };
            self.pet_lora(
                p,
                p.seg_tok(),
                table,
                p.one(),
                xd,
                in_dim,
                Output::F32,
                yd,
                h,
            )?;
        }
        let ln_delta = |p: &PetPass| -> Result<()> {
            if let Some(table) = ln_bias {
                // SAFETY: as in `pet_lora`.
                unsafe {
                    p.kernels.bias_seg_dual(
                        out32,
                        out,
                        h as i64,
                        p.seg_tok(),
                        table,
                        norm.beta,
                        h as i32,
                    )?;
                }
            }
            Ok(())
        };
        if adapters.is_empty() {
            self.layer_norm(y, linear, res, norm, (out, out32))?;
            return ln_delta(p);
        }
        // h = y + b (the sublayer's output, what Houlsby reads and most skips add back); the
        // layer norm then takes a zero bias.
        self.g.launch(
            Kernel::BiasF32,
            (n as u32, 1),
            256,
            0,
            &[Arg::P(y), Arg::P(linear.b), Arg::I(h as i32)],
        )?;
        let zero = Linear {
            w: 0,
            b: p.bufs.zero,
        };
        if adapters.iter().any(|(g, _)| g.reads_ln) {
            self.layer_norm(y, zero, res, norm, (out, out32))?;
            ln_delta(p)?;
        }
        let d = DevMat {
            ptr: p.bufs.d,
            ld: p.bufs.width_cols as i64,
        };
        for (g, table) in adapters {
            let (input, x) = if g.reads_ln {
                (Input::Model, out)
            } else {
                (Input::F32, y)
            };
            let (skip, add) = match g.skip {
                Skip::Sublayer => (y, 0),
                Skip::LnOut => (out32, 0),
                Skip::SublayerRes => (y, res),
            };
            let xd = DevMat {
                ptr: x,
                ld: h as i64,
            };
            // SAFETY: as in `pet_lora`; `res` is the separate residual (no residual epilogue
            // where adapters run).
            unsafe {
                p.kernels
                    .adapter_down(input, xd, p.seg_tok(), *table, d, h as i32)?;
                p.kernels
                    .adapter_up(d, p.seg_tok(), *table, skip, add, y, h as i64, h as i32)?;
            }
        }
        self.layer_norm(y, zero, res, norm, (out, out32))?;
        ln_delta(p)
    }

    /// The segmented head (see the module docs).
    pub(super) fn pet_head(&mut self, p: &PetPass) -> Result<()> {
        let (ws, g) = (self.ws, self.g);
        let (bb, h, e) = (self.bb, self.h, self.e);
        let hp = &p.plan.head;
        let head_stage = 1 + self.m.weights.layers.len();
        let rows = DevMat {
            ptr: ws.x.ptr,
            ld: h as i64,
        };
        if hp.seq {
            let (first, pooled) = (ws.first.ptr, ws.first.ptr + (bb * h * e) as u64);
            g.launch(
                Kernel::GatherFirst,
                (bb as u32, 1),
                self.threads,
                0,
                &[
                    Arg::P(ws.x.ptr),
                    Arg::P(first),
                    Arg::I(self.sb as i32),
                    Arg::I(h as i32),
                ],
            )?;
            let pooler = p.bufs.pooler;
            if hp.backbone_pooler {
                let pooler =
                    pooler.ok_or_else(|| super::weights::missing("pooler.dense.weight"))?;
                let dense = Gemm::weights(
                    h,
                    bb,
                    h,
                    Matrix::new(pooler.w, h),
                    Matrix::new(first, h),
                    Matrix::new(pooled, h),
                );
                let bias = Bias {
                    ptr: pooler.b,
                    stride: 0,
                };
                if !self.dense(&dense, Some(bias))? {
                    self.bias_act(pooled, pooler.b, (bb, h, 1), (0, 0), Activation::Identity)?;
                }
            }
            self.pet_wait(p, head_stage)?;
            let (fm, pm) = (
                DevMat {
                    ptr: first,
                    ld: h as i64,
                },
                DevMat {
                    ptr: pooled,
                    ld: h as i64,
                },
            );
            // SAFETY: as in `pet_lora`; `first` and `pooled` hold `bb` rows each.
            unsafe {
                if let Some(table) = hp.own_pooler {
                    p.kernels
                        .linear(Output::Model, fm, p.seg_row(), table, pm, h as i32)?;
                }
                if let (Some(table), Some(pooler)) = (hp.pooler_bias, pooler) {
                    let base = DevMat {
                        ptr: pooler.b,
                        ld: 0,
                    };
                    p.kernels.bias_seg(
                        Output::Model,
                        pm,
                        p.seg_row(),
                        table,
                        p.one(),
                        base,
                        h as i32,
                    )?;
                }
            }
            if let Some(table) = hp.pooler_lora {
                self.pet_lora(p, p.seg_row(), table, p.one(), fm, h, Output::Model, pm, h)?;
            }
            self.bias_act(pooled, 0, (bb, h, 1), (0, 0), Activation::Tanh)?;
            if let Some(table) = hp.classifier {
                let y = DevMat {
                    ptr: p.bufs.cls,
                    ld: p.bufs.labels_cols as i64,
                };
                // SAFETY: as in `pet_lora`; `cls` holds `bb × labels_cols` floats.
                unsafe {
                    p.kernels
                        .linear(Output::F32, pm, p.seg_row(), table, y, h as i32)?;
                }
            }
        }
        if let Some(table) = hp.token {
            self.pet_wait(p, head_stage)?;
            let y = DevMat {
                ptr: p.bufs.tok,
                ld: p.bufs.labels_cols as i64,
            };
            // SAFETY: as in `pet_lora`; `tok` holds `n × labels_cols` floats.
            unsafe {
                p.kernels
                    .linear(Output::F32, rows, p.seg_tok(), table, y, h as i32)?;
            }
        }
        if hp.embedding {
            g.launch(
                Kernel::MeanPoolNorm,
                (bb as u32, 1),
                self.threads,
                self.smem,
                &[
                    Arg::P(ws.x.ptr),
                    Arg::P(ws.mask.ptr),
                    Arg::P(p.bufs.emb),
                    Arg::I(self.sb as i32),
                    Arg::I(h as i32),
                ],
            )?;
        }
        self.mark("head (segmented)")
    }
}
