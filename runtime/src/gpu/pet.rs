//! The segmented kernels of parameter-efficient tenants on the GPU (`pet_kernels.cu`): LoRA
//! shrink and expand, per-segment biases (BitFit), the bottleneck adapter and the heads' dense
//! layers, compiled by NVRTC for one dtype and launched on a caller's stream with device
//! pointers. LoRA runs either the warp kernels of `pet_kernels.cu` (a warp per row and rank
//! entry, or per row and site) or the row-tiled ones of `pet_tiled_kernels.cu` (the tenant's A
//! or the tile's shrink output staged in shared memory once per tile of rows, a block-scan
//! segment prefix), or the fused ones of `pet_fused_kernels.cu` (shrink and expand in one
//! launch, `t` kept in shared memory), or the tensor-core ones of `pet_mma_kernels.cu` (16-row
//! tiles through `mma.sync`, fp16 and bf16) — [`LoraKernels`], chosen by
//! [`super::KernelOptions::pet_mma`], [`super::KernelOptions::pet_fused`] and
//! [`super::KernelOptions::pet_tiled`]; the tiled and fused ones are written to compute the same
//! bits as the warp kernels, the tensor-core ones the same products summed in the tensor cores'
//! order (`tests/pet_tiled_gpu.rs` checks both on a GPU).
//!
//! The tables the kernels read are device data laid out by this module: `seg_start`
//! (`nseg + 1` `i32` row offsets, [`crate::pet::twin::Segments::to_bytes`]), per site an array
//! of [`LoraSegDev`], [`AdapterSegDev`] or [`LinearSegDev`] (their `to_bytes`), or of bias
//! pointers (`u64`, 0 for none). A launch may cover `nsite` sites sharing one input (Q, K and V):
//! its tables are `[nseg][nsite]`. The caller owns these buffers at fixed addresses and
//! rewrites their contents before each pass, so a captured CUDA graph stays valid whatever
//! tenants a batch mixes.
//!
//! The forward pass calls these through `gpu/pet_steps.rs` (where each kernel goes, and why);
//! the tables of a pass are laid out by `gpu/pet_plan.rs`. The arithmetic of every kernel is
//! [`crate::pet::twin`]'s, which CI tests against the CPU reference; `PTM_TEST_NVRTC=1`
//! compiles the kernels for every dtype with NVRTC (no GPU needed); `tests/pet_gpu.rs` runs
//! them against the twins on a GPU.
// Raw device pointers and kernel launches are FFI: unsafe is needed here only.
#![allow(unsafe_code)]

use super::cuda::{cu, params, Arg};
pub use super::pet_sites::{AdapterSegDev, LinearSegDev, LoraSegDev};
use crate::dtype::DType;
use crate::error::{Error, Result};
use cudarc::driver::{result as drv, sys as drv_sys, CudaModule, CudaStream};
use std::sync::Arc;

/// The kernel source.
const SOURCE: &str = include_str!("pet_kernels.cu");

/// The row-tiled LoRA kernels, appended to [`SOURCE`] (they use its types and helpers).
const TILED_SOURCE: &str = include_str!("pet_tiled_kernels.cu");

/// The fused LoRA kernels, appended after [`TILED_SOURCE`] (they use its block scan).
const FUSED_SOURCE: &str = include_str!("pet_fused_kernels.cu");

/// The tensor-core LoRA kernels, appended after [`FUSED_SOURCE`] (they use the block scan too).
const MMA_SOURCE: &str = include_str!("pet_mma_kernels.cu");

/// The most `t` columns a fused LoRA item stages per row (`PET_FT_RMAX`): every site's rank
/// padded to 4, over the launch's sites.
pub const FUSED_RANK_COLS: usize = 96;

/// The most segments one launch may describe (`PET_MAX_SEG`).
pub const MAX_SEGMENTS: usize = crate::pet::twin::MAX_SEGMENTS;

/// Threads per block of every launch (a multiple of 32).
pub const THREADS: u32 = 256;

