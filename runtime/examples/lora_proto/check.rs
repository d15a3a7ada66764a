//! The prototype kernels against the runtime's warp kernels, bit for bit: the same `x`, tables
//! and initial `y` (uploaded twice), the warp shrink + expand into one pair of buffers, the
//! prototype shrink + expand into the other, then every element of `t` and of `y` compared as
//! bytes. The warp kernels are the reference the tiled and fused kernels are tested bit-equal
//! against (`tests/pet_tiled_gpu.rs`).

use super::Proto;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use ptm_runtime::gpu::pet::{DevMat, DevSegments, Output, PetKernels, Sites};
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

/// Elements that differ, of how many.
#[derive(Debug, Clone, Copy)]
pub struct Diff {
    /// Elements of `t` that differ.
    pub t: usize,
    /// Elements of `t`.
    pub t_total: usize,
    /// Elements of `y` that differ.
    pub y: usize,
    /// Elements of `y`.
    pub y_total: usize,
}

fn e<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err:?}")
}

/// Elements of `elem` bytes at which `a` and `b` differ.
fn differing(a: &[u8], b: &[u8], elem: usize) -> usize {
    a.chunks(elem)
        .zip(b.chunks(elem))
        .filter(|(x, y)| x != y)
        .count()
}

/// Runs the warp kernels and the prototypes on `case` and compares their `t` and `y`.
///
/// # Safety
/// `case`'s addresses must be live device memory of the sizes its tables and dimensions imply
/// (as for `PetKernels::lora_shrink` and `lora_expand`).
pub unsafe fn compare(
    stream: &Arc<CudaStream>,
    warp: &PetKernels,
    proto: &Proto,
    case: &Case,
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
        proto.shrink(case.x, seg, case.tab, case.sites, t_mat(tp), case.in_dim)?;
        proto.expand(
            t_mat(tp),
            seg,
            case.tab,
            case.sites,
            y_mat(yp),
            case.out_dim,
        )?;
    }
    stream
        .synchronize()
        .map_err(e("synchronize after the check"))?;
    let down = |s: &CudaSlice<u8>| stream.clone_dtoh(s).map_err(e("download"));
    let (tw, tp, yw, yp) = (down(tw)?, down(tp)?, down(yw)?, down(yp)?);
    Ok(Diff {
        t: differing(&tw, &tp, elem),
        t_total: tw.len() / elem,
        y: differing(&yw, &yp, elem),
        y_total: yw.len() / elem,
    })
}
