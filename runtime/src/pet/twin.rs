//! CPU twins of the segmented PET kernels in `gpu/pet_kernels.cu`: the same segment tables and
//! the same arithmetic (f32 accumulation, rounding to the model dtype at the same points), on
//! slices of f32 holding model-dtype values. Each twin is tested against the CPU reference's
//! formula ([`super::forward`]), so the kernels have a checked specification that runs in CI;
//! the GPU side is checked against the twins once it runs on a GPU.
//!
//! Only the order of the f32 sums differs from the kernels (a warp reduction there, a loop
//! here).

use super::tenant::AdapterAct;
use crate::dtype::DType;
use crate::error::{Error, Result};
use std::ops::Range;

/// The most segments one launch may describe (`PET_MAX_SEG` in the kernels).
pub const MAX_SEGMENTS: usize = 1024;

/// Row offsets of a batch's segments: segment `s` is rows `seg_start[s]..seg_start[s + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    /// `nseg + 1` non-decreasing row offsets starting at 0.
    pub seg_start: Vec<i32>,
}

impl Segments {
    /// Segments of `rows[s] × per_row` rows each (texts × tokens for token rows).
    pub fn new(rows: &[usize], per_row: usize) -> Result<Self> {
        if rows.is_empty() || rows.len() > MAX_SEGMENTS {
            return Err(Error::Input(format!(
                "{} segments: expected 1 to {MAX_SEGMENTS}",
                rows.len()
            )));
        }
        let mut seg_start = vec![0i32];
        let mut acc = 0usize;
        for r in rows {
            acc = r
                .checked_mul(per_row)
                .and_then(|n| acc.checked_add(n))
                .filter(|&a| a <= i32::MAX as usize)
                .ok_or_else(|| Error::Input("segment rows overflow a 32-bit row index".into()))?;
            seg_start.push(acc as i32);
        }
        Ok(Segments { seg_start })
    }

    /// Segments.
    pub fn len(&self) -> usize {
        self.seg_start.len() - 1
    }

    /// Whether there is no segment.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of segment `s`.
    pub fn rows(&self, s: usize) -> Range<usize> {
        self.seg_start[s] as usize..self.seg_start[s + 1] as usize
    }

    /// Little-endian bytes of `seg_start`, as the kernels read them.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.seg_start
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }
}

/// A value rounded to the model dtype.
fn round(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::Fp32 => v,
        DType::Fp16 => half::f16::from_f32(v).to_f32(),
        DType::Bf16 => half::bf16::from_f32(v).to_f32(),
    }
}

/// Where an expand or bias kernel writes: an f32 buffer, or a model-dtype one (add, round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// `y += v` in f32.
    F32,
    /// `y = round(y + v)`.
    Model,
}

fn store(dtype: DType, out: Out, y: &mut f32, v: f32) {
    *y = match out {
        Out::F32 => *y + v,
        Out::Model => round(dtype, *y + v),
    };
}

/// One segment's LoRA pair (`LoraSeg`): `a` `[rank, in]`, `b` `[out, rank]`.
#[derive(Debug, Clone, Copy)]
pub struct LoraSeg<'a> {
    /// A, row-major.
    pub a: &'a [f32],
    /// B, row-major.
    pub b: &'a [f32],
    /// Rank.
    pub rank: usize,
    /// alpha / rank.
    pub scale: f32,
}

/// The sites one launch covers (`gpu::pet::Sites`): `count` table entries per segment, site k's
/// shrink output at column `k × t_cols` of `t`, its output `k × y_stride` elements after site
/// 0's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sites {
    /// Sites per segment.
    pub count: usize,
    /// Columns of `t` per site.
    pub t_cols: usize,
    /// Elements between the sites' outputs.
    pub y_stride: usize,
}

impl Sites {
    /// One site whose shrink output takes `t_cols` columns.
    pub fn one(t_cols: usize) -> Self {
        Sites {
            count: 1,
            t_cols,
            y_stride: 0,
        }
    }
}

