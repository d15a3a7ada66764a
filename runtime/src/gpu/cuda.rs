//! Thin checked wrappers over the CUDA driver, cuBLAS and NVRTC (all loaded at run time by
//! cudarc): device buffers, the kernel module, launches and GEMMs on one stream.

use crate::dtype::DType;
use crate::error::{Error, Result};
use cudarc::cublas::result as blas;
use cudarc::cublas::sys as blas_sys;
use cudarc::cublaslt::sys as lt;
use cudarc::driver::{result as drv, sys as drv_sys, CudaContext, CudaStream};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

/// The kernel source (see `kernels.cu`).
const KERNELS: &str = include_str!("kernels.cu");

/// Kernel names in `kernels.cu`, in [`Kernel`] order.
const NAMES: [&str; 18] = [
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
const FIRST_HALF_ONLY: usize = 12;

/// Kernels of the module.
#[derive(Debug, Clone, Copy)]
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
    /// The fused attention kernel for head dimension `dh`, if there is one.
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

/// A kernel argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg {
    /// A device pointer.
    P(u64),
    /// An `int`.
    I(i32),
    /// A `long`.
    L(i64),
    /// A `float`.
    F(f32),
}

/// Maps a driver error, naming the operation.
pub fn cu<T>(r: std::result::Result<T, drv::DriverError>, what: &str) -> Result<T> {
    r.map_err(|e| Error::Cuda(format!("{what}: {e:?}")))
}

fn cb(r: std::result::Result<(), blas::CublasError>, what: &str) -> Result<()> {
    r.map_err(|e| Error::Cuda(format!("cuBLAS {what}: {:?}", e.0)))
}

/// A raw device allocation, freed on drop.
pub struct DevBuf {
    /// Device address.
    pub ptr: u64,
    /// Size in bytes.
    pub bytes: usize,
    ctx: Arc<CudaContext>,
}

impl DevBuf {
    /// Allocates `bytes` (at least 1) of device memory, zeroed.
    pub fn new(ctx: &Arc<CudaContext>, bytes: usize) -> Result<Self> {
        cu(ctx.bind_to_thread(), "bind context")?;
        let bytes = bytes.max(256);
        // SAFETY: plain device allocation; freed exactly once in Drop.
        let ptr = cu(unsafe { drv::malloc_sync(bytes) }, "cuMemAlloc")
            .map_err(|e| Error::Cuda(format!("{e} ({bytes} bytes)")))?;
        // SAFETY: ptr points to `bytes` bytes just allocated.
        cu(unsafe { drv::memset_d8_sync(ptr, 0, bytes) }, "cuMemsetD8")?;
        Ok(DevBuf {
            ptr,
            bytes,
            ctx: ctx.clone(),
        })
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: allocated by malloc_sync in `new`, not freed elsewhere.
        let _ = unsafe { drv::free_sync(self.ptr) };
    }
}

/// Page-locked host memory of one context, allocated once (`cuMemHostAlloc`), freed on drop;
/// `fence` is the event of the last asynchronous copy that reads it.
pub struct PinnedBuf {
    ptr: *mut u8,
    bytes: usize,
    ctx: Arc<CudaContext>,
    fence: Option<Arc<cudarc::driver::CudaEvent>>,
}

// SAFETY: the allocation is owned by this value alone (no aliasing handles are given out
// except borrows tied to `&self`/`&mut self`), and pinned memory may be used from any thread.
unsafe impl Send for PinnedBuf {}
// SAFETY: shared access only reads the bytes.
unsafe impl Sync for PinnedBuf {}

/// GPU `ordinal`'s primary context, with a clear error where the driver or the device is
/// missing.
pub fn open_context(ordinal: usize) -> Result<Arc<CudaContext>> {
    // SAFETY: only probes whether the library can be opened.
    if !unsafe { drv_sys::is_culib_present() } {
        return Err(no_gpu(
            ordinal,
            "the NVIDIA driver library (libcuda) was not found",
        ));
    }
    let count = CudaContext::device_count()
        .map_err(|e| no_gpu(ordinal, format!("the CUDA driver failed to start: {e:?}")))?;
    if ordinal >= count.max(0) as usize {
        return Err(no_gpu(
            ordinal,
            format!("this machine has {count} CUDA device(s)"),
        ));
    }
    CudaContext::new(ordinal).map_err(|e| no_gpu(ordinal, format!("{e:?}")))
}

