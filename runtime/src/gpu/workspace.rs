//! The activation buffers of a GPU model for one (batch, sequence) capacity: their sizes are
//! computed here once, for allocating them (`GpuModel`'s workspace) and for budgeting slots
//! before anything is allocated (`slots::slot_budget`). No CUDA here.

use crate::config::Config;
use crate::dtype::DType;

/// Bytes of every activation buffer of a model shaped like `cfg`, for batches of up to `batch`
/// rows of `seq` tokens, in allocation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkspaceBytes {
    /// Token ids, token types, attention mask (i32 each).
    pub ids: usize,
    /// See [`WorkspaceBytes::ids`].
    pub types: usize,
    /// See [`WorkspaceBytes::ids`].
    pub mask: usize,
    /// Hidden states in the model dtype (the next GEMM's input).
    pub x: usize,
    /// Hidden states in f32 (the residual stream).
    pub x32: usize,
    /// After-attention states, model dtype.
    pub a: usize,
    /// After-attention states, f32.
    pub a32: usize,
    /// f32 GEMM outputs that feed a layer norm.
    pub tmp32: usize,
    /// Q, K and V, model dtype.
    pub qkv: usize,
    /// Attention scores (f32; the batched-GEMM attention only).
    pub scores: usize,
    /// Attention probabilities, model dtype (the batched-GEMM attention only).
    pub probs: usize,
    /// Attention context, model dtype.
    pub ctx: usize,
    /// FFN intermediate, model dtype.
    pub inter: usize,
    /// First tokens and pooled rows (sequence classification), model dtype.
    pub first: usize,
    /// Head output, f32.
    pub out: usize,
    /// The attention operand pointer arrays of one bucket (six arrays of `batch × heads`).
    pub pointer_arrays: usize,
}

/// The smallest allocation `DevBuf` makes, and the granularity the budget rounds to.
pub const ALLOCATION_BYTES: usize = 256;

impl WorkspaceBytes {
    /// The buffers of a model shaped like `cfg` whose head has up to `head_rows` outputs per
    /// row, for `batch × seq` tokens in `dtype`.
    pub fn new(cfg: &Config, head_rows: usize, batch: usize, seq: usize, dtype: DType) -> Self {
        let (n, h, e, nh) = (
            batch * seq,
            cfg.hidden_size,
            dtype.size_bytes(),
            cfg.num_attention_heads,
        );
        WorkspaceBytes {
            ids: n * 4,
            types: n * 4,
            mask: n * 4,
            x: n * h * e,
            x32: n * h * 4,
            a: n * h * e,
            a32: n * h * 4,
            tmp32: n * h * 4,
            qkv: 3 * n * h * e,
            scores: batch * nh * seq * seq * 4,
            probs: batch * nh * seq * seq * e,
            ctx: n * h * e,
            inter: n * cfg.intermediate_size * e,
            first: 2 * batch * h * e,
            out: (n * head_rows.max(1)).max(batch * h) * 4,
            pointer_arrays: 6 * batch * nh * 8,
        }
    }

    /// Every buffer's bytes, in allocation order (the pointer arrays last).
    pub fn buffers(&self) -> [usize; 16] {
        [
            self.ids,
            self.types,
            self.mask,
            self.x,
            self.x32,
            self.a,
            self.a32,
            self.tmp32,
            self.qkv,
            self.scores,
            self.probs,
            self.ctx,
            self.inter,
            self.first,
            self.out,
            self.pointer_arrays,
        ]
    }

    /// Device bytes of all of them, each allocation rounded up to [`ALLOCATION_BYTES`].
    pub fn device_bytes(&self) -> usize {
        self.buffers()
            .iter()
            .map(|&b| b.max(ALLOCATION_BYTES).div_ceil(ALLOCATION_BYTES) * ALLOCATION_BYTES)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Task;
    use crate::zoo::Arch;

    #[test]
    fn bert_base_batch_32_by_128_in_fp16() {
        let cfg = Arch::BertBase.config(Task::SequenceClassification, 2);
        let w = WorkspaceBytes::new(&cfg, 9, 32, 128, DType::Fp16);
        let n = 32 * 128;
        assert_eq!(w.x, n * 768 * 2);
        assert_eq!(w.qkv, 3 * w.x);
        assert_eq!(w.scores, 32 * 12 * 128 * 128 * 4);
        // Nine logits per token outgrow the pooled rows (B × H).
        assert_eq!(w.out, n * 9 * 4);
        // Every buffer is a multiple of the allocation granularity here: no rounding.
        assert_eq!(w.device_bytes(), w.buffers().iter().sum::<usize>());
    }

    #[test]
    fn small_buffers_are_rounded_to_one_allocation() {
        let cfg = Arch::Tiny.config(Task::Embedding, 0);
        let w = WorkspaceBytes::new(&cfg, 0, 1, 16, DType::Fp32);
        assert_eq!(w.ids, 64);
        assert!(w.device_bytes() >= 16 * ALLOCATION_BYTES);
        assert_eq!(w.device_bytes() % ALLOCATION_BYTES, 0);
    }
}