/// `pet_lora_shrink`: `t[row][k·t_cols + j] = round(x[row]·A_k[j])` for rows of segments with
/// a pair at site k (`segs`: `nseg × sites.count`, segment-major).
#[allow(clippy::too_many_arguments)]
pub fn lora_shrink(
    dtype: DType,
    x: &[f32],
    ld_x: usize,
    seg: &Segments,
    segs: &[Option<LoraSeg>],
    sites: Sites,
    t: &mut [f32],
    ld_t: usize,
    in_dim: usize,
) {
    for s in 0..seg.len() {
        for k in 0..sites.count {
            let Some(g) = segs[s * sites.count + k] else {
                continue;
            };
            for row in seg.rows(s) {
                for j in 0..g.rank {
                    let xr = &x[row * ld_x..row * ld_x + in_dim];
                    let ar = &g.a[j * in_dim..(j + 1) * in_dim];
                    let acc: f32 = xr.iter().zip(ar).map(|(p, q)| p * q).sum();
                    t[row * ld_t + k * sites.t_cols + j] = round(dtype, acc);
                }
            }
        }
    }
}

/// `pet_lora_expand_{f32,t}`: `y_k[row][c] (+)= scale · t_k[row]·B_k[c]`.
#[allow(clippy::too_many_arguments)]
pub fn lora_expand(
    dtype: DType,
    out: Out,
    t: &[f32],
    ld_t: usize,
    seg: &Segments,
    segs: &[Option<LoraSeg>],
    sites: Sites,
    y: &mut [f32],
    ld_y: usize,
    out_dim: usize,
) {
    for s in 0..seg.len() {
        for k in 0..sites.count {
            let Some(g) = segs[s * sites.count + k] else {
                continue;
            };
            for row in seg.rows(s) {
                for c in 0..out_dim {
                    let t0 = row * ld_t + k * sites.t_cols;
                    let tr = &t[t0..t0 + g.rank];
                    let br = &g.b[c * g.rank..(c + 1) * g.rank];
                    let acc: f32 = tr.iter().zip(br).map(|(p, q)| p * q).sum();
                    let i = k * sites.y_stride + row * ld_y + c;
                    store(dtype, out, &mut y[i], acc * g.scale);
                }
            }
        }
    }
}

/// The value a bias kernel adds: the segment's bias minus the backbone's (`base`) already in
/// the output.
fn delta(b: &[f32], base: Option<&[f32]>, c: usize) -> f32 {
    b[c] - base.map_or(0.0, |z| z[c])
}

/// `pet_bias_seg_{f32,t}`: `y_k[row][c] (+)= bias_{s,k}[c] − base_k[c]` for rows of segments
/// with a bias at site k (`base`: site k's at `k × base_stride`).
#[allow(clippy::too_many_arguments)]
pub fn bias_seg(
    dtype: DType,
    out: Out,
    y: &mut [f32],
    ld_y: usize,
    seg: &Segments,
    bias: &[Option<&[f32]>],
    sites: Sites,
    base: Option<(&[f32], usize)>,
    n: usize,
) {
    for s in 0..seg.len() {
        for k in 0..sites.count {
            let Some(b) = bias[s * sites.count + k] else {
                continue;
            };
            let base_k = base.map(|(z, stride)| &z[k * stride..k * stride + n]);
            for row in seg.rows(s) {
                for c in 0..n {
                    let i = k * sites.y_stride + row * ld_y + c;
                    store(dtype, out, &mut y[i], delta(b, base_k, c));
                }
            }
        }
    }
}

/// `pet_bias_seg_dual`: `y32 += b − base`, `yt = round(y32)`.
#[allow(clippy::too_many_arguments)]
pub fn bias_seg_dual(
    dtype: DType,
    y32: &mut [f32],
    yt: &mut [f32],
    ld: usize,
    seg: &Segments,
    bias: &[Option<&[f32]>],
    base: Option<&[f32]>,
    n: usize,
) {
    for (s, b) in bias.iter().enumerate().take(seg.len()) {
        let Some(b) = b else { continue };
        for row in seg.rows(s) {
            for c in 0..n {
                let v = y32[row * ld + c] + delta(b, base, c);
                y32[row * ld + c] = v;
                yt[row * ld + c] = round(dtype, v);
            }
        }
    }
}

