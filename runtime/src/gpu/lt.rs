//! GEMMs through cuBLASLt with a bias epilogue (the bias added in f32 before the one rounding
//! of C to the model dtype): one plan (descriptors and the heuristic's algorithm) per GEMM
//! shape, built on first use and kept.

use super::cuda::Gpu;
use super::gemm::{Bias, Gemm};
use crate::dtype::DType;
use crate::error::{Error, Result};
use cudarc::cublaslt::sys as lt;
use std::ffi::c_void;

/// The shape of a cuBLASLt GEMM: everything but the addresses and scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LtKey {
    trans_a: bool,
    mnk: (usize, usize, usize),
    ld: (usize, usize, usize),
    strides: (usize, usize, usize),
    batch: usize,
    c_f32: bool,
    bias_stride: Option<usize>,
}

/// A cuBLASLt operation, its layouts and the algorithm its heuristic picked for one [`LtKey`].
pub struct LtPlan {
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

    /// The GEMM `g` through cuBLASLt (in place: C is both the input and the output), plus
    /// `bias` (model dtype, one value per row of C) added in f32 before C is rounded.
    /// `Ok(false)`: cuBLASLt is missing or has no algorithm for this shape; nothing was
    /// enqueued and the caller takes the cuBLAS path.
    pub fn gemm_lt(&self, g: &Gemm, bias: Option<Bias>) -> Result<bool> {
        let Some(h) = self.lt else {
            return Ok(false);
        };
        let key = LtKey {
            trans_a: g.trans_a,
            mnk: (g.m, g.n, g.k),
            ld: (g.a.ld, g.b.ld, g.c.ld),
            strides: (g.a.stride, g.b.stride, g.c.stride),
            batch: g.batch,
            c_f32: g.c_f32,
            bias_stride: bias.map(|b| b.stride),
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
            if let Some(Bias { ptr: p, .. }) = bias {
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
                    &g.alpha as *const f32 as *const c_void,
                    g.a.ptr as *const c_void,
                    plan.layouts[0],
                    g.b.ptr as *const c_void,
                    plan.layouts[1],
                    &g.beta as *const f32 as *const c_void,
                    g.c.ptr as *const c_void,
                    plan.layouts[2],
                    g.c.ptr as *mut c_void,
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
