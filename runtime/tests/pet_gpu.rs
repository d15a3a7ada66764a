#![cfg(feature = "cuda")]
//! The segmented PET kernels on a GPU against their CPU twins (`ptm_runtime::pet::twin`): LoRA
//! shrink and expand (f32 and model-dtype outputs), the three bias kernels and the adapter
//! bottleneck, for every dtype, on a mixed batch of four segments (one empty, one without a
//! delta). The twins themselves are tested against the CPU reference in CI.
//!
//! Runs only where `PTM_TEST_CUDA=1`; elsewhere it prints a skip line and passes.
// The kernel launches take raw device pointers (unsafe functions).
#![allow(unsafe_code)]

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use ptm_runtime::gpu::pet::{AdapterSegDev, DevMat, DevSegments, LoraSegDev, Output, PetKernels};
use ptm_runtime::pet::tenant::AdapterAct;
use ptm_runtime::pet::twin::{self, AdapterSeg, LoraSeg, Out, Segments};
use ptm_runtime::DType;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

fn enabled(test: &str) -> bool {
    let on = std::env::var("PTM_TEST_CUDA").is_ok_and(|v| v == "1");
    if !on {
        println!("SKIPPED {test}: set PTM_TEST_CUDA=1 on a machine with an NVIDIA GPU");
    }
    on
}

