//! The prototype LoRA kernels of `lora_proto.cu` (a register-tiled expand and a shrink that
//! dots a row against all of its A rows at once), for `lora_kernels` only: compiled with NVRTC
//! for the device's architecture after the runtime's own PET source
//! ([`ptm_runtime::gpu::pet::source`], exactly the text the runtime compiles), and launched
//! with the arguments of the runtime's `pet_lora_shrink_tiled` / `pet_lora_expand_tiled_t`.
//! The runtime itself is not changed (its build identity, which the shipped profile names,
//! stays the same).
//!
//! Grid: the blocks of 256 threads one multiprocessor holds at once (the driver's occupancy
//! for the kernel's registers: 2 for the shrink's 82 and the expand's 120 in fp16, 3 for the
//! bf16 shrink's 72; see `lora_proto.cu`) times the multiprocessors — one full wave of blocks
//! whose grid-stride loops share the items evenly. A fixed 4× would put two waves of blocks on
//! the machine (1⅓ for the bf16 shrink: its last third starting only as the first blocks
//! finish), each block paying its segment scan again, for no more warps at once.

pub mod check;

use cudarc::driver::{CudaFunction, CudaModule, CudaStream, LaunchConfig, PushKernelArg};
use ptm_runtime::gpu::pet::{DevMat, DevSegments, Sites};
use ptm_runtime::DType;
use std::sync::Arc;

/// The prototype kernels' source, appended after the runtime's PET source.
const PROTO_SOURCE: &str = include_str!("../lora_proto.cu");

/// Threads per block (the runtime's `THREADS`).
const THREADS: u32 = 256;

/// The two prototype kernels compiled for one dtype in one stream's context.
pub struct Proto {
    stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    shrink: CudaFunction,
    expand: CudaFunction,
    /// Blocks of a shrink launch.
    pub grid_shrink: u32,
    /// Blocks of an expand launch.
    pub grid_expand: u32,
    /// Registers per thread of the shrink and the expand (as loaded by the driver).
    pub regs: (i32, i32),
}

fn e<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err:?}")
}

impl Proto {
    /// Compiles the runtime's PET source for `dtype` with `lora_proto.cu` appended and loads
    /// the two kernels in `stream`'s context.
    pub fn new(stream: &Arc<CudaStream>, dtype: DType) -> Result<Self, String> {
        // SAFETY: only probes whether the library can be opened.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(
                "NVRTC (libnvrtc) was not found; add the CUDA lib64 folder to \
                        LD_LIBRARY_PATH"
                    .into(),
            );
        }
        let ctx = stream.context();
        let (major, minor) = ctx.compute_capability().map_err(e("compute capability"))?;
        let src = format!("{}\n{PROTO_SOURCE}", ptm_runtime::gpu::pet::source(dtype));
        let opts = cudarc::nvrtc::CompileOptions {
            options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts)
            .map_err(|err| format!("NVRTC compile of lora_proto.cu for {dtype}: {err:?}"))?;
        let module = ctx.load_module(ptx).map_err(e("cuModuleLoadData"))?;
        let shrink = module
            .load_function("pet_lora_shrink_proto")
            .map_err(e("pet_lora_shrink_proto"))?;
        let expand = module
            .load_function("pet_lora_expand_proto_t")
            .map_err(e("pet_lora_expand_proto_t"))?;
        let sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(e("multiprocessor count"))?
            .max(1) as u32;
        let wave = |f: &CudaFunction, name: &'static str| -> Result<u32, String> {
            let per_sm = f
                .occupancy_max_active_blocks_per_multiprocessor(THREADS, 0, None)
                .map_err(e(name))?;
            Ok(per_sm.max(1) * sms)
        };
        Ok(Proto {
            stream: stream.clone(),
            grid_shrink: wave(&shrink, "occupancy of pet_lora_shrink_proto")?,
            grid_expand: wave(&expand, "occupancy of pet_lora_expand_proto_t")?,
            regs: (
                shrink.num_regs().map_err(e("registers"))?,
                expand.num_regs().map_err(e("registers"))?,
            ),
            _module: module,
            shrink,
            expand,
        })
    }

    fn config(grid: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// `t_k = round(x·A_kᵀ)` per segment and site, as `PetKernels::lora_shrink`.
    ///
    /// # Safety
    /// As `PetKernels::lora_shrink`: every address live device memory of the sizes the tables
    /// and dimensions imply.
    pub unsafe fn shrink(
        &self,
        x: DevMat,
        seg: DevSegments,
        segs: u64,
        sites: Sites,
        t: DevMat,
        in_dim: i32,
    ) -> Result<(), String> {
        let mut b = self.stream.launch_builder(&self.shrink);
        b.arg(&x.ptr)
            .arg(&x.ld)
            .arg(&seg.seg_start)
            .arg(&segs)
            .arg(&seg.nseg)
            .arg(&sites.count)
            .arg(&t.ptr)
            .arg(&t.ld)
            .arg(&sites.t_cols)
            .arg(&in_dim);
        // SAFETY: the caller's guarantee; the list matches `pet_lora_shrink_proto`.
        unsafe { b.launch(Self::config(self.grid_shrink)) }
            .map(|_| ())
            .map_err(e("pet_lora_shrink_proto"))
    }

    /// `y_k = round(y_k + scale · t_k·B_kᵀ)` per segment and site, as
    /// `PetKernels::lora_expand(Output::Model, …)`.
    ///
    /// # Safety
    /// As [`Proto::shrink`]; each `y_k` covers the rows with `out_dim` columns.
    pub unsafe fn expand(
        &self,
        t: DevMat,
        seg: DevSegments,
        segs: u64,
        sites: Sites,
        y: DevMat,
        out_dim: i32,
    ) -> Result<(), String> {
        let mut b = self.stream.launch_builder(&self.expand);
        b.arg(&t.ptr)
            .arg(&t.ld)
            .arg(&sites.t_cols)
            .arg(&seg.seg_start)
            .arg(&segs)
            .arg(&seg.nseg)
            .arg(&sites.count)
            .arg(&y.ptr)
            .arg(&y.ld)
            .arg(&sites.y_stride)
            .arg(&out_dim);
        // SAFETY: the caller's guarantee; the list matches `pet_lora_expand_proto_t`.
        unsafe { b.launch(Self::config(self.grid_expand)) }
            .map(|_| ())
            .map_err(e("pet_lora_expand_proto_t"))
    }
}