impl PinnedBuf {
    /// Allocates `bytes` of pinned memory in GPU `ordinal`'s primary context, zeroed.
    pub fn new(ordinal: usize, bytes: usize) -> Result<Self> {
        let ctx = open_context(ordinal)?;
        cu(ctx.bind_to_thread(), "bind context")?;
        let bytes = bytes.max(1);
        // SAFETY: plain page-locked allocation, freed once in Drop.
        let ptr = cu(unsafe { drv::malloc_host(bytes, 0) }, "cuMemHostAlloc")
            .map_err(|e| Error::Cuda(format!("{e} ({bytes} bytes of pinned host memory)")))?
            as *mut u8;
        let mut b = PinnedBuf {
            ptr,
            bytes,
            ctx,
            fence: None,
        };
        b.writable()?.fill(0);
        Ok(b)
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to `bytes` bytes owned by self, initialised in `new`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    /// The bytes for writing, once the last copy reading them has finished.
    pub fn writable(&mut self) -> Result<&mut [u8]> {
        if let Some(f) = self.fence.take() {
            cu(f.synchronize(), "cuEventSynchronize")?;
        }
        // SAFETY: as in `as_slice`; `&mut self` makes the borrow unique and no copy reads it.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) })
    }

    /// Records that an asynchronous copy reading this memory completes with `event`.
    pub fn set_fence(&mut self, event: Arc<cudarc::driver::CudaEvent>) {
        self.fence = Some(event);
    }
}

impl Drop for PinnedBuf {
    fn drop(&mut self) {
        if let Some(f) = self.fence.take() {
            let _ = f.synchronize();
        }
        let _ = self.ctx.bind_to_thread();
        // SAFETY: allocated by malloc_host in `new`, freed once, no copy reads it any more.
        let _ = unsafe { drv::free_host(self.ptr as *mut c_void) };
    }
}

/// One GPU: context, stream, cuBLAS handle with a fixed workspace, and the compiled kernels.
pub struct Gpu {
    /// The context.
    pub ctx: Arc<CudaContext>,
    /// The stream everything runs on (and graphs are captured on).
    pub stream: Arc<CudaStream>,
    blas: blas_sys::cublasHandle_t,
    /// cuBLASLt, where the library loads (dense GEMMs with a bias epilogue).
    lt: Option<lt::cublasLtHandle_t>,
    /// cuBLASLt plans (descriptors and the heuristic's algorithm) per GEMM shape; `None` where
    /// cuBLASLt has no algorithm for it.
    plans: RefCell<HashMap<LtKey, Option<LtPlan>>>,
    blas_ws: DevBuf,
    kernels: Vec<Option<drv_sys::CUfunction>>,
    _module: Arc<cudarc::driver::CudaModule>,
    /// Element dtype of the kernels and GEMM inputs.
    pub dtype: DType,
}

// SAFETY: the raw handles (cuBLAS handle, kernel functions) belong to the process-wide primary
// context; this module is private to the GPU backend, every public method of `GpuModel` binds
// that context to the calling thread before using them, and `&mut` access keeps one thread at a
// time on a model, so moving a `Gpu` to another thread is sound (cuBLAS handles may be used from
// any thread, just not concurrently).
unsafe impl Send for Gpu {}

fn no_gpu(ordinal: usize, reason: impl Into<String>) -> Error {
    Error::NoGpu {
        requested: format!("cuda:{ordinal}"),
        reason: reason.into(),
    }
}

impl Gpu {
    /// Opens GPU `ordinal`, creates the stream and cuBLAS handle, compiles the kernels for
    /// `dtype` with NVRTC (once).
    pub fn new(ordinal: usize, dtype: DType) -> Result<Self> {
        let ctx = open_context(ordinal)?;
        // SAFETY: probes only.
        if !unsafe { blas_sys::is_culib_present() } {
            return Err(no_gpu(
                ordinal,
                "cuBLAS (libcublas) was not found; add the CUDA lib64 folder to LD_LIBRARY_PATH",
            ));
        }
        // SAFETY: probes only.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(no_gpu(
                ordinal,
                "NVRTC (libnvrtc) was not found; add the CUDA lib64 folder to LD_LIBRARY_PATH",
            ));
        }
        let stream = cu(ctx.new_stream(), "cuStreamCreate")?;
        let (major, minor) = cu(ctx.compute_capability(), "compute capability")?;
        let d = match dtype {
            DType::Fp32 => "F32",
            DType::Fp16 => "F16",
            DType::Bf16 => "BF16",
        };
        let scores_in_t = i32::from(dtype == DType::Fp16);
        let half = i32::from(dtype != DType::Fp32);
        let bf16 = i32::from(dtype == DType::Bf16);
        let src = format!(
            "#define DTYPE {d}\n#define SCORES_IN_T {scores_in_t}\n#define HALF_MMA {half}\n\
             #define IS_BF16 {bf16}\n{KERNELS}"
        );
        let opts = cudarc::nvrtc::CompileOptions {
            options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts)
            .map_err(|e| Error::Cuda(format!("NVRTC compile of kernels.cu: {e:?}")))?;
        let module = cu(ctx.load_module(ptx), "cuModuleLoadData")?;
        let kernels = NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i >= FIRST_HALF_ONLY && dtype == DType::Fp32 {
                    return Ok(None);
                }
                Ok(Some(cu(module.load_function(n), n)?.cu_function()))
            })
            .collect::<Result<Vec<_>>>()?;
        let blas =
            blas::create_handle().map_err(|e| Error::Cuda(format!("cuBLAS create: {:?}", e.0)))?;
        let ws = DevBuf::new(&ctx, 64 << 20)?;
        // SAFETY: handle just created; stream and workspace live as long as `self`.
        unsafe {
            cb(
                blas::set_stream(blas, stream.cu_stream() as _),
                "set stream",
            )?;
            cb(
                blas_sys::cublasSetWorkspace_v2(blas, ws.ptr as *mut c_void, ws.bytes).result(),
                "set workspace",
            )?;
        }
        // SAFETY: probes only; a missing cuBLASLt leaves the cuBLAS path.
        let lt = if unsafe { lt::is_culib_present() } {
            cudarc::cublaslt::result::create_handle().ok()
        } else {
            None
        };
        Ok(Gpu {
            ctx,
            stream,
            blas,
            lt,
            plans: RefCell::new(HashMap::new()),
            blas_ws: ws,
            kernels,
            _module: module,
            dtype,
        })
    }

    /// Launches `k` on the stream with grid `(x, y)`.
    pub fn launch(
        &self,
        k: Kernel,
        grid: (u32, u32),
        block: u32,
        smem: u32,
        args: &[Arg],
    ) -> Result<()> {
        self.launch3(k, (grid.0, grid.1, 1), block, smem, args)
    }

    /// Launches `k` on the stream with grid `(x, y, z)`.
    pub fn launch3(
        &self,
        k: Kernel,
        grid: (u32, u32, u32),
        block: u32,
        smem: u32,
        args: &[Arg],
    ) -> Result<()> {
        let mut vals: Vec<Arg> = args.to_vec();
        let mut params: Vec<*mut c_void> = vals
            .iter_mut()
            .map(|a| match a {
                Arg::P(v) => v as *mut u64 as *mut c_void,
                Arg::I(v) => v as *mut i32 as *mut c_void,
                Arg::L(v) => v as *mut i64 as *mut c_void,
                Arg::F(v) => v as *mut f32 as *mut c_void,
            })
            .collect();
        let f = self.kernels[k as usize].ok_or_else(|| {
            Error::Cuda(format!(
                "kernel {} is not built for {}",
                NAMES[k as usize], self.dtype
            ))
        })?;
        // SAFETY: the argument list matches the kernel's signature in kernels.cu (checked by
        // the GPU-vs-CPU tests); pointers refer to live DevBufs of sufficient size.
        cu(
            unsafe {
                drv::launch_kernel(
                    f,
                    (grid.0.max(1), grid.1.max(1), grid.2.max(1)),
                    (block, 1, 1),
                    smem,
                    self.stream.cu_stream(),
                    &mut params,
                )
            },
            NAMES[k as usize],
        )
    }

    /// Column-major strided-batched GEMM `C = alpha op(A) op(B) + beta C` with f32
    /// accumulation; A and B in the model dtype, C in the model dtype or f32 (`beta` 0: C is
    /// only written).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        trans_a: bool,
        (m, n, k): (usize, usize, usize),
        (alpha, beta): (f32, f32),
        (a, lda, stride_a): (u64, usize, usize),
        (b, ldb, stride_b): (u64, usize, usize),
        (c, ldc, stride_c): (u64, usize, usize),
        batch: usize,
        c_f32: bool,
    ) -> Result<()> {
        let t = |x: bool| {
            if x {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let ab = match self.dtype {
            DType::Fp32 => blas_sys::cudaDataType_t::CUDA_R_32F,
            DType::Fp16 => blas_sys::cudaDataType_t::CUDA_R_16F,
            DType::Bf16 => blas_sys::cudaDataType_t::CUDA_R_16BF,
        };
        let ct = if c_f32 {
            blas_sys::cudaDataType_t::CUDA_R_32F
        } else {
            ab
        };
        let i = |v: usize| v as i32;
        // SAFETY: pointers are live DevBufs sized by the caller for these dimensions.
        unsafe {
            cb(
                blas::gemm_strided_batched_ex(
                    self.blas,
                    t(trans_a),
                    t(false),
                    i(m),
                    i(n),
                    i(k),
                    &alpha as *const f32 as *const c_void,
                    a as *const c_void,
                    ab,
                    i(lda),
                    stride_a as i64,
                    b as *const c_void,
                    ab,
                    i(ldb),
                    stride_b as i64,
                    &beta as *const f32 as *const c_void,
                    c as *mut c_void,
                    ct,
                    i(ldc),
                    stride_c as i64,
                    i(batch),
                    blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                ),
                "GemmStridedBatchedEx",
            )
        }
    }

    /// Column-major batched GEMM over device arrays of `batch` pointers each (`op(B) = B`).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_batched(
        &self,
        trans_a: bool,
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        (a, lda): (u64, usize),
        (b, ldb): (u64, usize),
        (c, ldc): (u64, usize),
        batch: usize,
        c_f32: bool,
    ) -> Result<()> {
        let op = if trans_a {
            blas_sys::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas_sys::cublasOperation_t::CUBLAS_OP_N
        };
        let ab = self.blas_type();
        let ct = if c_f32 {
            blas_sys::cudaDataType_t::CUDA_R_32F
        } else {
            ab
        };
        let beta = 0f32;
        let i = |v: usize| v as i32;
        // SAFETY: a, b, c are device arrays of `batch` pointers into live DevBufs, sized by the
        // caller for these dimensions.
        unsafe {
            cb(
                blas_sys::cublasGemmBatchedEx(
                    self.blas,
                    op,
                    blas_sys::cublasOperation_t::CUBLAS_OP_N,
                    i(m),
                    i(n),
                    i(k),
                    &alpha as *const f32 as *const c_void,
                    a as *const *const c_void,
                    ab,
                    i(lda),
                    b as *const *const c_void,
                    ab,
                    i(ldb),
                    &beta as *const f32 as *const c_void,
                    c as *const *mut c_void,
                    ct,
                    i(ldc),
                    i(batch),
                    blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
                .result(),
                "GemmBatchedEx",
            )
        }
    }

    fn blas_type(&self) -> blas_sys::cudaDataType_t {
        match self.dtype {
            DType::Fp32 => blas_sys::cudaDataType_t::CUDA_R_32F,
            DType::Fp16 => blas_sys::cudaDataType_t::CUDA_R_16F,
            DType::Bf16 => blas_sys::cudaDataType_t::CUDA_R_16BF,
        }
    }

    /// Whether attention scores are kept in the model dtype (fp16) rather than f32.
    pub fn scores_in_dtype(&self) -> bool {
        self.dtype == DType::Fp16
    }

    /// Copies host bytes to the device (synchronously).
    pub fn upload(&self, dst: u64, src: &[u8]) -> Result<()> {
        cu(self.ctx.bind_to_thread(), "bind context")?;
        // SAFETY: dst is a DevBuf of at least src.len() bytes (checked by callers).
        cu(unsafe { drv::memcpy_htod_sync(dst, src) }, "cuMemcpyHtoD")
    }

    /// Copies host data to the device on the stream (ordered with kernels).
    pub fn upload_async<T>(&self, dst: u64, src: &[T]) -> Result<()> {
        // SAFETY: dst is a DevBuf large enough; src outlives the copy since callers
        // synchronise the stream before returning.
        cu(
            unsafe { drv::memcpy_htod_async(dst, src, self.stream.cu_stream()) },
            "cuMemcpyHtoDAsync",
        )
    }

    /// Copies device f32 data to the host after the stream's work (synchronises).
    pub fn download_f32(&self, src: u64, n: usize) -> Result<Vec<f32>> {
        let mut out = vec![0f32; n];
        // SAFETY: src holds at least n floats; the stream is synchronised before reading.
        unsafe {
            cu(
                drv::memcpy_dtoh_async(&mut out, src, self.stream.cu_stream()),
                "cuMemcpyDtoHAsync",
            )?;
        }
        cu(self.stream.synchronize(), "cuStreamSynchronize")?;
        Ok(out)
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        self.plans.borrow_mut().clear();
        // SAFETY: handles created in `new`, destroyed once; no plan refers to them any more.
        unsafe {
            let _ = blas::destroy_handle(self.blas);
            if let Some(h) = self.lt {
                let _ = cudarc::cublaslt::result::destroy_handle(h);
            }
        }
    }
}

/// The shape of a cuBLASLt GEMM: everything but the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LtKey {
    trans_a: bool,
    mnk: (usize, usize, usize),
    ld: (usize, usize, usize),
    strides: (usize, usize, usize),
    batch: usize,
    c_f32: bool,
    bias_stride: Option<usize>,
}

