//! Device time of each segmented LoRA kernel alone, at the shape of the mixed pass that
//! `ptm bench pet --profile` measures (BERT-base: 32 rows × 128 tokens, Q, K and V of 768
//! columns, rank 8 on Q and V): the warp kernels' shrink and expand, the row-tiled ones'
//! shrink and expand, the fused kernel, and the tensor-core shrink and expand
//! (`pet_mma_kernels.cu`) — so that the Q/K/V step's time splits into its launches.
//! Segments: one tenant over all rows, and 32 tenants of 128 rows each.
//!
//! Timing: CUDA events around `ITERS` launches, the median of `GROUPS` groups, per launch in
//! µs; first enqueued one by one, then the same launches captured in a CUDA graph (a second
//! table: no host launch between kernels, as in a pass's graph — the first table's figures
//! may include the host's launch time where a kernel is shorter than it). Then a check
//! (`lora_check/`): the tensor-core kernels' `t` and `y` against the warp kernels' from the
//! same inputs, for both segmentations and for ragged batches (segments of 1
//! to 13 rows, tenants with 0 to 3 pairs of ranks 1 to RANK, misaligned matrices, input and
//! output widths that are not multiples of a vector or of a warp's columns — an input width
//! that is not a multiple of 16 runs the tiled shrink); the program exits with status 1 if any
//! element differs by more than the 16-bit tolerance (`TOL`). Needs a GPU and the CUDA
//! libraries on `LD_LIBRARY_PATH` (cudarc loads them at run time).
//!
//! ```sh
//! cargo build --release -p ptm-runtime --example lora_kernels
//! target/release/examples/lora_kernels [DTYPE (fp16)] [ROWS (4096)] [RANK (8)]
//! ```
#![allow(unsafe_code)]

#[cfg(feature = "cuda")]
#[path = "lora_check/mod.rs"]
mod check;

#[cfg(feature = "cuda")]
mod bench {
    use crate::check::{compare, Case, Diff};
    use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
    use ptm_runtime::gpu::pet::{
        DevMat, DevSegments, LoraKernels, LoraSegDev, Output, PetKernels, Sites,
    };
    use ptm_runtime::pet::twin::Segments;
    use ptm_runtime::DType;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    /// Launches timed between two events.
    const ITERS: usize = 50;
    /// Groups of `ITERS` launches; the median group is reported.
    const GROUPS: usize = 11;
    /// Width of Q, K and V (BERT-base).
    const HIDDEN: usize = 768;

    /// The head of both timing tables: a column per timed launch, in `launches`' order.
    const TABLE_HEADER: &str = "| tenants | warp shrink | warp expand | tiled shrink | \
        tiled expand | tiled expand (f32 out) | fused | fused (f32 out) | mma shrink | \
        mma expand | mma expand (f32 out) | mma both |\n\
        |---|---|---|---|---|---|---|---|---|---|---|---|\n";

    /// The check's tolerance, relative to `max(1, |value|)`: two units in the last place of a
    /// value about 1 (a sum in another order may round `t` one unit the other way, and `y`
    /// carries that on).
    fn tol(dtype: DType) -> f64 {
        match dtype {
            DType::Fp32 => 1e-6,
            DType::Fp16 => 2.0 * 2f64.powi(-10),
            DType::Bf16 => 2.0 * 2f64.powi(-7),
        }
    }

    type Res<T> = Result<T, String>;

    use crate::check::e;

    /// Device buffers kept alive, addressed by `u64`.
    struct Dev {
        stream: Arc<CudaStream>,
        bufs: Vec<CudaSlice<u8>>,
    }

    impl Dev {
        fn up(&mut self, bytes: &[u8]) -> Res<u64> {
            let s = self.stream.clone_htod(bytes).map_err(e("upload"))?;
            let p = s.device_ptr(&self.stream).0;
            self.bufs.push(s);
            Ok(p)
        }

        fn vals(
            &mut self,
            dtype: DType,
            r: &mut rand_pcg::Pcg64Mcg,
            n: usize,
            scale: f32,
        ) -> Res<u64> {
            self.up(&bytes(dtype, r, n, scale))
        }
    }