/// Kernels of the module, in [`NAMES`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PetKernel {
    /// `pet_lora_shrink`.
    LoraShrink = 0,
    /// `pet_lora_expand_f32`.
    LoraExpandF32 = 1,
    /// `pet_lora_expand_t`.
    LoraExpandT = 2,
    /// `pet_bias_seg_t`.
    BiasSegT = 3,
    /// `pet_bias_seg_f32`.
    BiasSegF32 = 4,
    /// `pet_bias_seg_dual`.
    BiasSegDual = 5,
    /// `pet_adapter_down`.
    AdapterDown = 6,
    /// `pet_adapter_up`.
    AdapterUp = 7,
    /// `pet_adapter_down_f32`.
    AdapterDownF32 = 8,
    /// `pet_linear_f32`.
    LinearF32 = 9,
    /// `pet_linear_t`.
    LinearT = 10,
    /// `pet_lora_shrink_tiled`.
    LoraShrinkTiled = 11,
    /// `pet_lora_expand_tiled_f32`.
    LoraExpandTiledF32 = 12,
    /// `pet_lora_expand_tiled_t`.
    LoraExpandTiledT = 13,
    /// `pet_lora_fused_f32`.
    LoraFusedF32 = 14,
    /// `pet_lora_fused_t`.
    LoraFusedT = 15,
    /// `pet_lora_shrink_mma`.
    LoraShrinkMma = 16,
    /// `pet_lora_expand_mma_f32`.
    LoraExpandMmaF32 = 17,
    /// `pet_lora_expand_mma_t`.
    LoraExpandMmaT = 18,
}

/// Kernel names in `pet_kernels.cu`, `pet_tiled_kernels.cu`, `pet_fused_kernels.cu` and
/// `pet_mma_kernels.cu`.
pub const NAMES: [&str; 19] = [
    "pet_lora_shrink",
    "pet_lora_expand_f32",
    "pet_lora_expand_t",
    "pet_bias_seg_t",
    "pet_bias_seg_f32",
    "pet_bias_seg_dual",
    "pet_adapter_down",
    "pet_adapter_up",
    "pet_adapter_down_f32",
    "pet_linear_f32",
    "pet_linear_t",
    "pet_lora_shrink_tiled",
    "pet_lora_expand_tiled_f32",
    "pet_lora_expand_tiled_t",
    "pet_lora_fused_f32",
    "pet_lora_fused_t",
    "pet_lora_shrink_mma",
    "pet_lora_expand_mma_f32",
    "pet_lora_expand_mma_t",
];

/// Which LoRA kernels a [`PetKernels`] launches (the same arguments; the tiled kernels sum the
/// same products in the same order, see `pet_tiled_kernels.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraKernels {
    /// One warp per (row, site, rank entry) for the shrink and per (row, site) for the expand,
    /// each re-reading the tenant's matrices; thread 0 of each block walks the segments.
    Warp,
    /// Items of up to 16 rows of one segment: the tenant's A (shrink) or the tile's t (expand)
    /// staged in shared memory once per item; a block-wide scan of the segments.
    Tiled,
    /// One launch per shrink-and-expand: items of up to 8 rows of one segment compute their
    /// `t` in shared memory and add the expand at once (`pet_fused_kernels.cu`), where the
    /// ranks fit ([`PetKernels::fits_fused`]); the tiled kernels elsewhere.
    Fused,
    /// Shrink and expand on the tensor cores (`pet_mma_kernels.cu`: 16-row tiles of one
    /// segment, `mma.sync` with f32 accumulation) where the dtype and shapes allow it
    /// ([`PetKernels::fits_mma`]); the fused kernels (or the tiled ones) elsewhere.
    Mma,
}

impl LoraKernels {
    /// The kernels `options` select (`pet_mma` before `pet_fused` before `pet_tiled`).
    pub fn from_options(options: super::KernelOptions) -> Self {
        if options.pet_mma {
            LoraKernels::Mma
        } else if options.pet_fused {
            LoraKernels::Fused
        } else if options.pet_tiled {
            LoraKernels::Tiled
        } else {
            LoraKernels::Warp
        }
    }
}