/// A cuBLASLt operation, its layouts and the algorithm its heuristic picked for one [`LtKey`].
struct LtPlan {
    desc: lt::cublasLtMatmulDesc_t,
    layouts: [lt::cublasLtMatrixLayout_t; 3],
    algo: lt::cublasLtMatmulAlgo_t,
    ws_bytes: usize,
}

impl Drop for LtPlan {
    fn drop(&mut self) {
        // SAFETY: created in `Gpu::lt_plan`, destroyed once.
        unsafe {
            for l in self.layouts {
                let _ = lt::cublasLtMatrixLayoutDestroy(l);
            }
            let _ = lt::cublasLtMatmulDescDestroy(self.desc);
        }
    }
}

fn ltc(r: lt::cublasStatus_t, what: &str) -> Result<()> {
    r.result()
        .map_err(|e| Error::Cuda(format!("cuBLASLt {what}: {:?}", e.0)))
}

impl Gpu {
    fn lt_type(&self) -> lt::cudaDataType_t {
        match self.dtype {
            DType::Fp32 => lt::cudaDataType_t::CUDA_R_32F,
            DType::Fp16 => lt::cudaDataType_t::CUDA_R_16F,
            DType::Bf16 => lt::cudaDataType_t::CUDA_R_16BF,
        }
    }