/// One segment's dense head layer (`LinearSeg`): `w` `[out, in]`, `b` `[out]`.
#[derive(Debug, Clone, Copy)]
pub struct LinearSeg<'a> {
    /// Weight, row-major.
    pub w: &'a [f32],
    /// Bias (none: zero).
    pub b: Option<&'a [f32]>,
    /// Output features.
    pub out: usize,
}

/// `pet_linear_{f32,t}`: `y[row][c] = x[row]·W[c] + b[c]` per segment (`Out::Model`: rounded;
/// the previous contents of `y` are replaced either way).
#[allow(clippy::too_many_arguments)]
pub fn linear(
    dtype: DType,
    out: Out,
    x: &[f32],
    ld_x: usize,
    seg: &Segments,
    segs: &[Option<LinearSeg>],
    y: &mut [f32],
    ld_y: usize,
    in_dim: usize,
) {
    for (s, g) in segs.iter().enumerate().take(seg.len()) {
        let Some(g) = g else { continue };
        for row in seg.rows(s) {
            for c in 0..g.out {
                let xr = &x[row * ld_x..row * ld_x + in_dim];
                let wr = &g.w[c * in_dim..(c + 1) * in_dim];
                let acc: f32 = xr.iter().zip(wr).map(|(p, q)| p * q).sum();
                let v = acc + g.b.map_or(0.0, |b| b[c]);
                y[row * ld_y + c] = match out {
                    Out::F32 => v,
                    Out::Model => round(dtype, v),
                };
            }
        }
    }
}

/// One segment's bottleneck adapter (`AdapterSeg`).
#[derive(Debug, Clone, Copy)]
pub struct AdapterSeg<'a> {
    /// `[width, h]`.
    pub down_w: &'a [f32],
    /// `[width]`.
    pub down_b: &'a [f32],
    /// `[h, width]`.
    pub up_w: &'a [f32],
    /// `[h]`.
    pub up_b: &'a [f32],
    /// Bottleneck width.
    pub width: usize,
    /// Activation.
    pub act: AdapterAct,
    /// Output scaling.
    pub scaling: f32,
}

impl AdapterAct {
    /// The kernels' code for the activation (`kernels.cu`'s `bias_act` codes, 5 = SiLU).
    pub fn code(self) -> i32 {
        match self {
            AdapterAct::GeluErf => 1,
            AdapterAct::GeluTanh => 2,
            AdapterAct::Relu => 3,
            AdapterAct::Tanh => 4,
            AdapterAct::Silu => 5,
        }
    }

    /// The activation of one f32 value, as the kernels compute it.
    pub fn f32(self, v: f32) -> f32 {
        match self {
            AdapterAct::GeluErf => {
                0.5 * v
                    * (1.0 + candle_core::cpu::erf::erf_f32(v * std::f32::consts::FRAC_1_SQRT_2))
            }
            AdapterAct::GeluTanh => {
                0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v * v * v)).tanh())
            }
            AdapterAct::Relu => v.max(0.0),
            AdapterAct::Tanh => v.tanh(),
            AdapterAct::Silu => v / (1.0 + (-v).exp()),
        }
    }
}

/// `pet_adapter_down{,_f32}`: `d[row][j] = round(act(round(x[row]·Wd[j] + bd[j])))`, with `x`
/// rounded to the model dtype as it is read (a model-dtype `x` is unchanged by it; an f32 one
/// is the `_f32` kernel's input).
#[allow(clippy::too_many_arguments)]
pub fn adapter_down(
    dtype: DType,
    x: &[f32],
    ld_x: usize,
    seg: &Segments,
    segs: &[Option<AdapterSeg>],
    d: &mut [f32],
    ld_d: usize,
    h: usize,
) {
    for (s, g) in segs.iter().enumerate().take(seg.len()) {
        let Some(g) = g else { continue };
        for row in seg.rows(s) {
            for j in 0..g.width {
                let xr = &x[row * ld_x..row * ld_x + h];
                let wr = &g.down_w[j * h..(j + 1) * h];
                let acc: f32 = xr.iter().zip(wr).map(|(p, q)| round(dtype, *p) * q).sum();
                let v = round(dtype, acc + g.down_b[j]);
                d[row * ld_d + j] = round(dtype, g.act.f32(v));
            }
        }
    }
}

