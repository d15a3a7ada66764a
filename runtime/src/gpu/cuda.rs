//! Thin checked wrappers over the CUDA driver, cuBLAS and NVRTC (all loaded at run time by
//! cudarc): device buffers, the kernel module, launches and GEMMs on one stream (the cuBLASLt
//! GEMMs with bias epilogues are in `lt.rs`).

use super::gemm::{Gemm, PointerGemm};
use super::kernels::{self, Kernel, NAMES};
use super::lt::{LtKey, LtPlan};
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

/// The parameter array of a launch: a pointer to each of `vals` (which must outlive the
/// launch call).
pub(super) fn params(vals: &mut [Arg]) -> Vec<*mut c_void> {
    vals.iter_mut()
        .map(|a| match a {
            Arg::P(v) => v as *mut u64 as *mut c_void,
            Arg::I(v) => v as *mut i32 as *mut c_void,
            Arg::L(v) => v as *mut i64 as *mut c_void,
            Arg::F(v) => v as *mut f32 as *mut c_void,
        })
        .collect()
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

/// Checks that the driver loads and starts (`cuInit`) and that GPU `ordinal` exists, with a
/// clear error otherwise.
fn driver_has(ordinal: usize) -> Result<()> {
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
    Ok(())
}

/// GPU `ordinal`'s primary context, with a clear error where the driver or the device is
/// missing.
pub fn open_context(ordinal: usize) -> Result<Arc<CudaContext>> {
    driver_has(ordinal)?;
    CudaContext::new(ordinal).map_err(|e| no_gpu(ordinal, format!("{e:?}")))
}

/// Sets how threads wait for GPU `ordinal` ([`super::HostSync`]): its primary context's
/// scheduling flag. Call it before anything opens the context (the flag of a context already
/// in use may not change); `auto` leaves the driver's default untouched.
pub fn set_host_sync(ordinal: usize, mode: super::HostSync) -> Result<()> {
    if mode == super::HostSync::Auto {
        return Ok(());
    }
    driver_has(ordinal)?;
    let mut dev: drv_sys::CUdevice = 0;
    // SAFETY: `dev` is a valid out-pointer; the driver is initialised above.
    let r = unsafe { drv_sys::cuDeviceGet(&mut dev, ordinal as std::ffi::c_int) };
    cu(r.result(), "cuDeviceGet")?;
    // SAFETY: `dev` came from cuDeviceGet; the flag is one of the CU_CTX_SCHED_* values.
    let r = unsafe { drv_sys::cuDevicePrimaryCtxSetFlags_v2(dev, mode.ctx_flag()) };
    cu(
        r.result(),
        &format!("cuDevicePrimaryCtxSetFlags ({mode}: set it before the GPU is first used)"),
    )
}

/// The name of GPU `ordinal`, as the driver reports it (e.g. `NVIDIA H200`).
pub fn device_name(ordinal: usize) -> Result<String> {
    let ctx = open_context(ordinal)?;
    cu(ctx.name(), "cuDeviceGetName")
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
    pub(super) lt: Option<lt::cublasLtHandle_t>,
    /// cuBLASLt plans (descriptors and the heuristic's algorithm) per GEMM shape; `None` where
    /// cuBLASLt has no algorithm for it.
    pub(super) plans: RefCell<HashMap<LtKey, Option<LtPlan>>>,
    /// The GEMM workspace (cuBLAS and cuBLASLt).
    pub(super) blas_ws: DevBuf,
    kernels: Vec<Option<drv_sys::CUfunction>>,
    _module: Arc<cudarc::driver::CudaModule>,
    /// Element dtype of the kernels and GEMM inputs.
    pub dtype: DType,
    /// Pinned host memory the transfers go through (`KernelOptions::pinned_staging`).
    staging: RefCell<Option<Staging>>,
}

/// Pinned host memory a model's transfers go through: [`Gpu::download_f32`] has the device
/// write there and copies out after the stream synchronises; where `uploads`,
/// [`Gpu::upload_async`] copies its source in and the device reads it from there asynchronously
/// (a host→device copy the copy engine then queues behind other executors' weight copies). A bump allocation: copies queued
/// since the stream last synchronised in `download_f32` hold what it took; a transfer that does
/// not fit goes through pageable memory instead, as without staging.
struct Staging {
    buf: PinnedBuf,
    bump: Bump,
    /// Whether uploads go through it too (else only downloads do).
    uploads: bool,
}

/// A bump allocation of `capacity` bytes: each transfer aligned to [`STAGING_ALIGN`], all freed
/// at once by `reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bump {
    capacity: usize,
    used: usize,
}