    /// Builds the plan of `key`; `Ok(None)` where cuBLASLt has no algorithm for it.
    fn lt_plan(&self, h: lt::cublasLtHandle_t, key: &LtKey) -> Result<Option<LtPlan>> {
        let ab = self.lt_type();
        let ct = if key.c_f32 {
            lt::cudaDataType_t::CUDA_R_32F
        } else {
            ab
        };
        let (m, n, k) = key.mnk;
        let (lda, ldb, ldc) = key.ld;
        let (rows_a, cols_a) = if key.trans_a { (k, m) } else { (m, k) };
        let mut desc = std::ptr::null_mut();
        // SAFETY: plain descriptor creation and attribute setting on objects created here; each
        // one is owned by the returned plan (or destroyed below on failure).
        unsafe {
            ltc(
                lt::cublasLtMatmulDescCreate(
                    &mut desc,
                    lt::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    lt::cudaDataType_t::CUDA_R_32F,
                ),
                "descriptor",
            )?;
            let mut plan = LtPlan {
                desc,
                layouts: [std::ptr::null_mut(); 3],
                algo: std::mem::zeroed(),
                ws_bytes: 0,
            };
            let set = |attr: lt::cublasLtMatmulDescAttributes_t, v: *const c_void, n: usize| {
                ltc(
                    lt::cublasLtMatmulDescSetAttribute(desc, attr, v, n),
                    "attribute",
                )
            };
            // cublasOperation_t: CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 (a C int).
            let op: i32 = i32::from(key.trans_a);
            set(
                lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &op as *const _ as *const c_void,
                std::mem::size_of_val(&op),
            )?;
            if let Some(stride) = key.bias_stride {
                let epi = lt::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS;
                set(
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
                    &epi as *const _ as *const c_void,
                    std::mem::size_of_val(&epi),
                )?;
                set(
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                    &ab as *const _ as *const c_void,
                    std::mem::size_of_val(&ab),
                )?;
                let s = stride as i64;
                set(
                    lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                    &s as *const i64 as *const c_void,
                    8,
                )?;
            }
            let dims = [
                (ab, rows_a, cols_a, lda, key.strides.0),
                (ab, k, n, ldb, key.strides.1),
                (ct, m, n, ldc, key.strides.2),
            ];
            for (i, (t, r, c, ld, stride)) in dims.into_iter().enumerate() {
                let mut l = std::ptr::null_mut();
                ltc(
                    lt::cublasLtMatrixLayoutCreate(&mut l, t, r as u64, c as u64, ld as i64),
                    "layout",
                )?;
                plan.layouts[i] = l;
                if key.batch > 1 {
                    let b = key.batch as i32;
                    let s = stride as i64;
                    ltc(
                        lt::cublasLtMatrixLayoutSetAttribute(
                            l,
                            lt::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                            &b as *const i32 as *const c_void,
                            4,
                        ),
                        "batch count",
                    )?;
                    ltc(
                        lt::cublasLtMatrixLayoutSetAttribute(
                            l,
                            lt::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                            &s as *const i64 as *const c_void,
                            8,
                        ),
                        "batch stride",
                    )?;
                }
            }
            let mut pref = std::ptr::null_mut();
            ltc(lt::cublasLtMatmulPreferenceCreate(&mut pref), "preference")?;
            let ws = self.blas_ws.bytes as u64;
            let r = ltc(
                lt::cublasLtMatmulPreferenceSetAttribute(
                    pref,
                    lt::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                    &ws as *const u64 as *const c_void,
                    8,
                ),
                "workspace preference",
            );
            let mut res: lt::cublasLtMatmulHeuristicResult_t = std::mem::zeroed();
            let mut found = 0i32;
            let r = r.and_then(|_| {
                ltc(
                    lt::cublasLtMatmulAlgoGetHeuristic(
                        h,
                        desc,
                        plan.layouts[0],
                        plan.layouts[1],
                        plan.layouts[2],
                        plan.layouts[2],
                        pref,
                        1,
                        &mut res,
                        &mut found,
                    ),
                    "heuristic",
                )
            });
            let _ = lt::cublasLtMatmulPreferenceDestroy(pref);
            if r.is_err() || found < 1 || res.state.result().is_err() {
                return Ok(None);
            }
            plan.algo = res.algo;
            plan.ws_bytes = res.workspaceSize;
            Ok(Some(plan))
        }
    }