/// `pet_adapter_up`: `out[row][c] = (skip[row][c] + res[row][c]) + (d[row]·Wu[c] + bu[c]) ·
/// scaling`, with `skip` the output itself where `None` (in place) and no `res` where `None`.
#[allow(clippy::too_many_arguments)]
pub fn adapter_up(
    d: &[f32],
    ld_d: usize,
    seg: &Segments,
    segs: &[Option<AdapterSeg>],
    skip: Option<&[f32]>,
    res: Option<&[f32]>,
    out: &mut [f32],
    ld_h: usize,
    h: usize,
) {
    for (s, g) in segs.iter().enumerate().take(seg.len()) {
        let Some(g) = g else { continue };
        for row in seg.rows(s) {
            for c in 0..h {
                let dr = &d[row * ld_d..row * ld_d + g.width];
                let wr = &g.up_w[c * g.width..(c + 1) * g.width];
                let acc: f32 = dr.iter().zip(wr).map(|(p, q)| p * q).sum();
                let v = (acc + g.up_b[c]) * g.scaling;
                let i = row * ld_h + c;
                let sk = skip.map_or(out[i], |k| k[i]);
                let base = res.map_or(sk, |r| sk + r[i]);
                out[i] = base + v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    fn rnd(r: &mut rand_pcg::Pcg64Mcg, n: usize, scale: f32, dtype: DType) -> Vec<f32> {
        (0..n)
            .map(|_| round(dtype, (r.random::<f32>() * 2.0 - 1.0) * scale))
            .collect()
    }

    fn t(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    fn rounded(dtype: DType, x: Tensor) -> Tensor {
        let d = dtype.to_candle();
        x.to_dtype(d)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
    }

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let m = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter().zip(b).fold(0f32, |e, (p, q)| e.max((p - q).abs())) / m
    }

    /// Four segments of 3, 2, 0 and 4 texts of 2 tokens each.
    fn layout() -> Segments {
        Segments::new(&[3, 2, 0, 4], 2).unwrap()
    }

    #[test]
    fn segments_are_bounded_and_checked() {
        let s = layout();
        assert_eq!(s.seg_start, vec![0, 6, 10, 10, 18]);
        assert_eq!((s.len(), s.rows(2)), (4, 10..10));
        assert_eq!(s.to_bytes().len(), 20);
        assert!(Segments::new(&[], 1).is_err());
        assert!(Segments::new(&vec![1; MAX_SEGMENTS + 1], 1).is_err());
        assert!(Segments::new(&[usize::MAX / 2, 4], 4).is_err());
    }

    /// LoRA shrink + expand on a mixed batch equals, per segment, the CPU reference's
    /// `y + scale · round(x·Aᵀ)·Bᵀ` (f32 output) and its rounding (model-dtype output).
    #[test]
    fn lora_twin_equals_the_reference_formula() {
        let (din, dout) = (24, 20);
        for dtype in [DType::Fp32, DType::Fp16, DType::Bf16] {
            let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(3);
            let seg = layout();
            let n = *seg.seg_start.last().unwrap() as usize;
            let x = rnd(&mut r, n * din, 1.0, dtype);
            let y0 = rnd(&mut r, n * dout, 1.0, dtype);
            let ranks = [4usize, 0, 0, 7];
            let w: Vec<(Vec<f32>, Vec<f32>)> = ranks
                .iter()
                .map(|&k| {
                    (
                        rnd(&mut r, k * din, 0.3, dtype),
                        rnd(&mut r, dout * k, 0.3, dtype),
                    )
                })
                .collect();
            let segs: Vec<Option<LoraSeg>> = ranks
                .iter()
                .zip(&w)
                .map(|(&k, (a, b))| {
                    (k > 0).then_some(LoraSeg {
                        a,
                        b,
                        rank: k,
                        scale: 2.0,
                    })
                })
                .collect();
            let mut tt = vec![0f32; n * 8];
            let one = Sites::one(8);
            lora_shrink(dtype, &x, din, &seg, &segs, one, &mut tt, 8, din);
            for out in [Out::F32, Out::Model] {
                let mut y = y0.clone();
                lora_expand(dtype, out, &tt, 8, &seg, &segs, one, &mut y, dout, dout);
                for (s, g) in segs.iter().enumerate() {
                    let rows = seg.rows(s);
                    let got = &y[rows.start * dout..rows.end * dout];
                    let base = &y0[rows.start * dout..rows.end * dout];
                    let Some(g) = g else {
                        assert_eq!(got, base, "rows without a pair are untouched");
                        continue;
                    };
                    let xs = t(&x[rows.start * din..rows.end * din], (rows.len(), din));
                    let tr = rounded(
                        dtype,
                        xs.matmul(&t(g.a, (g.rank, din)).t().unwrap()).unwrap(),
                    );
                    let delta =
                        (tr.matmul(&t(g.b, (dout, g.rank)).t().unwrap()).unwrap() * 2.0).unwrap();
                    let mut want = (t(base, (rows.len(), dout)) + delta).unwrap();
                    if out == Out::Model {
                        want = rounded(dtype, want);
                    }
                    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let tol = match (dtype, out) {
                        (DType::Fp32, _) | (_, Out::F32) => 1e-5,
                        (DType::Fp16, _) => 2e-3,
                        (DType::Bf16, _) => 1.6e-2,
                    };
                    let e = max_rel(got, &want);
                    assert!(e <= tol, "{dtype} {out:?} segment {s}: {e}");
                }
            }
        }
    }

    #[test]
    fn bias_twins_add_per_segment() {
        let seg = layout();
        let n = 18;
        let b0 = vec![0.5f32; 5];
        let b3 = vec![-0.25f32; 5];
        let bias = [Some(b0.as_slice()), None, None, Some(b3.as_slice())];
        let mut y = vec![1.0f32 / 3.0; n * 5];
        let one = Sites::one(0);
        bias_seg(
            DType::Bf16,
            Out::Model,
            &mut y,
            5,
            &seg,
            &bias,
            one,
            None,
            5,
        );
        assert_eq!(y[0], half::bf16::from_f32(1.0 / 3.0 + 0.5).to_f32());
        assert_eq!(y[6 * 5], 1.0 / 3.0, "segment 1 has no bias");
        assert_eq!(
            y[17 * 5 + 4],
            half::bf16::from_f32(1.0 / 3.0 - 0.25).to_f32()
        );
        let mut y32 = vec![1.0f32 / 3.0; n * 5];
        let mut yt = vec![0f32; n * 5];
        bias_seg_dual(DType::Fp16, &mut y32, &mut yt, 5, &seg, &bias, None, 5);
        assert_eq!(y32[0], 1.0 / 3.0 + 0.5);
        assert_eq!(yt[0], half::f16::from_f32(1.0 / 3.0 + 0.5).to_f32());
        assert_eq!(yt[6 * 5], 0.0, "rows without a bias are not written");
        let mut y = vec![1.0f32; n * 5];
        bias_seg(DType::Fp16, Out::F32, &mut y, 5, &seg, &bias, one, None, 5);
        assert_eq!((y[0], y[89]), (1.5, 0.75));
        // A base (the backbone's bias already in the output) is taken off; with two sites,
        // site 1 has its own base and output `y_stride` elements on.
        let base = [0.25f32; 10];
        let two = Sites {
            count: 2,
            t_cols: 0,
            y_stride: n * 5,
        };
        let bias2 = [
            Some(b0.as_slice()),
            Some(b3.as_slice()),
            None,
            None,
            None,
            None,
            None,
            Some(b0.as_slice()),
        ];
        let mut y = vec![1.0f32; 2 * n * 5];
        bias_seg(
            DType::Fp32,
            Out::F32,
            &mut y,
            5,
            &seg,
            &bias2,
            two,
            Some((&base, 5)),
            5,
        );
        assert_eq!((y[0], y[n * 5]), (1.25, 0.5), "segment 0, sites 0 and 1");
        assert_eq!(
            (y[6 * 5], y[n * 5 + 17 * 5]),
            (1.0, 1.25),
            "segments 1 and 3"
        );
        assert_eq!(y[17 * 5], 1.0, "segment 3 has no site-0 bias");
    }

    /// Adapter down + up equals the CPU reference's bottleneck for every activation:
    /// `skip + (round(act(round(x·Wdᵀ + bd)))·Wuᵀ + bu) · scaling`.
    #[test]
    fn adapter_twin_equals_the_reference_formula() {
        let (h, m) = (16, 6);
        for (dtype, act) in [
            (DType::Fp32, AdapterAct::Silu),
            (DType::Fp16, AdapterAct::Relu),
            (DType::Bf16, AdapterAct::GeluErf),
            (DType::Fp32, AdapterAct::GeluTanh),
            (DType::Fp16, AdapterAct::Tanh),
        ] {
            let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(9);
            let seg = layout();
            let n = 18;
            let x = rnd(&mut r, n * h, 1.0, dtype);
            let skip = rnd(&mut r, n * h, 1.0, DType::Fp32);
            let (dw, db) = (rnd(&mut r, m * h, 0.5, dtype), rnd(&mut r, m, 0.1, dtype));
            let (uw, ub) = (rnd(&mut r, h * m, 0.5, dtype), rnd(&mut r, h, 0.1, dtype));
            let g = AdapterSeg {
                down_w: &dw,
                down_b: &db,
                up_w: &uw,
                up_b: &ub,
                width: m,
                act,
                scaling: 0.5,
            };
            let segs = [None, Some(g), None, Some(g)];
            let mut d = vec![0f32; n * m];
            adapter_down(dtype, &x, h, &seg, &segs, &mut d, m, h);
            let mut out = skip.clone();
            adapter_up(&d, m, &seg, &segs, None, None, &mut out, h, h);
            // A residual added to the skip: `(skip + res) + up`.
            let mut with_res = skip.clone();
            adapter_up(&d, m, &seg, &segs, None, Some(&skip), &mut with_res, h, h);
            let mut up = vec![0f32; n * h];
            adapter_up(&d, m, &seg, &segs, None, None, &mut up, h, h);
            for i in 6 * h..7 * h {
                assert_eq!(
                    with_res[i],
                    (skip[i] + skip[i]) + up[i],
                    "{dtype} {act:?} {i}"
                );
            }
            for (s, gg) in segs.iter().enumerate() {
                let rows = seg.rows(s);
                let got = &out[rows.start * h..rows.end * h];
                let sk = &skip[rows.start * h..rows.end * h];
                if gg.is_none() {
                    assert_eq!(got, sk);
                    continue;
                }
                let xs = t(&x[rows.start * h..rows.end * h], (rows.len(), h));
                let dn = xs
                    .matmul(&t(&dw, (m, h)).t().unwrap())
                    .unwrap()
                    .broadcast_add(&Tensor::from_vec(db.clone(), m, &Device::Cpu).unwrap())
                    .unwrap();
                let dn = rounded(dtype, dn);
                let dn = match act {
                    AdapterAct::Silu => dn.silu(),
                    AdapterAct::Relu => dn.relu(),
                    AdapterAct::GeluErf => dn.gelu_erf(),
                    AdapterAct::GeluTanh => dn.gelu(),
                    AdapterAct::Tanh => dn.tanh(),
                }
                .unwrap();
                let dn = rounded(dtype, dn);
                let up = dn
                    .matmul(&t(&uw, (h, m)).t().unwrap())
                    .unwrap()
                    .broadcast_add(&Tensor::from_vec(ub.clone(), h, &Device::Cpu).unwrap())
                    .unwrap();
                let want = ((up * 0.5).unwrap() + t(sk, (rows.len(), h))).unwrap();
                let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let e = max_rel(got, &want);
                // A rounding point may flip by one unit where the two sums differ in order.
                let tol = if dtype == DType::Fp32 { 1e-5 } else { 1e-2 };
                assert!(e <= tol, "{dtype} {act:?} segment {s}: {e}");
            }
        }
    }
    /// A launch over Q, K and V (three sites, some absent) equals one launch per site.
    #[test]
    fn lora_sites_equal_separate_launches() {
        let (din, dout, dtype) = (12, 12, DType::Bf16);
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(4);
        let seg = layout();
        let n = *seg.seg_start.last().unwrap() as usize;
        let x = rnd(&mut r, n * din, 1.0, dtype);
        let mats: Vec<(Vec<f32>, Vec<f32>)> = (0..12)
            .map(|_| {
                (
                    rnd(&mut r, 3 * din, 0.3, dtype),
                    rnd(&mut r, dout * 3, 0.3, dtype),
                )
            })
            .collect();
        // Segment-major [4][3]: segment 0 has Q and V, 1 only K, 2 (empty) Q, 3 all three.
        let present = [
            true, false, true, false, true, false, true, false, false, true, true, true,
        ];
        let segs: Vec<Option<LoraSeg>> = mats
            .iter()
            .zip(present)
            .map(|((a, b), p)| {
                p.then_some(LoraSeg {
                    a,
                    b,
                    rank: 3,
                    scale: 0.5,
                })
            })
            .collect();
        let three = Sites {
            count: 3,
            t_cols: 4,
            y_stride: n * dout,
        };
        let mut t = vec![0f32; n * 12];
        lora_shrink(dtype, &x, din, &seg, &segs, three, &mut t, 12, din);
        let y0 = rnd(&mut r, 3 * n * dout, 1.0, dtype);
        let mut y = y0.clone();
        lora_expand(
            dtype,
            Out::Model,
            &t,
            12,
            &seg,
            &segs,
            three,
            &mut y,
            dout,
            dout,
        );
        for k in 0..3 {
            let own: Vec<Option<LoraSeg>> = (0..4).map(|s| segs[s * 3 + k]).collect();
            let mut tk = vec![0f32; n * 4];
            lora_shrink(dtype, &x, din, &seg, &own, Sites::one(4), &mut tk, 4, din);
            let mut yk = y0[k * n * dout..(k + 1) * n * dout].to_vec();
            lora_expand(
                dtype,
                Out::Model,
                &tk,
                4,
                &seg,
                &own,
                Sites::one(4),
                &mut yk,
                dout,
                dout,
            );
            assert_eq!(&y[k * n * dout..(k + 1) * n * dout], &yk[..], "site {k}");
        }
    }

    /// The heads' dense layer equals `x·Wᵀ + b` per segment, each with its own width.
    #[test]
    fn linear_twin_equals_the_reference_formula() {
        let (h, dtype) = (16, DType::Fp16);
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(6);
        let seg = layout();
        let n = 18;
        let x = rnd(&mut r, n * h, 1.0, dtype);
        let (w0, b0) = (rnd(&mut r, 3 * h, 0.5, dtype), rnd(&mut r, 3, 0.5, dtype));
        let w3 = rnd(&mut r, 5 * h, 0.5, dtype);
        let segs = [
            Some(LinearSeg {
                w: &w0,
                b: Some(&b0),
                out: 3,
            }),
            None,
            None,
            Some(LinearSeg {
                w: &w3,
                b: None,
                out: 5,
            }),
        ];
        for out in [Out::F32, Out::Model] {
            let mut y = vec![-7f32; n * 5];
            linear(dtype, out, &x, h, &seg, &segs, &mut y, 5, h);
            for (s, w, b, o) in [(0, &w0, Some(&b0), 3), (3, &w3, None, 5)] {
                let rows = seg.rows(s);
                let xs = t(&x[rows.start * h..rows.end * h], (rows.len(), h));
                let mut want = xs.matmul(&t(w, (o, h)).t().unwrap()).unwrap();
                if let Some(b) = b {
                    let bt = Tensor::from_vec(b.clone(), o, &Device::Cpu).unwrap();
                    want = want.broadcast_add(&bt).unwrap();
                }
                if out == Out::Model {
                    want = rounded(dtype, want);
                }
                let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let got: Vec<f32> = rows
                    .clone()
                    .flat_map(|row| y[row * 5..row * 5 + o].to_vec())
                    .collect();
                let tol = if out == Out::F32 { 1e-5 } else { 2e-3 };
                let e = max_rel(&got, &want);
                assert!(e <= tol, "{out:?} segment {s}: {e}");
            }
            assert_eq!(y[6 * 5], -7.0, "segment 1 has no layer");
            assert_eq!(
                (y[3], y[4]),
                (-7.0, -7.0),
                "columns past a segment's width stay"
            );
        }
    }
}
