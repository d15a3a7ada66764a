//! A set of LoRA kernels (the tensor-core ones) against the runtime's warp kernels: the same
//! `x`, tables and initial `y` (uploaded twice), the warp shrink + expand into one pair of
//! buffers, the candidate's into the other, then every element of `t` and of `y` compared:
//! how many differ at all, how many by more than `tol · max(1, |warp's value|)`, and the
//! largest such relative difference. The warp kernels are the reference the tiled and fused
//! kernels are tested bit-equal against (`tests/pet_tiled_gpu.rs`); the tensor-core kernels
//! sum in another order, so they are held to the 16-bit tolerances instead.

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use ptm_runtime::gpu::pet::{DevMat, DevSegments, Output, PetKernels, Sites};
use ptm_runtime::DType;
use std::sync::Arc;

/// One comparison's inputs: `x` and the tables are already on the device.
pub struct Case {
    /// `x` (rows × `in_dim` or wider).
    pub x: DevMat,
    /// The segments.
    pub seg: DevSegments,
    /// The `[nseg][sites.count]` LoRA table.
    pub tab: u64,
    /// The launch's sites (`t_cols` the widest rank).
    pub sites: Sites,
    /// Rows of the batch (`seg_start[nseg]`).
    pub rows: usize,
    /// Elements of a `y` row (`ld_y`), at least `out_dim`.
    pub ld_y: usize,
    /// Input width of the shrink.
    pub in_dim: i32,
    /// Output width of the expand.
    pub out_dim: i32,
    /// The initial `y` of every site (`sites.count × rows × ld_y` elements, model dtype).
    pub y0: Vec<u8>,
}

/// One buffer's comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cmp {
    /// Elements that differ at all.
    pub differ: usize,
    /// Elements beyond the tolerance.
    pub beyond: usize,
    /// Elements compared.
    pub total: usize,
    /// The largest `|a − b| / max(1, |b|)`.
    pub worst: f64,
}

/// Both buffers' comparisons.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    /// The shrink output `t`.
    pub t: Cmp,
    /// The outputs `y`.
    pub y: Cmp,
}

/// Maps a driver error to a message naming `what` failed (shared with `lora_kernels.rs`).
pub fn e<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err:?}")
}

/// `a` (the candidate's) against `b` (the warp kernels'), values of `dtype`.
fn compare_values(dtype: DType, a: &[u8], b: &[u8], tol: f64) -> Cmp {
    let (va, vb) = (dtype.decode_f32(a), dtype.decode_f32(b));
    let mut c = Cmp {
        total: vb.len(),
        ..Cmp::default()
    };
    for (&x, &y) in va.iter().zip(&vb) {
        if x.to_bits() == y.to_bits() {
            continue;
        }
        c.differ += 1;
        let rel = f64::from((x - y).abs()) / f64::from(y.abs()).max(1.0);
        if rel > tol || rel.is_nan() {
            c.beyond += 1;
        }
        c.worst = c.worst.max(if rel.is_nan() { f64::INFINITY } else { rel });
    }
    c
}

/// Runs the warp kernels and `cand` on `case` and compares their `t` and `y` (`tol` for both).
///
/// # Safety
/// `case`'s addresses must be live device memory of the sizes its tables and dimensions imply
/// (as for `PetKernels::lora_shrink` and `lora_expand`).
pub unsafe fn compare(
    stream: &Arc<CudaStream>,
    warp: &PetKernels,
    cand: &PetKernels,
    case: &Case,
    tol: f64,
) -> Result<Diff, String> {
    let elem = warp.dtype.size_bytes();
    let t_cols = case.sites.count as usize * case.sites.t_cols as usize;
    let t0 = vec![0u8; case.rows * t_cols * elem];
    let up = |b: &[u8]| stream.clone_htod(b).map_err(e("upload"));
    let bufs: [CudaSlice<u8>; 4] = [up(&t0)?, up(&t0)?, up(&case.y0)?, up(&case.y0)?];
    let ptr = |s: &CudaSlice<u8>| s.device_ptr(stream).0;
    let t_mat = |s: &CudaSlice<u8>| DevMat {
        ptr: ptr(s),
        ld: t_cols as i64,
    };
    let y_mat = |s: &CudaSlice<u8>| DevMat {
        ptr: ptr(s),
        ld: case.ld_y as i64,
    };
    let [tw, tp, yw, yp] = &bufs;
    let ms = |x: ptm_runtime::Result<()>| x.map_err(|err| err.to_string());
    let seg: DevSegments = case.seg;
    // SAFETY: the caller's guarantee for x and the tables; t and y are the buffers above, of
    // rows × t_cols and count × rows × ld_y elements.
    unsafe {
        ms(warp.lora_shrink(case.x, seg, case.tab, case.sites, t_mat(tw), case.in_dim))?;
        ms(warp.lora_expand(
            Output::Model,
            t_mat(tw),
            seg,
            case.tab,
            case.sites,
            y_mat(yw),
            case.out_dim,
        ))?;
        ms(cand.lora_shrink(case.x, seg, case.tab, case.sites, t_mat(tp), case.in_dim))?;
        ms(cand.lora_expand(
            Output::Model,
            t_mat(tp),
            seg,
            case.tab,
            case.sites,
            y_mat(yp),
            case.out_dim,
        ))?;
    }
    stream
        .synchronize()
        .map_err(e("synchronize after the check"))?;
    let down = |s: &CudaSlice<u8>| stream.clone_dtoh(s).map_err(e("download"));
    let (tw, tp, yw, yp) = (down(tw)?, down(tp)?, down(yw)?, down(yp)?);
    Ok(Diff {
        t: compare_values(warp.dtype, &tp, &tw, tol),
        y: compare_values(warp.dtype, &yp, &yw, tol),
    })
}