    /// Column-major strided-batched GEMM `C = alpha op(A) B + beta C (+ bias)` through
    /// cuBLASLt (in place: C is both the input and the output), the bias (model dtype, one
    /// value per row of C, `bias.1` elements between the batch's vectors) added in f32 before C
    /// is rounded. `Ok(false)`: cuBLASLt is missing or has no algorithm for this shape; nothing
    /// was enqueued and the caller takes the cuBLAS path.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_lt(
        &self,
        trans_a: bool,
        mnk: (usize, usize, usize),
        (alpha, beta): (f32, f32),
        (a, lda, stride_a): (u64, usize, usize),
        (b, ldb, stride_b): (u64, usize, usize),
        (c, ldc, stride_c): (u64, usize, usize),
        batch: usize,
        c_f32: bool,
        bias: Option<(u64, usize)>,
    ) -> Result<bool> {
        let Some(h) = self.lt else {
            return Ok(false);
        };
        let key = LtKey {
            trans_a,
            mnk,
            ld: (lda, ldb, ldc),
            strides: (stride_a, stride_b, stride_c),
            batch,
            c_f32,
            bias_stride: bias.map(|b| b.1),
        };
        let mut plans = self.plans.borrow_mut();
        let plan = match plans.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(self.lt_plan(h, &key)?),
        };
        let Some(plan) = plan else {
            return Ok(false);
        };
        // SAFETY: the plan's descriptors live in `plans`; pointers are live DevBufs sized by the
        // caller for these dimensions; the workspace is this GPU's, used on its one stream.
        unsafe {
            if let Some((p, _)) = bias {
                ltc(
                    lt::cublasLtMatmulDescSetAttribute(
                        plan.desc,
                        lt::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                        &p as *const u64 as *const c_void,
                        8,
                    ),
                    "bias pointer",
                )?;
            }
            ltc(
                lt::cublasLtMatmul(
                    h,
                    plan.desc,
                    &alpha as *const f32 as *const c_void,
                    a as *const c_void,
                    plan.layouts[0],
                    b as *const c_void,
                    plan.layouts[1],
                    &beta as *const f32 as *const c_void,
                    c as *const c_void,
                    plan.layouts[2],
                    c as *mut c_void,
                    plan.layouts[2],
                    &plan.algo,
                    self.blas_ws.ptr as *mut c_void,
                    plan.ws_bytes.min(self.blas_ws.bytes),
                    self.stream.cu_stream() as lt::cudaStream_t,
                ),
                "matmul",
            )?;
        }
        Ok(true)
    }
}