fn rnd(r: &mut rand_pcg::Pcg64Mcg, n: usize, scale: f32, dtype: DType) -> Vec<f32> {
    let mut b = Vec::new();
    let v: Vec<f32> = (0..n)
        .map(|_| (r.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    dtype.encode_f32(&v, &mut b);
    dtype.decode_f32(&b)
}

/// Device buffers kept alive for the test, addressed by `u64`.
struct Dev {
    stream: Arc<CudaStream>,
    bufs: Vec<CudaSlice<u8>>,
}

impl Dev {
    fn up(&mut self, bytes: Vec<u8>) -> u64 {
        let s = self.stream.clone_htod(&bytes).expect("upload");
        let p = s.device_ptr(&self.stream).0;
        self.bufs.push(s);
        p
    }
    fn vals(&mut self, dtype: DType, v: &[f32]) -> u64 {
        let mut b = Vec::new();
        dtype.encode_f32(v, &mut b);
        self.up(b)
    }
    fn down(&self, p: u64, dtype: DType, n: usize) -> Vec<f32> {
        let s = self
            .bufs
            .iter()
            .find(|s| s.device_ptr(&self.stream).0 == p)
            .expect("a buffer of ours");
        let bytes = self.stream.clone_dtoh(s).expect("download");
        dtype.decode_f32(&bytes[..n * dtype.size_bytes()])
    }
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    let m = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let e = got
        .iter()
        .zip(want)
        .fold(0f32, |e, (p, q)| e.max((p - q).abs()))
        / m;
    assert!(e <= tol, "{what}: {e} > {tol}");
}

#[test]
fn pet_kernels_equal_their_cpu_twins() {
    if !enabled("pet_kernels_equal_their_cpu_twins") {
        return;
    }
    let ctx = CudaContext::new(0).expect("GPU 0");
    let stream = ctx.new_stream().expect("stream");
    for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
        let k = PetKernels::new(&stream, dtype).expect("kernels compile and load");
        let tol_t = if dtype == DType::Bf16 { 1.6e-2 } else { 2e-3 };
        let mut d = Dev {
            stream: stream.clone(),
            bufs: vec![],
        };
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(5);
        let seg = Segments::new(&[3, 2, 0, 4], 16).unwrap();
        let n = *seg.seg_start.last().unwrap() as usize;
        let dseg = DevSegments {
            seg_start: d.up(seg.to_bytes()),
            nseg: seg.len() as i32,
        };
        let (din, dout, h, m) = (96, 80, 64, 12);
        // LoRA.
        let x = rnd(&mut r, n * din, 1.0, dtype);
        let y0 = rnd(&mut r, n * dout, 1.0, dtype);
        let ranks = [8usize, 0, 0, 5];
        let w: Vec<(Vec<f32>, Vec<f32>)> = ranks
            .iter()
            .map(|&q| {
                (
                    rnd(&mut r, q * din, 0.2, dtype),
                    rnd(&mut r, dout * q, 0.2, dtype),
                )
            })
            .collect();
        let mut table = Vec::new();
        for (&q, (a, b)) in ranks.iter().zip(&w) {
            table.push(if q == 0 {
                LoraSegDev::default()
            } else {
                LoraSegDev {
                    a: d.vals(dtype, a),
                    b: d.vals(dtype, b),
                    rank: q as i32,
                    scale: 2.0,
                }
            });
        }
        let segs_host: Vec<Option<LoraSeg>> = ranks
            .iter()
            .zip(&w)
            .map(|(&q, (a, b))| {
                (q > 0).then_some(LoraSeg {
                    a,
                    b,
                    rank: q,
                    scale: 2.0,
                })
            })
            .collect();
        let dtab = d.up(LoraSegDev::to_bytes(&table));
        let dx = d.vals(dtype, &x);
        let dt = d.vals(dtype, &vec![0.0; n * 8]);
        let dy32 = d.vals(DType::Fp32, &y0);
        let dyt = d.vals(dtype, &y0);
        // SAFETY: every address is a live buffer of the sizes the tables and dimensions imply.
        unsafe {
            k.lora_shrink(
                DevMat {
                    ptr: dx,
                    ld: din as i64,
                },
                dseg,
                dtab,
                DevMat { ptr: dt, ld: 8 },
                din as i32,
            )
            .unwrap();
            k.lora_expand(
                Output::F32,
                DevMat { ptr: dt, ld: 8 },
                dseg,
                dtab,
                DevMat {
                    ptr: dy32,
                    ld: dout as i64,
                },
                dout as i32,
            )
            .unwrap();
            k.lora_expand(
                Output::Model,
                DevMat { ptr: dt, ld: 8 },
                dseg,
                dtab,
                DevMat {
                    ptr: dyt,
                    ld: dout as i64,
                },
                dout as i32,
            )
            .unwrap();
        }
        stream.synchronize().unwrap();
        let mut tt = vec![0f32; n * 8];
        twin::lora_shrink(dtype, &x, din, &seg, &segs_host, &mut tt, 8, din);
        close(
            &d.down(dt, dtype, n * 8),
            &tt,
            tol_t,
            &format!("{dtype} shrink"),
        );
        for (out, p, pd) in [(Out::F32, dy32, DType::Fp32), (Out::Model, dyt, dtype)] {
            let mut y = y0.clone();
            twin::lora_expand(dtype, out, &tt, 8, &seg, &segs_host, &mut y, dout, dout);
            let tol = if out == Out::F32 { 1e-4 } else { tol_t };
            close(
                &d.down(p, pd, n * dout),
                &y,
                tol,
                &format!("{dtype} expand {out:?}"),
            );
        }
        // Biases.
        let b0 = rnd(&mut r, h, 0.5, dtype);
        let b3 = rnd(&mut r, h, 0.5, dtype);
        let ptrs = [d.vals(dtype, &b0), 0, 0, d.vals(dtype, &b3)];
        let dbias = d.up(ptrs.iter().flat_map(|p| p.to_le_bytes()).collect());
        let bias: [Option<&[f32]>; 4] = [Some(&b0), None, None, Some(&b3)];
        let base = rnd(&mut r, n * h, 1.0, dtype);
        let (y32, yt, z32, zt) = (
            d.vals(DType::Fp32, &base),
            d.vals(dtype, &base),
            d.vals(DType::Fp32, &base),
            d.vals(dtype, &vec![0.0; n * h]),
        );
        // SAFETY: as above.
        unsafe {
            k.bias_seg(
                Output::F32,
                DevMat {
                    ptr: y32,
                    ld: h as i64,
                },
                dseg,
                dbias,
                h as i32,
            )
            .unwrap();
            k.bias_seg(
                Output::Model,
                DevMat {
                    ptr: yt,
                    ld: h as i64,
                },
                dseg,
                dbias,
                h as i32,
            )
            .unwrap();
            k.bias_seg_dual(z32, zt, h as i64, dseg, dbias, h as i32)
                .unwrap();
        }
        stream.synchronize().unwrap();
        for (out, p, pd) in [(Out::F32, y32, DType::Fp32), (Out::Model, yt, dtype)] {
            let mut y = base.clone();
            twin::bias_seg(dtype, out, &mut y, h, &seg, &bias, h);
            assert_eq!(d.down(p, pd, n * h), y, "{dtype} bias {out:?}");
        }
        let (mut w32, mut wt) = (base.clone(), vec![0f32; n * h]);
        twin::bias_seg_dual(dtype, &mut w32, &mut wt, h, &seg, &bias, h);
        assert_eq!(d.down(z32, DType::Fp32, n * h), w32, "{dtype} dual f32");
        assert_eq!(d.down(zt, dtype, n * h), wt, "{dtype} dual copy");
        // Adapters.
        let ax = rnd(&mut r, n * h, 1.0, dtype);
        let skip = rnd(&mut r, n * h, 1.0, DType::Fp32);
        let (dw, db) = (rnd(&mut r, m * h, 0.3, dtype), rnd(&mut r, m, 0.1, dtype));
        let (uw, ub) = (rnd(&mut r, h * m, 0.3, dtype), rnd(&mut r, h, 0.1, dtype));
        for act in [AdapterAct::Silu, AdapterAct::Relu, AdapterAct::GeluErf] {
            let g = AdapterSegDev {
                down_w: d.vals(dtype, &dw),
                down_b: d.vals(dtype, &db),
                up_w: d.vals(dtype, &uw),
                up_b: d.vals(dtype, &ub),
                width: m as i32,
                act: act.code(),
                scaling: 0.5,
                pad: 0,
            };
            let atab = d.up(AdapterSegDev::to_bytes(&[
                AdapterSegDev::default(),
                g,
                g,
                g,
            ]));
            let (dax, dd, dh) = (
                d.vals(dtype, &ax),
                d.vals(dtype, &vec![0.0; n * m]),
                d.vals(DType::Fp32, &skip),
            );
            // SAFETY: as above.
            unsafe {
                k.adapter_down(
                    DevMat {
                        ptr: dax,
                        ld: h as i64,
                    },
                    dseg,
                    atab,
                    DevMat {
                        ptr: dd,
                        ld: m as i64,
                    },
                    h as i32,
                )
                .unwrap();
                k.adapter_up(
                    DevMat {
                        ptr: dd,
                        ld: m as i64,
                    },
                    dseg,
                    atab,
                    dh,
                    dh,
                    h as i64,
                    h as i32,
                )
                .unwrap();
            }
            stream.synchronize().unwrap();
            let hg = AdapterSeg {
                down_w: &dw,
                down_b: &db,
                up_w: &uw,
                up_b: &ub,
                width: m,
                act,
                scaling: 0.5,
            };
            let segs = [None, Some(hg), Some(hg), Some(hg)];
            let mut dd_want = vec![0f32; n * m];
            twin::adapter_down(dtype, &ax, h, &seg, &segs, &mut dd_want, m, h);
            close(
                &d.down(dd, dtype, n * m),
                &dd_want,
                tol_t,
                &format!("{dtype} {act:?} down"),
            );
            let mut out = skip.clone();
            twin::adapter_up(&dd_want, m, &seg, &segs, None, &mut out, h, h);
            close(
                &d.down(dh, DType::Fp32, n * h),
                &out,
                1e-2,
                &format!("{dtype} {act:?} up"),
            );
        }
    }
}