/// A device matrix: its address and leading dimension (elements between rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevMat {
    /// Device address of row 0.
    pub ptr: u64,
    /// Elements between consecutive rows.
    pub ld: i64,
}

/// The device segment table of a launch: `seg_start` (`nseg + 1` `i32`) and `nseg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevSegments {
    /// Device address of `seg_start`.
    pub seg_start: u64,
    /// Segments described (at most [`MAX_SEGMENTS`]).
    pub nseg: i32,
}

/// Where an expand or bias kernel writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// An f32 buffer: `y += v`.
    F32,
    /// A model-dtype buffer: `y = round(y + v)`.
    Model,
}

/// What an adapter's down projection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A model-dtype buffer.
    Model,
    /// An f32 buffer, each value rounded to the model dtype as it is read.
    F32,
}

/// The most sites one launch may cover (Q, K and V).
pub const MAX_SITES: usize = 3;

/// The sites a LoRA or bias launch covers: `count` tables per segment, site k's shrink output
/// at column `k × t_cols` of `t`, its output `k × y_stride` elements after site 0's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sites {
    /// Sites (1 to [`MAX_SITES`]).
    pub count: i32,
    /// Columns of `t` per site (LoRA).
    pub t_cols: i32,
    /// Elements between the sites' outputs.
    pub y_stride: i64,
}

impl Sites {
    /// One site whose shrink output takes `t_cols` columns.
    pub fn one(t_cols: i32) -> Self {
        Sites {
            count: 1,
            t_cols,
            y_stride: 0,
        }
    }
}

/// The source for `dtype` (the dtype's `#define` and storage types prepended).
pub fn source(dtype: DType) -> String {
    format!(
        "{}{}{SOURCE}\n{TILED_SOURCE}\n{FUSED_SOURCE}\n{MMA_SOURCE}",
        super::kernels::dtype_define(dtype),
        super::kernels::DTYPE_CUH
    )
}

/// Compiles the kernels for `dtype` and compute capability `arch` (major, minor) with NVRTC.
/// Needs libnvrtc only, no GPU.
pub fn compile_ptx(dtype: DType, arch: (i32, i32)) -> Result<cudarc::nvrtc::Ptx> {
    // SAFETY: only probes whether the library can be opened.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::Cuda(
            "NVRTC (libnvrtc) was not found; add the CUDA lib64 folder to LD_LIBRARY_PATH".into(),
        ));
    }
    let opts = cudarc::nvrtc::CompileOptions {
        options: vec![format!("--gpu-architecture=compute_{}{}", arch.0, arch.1)],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source(dtype), opts).map_err(|e| {
        Error::Cuda(format!(
            "NVRTC compile of pet_kernels.cu for {dtype}: {e:?}"
        ))
    })
}

/// The PET kernels compiled for one dtype in one stream's context.
pub struct PetKernels {
    stream: Arc<CudaStream>,
    functions: Vec<drv_sys::CUfunction>,
    _module: Arc<CudaModule>,
    /// The dtype the kernels are built for.
    pub dtype: DType,
    /// The LoRA kernels launched.
    pub lora: LoraKernels,
    /// Blocks per launch (grid-stride loops cover any amount of work): twice the device's
    /// multiprocessors.
    pub grid: u32,
    /// Whether the device has the `mma.sync` shapes the tensor-core kernels use (compute
    /// capability 8.0 or newer).
    pub tensor_cores: bool,
}

// SAFETY: the function handles belong to the module this value keeps alive and to its
// context; launches bind that context first, and `&self` launches only enqueue on the stream.
unsafe impl Send for PetKernels {}

