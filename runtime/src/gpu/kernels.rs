//! The NVRTC kernels of the GPU backend: their names, which dtypes they exist for, which
//! attention kernel a shape runs, and the source they are compiled from (`kernels.cu` with the
//! dtype's and the activations' definitions prepended). No CUDA here: this module is compiled
//! and tested without the `cuda` feature.

use crate::activation::Activation;
use crate::dtype::DType;

/// The kernel source (see `kernels.cu`).
const KERNELS: &str = include_str!("kernels.cu");

/// Kernel names in `kernels.cu`, in [`Kernel`] order.
pub const NAMES: [&str; 18] = [
    "embed_ln",
    "bias_res_ln",
    "masked_softmax",
    "bias_act",
    "bias_f32",
    "gather_first",
    "mean_pool_norm",
    "embed_ln_v",
    "bias_res_ln_v",
    "bias_act_v",
    "masked_softmax_v",
    "masked_softmax_v4",
    "attention_d32",
    "attention_d64",
    "attention_d128",
    "attention1_d32",
    "attention1_d64",
    "attention1_d128",
];

/// The first kernel that exists for 16-bit dtypes only (tensor-core attention).
pub const FIRST_HALF_ONLY: usize = 12;

/// Kernels of the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Embedding gather + layer norm.
    EmbedLn = 0,
    /// Bias + residual + layer norm.
    BiasResLn = 1,
    /// Masked softmax.
    MaskedSoftmax = 2,
    /// Bias + activation.
    BiasAct = 3,
    /// Bias on f32 logits.
    BiasF32 = 4,
    /// First token of each row.
    GatherFirst = 5,
    /// Masked mean pooling + L2 normalisation.
    MeanPoolNorm = 6,
    /// [`Kernel::EmbedLn`], one warp per row, 16-byte accesses.
    EmbedLnV = 7,
    /// [`Kernel::BiasResLn`], one warp per row, 16-byte accesses.
    BiasResLnV = 8,
    /// [`Kernel::BiasAct`] with 16-byte accesses.
    BiasActV = 9,
    /// [`Kernel::MaskedSoftmax`] with the row in registers.
    MaskedSoftmaxV = 10,
    /// [`Kernel::MaskedSoftmaxV`] with 4-element vector accesses (`Sq % 4 == 0`).
    MaskedSoftmaxV4 = 11,
    /// Fused tensor-core attention, head dimension 32 (16-bit dtypes).
    AttentionD32 = 12,
    /// Fused tensor-core attention, head dimension 64 (16-bit dtypes).
    AttentionD64 = 13,
    /// Fused tensor-core attention, head dimension 128 (16-bit dtypes).
    AttentionD128 = 14,
    /// Single-pass fused attention (all keys' scores in registers), head dimension 32,
    /// sequences up to 128 (16-bit dtypes).
    Attention1D32 = 15,
    /// Single-pass fused attention, head dimension 64, sequences up to 128 (16-bit dtypes).
    Attention1D64 = 16,
    /// Single-pass fused attention, head dimension 128, sequences up to 64 (16-bit dtypes).
    Attention1D128 = 17,
}

impl Kernel {
    /// Its name in `kernels.cu`.
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// Whether it is built for models of `dtype` (tensor-core attention: 16-bit only).
    pub fn exists_for(self, dtype: DType) -> bool {
        (self as usize) < FIRST_HALF_ONLY || dtype != DType::Fp32
    }

    /// The two-pass fused attention kernel for head dimension `dh`, if there is one.
    pub fn attention(dh: usize) -> Option<Kernel> {
        match dh {
            32 => Some(Kernel::AttentionD32),
            64 => Some(Kernel::AttentionD64),
            128 => Some(Kernel::AttentionD128),
            _ => None,
        }
    }

    /// The single-pass fused attention kernel for head dimension `dh` and (bucketed) sequence
    /// length `seq`, if there is one: all keys must fit its one shared-memory stage (128 keys
    /// for head dimensions up to 64, 64 for 128).
    pub fn attention_single_pass(dh: usize, seq: usize) -> Option<Kernel> {
        match dh {
            32 if seq <= 128 => Some(Kernel::Attention1D32),
            64 if seq <= 128 => Some(Kernel::Attention1D64),
            128 if seq <= 64 => Some(Kernel::Attention1D128),
            _ => None,
        }
    }
}

/// The source NVRTC compiles for models of `dtype`: the storage type, whether attention scores
/// stay in it, the tensor-core switches and the activation codes, then `kernels.cu`.
pub fn source(dtype: DType) -> String {
    let scores_in_t = i32::from(dtype == DType::Fp16);
    let half = i32::from(dtype != DType::Fp32);
    let bf16 = i32::from(dtype == DType::Bf16);
    format!(
        "{}#define SCORES_IN_T {scores_in_t}\n#define HALF_MMA {half}\n#define IS_BF16 {bf16}\n\
         {DTYPE_CUH}{}{KERNELS}",
        dtype_define(dtype),
        Activation::cuda_definitions()
    )
}

