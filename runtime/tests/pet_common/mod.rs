//! Helpers of the GPU PET tests (`pet_gpu`, `pet_tiled_gpu`): device buffers addressed by
//! `u64`, seeded values rounded to a dtype, the relative-error check and the skip switch.
// Each test binary uses its own subset.
#![allow(dead_code)]

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use ptm_runtime::gpu::pet::LoraSegDev;
use ptm_runtime::pet::twin::LoraSeg;
use ptm_runtime::DType;
use rand::Rng;
use std::sync::Arc;

/// Whether GPU tests run here (`PTM_TEST_CUDA=1`); prints a skip line for `test` otherwise.
pub fn enabled(test: &str) -> bool {
    let on = std::env::var("PTM_TEST_CUDA").is_ok_and(|v| v == "1");
    if !on {
        println!("SKIPPED {test}: set PTM_TEST_CUDA=1 on a machine with an NVIDIA GPU");
    }
    on
}

/// `n` seeded values in ±`scale`, rounded to `dtype`.
pub fn rnd(r: &mut rand_pcg::Pcg64Mcg, n: usize, scale: f32, dtype: DType) -> Vec<f32> {
    let mut b = Vec::new();
    let v: Vec<f32> = (0..n)
        .map(|_| (r.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    dtype.encode_f32(&v, &mut b);
    dtype.decode_f32(&b)
}

/// Device buffers kept alive for the test, addressed by `u64`.
pub struct Dev {
    pub stream: Arc<CudaStream>,
    pub bufs: Vec<CudaSlice<u8>>,
}

impl Dev {
    pub fn up(&mut self, bytes: Vec<u8>) -> u64 {
        let s = self.stream.clone_htod(&bytes).expect("upload");
        let p = s.device_ptr(&self.stream).0;
        self.bufs.push(s);
        p
    }
    pub fn vals(&mut self, dtype: DType, v: &[f32]) -> u64 {
        let mut b = Vec::new();
        dtype.encode_f32(v, &mut b);
        self.up(b)
    }
    pub fn down(&self, p: u64, dtype: DType, n: usize) -> Vec<f32> {
        let s = self
            .bufs
            .iter()
            .find(|s| s.device_ptr(&self.stream).0 == p)
            .expect("a buffer of ours");
        let bytes = self.stream.clone_dtoh(s).expect("download");
        dtype.decode_f32(&bytes[..n * dtype.size_bytes()])
    }
}

/// One LoRA pair per entry of `ranks` (0: none there) with weights `w[i] = (A, B)`, scaled by
/// `scale`: the device table (its matrices uploaded through `d`) and the CPU twin's.
pub fn lora_tables<'w>(
    d: &mut Dev,
    dtype: DType,
    ranks: &[usize],
    w: &'w [(Vec<f32>, Vec<f32>)],
    scale: f32,
) -> (Vec<LoraSegDev>, Vec<Option<LoraSeg<'w>>>) {
    ranks
        .iter()
        .zip(w)
        .map(|(&q, (a, b))| match q {
            0 => (LoraSegDev::default(), None),
            _ => (
                LoraSegDev {
                    a: d.vals(dtype, a),
                    b: d.vals(dtype, b),
                    rank: q as i32,
                    scale,
                },
                Some(LoraSeg {
                    a,
                    b,
                    rank: q,
                    scale,
                }),
            ),
        })
        .unzip()
}

/// Largest |got − want| over the largest |want|, at most `tol`.
pub fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    let m = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let e = got
        .iter()
        .zip(want)
        .fold(0f32, |e, (p, q)| e.max((p - q).abs()))
        / m;
    assert!(e <= tol, "{what}: {e} > {tol}");
}