    /// Median device µs per launch of `f` (which enqueues one launch): each group `ITERS`
    /// launches enqueued one by one, or (`graph`) one replay of a CUDA graph of `ITERS`
    /// launches, as a pass's graph runs them (no host launch between kernels).
    fn time(stream: &Arc<CudaStream>, f: &mut dyn FnMut() -> Res<()>, graph: bool) -> Res<f64> {
        let ctx = stream.context();
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let (e0, e1) = (
            ctx.new_event(flags).map_err(e("cuEventCreate"))?,
            ctx.new_event(flags).map_err(e("cuEventCreate"))?,
        );
        for _ in 0..5 {
            f()?;
        }
        let captured = if graph {
            stream.synchronize().map_err(e("cuStreamSynchronize"))?;
            stream
                .begin_capture(
                    cudarc::driver::sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                )
                .map_err(e("cuStreamBeginCapture"))?;
            let enq = (0..ITERS).try_for_each(|_| f());
            let g = stream
                .end_capture(cudarc::driver::sys::CUgraphInstantiate_flags(0))
                .map_err(e("cuStreamEndCapture"));
            enq?;
            let g = g?.ok_or_else(|| "captured an empty graph".to_string())?;
            g.upload().map_err(e("cuGraphUpload"))?;
            Some(g)
        } else {
            None
        };
        let mut us = Vec::with_capacity(GROUPS);
        for _ in 0..GROUPS {
            e0.record(stream).map_err(e("cuEventRecord"))?;
            match &captured {
                Some(g) => g.launch().map_err(e("cuGraphLaunch"))?,
                None => {
                    for _ in 0..ITERS {
                        f()?;
                    }
                }
            }
            e1.record(stream).map_err(e("cuEventRecord"))?;
            e1.synchronize().map_err(e("cuEventSynchronize"))?;
            let ms = e0.elapsed_ms(&e1).map_err(e("cuEventElapsedTime"))?;
            us.push(f64::from(ms) * 1e3 / ITERS as f64);
        }
        us.sort_by(f64::total_cmp);
        Ok(us[GROUPS / 2])
    }

