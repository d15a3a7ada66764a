#![cfg(feature = "cuda")]
//! The row-tiled LoRA kernels (`pet_tiled_kernels.cu`, `KernelOptions::pet_tiled`) and the fused
//! ones (`pet_fused_kernels.cu`, `pet_fused`) against the warp kernels they replace, on a GPU:
//! bit for bit (shrink output `t`, expand onto f32 and onto the model dtype; the fused kernels'
//! outputs), and against the CPU twins within the tolerances of `tests/pet_gpu.rs`. The
//! tensor-core ones (`pet_mma_kernels.cu`, `pet_mma`; fp16 and bf16, inputs a multiple of 16
//! wide) sum in the tensor cores' order: against the warp kernels and the twins within those
//! tolerances.
//! Shapes chosen to reach every path of the tiled kernels: segments that are not whole tiles
//! (1, 5, 23, 37 rows), empty ones and ones without a pair at some site; ranks above the 8 rows
//! a warp takes at once and above the 32 entries the expand stages at once (40); A rows that
//! do not fit shared memory together (chunks), an input too wide for shared memory at all
//! (A read from global memory); an input width that is not a multiple of a 16-byte vector
//! (the scalar dot order); an output wider than one item's column span (1,100 > 1,024); every
//! dtype.
//!
//! Runs only where `PTM_TEST_CUDA=1`; elsewhere it prints a skip line and passes.
// The kernel launches take raw device pointers (unsafe functions).
#![allow(unsafe_code)]

use cudarc::driver::{CudaContext, CudaStream};
use ptm_runtime::gpu::pet::{
    DevMat, DevSegments, LoraKernels, LoraSegDev, Output, PetKernels, Sites,
};
use ptm_runtime::pet::twin::{self, Out, Segments};
use ptm_runtime::DType;
use rand::SeedableRng;
use std::sync::Arc;

mod pet_common;

use pet_common::{close, enabled, lora_tables, rnd, Dev};

/// Bit-equal f32 slices (NaN-free: compared as bits).
fn bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad = got
        .iter()
        .zip(want)
        .position(|(p, q)| p.to_bits() != q.to_bits());
    assert!(bad.is_none(), "{what}: first difference at {bad:?}");
}

/// One case: `rows` per segment, ranks per (segment, site) over three sites, `din` input and
/// `dout` output columns.
fn case(
    (stream, k): (&Arc<CudaStream>, &[PetKernels; 4]),
    dtype: DType,
    rows: &[usize],
    ranks: &[[usize; 3]],
    din: usize,
    dout: usize,
) {
    let mut d = Dev {
        stream: stream.clone(),
        bufs: vec![],
    };
    let mut r = rand_pcg::Pcg64Mcg::seed_from_u64((din * 31 + dout) as u64);
    let seg = Segments::new(rows, 1).unwrap();
    let n = *seg.seg_start.last().unwrap() as usize;
    let dseg = DevSegments {
        seg_start: d.up(seg.to_bytes()),
        nseg: seg.len() as i32,
    };
    let x = rnd(&mut r, n * din, 1.0, dtype);
    let y0 = rnd(&mut r, 3 * n * dout, 1.0, dtype);
    let flat: Vec<usize> = ranks.iter().flatten().copied().collect();
    let w: Vec<(Vec<f32>, Vec<f32>)> = flat
        .iter()
        .map(|&q| {
            (
                rnd(&mut r, q * din, 0.2, dtype),
                rnd(&mut r, dout * q, 0.2, dtype),
            )
        })
        .collect();
    let (table, host) = lora_tables(&mut d, dtype, &flat, &w, 1.5);
    let t_cols = flat.iter().copied().max().unwrap_or(1).max(1);
    let ld_t = 3 * t_cols;
    let dsites = Sites {
        count: 3,
        t_cols: t_cols as i32,
        y_stride: (n * dout) as i64,
    };
    let hsites = twin::Sites {
        count: 3,
        t_cols,
        y_stride: n * dout,
    };
    let dtab = d.up(LoraSegDev::to_bytes(&table));
    let dx = d.vals(dtype, &x);
    let xm = DevMat {
        ptr: dx,
        ld: din as i64,
    };
    let what = format!("{dtype} rows {rows:?} ranks {ranks:?} in {din} out {dout}");
    // Per kernel set: t, y (f32), y (model dtype); the fused set through `lora` (one launch
    // where the ranks fit, leaving t as it was; shrink and expand otherwise).
    let mut got = Vec::new();
    for ks in k {
        let fused = ks.lora == LoraKernels::Fused;
        let dt = d.vals(dtype, &vec![0.0; n * ld_t]);
        let dy32 = d.vals(DType::Fp32, &y0);
        let dyt = d.vals(dtype, &y0);
        let tm = DevMat {
            ptr: dt,
            ld: ld_t as i64,
        };
        // SAFETY: every address is a live buffer of the sizes the tables and dimensions imply.
        unsafe {
            if !fused {
                ks.lora_shrink(xm, dseg, dtab, dsites, tm, din as i32)
                    .unwrap();
            }
            for (out, p) in [(Output::F32, dy32), (Output::Model, dyt)] {
                let y = DevMat {
                    ptr: p,
                    ld: dout as i64,
                };
                if fused {
                    ks.lora(out, xm, din as i32, dseg, dtab, dsites, tm, y, dout as i32)
                        .unwrap();
                } else {
                    ks.lora_expand(out, tm, dseg, dtab, dsites, y, dout as i32)
                        .unwrap();
                }
            }
        }
        stream.synchronize().expect("kernels run");
        got.push((
            d.down(dt, dtype, n * ld_t),
            d.down(dy32, DType::Fp32, 3 * n * dout),
            d.down(dyt, dtype, 3 * n * dout),
        ));
    }
    let (warp, tiled, fused, mma) = (&got[0], &got[1], &got[2], &got[3]);
    bits(
        &fused.1,
        &warp.1,
        &format!("{what}: expand f32, fused vs warp"),
    );
    bits(
        &fused.2,
        &warp.2,
        &format!("{what}: expand {dtype}, fused vs warp"),
    );
    bits(&tiled.0, &warp.0, &format!("{what}: shrink, tiled vs warp"));
    bits(
        &tiled.1,
        &warp.1,
        &format!("{what}: expand f32, tiled vs warp"),
    );
    bits(
        &tiled.2,
        &warp.2,
        &format!("{what}: expand {dtype}, tiled vs warp"),
    );
    // Against the twins (the kernels' specification).
    let tol_t = if dtype == DType::Bf16 { 1.6e-2 } else { 2e-3 };
    let mut tt = vec![0f32; n * ld_t];
    twin::lora_shrink(dtype, &x, din, &seg, &host, hsites, &mut tt, ld_t, din);
    close(&tiled.0, &tt, tol_t, &format!("{what}: shrink vs twin"));
    for (out, y, tol) in [(Out::F32, &tiled.1, 1e-4), (Out::Model, &tiled.2, tol_t)] {
        let mut want = y0.clone();
        twin::lora_expand(
            dtype, out, &tiled.0, ld_t, &seg, &host, hsites, &mut want, dout, dout,
        );
        close(y, &want, tol, &format!("{what}: expand {out:?} vs twin"));
    }
    // The tensor-core kernels (where they run; elsewhere the tiled ones, bit-equal): their t
    // against the twin's and the warp kernels', their expand against the twin's expand of
    // their own t, and against the warp kernels' outputs.
    let ran = k[3].fits_mma(din as i32);
    let which = if ran {
        "tensor-core"
    } else {
        "mma set (tiled)"
    };
    close(
        &mma.0,
        &tt,
        tol_t,
        &format!("{what}: {which} shrink vs twin"),
    );
    close(
        &mma.0,
        &warp.0,
        tol_t,
        &format!("{what}: {which} shrink vs warp"),
    );
    if !ran {
        bits(
            &mma.0,
            &warp.0,
            &format!("{what}: shrink, mma set (tiled) vs warp"),
        );
    }
    for (out, y, w, tol) in [
        (Out::F32, &mma.1, &warp.1, 1e-4),
        (Out::Model, &mma.2, &warp.2, tol_t),
    ] {
        let mut want = y0.clone();
        twin::lora_expand(
            dtype, out, &mma.0, ld_t, &seg, &host, hsites, &mut want, dout, dout,
        );
        close(
            y,
            &want,
            tol,
            &format!("{what}: {which} expand {out:?} vs twin"),
        );
        // From the warp kernels' t, one unit apart in places: the 16-bit tolerance of t.
        let tol_w = if out == Out::F32 { tol_t } else { 2.0 * tol_t };
        close(
            y,
            w,
            tol_w,
            &format!("{what}: {which} expand {out:?} vs warp"),
        );
    }
}

