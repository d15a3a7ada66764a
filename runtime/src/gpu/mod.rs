//! The GPU backend: cudarc with run-time loading of libcuda, cuBLAS and NVRTC.
//!
//! Weights live in one device arena per model with fixed addresses (the packed
//! [`Layout`](crate::Layout)); activations in a workspace sized for the largest bucket seen
//! (`workspace.rs` computes its size, once). A forward pass for a (batch, sequence) bucket runs
//! once eagerly, is then captured as a CUDA graph and replayed. The pass (`forward.rs`) is a
//! sequence of named steps — embeddings, per layer an attention block and an FFN block, the
//! head — whose GEMMs are typed descriptors (`gemm.rs`). Dense GEMMs go through cuBLASLt with
//! f32 accumulation, the biases of the Q/K/V and FFN-up projections added in the GEMM's
//! epilogue (in f32, before the one rounding to the model dtype); where cuBLASLt is off,
//! missing or has no algorithm, cuBLAS strided-batched GEMMs and a bias kernel do the same.
//! Attention in fp16/bf16 models with head dimension 32, 64 or 128 is one fused tensor-core
//! kernel (`attention*_d*` in `kernels.cu`: scores, mask, softmax and the product with V per
//! query tile, scores and softmax in f32 registers); otherwise (fp32, other head sizes) two
//! batched GEMMs around a masked softmax kernel. The rest are small NVRTC kernels. GEMM
//! operands are in the model dtype; the residual stream, the GEMM outputs that feed a layer
//! norm, attention scores and all kernel arithmetic are f32 — the precision recipe that the CPU
//! reference (`crate::bert`) follows for 16-bit models.
//!
//! Parameter-efficient tenants run in the same pass: `pet_steps.rs` applies each tenant's delta
//! to its segment of rows between the backbone's launches (the tables of `pet_plan.rs`, the
//! kernels of `pet.rs`), `pet_slot.rs` is the GPU PET slot and `pet_store.rs` its adapter pool,
//! pinned host tier and copies.
//!
//! Which kernels run is the caller's typed choice, [`KernelOptions`] (its default is what
//! serving, live replay and calibration run; `ptm bench infer` has flags for A/B runs).
//!
//! Built without the `cuda` feature, the same types exist (`stub.rs`) but none can be made:
//! their constructors return [`Error::NoGpu`](crate::Error::NoGpu), so callers need no
//! `#[cfg]`. The pure parts (kernel names and source, options, GEMM descriptors, tensor
//! addresses, workspace sizes, timing statistics) are compiled and tested either way.
// Raw device pointers, kernel launches and cuBLAS calls are FFI: unsafe is needed here only.
#![allow(unsafe_code)]

pub mod budget;
pub mod gemm;
pub mod kernels;
mod options;
pub mod pet_plan;
pub mod pet_sites;
mod sync;
pub mod timing;
pub mod weights;
pub mod workspace;

pub use options::KernelOptions;
pub use sync::HostSync;

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
mod forward;
#[cfg(feature = "cuda")]
mod lt;
#[cfg(feature = "cuda")]
mod model;
#[cfg(feature = "cuda")]
pub mod pet;
#[cfg(feature = "cuda")]
mod pet_slot;
#[cfg(feature = "cuda")]
mod pet_steps;
#[cfg(feature = "cuda")]
mod pet_store;
#[cfg(feature = "cuda")]
pub mod pool;
#[cfg(feature = "cuda")]
pub mod slots;
#[cfg(feature = "cuda")]
mod timed;
#[cfg(feature = "cuda")]
pub use cuda::{device_name, set_host_sync, PinnedBuf};
#[cfg(feature = "cuda")]
pub use model::GpuModel;
#[cfg(feature = "cuda")]
pub use pet_slot::GpuPetSlot;

#[cfg(not(feature = "cuda"))]
mod stub;
#[cfg(not(feature = "cuda"))]
pub use stub::{device_name, pool, set_host_sync, slots, GpuModel, GpuPetSlot, PinnedBuf};

/// The bucket a batch of `batch` rows and `seq` columns runs in: rows up to a power of two,
/// columns up to a power of two of at least 16, at most `max_seq`.
pub fn bucket(batch: usize, seq: usize, max_seq: usize) -> (usize, usize) {
    (
        batch.next_power_of_two(),
        seq.max(16).next_power_of_two().min(max_seq),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_up() {
        assert_eq!(bucket(1, 9, 512), (1, 16));
        assert_eq!(bucket(5, 128, 512), (8, 128));
        assert_eq!(bucket(32, 300, 512), (32, 512));
        assert_eq!(bucket(3, 60, 62), (4, 62));
    }
}