    pub fn run(dtype: DType, rows: usize, rank: usize) -> Res<()> {
        // The runtime's probe first: a clear error where there is no driver or GPU.
        let gpu = ptm_runtime::gpu::device_name(0).map_err(|x| x.to_string())?;
        let ctx = CudaContext::new(0).map_err(e("GPU 0"))?;
        let stream = ctx.new_stream().map_err(e("stream"))?;
        let kernels = [
            LoraKernels::Warp,
            LoraKernels::Tiled,
            LoraKernels::Fused,
            LoraKernels::Mma,
        ]
        .map(|l| PetKernels::new(&stream, dtype, l).map_err(|x| x.to_string()));
        let [warp, tiled, fused, mma] = kernels;
        let (warp, tiled, fused, mma) = (warp?, tiled?, fused?, mma?);
        let mut d = Dev {
            stream: stream.clone(),
            bufs: vec![],
        };
        let mut r = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        let x = DevMat {
            ptr: d.vals(dtype, &mut r, rows * HIDDEN, 1.0)?,
            ld: HIDDEN as i64,
        };
        let y = DevMat {
            ptr: d.vals(dtype, &mut r, 3 * rows * HIDDEN, 1.0)?,
            ld: HIDDEN as i64,
        };
        let y32 = DevMat {
            ptr: d.vals(DType::Fp32, &mut r, 3 * rows * HIDDEN, 1.0)?,
            ld: HIDDEN as i64,
        };
        let t = DevMat {
            ptr: d.vals(dtype, &mut r, rows * 3 * rank, 0.0)?,
            ld: (3 * rank) as i64,
        };
        let sites = Sites {
            count: 3,
            t_cols: rank as i32,
            y_stride: (rows * HIDDEN) as i64,
        };
        println!(
            "LoRA kernels alone on {gpu}, {dtype}, {rows} rows × {HIDDEN} (Q, K, V), rank {rank} \
             on Q and V; µs per launch, median of {GROUPS} groups of {ITERS}; fused runs: {}; \
             tensor cores run: {}",
            PetKernels::fits_fused(sites),
            mma.fits_mma(HIDDEN as i32),
        );
        print!("{TABLE_HEADER}");
        let mut checks: Vec<(String, Diff)> = Vec::new();
        let mut graph_rows: Vec<(usize, Vec<f64>)> = Vec::new();
        for tenants in [1usize, 32] {
            let per = rows.div_ceil(tenants);
            let seg_rows: Vec<usize> = (0..tenants)
                .map(|i| per.min(rows.saturating_sub(i * per)))
                .collect();
            let seg = Segments::new(&seg_rows, 1).map_err(|x| x.to_string())?;
            let dseg = DevSegments {
                seg_start: d.up(&seg.to_bytes())?,
                nseg: seg.len() as i32,
            };
            let mut table = Vec::with_capacity(tenants * 3);
            for _ in 0..tenants {
                for site in 0..3 {
                    table.push(if site == 1 {
                        LoraSegDev::default()
                    } else {
                        LoraSegDev {
                            a: d.vals(dtype, &mut r, rank * HIDDEN, 0.2)?,
                            b: d.vals(dtype, &mut r, HIDDEN * rank, 0.2)?,
                            rank: rank as i32,
                            scale: 2.0,
                        }
                    });
                }
            }
            let tab = d.up(&LoraSegDev::to_bytes(&table))?;
            let hd = HIDDEN as i32;
            let ms = |x: ptm_runtime::Result<()>| x.map_err(|err| err.to_string());
            // SAFETY: every address is a live buffer of the sizes the tables and dimensions
            // imply (x: rows × 768; t: rows × 3·rank; y: 3 × rows × 768; the tables' matrices).
            type Launch<'a> = Box<dyn FnMut() -> Res<()> + 'a>;
            let mut launches: Vec<Launch<'_>> = unsafe {
                vec![
                    Box::new(|| ms(warp.lora_shrink(x, dseg, tab, sites, t, hd))),
                    Box::new(|| ms(warp.lora_expand(Output::Model, t, dseg, tab, sites, y, hd))),
                    Box::new(|| ms(tiled.lora_shrink(x, dseg, tab, sites, t, hd))),
                    Box::new(|| ms(tiled.lora_expand(Output::Model, t, dseg, tab, sites, y, hd))),
                    Box::new(|| ms(tiled.lora_expand(Output::F32, t, dseg, tab, sites, y32, hd))),
                    Box::new(|| ms(fused.lora(Output::Model, x, hd, dseg, tab, sites, t, y, hd))),
                    Box::new(|| ms(fused.lora(Output::F32, x, hd, dseg, tab, sites, t, y32, hd))),
                    Box::new(|| ms(mma.lora_shrink(x, dseg, tab, sites, t, hd))),
                    Box::new(|| ms(mma.lora_expand(Output::Model, t, dseg, tab, sites, y, hd))),
                    Box::new(|| ms(mma.lora_expand(Output::F32, t, dseg, tab, sites, y32, hd))),
                    Box::new(|| ms(mma.lora(Output::Model, x, hd, dseg, tab, sites, t, y, hd))),
                ]
            };
            let mut timed = |graph: bool| -> Res<Vec<f64>> {
                launches
                    .iter_mut()
                    .map(|f| time(&stream, f.as_mut(), graph))
                    .collect()
            };
            let row = timed(false)?;
            graph_rows.push((tenants, timed(true)?));
            println!("{}", table_row(tenants, &row));
            let case = Case {
                x,
                seg: dseg,
                tab,
                sites,
                rows,
                ld_y: HIDDEN,
                in_dim: hd,
                out_dim: hd,
                y0: bytes(dtype, &mut r, 3 * rows * HIDDEN, 1.0),
            };
            // SAFETY: x and the table as for the timed launches; compare allocates t and y.
            let diff = unsafe { compare(&stream, &warp, &mma, &case, tol(dtype))? };
            checks.push((format!("{tenants} tenant(s)"), diff));
        }
        println!(
            "\nThe same launches in a CUDA graph of {ITERS} (no host launch between them, as a \
             pass's graph runs them):"
        );
        print!("{TABLE_HEADER}");
        for (tenants, row) in &graph_rows {
            println!("{}", table_row(*tenants, row));
        }
        checks.extend(ragged(
            &mut d, &stream, &warp, &mma, dtype, &mut r, x, rows, rank,
        )?);
        let mut bad = 0;
        let tol = tol(dtype);
        for (name, c) in &checks {
            println!(
                "check, tensor-core kernels against the warp kernels, {name}: t differs in {} \
                 of {} elements ({} beyond {tol:.1e}, worst {:.2e}), y in {} of {} ({} beyond, \
                 worst {:.2e})",
                c.t.differ,
                c.t.total,
                c.t.beyond,
                c.t.worst,
                c.y.differ,
                c.y.total,
                c.y.beyond,
                c.y.worst
            );
            bad += c.t.beyond + c.y.beyond;
        }
        if bad > 0 {
            return Err(format!(
                "the tensor-core kernels differ from the warp kernels beyond {tol:.1e} in {bad} \
                 elements"
            ));
        }
        Ok(())
    }

    /// One row of a timing table: the tenants, then each launch's µs.
    fn table_row(tenants: usize, us: &[f64]) -> String {
        let cells: Vec<String> = us.iter().map(|v| format!("{v:.1}")).collect();
        format!("| {tenants} | {} |", cells.join(" | "))
    }

    /// `n` values in [-scale, scale) in `dtype`'s bytes.
    fn bytes(dtype: DType, r: &mut rand_pcg::Pcg64Mcg, n: usize, scale: f32) -> Vec<u8> {
        let v: Vec<f32> = (0..n)
            .map(|_| (r.random::<f32>() * 2.0 - 1.0) * scale)
            .collect();
        let mut b = Vec::new();
        dtype.encode_f32(&v, &mut b);
        b
    }

    /// The check on ragged batches: segments of 1 to 13 rows; segment i's tenant has pairs at
    /// Q and V, Q, Q, K and V, V, or none (i mod 5), rank 1 + 7i mod `rank`, and (i mod 3 = 1)
    /// matrices one element past a 16-byte boundary; output width 760 (not a multiple of the
    /// expand's 64 columns), input width 768 and then 764 (not a multiple of a vector).
    #[allow(clippy::too_many_arguments)]
    fn ragged(
        d: &mut Dev,
        stream: &Arc<CudaStream>,
        warp: &PetKernels,
        mma: &PetKernels,
        dtype: DType,
        r: &mut rand_pcg::Pcg64Mcg,
        x: DevMat,
        rows: usize,
        rank: usize,
    ) -> Res<Vec<(String, Diff)>> {
        const SIZES: [usize; 10] = [1, 2, 3, 5, 7, 11, 13, 4, 9, 6];
        let mut seg_rows = Vec::new();
        let mut left = rows;
        while left > 0 {
            let n = SIZES[seg_rows.len() % SIZES.len()].min(left);
            seg_rows.push(n);
            left -= n;
        }
        let seg = Segments::new(&seg_rows, 1).map_err(|x| x.to_string())?;
        let dseg = DevSegments {
            seg_start: d.up(&seg.to_bytes())?,
            nseg: seg.len() as i32,
        };
        // A few tenants' matrices (rank × 768 and 768 × rank, and a vector more for the
        // misaligned ones), shared by the segments.
        let mut mats = Vec::new();
        for _ in 0..4 {
            mats.push((
                d.vals(dtype, r, rank * HIDDEN + 16, 0.2)?,
                d.vals(dtype, r, HIDDEN * rank + 16, 0.2)?,
            ));
        }
        let elem = dtype.size_bytes() as u64;
        let mut table = Vec::with_capacity(seg.len() * 3);
        for i in 0..seg.len() {
            let on: [bool; 3] = match i % 5 {
                0 => [true, false, true],
                1 => [true, false, false],
                2 => [true, true, true],
                3 => [false, false, true],
                _ => [false, false, false],
            };
            let off = if i % 3 == 1 { elem } else { 0 };
            for (site, &has) in on.iter().enumerate() {
                let (a, b) = mats[(i + site) % mats.len()];
                table.push(if has {
                    LoraSegDev {
                        a: a + off,
                        b: b + off,
                        rank: (1 + (7 * i) % rank) as i32,
                        scale: 0.5 + (i % 4) as f32,
                    }
                } else {
                    LoraSegDev::default()
                });
            }
        }
        let tab = d.up(&LoraSegDev::to_bytes(&table))?;
        let sites = Sites {
            count: 3,
            t_cols: rank as i32,
            y_stride: (rows * HIDDEN) as i64,
        };
        let mut out = Vec::new();
        for in_dim in [768, 764] {
            let case = Case {
                x,
                seg: dseg,
                tab,
                sites,
                rows,
                ld_y: HIDDEN,
                in_dim,
                out_dim: 760,
                y0: bytes(dtype, r, 3 * rows * HIDDEN, 1.0),
            };
            // SAFETY: x is rows × 768; every A holds rank × 768 + 16 elements (≥ rank_i ×
            // in_dim + 1) and every B 768 × rank + 16 (≥ 760 × rank_i + 1).
            let diff = unsafe { compare(stream, warp, mma, &case, tol(dtype))? };
            out.push((
                format!("ragged ({} segments, in {in_dim}, out 760)", seg.len()),
                diff,
            ));
        }
        Ok(out)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dtype = args.next().unwrap_or_else(|| "fp16".into());
    let rows = args.next().unwrap_or_else(|| "4096".into());
    let rank = args.next().unwrap_or_else(|| "8".into());
    let parsed = (
        dtype.parse::<ptm_runtime::DType>(),
        rows.parse::<usize>(),
        rank.parse::<usize>(),
    );
    let (Ok(dtype), Ok(rows), Ok(rank)) = parsed else {
        eprintln!("usage: lora_kernels [fp32|fp16|bf16] [ROWS ≥ 32] [RANK 1–32]");
        std::process::exit(2);
    };
    if !(32..=1 << 16).contains(&rows) || !(1..=32).contains(&rank) {
        eprintln!("lora_kernels: ROWS must be 32 to 65536 and RANK 1 to 32 (got {rows}, {rank})");
        std::process::exit(2);
    }
    #[cfg(feature = "cuda")]
    if let Err(err) = bench::run(dtype, rows, rank) {
        eprintln!("lora_kernels: {err}");
        std::process::exit(1);
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (dtype, rows, rank);
        eprintln!("lora_kernels: built without the `cuda` feature");
        std::process::exit(1);
    }
}