#[test]
fn tiled_lora_kernels_equal_the_warp_kernels_bit_for_bit() {
    if !enabled("tiled_lora_kernels_equal_the_warp_kernels_bit_for_bit") {
        return;
    }
    let ctx = CudaContext::new(0).expect("GPU 0");
    let stream = ctx.new_stream().expect("stream");
    for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
        let k = [
            LoraKernels::Warp,
            LoraKernels::Tiled,
            LoraKernels::Fused,
            LoraKernels::Mma,
        ]
        .map(|l| PetKernels::new(&stream, dtype, l).expect("kernels compile and load"));
        assert_eq!(
            k[3].fits_mma(768),
            dtype != DType::Fp32,
            "tensor cores on the test GPU"
        );
        let rows = [5, 0, 37, 1, 16, 23];
        let ranks = [
            [8, 0, 8],
            [4, 4, 4],
            [0, 0, 0],
            [40, 3, 0],
            [1, 9, 17],
            [8, 8, 8],
        ];
        // BERT-like widths (A staged in one chunk, or several when wide). Ranks up to 40 are
        // beyond what a fused item stages over three sites (the fused set runs the tiled
        // kernels); up to 32 the fused kernel runs, partial rank chunks (3, 9, 17) included.
        let fitting = [
            [8, 0, 8],
            [4, 4, 4],
            [0, 0, 0],
            [32, 3, 0],
            [1, 9, 17],
            [8, 8, 8],
        ];
        let sites = |r: &[[usize; 3]]| Sites {
            count: 3,
            t_cols: r.iter().flatten().copied().max().unwrap_or(1) as i32,
            y_stride: 0,
        };
        assert!(!PetKernels::fits_fused(sites(&ranks)));
        assert!(PetKernels::fits_fused(sites(&fitting)));
        for r in [&ranks, &fitting] {
            case((&stream, &k), dtype, &rows, r, 768, 768);
            case((&stream, &k), dtype, &rows, r, 3072, 1100);
        }
        // Not a multiple of a 16-byte vector in fp16/bf16 (fp32: 100 is): scalar dot orders.
        case((&stream, &k), dtype, &rows, &ranks, 100, 52);
        // Too wide for shared memory: A read from global memory.
        case(
            (&stream, &k),
            dtype,
            &[3, 18],
            &[[2, 0, 5], [8, 1, 0]],
            16_400,
            64,
        );
        // One segment over many tiles, one site.
        let one = [[8, 0, 0]];
        case((&stream, &k), dtype, &[130], &one, 256, 256);
    }
}