impl Bump {
    /// The offset of `bytes` that fit after those taken, if they do.
    fn take(&mut self, bytes: usize) -> Option<usize> {
        let at = self.used.next_multiple_of(STAGING_ALIGN);
        (at.checked_add(bytes)? <= self.capacity).then(|| {
            self.used = at + bytes;
            at
        })
    }

    fn reset(&mut self) {
        self.used = 0;
    }
}

/// Pinned host memory of a model's staging (`KernelOptions::pinned_staging`): a pass's inputs
/// (three `i32` per token) and outputs (its logits or embeddings) up to 32 rows × 512 tokens
/// fit many times over; a larger transfer goes through pageable memory.
pub const STAGING_BYTES: usize = 4 << 20;

/// Alignment of each transfer in the staging memory (bytes).
const STAGING_ALIGN: usize = 256;

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
        let opts = cudarc::nvrtc::CompileOptions {
            options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(kernels::source(dtype), opts)
            .map_err(|e| Error::Cuda(format!("NVRTC compile of kernels.cu: {e:?}")))?;
        let module = cu(ctx.load_module(ptx), "cuModuleLoadData")?;
        let kernels = NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i >= kernels::FIRST_HALF_ONLY && dtype == DType::Fp32 {
                    return Ok(None);
                }
                Ok(Some(cu(module.load_function(n), n)?.cu_function()))
            })
            .collect::<Result<Vec<_>>>()?;
        let blas =
            blas::create_handle().map_err(|e| Error::Cuda(format!("cuBLAS create: {:?}", e.0)))?;
        let ws = DevBuf::new(&ctx, super::budget::BLAS_WORKSPACE_BYTES)?;
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
            staging: RefCell::new(None),
        })
    }

    /// Routes this model's downloads — and its uploads where `uploads` — through `bytes` of
    /// pinned host memory of its own, allocated now on GPU `ordinal`
    /// (`KernelOptions::pinned_staging`, `KernelOptions::pinned_uploads`; see [`Staging`]).
    pub fn pin_staging(&self, ordinal: usize, bytes: usize, uploads: bool) -> Result<()> {
        let buf = PinnedBuf::new(ordinal, bytes)?;
        let bump = Bump {
            capacity: buf.bytes,
            used: 0,
        };
        *self.staging.borrow_mut() = Some(Staging { buf, bump, uploads });
        Ok(())
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
        let mut params = params(&mut vals);
        let f = self.kernels[k as usize].ok_or_else(|| {
            Error::Cuda(format!(
                "kernel {} is not built for {}",
                k.name(),
                self.dtype
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
            k.name(),
        )
    }

    /// The strided-batched GEMM `g` through cuBLAS (`GemmStridedBatchedEx`, f32 compute).
    pub fn gemm(&self, g: &Gemm) -> Result<()> {
        let Gemm {
            trans_a,
            m,
            n,
            k,
            a,
            b,
            c,
            batch,
            alpha,
            beta,
            c_f32,
        } = *g;
        let t = |x: bool| {
            if x {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let ab = self.blas_type();
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
                    a.ptr as *const c_void,
                    ab,
                    i(a.ld),
                    a.stride as i64,
                    b.ptr as *const c_void,
                    ab,
                    i(b.ld),
                    b.stride as i64,
                    &beta as *const f32 as *const c_void,
                    c.ptr as *mut c_void,
                    ct,
                    i(c.ld),
                    c.stride as i64,
                    i(batch),
                    blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                ),
                "GemmStridedBatchedEx",
            )
        }
    }

    /// The pointer-array batched GEMM `g` through cuBLAS (`GemmBatchedEx`, f32 compute).
    pub fn gemm_batched(&self, g: &PointerGemm) -> Result<()> {
        let PointerGemm {
            trans_a,
            m,
            n,
            k,
            a,
            b,
            c,
            batch,
            alpha,
            c_f32,
        } = *g;
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
                    a.array as *const *const c_void,
                    ab,
                    i(a.ld),
                    b.array as *const *const c_void,
                    ab,
                    i(b.ld),
                    &beta as *const f32 as *const c_void,
                    c.array as *const *mut c_void,
                    ct,
                    i(c.ld),
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
    pub fn upload_async<T: Copy>(&self, dst: u64, src: &[T]) -> Result<()> {
        let bytes = std::mem::size_of_val(src);
        if let Some(st) = self.staging.borrow_mut().as_mut().filter(|st| st.uploads) {
            if let Some(at) = st.bump.take(bytes) {
                // SAFETY: `src` is plain data (`Copy`) of `bytes` bytes; `[at, at + bytes)` lies
                // in the pinned buffer (`take`) and no queued copy reads it (the bump only
                // grows until the stream has synchronised); the copy below reads it before the next
                // synchronisation frees it.
                unsafe {
                    let staged = st.buf.ptr.add(at);
                    std::ptr::copy_nonoverlapping(src.as_ptr() as *const u8, staged, bytes);
                    let from = std::slice::from_raw_parts(staged as *const u8, bytes);
                    return cu(
                        drv::memcpy_htod_async(dst, from, self.stream.cu_stream()),
                        "cuMemcpyHtoDAsync (pinned staging)",
                    );
                }
            }
        }
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
        let bytes = std::mem::size_of_val(out.as_slice());
        let mut staging = self.staging.borrow_mut();
        if let Some(st) = staging.as_mut() {
            if let Some(at) = st.bump.take(bytes) {
                // SAFETY: `[at, at + bytes)` lies in the pinned buffer and nothing else writes
                // it; src holds at least n floats; the stream is synchronised before the bytes
                // are read, after which no queued copy uses the buffer and it is free again.
                unsafe {
                    let staged = st.buf.ptr.add(at);
                    let to = std::slice::from_raw_parts_mut(staged, bytes);
                    cu(
                        drv::memcpy_dtoh_async(to, src, self.stream.cu_stream()),
                        "cuMemcpyDtoHAsync (pinned staging)",
                    )?;
                    cu(self.stream.synchronize(), "cuStreamSynchronize")?;
                    std::ptr::copy_nonoverlapping(staged, out.as_mut_ptr() as *mut u8, bytes);
                }
                st.bump.reset();
                return Ok(out);
            }
        }
        // SAFETY: src holds at least n floats; the stream is synchronised before reading.
        unsafe {
            cu(
                drv::memcpy_dtoh_async(&mut out, src, self.stream.cu_stream()),
                "cuMemcpyDtoHAsync",
            )?;
        }
        cu(self.stream.synchronize(), "cuStreamSynchronize")?;
        if let Some(st) = staging.as_mut() {
            st.bump.reset();
        }
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

#[cfg(test)]
mod tests {
    use super::{Bump, STAGING_ALIGN};

    #[test]
    fn the_staging_bump_aligns_each_transfer_refuses_what_does_not_fit_and_resets() {
        let mut b = Bump {
            capacity: 3 * STAGING_ALIGN,
            used: 0,
        };
        assert_eq!(b.take(10), Some(0));
        assert_eq!(b.take(STAGING_ALIGN), Some(STAGING_ALIGN));
        // The rest after alignment is one aligned block: more does not fit, and a refusal
        // takes nothing.
        assert_eq!(b.take(STAGING_ALIGN + 1), None);
        assert_eq!(b.take(STAGING_ALIGN), Some(2 * STAGING_ALIGN));
        assert_eq!(b.take(1), None);
        assert_eq!(b.take(usize::MAX), None);
        b.reset();
        assert_eq!(b.take(3 * STAGING_ALIGN), Some(0));
    }
}