/// The storage types F32/F16/BF16 and `D`, `T` that every NVRTC source of the backend
/// (`kernels.cu`, `pet_kernels.cu`) is compiled with (`dtype.cuh`), after [`dtype_define`].
pub const DTYPE_CUH: &str = include_str!("dtype.cuh");

/// `#define DTYPE <F32|F16|BF16>` for `dtype`: the first line of every NVRTC source.
pub fn dtype_define(dtype: DType) -> &'static str {
    match dtype {
        DType::Fp32 => "#define DTYPE F32\n",
        DType::Fp16 => "#define DTYPE F16\n",
        DType::Bf16 => "#define DTYPE BF16\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_defined_in_the_source_once() {
        for (i, name) in NAMES.iter().enumerate() {
            // The attention kernels are stamped out by a macro (`attention_d##HD`), one
            // instance per head dimension; the others are written out once each.
            match name.split_once("_d") {
                Some((stem, hd)) if stem.starts_with("attention") => {
                    let macro_name = stem.to_uppercase();
                    let instance = format!("\n{macro_name}({hd},");
                    assert_eq!(KERNELS.matches(&instance).count(), 1, "{name}");
                    assert!(i >= FIRST_HALF_ONLY, "{name} is a 16-bit kernel");
                }
                _ => {
                    let definition = format!("__global__ void {name}(");
                    assert_eq!(KERNELS.matches(&definition).count(), 1, "{name}");
                    assert!(i < FIRST_HALF_ONLY, "{name} exists for every dtype");
                }
            }
        }
        assert_eq!(Kernel::AttentionD64.name(), "attention_d64");
        assert_eq!(Kernel::Attention1D128.name(), "attention1_d128");
    }

    #[test]
    fn the_source_defines_the_dtype_and_the_activation_codes() {
        let s = source(DType::Bf16);
        assert!(s.starts_with("#define DTYPE BF16\n#define SCORES_IN_T 0\n#define HALF_MMA 1\n"));
        for a in Activation::ALL {
            assert!(s.contains(&format!("#define {} {}\n", a.cuda_name(), a.code())));
            // The kernels name the codes; they decode them in one place.
            assert!(KERNELS.contains(a.cuda_name()), "{}", a.cuda_name());
        }
        assert_eq!(KERNELS.matches("float activate(").count(), 1);
        assert!(
            !KERNELS.contains("act == 1"),
            "a magic activation code is back"
        );
        assert!(Kernel::AttentionD32.exists_for(DType::Fp16));
        assert!(!Kernel::Attention1D128.exists_for(DType::Fp32));
        assert!(Kernel::BiasActV.exists_for(DType::Fp32));
    }

    /// With `PTM_TEST_NVRTC=1` and libnvrtc on `LD_LIBRARY_PATH` (no GPU needed), `kernels.cu`
    /// compiles for every dtype on Hopper (the options `cuda.rs` uses) and every kernel that
    /// exists for the dtype is an entry of the PTX.
    #[cfg(feature = "cuda")]
    #[test]
    fn kernels_compile_with_nvrtc() {
        if std::env::var("PTM_TEST_NVRTC").as_deref() != Ok("1") {
            eprintln!("SKIPPED: set PTM_TEST_NVRTC=1 with libnvrtc on LD_LIBRARY_PATH");
            return;
        }
        for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
            let opts = cudarc::nvrtc::CompileOptions {
                options: vec!["--gpu-architecture=compute_90".into()],
                ..Default::default()
            };
            let ptx = cudarc::nvrtc::compile_ptx_with_opts(source(dtype), opts)
                .unwrap_or_else(|e| panic!("{dtype}: {e:?}"));
            let text = ptx.to_src();
            for (i, n) in NAMES.iter().enumerate() {
                let exists = i < FIRST_HALF_ONLY || dtype != DType::Fp32;
                let entry = format!(".entry {n}(");
                assert_eq!(text.contains(&entry), exists, "{dtype}: {n}");
            }
        }
    }

    #[test]
    fn single_pass_attention_needs_the_keys_to_fit_one_stage() {
        assert_eq!(
            Kernel::attention_single_pass(64, 128),
            Some(Kernel::Attention1D64)
        );
        assert_eq!(Kernel::attention_single_pass(64, 256), None);
        assert_eq!(Kernel::attention_single_pass(128, 128), None);
        assert_eq!(Kernel::attention(48), None);
    }
}
