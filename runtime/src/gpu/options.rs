//! Which kernels (and transfer path) a GPU model runs: typed options set by the caller (never
//! read from the environment). [`KernelOptions::default`] is what `ptm serve`, `ptm run --live`
//! and `ptm calibrate` run, and what a calibrated profile records; only the benchmarks (`ptm
//! bench infer`, `ptm bench pet`) and `ptm serve --pageable-staging` expose flags to change them,
//! for A/B measurements.

use std::fmt;

/// The kernel choices of a GPU model. Each one changes which kernels run, not what they
/// compute (the GPU-vs-CPU tests hold every position to the same bounds). A new option is added
/// so that off selects the kernels that ran before it: `ptm profile check` reads an option a
/// profile does not record as off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelOptions {
    /// Fused tensor-core attention (`attention*_d*` in `kernels.cu`) where the dtype (fp16,
    /// bf16) and head size (32, 64, 128) allow it; off: two batched GEMMs around a masked
    /// softmax kernel.
    pub fused_attention: bool,
    /// The single-pass attention kernel (`attention1_d*`) where the fused kernel runs and the
    /// bucket's keys fit its one shared-memory stage; off: the two-pass kernel.
    pub single_pass_attention: bool,
    /// cuBLASLt with bias epilogues for the dense GEMMs (where it loads and has an algorithm);
    /// off: cuBLAS GEMMs and bias kernels.
    pub cublaslt: bool,
    /// The attention-output and FFN-down GEMMs add their product onto the f32 residual stream
    /// in place (β = 1) and the layer norm reads that one tensor; off: the GEMMs write a
    /// separate f32 tensor and the layer-norm kernel adds the residual. Off by default: on the
    /// H200 it made BERT-base batch 32 slower (BENCHMARKS.md).
    pub residual_epilogue: bool,
    /// A PET slot's LoRA deltas through the row-tiled kernels (`pet_tiled_kernels.cu`: the
    /// tenant's A or the tile's shrink output staged in shared memory once per tile of up to 16
    /// rows of a segment, a block-wide scan of the segments); off: the warp kernels (one warp
    /// per row and rank entry or per row, each re-reading the tenant's matrices). The tiled
    /// kernels sum the same products in the same order (bit-equal outputs, `tests/pet_gpu.rs`
    /// and `tests/pet_tiled_gpu.rs` on the H200). On by default: a 32-row × 128-token pass of
    /// 32 distinct BERT-base fp16 LoRA tenants took 2.765 ms against 4.032 with the warp
    /// kernels (BENCHMARKS.md). Plain (non-PET) models run no LoRA kernel either way.
    pub pet_tiled: bool,
    /// A PET slot's LoRA deltas through the fused kernels (`pet_fused_kernels.cu`: one launch
    /// per shrink and expand, items of up to 8 rows of a segment computing their shrink output
    /// in shared memory and adding the expand at once) wherever the ranks fit
    /// (`PetKernels::fits_fused`: sites × rank padded to 4 ≤ 96, e.g. rank ≤ 32 over Q, K and
    /// V), the kernels `pet_tiled` selects elsewhere. The same products summed in the same
    /// order (bit-equal outputs, `tests/pet_tiled_gpu.rs` and `tests/pet_gpu.rs` on the H200).
    /// On by default: the Q/K/V LoRA step of a 32-row × 128-token pass of 32 distinct BERT-base
    /// fp16 LoRA tenants took 0.554 ms against the tiled kernels' 0.685 in the same call
    /// (`runtime/bench/device-round2.sh q`, BENCHMARKS.md).
    pub pet_fused: bool,
    /// A PET slot's LoRA deltas on the tensor cores (`pet_mma_kernels.cu`: 16-row tiles of a
    /// segment through `mma.sync`, fp16 and bf16 on compute capability 8.0 or newer, inputs a
    /// multiple of 16 wide: `PetKernels::fits_mma`), the kernels `pet_fused` and `pet_tiled`
    /// select elsewhere. The same products, summed in the tensor cores' order: outputs within
    /// the 16-bit tolerances of the others, and a tenant's rows still bit-equal alone or mixed
    /// (`tests/pet_gpu.rs`, `tests/pet_tiled_gpu.rs` on the H200). On by default: at the
    /// mixed pass's shape (4,096 rows, BERT-base fp16, rank 8 on Q and V) shrink and expand took
    /// 28.4 µs against the fused kernel's 35.4 in the same call (`runtime/bench/results/
    /// h200-2026-11-30/k4c-notes.md`); the whole pass in BENCHMARKS.md.
    pub pet_mma: bool,
    /// A model's downloads (a pass's outputs) go through pinned host memory of its own, copied
    /// out of on the host: the driver then copies asynchronously, where to pageable memory it
    /// stages every copy itself, synchronously — a download waits for the pass before it, and
    /// several executors' copies take turns on the driver's staging. Off: pageable copies. The
    /// bytes moved are the same either way (`tests/gpu_equals_cpu.rs`, bit for bit on the
    /// H200). On by default: one model alone runs as fast either way, but `ptm serve` over 12
    /// BERT-base fp16 tenants on 8 executors served 4,022.9 req/s against 3,115.5 at 32 clients
    /// and 5,914.6 against 5,599.4 at 128 with uploads staged too (`runtime/bench/
    /// device-round2.sh q`, BENCHMARKS.md).
    pub pinned_staging: bool,
    /// With `pinned_staging`, a model's uploads too (a pass's inputs, a PET pass's tables):
    /// asynchronous host→device copies, which the copy engine queues behind weight switches of
    /// other executors in flight (a 4 ms copy of BERT-base fp16 from the host) — on the H200 a
    /// switch-heavy replay (the Azure cell on 4 executors, affinity) took 45.8 ms a request on
    /// average with them against 29.1 without (parts m and s, BENCHMARKS.md). Off by default:
    /// uploads from pageable memory, which the driver copies itself, synchronously.
    pub pinned_uploads: bool,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions {
            fused_attention: true,
            single_pass_attention: true,
            cublaslt: true,
            residual_epilogue: false,
            pet_tiled: true,
            pet_fused: true,
            pet_mma: true,
            pinned_staging: true,
            pinned_uploads: false,
        }
    }
}

impl KernelOptions {
    /// The options as `(name, on)` in a fixed order: what a profile records and `ptm profile
    /// check` compares.
    pub fn fields(&self) -> [(&'static str, bool); 9] {
        [
            ("fused_attention", self.fused_attention),
            ("single_pass_attention", self.single_pass_attention),
            ("cublaslt", self.cublaslt),
            ("residual_epilogue", self.residual_epilogue),
            ("pet_tiled", self.pet_tiled),
            ("pet_fused", self.pet_fused),
            ("pet_mma", self.pet_mma),
            ("pinned_staging", self.pinned_staging),
            ("pinned_uploads", self.pinned_uploads),
        ]
    }
}

impl fmt::Display for KernelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, on)) in self.fields().iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{name}={}", if *on { "on" } else { "off" })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_measured_configuration() {
        let d = KernelOptions::default();
        assert_eq!(
            d.to_string(),
            "fused_attention=on single_pass_attention=on cublaslt=on residual_epilogue=off \
             pet_tiled=on pet_fused=on pet_mma=on pinned_staging=on pinned_uploads=off"
        );
        let names: Vec<_> = d.fields().iter().map(|f| f.0).collect();
        assert_eq!(names.len(), 9);
        assert!(names.windows(2).all(|w| w[0] != w[1]));
    }
}