impl PetKernels {
    /// Compiles the kernels for `dtype` in `stream`'s context; launches go on `stream`, LoRA
    /// through `lora`'s kernels.
    pub fn new(stream: &Arc<CudaStream>, dtype: DType, lora: LoraKernels) -> Result<Self> {
        let ctx = stream.context();
        let arch = cu(ctx.compute_capability(), "compute capability")?;
        let sms = cu(
            ctx.attribute(drv_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            "multiprocessor count",
        )?;
        let module = cu(
            ctx.load_module(compile_ptx(dtype, arch)?),
            "cuModuleLoadData",
        )?;
        let functions = NAMES
            .iter()
            .map(|n| Ok(cu(module.load_function(n), n)?.cu_function()))
            .collect::<Result<Vec<_>>>()?;
        Ok(PetKernels {
            stream: stream.clone(),
            functions,
            _module: module,
            dtype,
            lora,
            grid: (2 * sms.max(1)) as u32,
            tensor_cores: arch.0 >= 8,
        })
    }

    /// Enqueues kernel `k` with a 1-D grid of [`PetKernels::grid`] blocks (four times that for
    /// the tensor-core expand).
    ///
    /// # Safety
    /// `args` must match the kernel's parameters and point to live device memory of the sizes
    /// its tables and dimensions imply.
    unsafe fn launch(&self, k: PetKernel, args: &[Arg]) -> Result<()> {
        let mut vals: Vec<Arg> = args.to_vec();
        let mut params = params(&mut vals);
        self.stream
            .context()
            .bind_to_thread()
            .map_err(|e| Error::Cuda(format!("bind context: {e:?}")))?;
        // The tensor-core expand's items are one warp each and wait on memory: four times the
        // blocks (about 4 resident a multiprocessor at its 64–80 registers) keep more loads in
        // flight.
        let grid = match k {
            PetKernel::LoraExpandMmaF32 | PetKernel::LoraExpandMmaT => 4 * self.grid,
            _ => self.grid,
        };
        // SAFETY: the caller guarantees the arguments (see above).
        unsafe {
            drv::launch_kernel(
                self.functions[k as usize],
                (grid, 1, 1),
                (THREADS, 1, 1),
                0,
                self.stream.cu_stream(),
                &mut params,
            )
        }
        .map_err(|e| Error::Cuda(format!("{}: {e:?}", NAMES[k as usize])))
    }

    fn check(seg: DevSegments, nsite: i32) -> Result<()> {
        if seg.nseg < 1 || seg.nseg as usize > MAX_SEGMENTS {
            return Err(Error::Input(format!(
                "{} segments: a launch takes 1 to {MAX_SEGMENTS}",
                seg.nseg
            )));
        }
        if !(1..=MAX_SITES as i32).contains(&nsite) {
            return Err(Error::Input(format!(
                "{nsite} sites: a launch takes 1 to {MAX_SITES}"
            )));
        }
        Ok(())
    }

    /// `t_k = round(x·A_kᵀ)` per segment and site (`segs`: `nseg × sites.count`
    /// [`LoraSegDev`]); site k's columns of `t` start at `k × sites.t_cols`.
    ///
    /// # Safety
    /// Every address must be live device memory: `x` and `t` cover the segments' rows (`t` at
    /// least `count × t_cols` wide, `t_cols` at least the largest rank), the table's matrices
    /// their shapes.
    pub unsafe fn lora_shrink(
        &self,
        x: DevMat,
        seg: DevSegments,
        segs: u64,
        sites: Sites,
        t: DevMat,
        in_dim: i32,
    ) -> Result<()> {
        Self::check(seg, sites.count)?;
        let k = match self.lora {
            LoraKernels::Warp => PetKernel::LoraShrink,
            LoraKernels::Mma if self.fits_mma(in_dim) => PetKernel::LoraShrinkMma,
            LoraKernels::Tiled | LoraKernels::Fused | LoraKernels::Mma => {
                PetKernel::LoraShrinkTiled
            }
        };
        let args = [
            Arg::P(x.ptr),
            Arg::L(x.ld),
            Arg::P(seg.seg_start),
            Arg::P(segs),
            Arg::I(seg.nseg),
            Arg::I(sites.count),
            Arg::P(t.ptr),
            Arg::L(t.ld),
            Arg::I(sites.t_cols),
            Arg::I(in_dim),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_lora_shrink*`.
        unsafe { self.launch(k, &args) }
    }

    /// `y_k += scale · t_k·B_kᵀ` per segment and site, onto an f32 or model-dtype `y` (site k's
    /// output at `y + k × sites.y_stride` elements).
    ///
    /// # Safety
    /// As [`PetKernels::lora_shrink`]; each `y_k` covers the rows with `out_dim` columns.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn lora_expand(
        &self,
        out: Output,
        t: DevMat,
        seg: DevSegments,
        segs: u64,
        sites: Sites,
        y: DevMat,
        out_dim: i32,
    ) -> Result<()> {
        Self::check(seg, sites.count)?;
        // The tensor-core expand has no shape condition of its own (`fits_mma(16)`).
        let mma = self.lora == LoraKernels::Mma && self.fits_mma(16);
        let k = match (self.lora, out) {
            (LoraKernels::Warp, Output::F32) => PetKernel::LoraExpandF32,
            (LoraKernels::Warp, Output::Model) => PetKernel::LoraExpandT,
            (_, Output::F32) if mma => PetKernel::LoraExpandMmaF32,
            (_, Output::Model) if mma => PetKernel::LoraExpandMmaT,
            (_, Output::F32) => PetKernel::LoraExpandTiledF32,
            (_, Output::Model) => PetKernel::LoraExpandTiledT,
        };
        let args = [
            Arg::P(t.ptr),
            Arg::L(t.ld),
            Arg::I(sites.t_cols),
            Arg::P(seg.seg_start),
            Arg::P(segs),
            Arg::I(seg.nseg),
            Arg::I(sites.count),
            Arg::P(y.ptr),
            Arg::L(y.ld),
            Arg::L(sites.y_stride),
            Arg::I(out_dim),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_lora_expand_*` (warp or tiled).
        unsafe { self.launch(k, &args) }
    }

    /// Whether a fused launch covers `sites`: each site's rank (at most `t_cols`) padded to 4,
    /// over the sites, fits the `t` a fused item stages ([`FUSED_RANK_COLS`]).
    pub fn fits_fused(sites: Sites) -> bool {
        let padded = (i64::from(sites.t_cols.max(0)) + 3) / 4 * 4;
        i64::from(sites.count) * padded <= FUSED_RANK_COLS as i64
    }

    /// Whether the tensor-core kernels run a shrink of `in_dim` inputs here: fp16 or bf16, a
    /// device with [`PetKernels::tensor_cores`], `in_dim` a positive multiple of 16 (the
    /// kernels check each pair load's alignment themselves).
    pub fn fits_mma(&self, in_dim: i32) -> bool {
        self.dtype != DType::Fp32 && self.tensor_cores && in_dim > 0 && in_dim % 16 == 0
    }

    /// `y_k += scale · round(x·A_kᵀ)·B_kᵀ` per segment and site: with [`LoraKernels::Mma`]
    /// where [`PetKernels::fits_mma`], the tensor-core shrink and expand; one fused launch where
    /// [`LoraKernels::Fused`] (or `Mma` outside its shapes) is chosen and
    /// [`PetKernels::fits_fused`]; else the shrink into `t` and the expand (the same bits as
    /// the fused launch; `t` is left as it was by a fused launch).
    ///
    /// # Safety
    /// As [`PetKernels::lora_shrink`] and [`PetKernels::lora_expand`] together.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn lora(
        &self,
        out: Output,
        x: DevMat,
        in_dim: i32,
        seg: DevSegments,
        segs: u64,
        sites: Sites,
        t: DevMat,
        y: DevMat,
        out_dim: i32,
    ) -> Result<()> {
        let fused = match self.lora {
            LoraKernels::Fused => true,
            LoraKernels::Mma => !self.fits_mma(in_dim),
            LoraKernels::Warp | LoraKernels::Tiled => false,
        };
        if !fused || !Self::fits_fused(sites) {
            // SAFETY: the caller's guarantee.
            unsafe {
                self.lora_shrink(x, seg, segs, sites, t, in_dim)?;
                return self.lora_expand(out, t, seg, segs, sites, y, out_dim);
            }
        }
        Self::check(seg, sites.count)?;
        let k = match out {
            Output::F32 => PetKernel::LoraFusedF32,
            Output::Model => PetKernel::LoraFusedT,
        };
        let args = [
            Arg::P(x.ptr),
            Arg::L(x.ld),
            Arg::P(seg.seg_start),
            Arg::P(segs),
            Arg::I(seg.nseg),
            Arg::I(sites.count),
            Arg::I(in_dim),
            Arg::P(y.ptr),
            Arg::L(y.ld),
            Arg::L(sites.y_stride),
            Arg::I(out_dim),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_lora_fused_*`.
        unsafe { self.launch(k, &args) }
    }

    /// `y_k += bias_{s,k} − base_k` per segment and site (`bias`: `nseg × sites.count` device
    /// addresses of model-dtype vectors of `n`, 0 for none; `base`: the backbone's bias already
    /// in `y`, site k's at `base.ptr + k × base.ld` elements, 0 for none).
    ///
    /// # Safety
    /// Each `y_k` covers the rows with `n` columns; every non-zero bias address holds `n`
    /// values, and so does each `base_k`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn bias_seg(
        &self,
        out: Output,
        y: DevMat,
        seg: DevSegments,
        bias: u64,
        sites: Sites,
        base: DevMat,
        n: i32,
    ) -> Result<()> {
        Self::check(seg, sites.count)?;
        let k = match out {
            Output::F32 => PetKernel::BiasSegF32,
            Output::Model => PetKernel::BiasSegT,
        };
        let args = [
            Arg::P(y.ptr),
            Arg::L(y.ld),
            Arg::L(sites.y_stride),
            Arg::P(seg.seg_start),
            Arg::P(bias),
            Arg::P(base.ptr),
            Arg::L(base.ld),
            Arg::I(seg.nseg),
            Arg::I(sites.count),
            Arg::I(n),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_bias_seg_*`.
        unsafe { self.launch(k, &args) }
    }

    /// `y32 += bias_s − base`, `yt = round(y32)` per segment (a layer norm's two outputs, same
    /// `ld`; `base` 0 for none).
    ///
    /// # Safety
    /// As [`PetKernels::bias_seg`] for both buffers.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn bias_seg_dual(
        &self,
        y32: u64,
        yt: u64,
        ld: i64,
        seg: DevSegments,
        bias: u64,
        base: u64,
        n: i32,
    ) -> Result<()> {
        Self::check(seg, 1)?;
        let args = [
            Arg::P(y32),
            Arg::P(yt),
            Arg::L(ld),
            Arg::P(seg.seg_start),
            Arg::P(bias),
            Arg::P(base),
            Arg::I(seg.nseg),
            Arg::I(n),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_bias_seg_dual`.
        unsafe { self.launch(PetKernel::BiasSegDual, &args) }
    }

    /// `d = round(act(round(x·Wdᵀ + bd)))` per segment (`segs`: `nseg` [`AdapterSegDev`]); `x`
    /// in the model dtype ([`Input::Model`]) or f32 rounded as it is read ([`Input::F32`]).
    ///
    /// # Safety
    /// `x` covers the rows with `h` columns, `d` at least the widest bottleneck; the table's
    /// matrices their shapes.
    pub unsafe fn adapter_down(
        &self,
        input: Input,
        x: DevMat,
        seg: DevSegments,
        segs: u64,
        d: DevMat,
        h: i32,
    ) -> Result<()> {
        Self::check(seg, 1)?;
        let k = match input {
            Input::Model => PetKernel::AdapterDown,
            Input::F32 => PetKernel::AdapterDownF32,
        };
        let args = [
            Arg::P(x.ptr),
            Arg::L(x.ld),
            Arg::P(seg.seg_start),
            Arg::P(segs),
            Arg::I(seg.nseg),
            Arg::P(d.ptr),
            Arg::L(d.ld),
            Arg::I(h),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_adapter_down*`.
        unsafe { self.launch(k, &args) }
    }

    /// `out = (skip + res) + (d·Wuᵀ + bu)·scaling` per segment, f32 (`res` 0: none; `out` may
    /// be `skip`: in place).
    ///
    /// # Safety
    /// As [`PetKernels::adapter_down`]; `skip`, `res` and `out` cover the rows with `h`
    /// columns at leading dimension `ld_h`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn adapter_up(
        &self,
        d: DevMat,
        seg: DevSegments,
        segs: u64,
        skip: u64,
        res: u64,
        out: u64,
        ld_h: i64,
        h: i32,
    ) -> Result<()> {
        Self::check(seg, 1)?;
        let args = [
            Arg::P(d.ptr),
            Arg::L(d.ld),
            Arg::P(seg.seg_start),
            Arg::P(segs),
            Arg::I(seg.nseg),
            Arg::P(skip),
            Arg::P(res),
            Arg::P(out),
            Arg::L(ld_h),
            Arg::I(h),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_adapter_up`.
        unsafe { self.launch(PetKernel::AdapterUp, &args) }
    }

    /// `y = x·Wᵀ + b` per segment (`segs`: `nseg` [`LinearSegDev`], each its own output
    /// width), f32 or rounded to the model dtype.
    ///
    /// # Safety
    /// `x` covers the rows with `in_dim` columns, `y` with the widest segment's `out`; the
    /// table's matrices their shapes.
    pub unsafe fn linear(
        &self,
        out: Output,
        x: DevMat,
        seg: DevSegments,
        segs: u64,
        y: DevMat,
        in_dim: i32,
    ) -> Result<()> {
        Self::check(seg, 1)?;
        let k = match out {
            Output::F32 => PetKernel::LinearF32,
            Output::Model => PetKernel::LinearT,
        };
        let args = [
            Arg::P(x.ptr),
            Arg::L(x.ld),
            Arg::P(seg.seg_start),
            Arg::P(segs),
            Arg::I(seg.nseg),
            Arg::P(y.ptr),
            Arg::L(y.ld),
            Arg::I(in_dim),
        ];
        // SAFETY: the caller's guarantee; the list matches `pet_linear_*`.
        unsafe { self.launch(k, &args) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_in_the_source() {
        let src = source(DType::Bf16);
        assert!(src.starts_with("#define DTYPE BF16\n"));
        for n in NAMES {
            assert!(src.contains(&format!("void {n}(")), "{n}");
        }
        assert!(src.contains(&format!("#define PET_MAX_SEG {MAX_SEGMENTS}")));
        assert!(src.contains(&format!("#define PET_FT_RMAX {FUSED_RANK_COLS}")));
        assert!(src.contains(&format!("#define PET_FSITES {MAX_SITES}")));
        assert!(src.contains(&format!("__launch_bounds__({THREADS}, 2)")));
    }

    /// With `PTM_TEST_NVRTC=1` and libnvrtc on `LD_LIBRARY_PATH` (no GPU needed), the kernels
    /// (warp, row-tiled and fused) compile for every dtype on Hopper and every kernel is an entry of
    /// the PTX.
    #[test]
    fn kernels_compile_with_nvrtc() {
        if std::env::var("PTM_TEST_NVRTC").as_deref() != Ok("1") {
            eprintln!("SKIPPED: set PTM_TEST_NVRTC=1 with libnvrtc on LD_LIBRARY_PATH");
            return;
        }
        for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
            let ptx = compile_ptx(dtype, (9, 0)).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            for n in NAMES {
                let entry = format!(".entry {n}(");
                assert!(text.contains(&entry), "{dtype}: {n} missing from the PTX");
            }
        }
    }
}
