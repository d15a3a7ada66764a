//! `ptm bench switch`: per architecture of a zoo, the time to switch a slot to another tenant
//! from the pinned host cache, beside the pinned host→device floor measured in the same run
//! (one copy of the same bytes), FastPTM's mode (re-read the file, copy in place), the `full`
//! mode (read the file, build a new model, upload tensor by tensor), cold registration + first
//! switch, the overlap test (slot A's inference throughput while slot B switches), and the
//! weight tiers (`bench_tiers.rs`): a load from the GPU weight pool beside the
//! device-to-device floor, and the cold path from the page cache to the first output.

use anyhow::{bail, Context};
use clap::Args;
use ptm_runtime::gpu::slots::{event_ms, load_full, SlotSet, CHUNK_BYTES};
use ptm_runtime::gpu::timing::median;
use ptm_runtime::zoo::model_dir;
use ptm_runtime::{
    ArchLayout, Batch, Config, DType, Device, Eviction, HostCache, KernelOptions, Zoo,
};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Flags of `ptm bench switch`.
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// A zoo folder (with `zoo.ron`) or a folder of zoo folders; repeatable.
    #[arg(long, required = true)]
    pub zoo: Vec<PathBuf>,
    /// cuda or cuda:N.
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    /// Dtype of the host cache and slots (default: the zoo's).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Timed switches (and floor copies) per architecture.
    #[arg(long, default_value_t = 40)]
    pub iters: usize,
    /// Timed repeats of the slow baselines (fastptm, full).
    #[arg(long, default_value_t = 5)]
    pub baseline_iters: usize,
    /// Batch size of slot A's inference in the overlap test.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Sequence length of slot A's inference in the overlap test.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Graph replays of slot A per overlap measurement.
    #[arg(long, default_value_t = 300)]
    pub replays: usize,
    /// Timed cold loads (page cache → first output) per architecture.
    #[arg(long, default_value_t = 20)]
    pub cold_iters: usize,
}

/// The zoo folders under `p`: `p` itself if it holds `zoo.ron`, else its subfolders that do.
fn zoo_dirs(p: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if p.join("zoo.ron").is_file() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(p)
        .with_context(|| format!("reading {}", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join("zoo.ron").is_file())
        .collect();
    out.sort();
    if out.is_empty() {
        bail!(
            "{}: expected a zoo (a folder with zoo.ron, made by `ptm zoo make`) or a folder of zoos",
            p.display()
        );
    }
    Ok(out)
}

/// Runs `ptm bench switch`.
pub fn run(args: SwitchArgs) -> anyhow::Result<()> {
    let Device::Cuda(ordinal) = args.device.parse::<Device>()? else {
        bail!("ptm bench switch measures GPU switching: use --device cuda[:N]");
    };
    if args.iters < 2 || args.baseline_iters < 1 || args.replays < 10 || args.cold_iters < 1 {
        bail!("--iters must be ≥ 2, --baseline-iters ≥ 1, --replays ≥ 10 and --cold-iters ≥ 1");
    }
    let mut dirs = Vec::new();
    for z in &args.zoo {
        dirs.extend(zoo_dirs(z)?);
    }
    let mut summary = Vec::new();
    for dir in dirs {
        summary.push(bench_zoo(&dir, ordinal, &args)?);
    }
    println!("\n| arch | dtype | MB | floor ms (GB/s) | cache switch ms | ratio | fastptm ms | full ms | × fastptm | × full | cold reg + first switch ms | A ms/replay alone / during switches | slowdown | overlap |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (s, _) in &summary {
        println!("{s}");
    }
    println!("\n| arch | dtype | MB | d2d floor ms wall (device) | pool load ms wall (device) | pool / floor wall (device) | cold path → first output ms median (p90, max) | cold load alone ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for (_, t) in &summary {
        println!("{t}");
    }
    Ok(())
}

fn bench_zoo(dir: &Path, ordinal: usize, args: &SwitchArgs) -> anyhow::Result<(String, String)> {
    let zoo = Zoo::read(dir)?;
    if zoo.models.len() < 2 {
        bail!(
            "{}: the switch benchmark needs at least 2 tenants",
            dir.display()
        );
    }
    let dtype: DType = match &args.dtype {
        Some(d) => d.parse()?,
        None => zoo.dtype,
    };
    let tenant_dir = |i: usize| model_dir(dir, &zoo.models[i].name);
    let names: Vec<&str> = zoo.models.iter().map(|m| m.name.as_str()).collect();
    let cfg0 = Config::from_file(&tenant_dir(0).join("config.json"))?;
    let max_labels = zoo.models.iter().map(|m| m.labels).max().unwrap_or(1);
    let layout = ArchLayout::new(&cfg0, max_labels, dtype)?;
    let mb = layout.bytes() as f64 / 1e6;
    println!(
        "== {} ({dtype}, {} tenants, {mb:.1} MB packed, heads padded to {max_labels} labels)",
        zoo.arch,
        names.len()
    );
    // The files in the page cache, as the cold-registration target assumes.
    for i in 0..names.len() {
        std::fs::read(tenant_dir(i).join("model.safetensors"))?;
    }
    let t = Instant::now();
    let mut cache = HostCache::pinned(layout.clone(), names.len(), ordinal, Eviction::Refuse)?;
    println!(
        "pinned host cache: {} blocks of {mb:.1} MB allocated once in {:.1} ms",
        names.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let options = KernelOptions::default();
    let mut slots = SlotSet::new(ordinal, &layout, 2, args.batch, args.seq, options)?;
    let (a, b) = (0usize, 1usize);

    // Cold: register each tenant (file → pinned block) and switch slot B to it.
    let mut cold = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let t = Instant::now();
        cache.register(name, &tenant_dir(i))?;
        let reg = t.elapsed().as_secs_f64() * 1e3;
        let (sw, _) = slots.time_switch(b, &mut cache, name, CHUNK_BYTES)?;
        println!(
            "cold {name}: register {reg:.2} ms + first switch {sw:.2} ms = {:.2} ms",
            reg + sw
        );
        cold.push(reg + sw);
    }

    // Warm: switches from the host cache interleaved with the floor (one copy of the bytes).
    let (mut sw_wall, mut sw_dev, mut fl_wall, mut fl_dev) = (vec![], vec![], vec![], vec![]);
    for k in 0..args.iters + 3 {
        let name = names[k % names.len()];
        let s = slots.time_switch(b, &mut cache, name, CHUNK_BYTES)?;
        let f = slots.time_switch(b, &mut cache, name, usize::MAX)?;
        if k >= 3 {
            sw_wall.push(s.0);
            sw_dev.push(s.1);
            fl_wall.push(f.0);
            fl_dev.push(f.1);
        }
    }
    let (sw, swd, fl, fld) = (
        median(&sw_wall),
        median(&sw_dev),
        median(&fl_wall),
        median(&fl_dev),
    );
    println!("host-cache switch ({} MB chunks): wall {sw:.3} ms, device {swd:.3} ms (min {:.3} / max {:.3} wall)", CHUNK_BYTES >> 20,
        sw_wall.iter().copied().fold(f64::MAX, f64::min), sw_wall.iter().copied().fold(0.0, f64::max));
    println!(
        "pinned floor (one copy): wall {fl:.3} ms, device {fld:.3} ms = {:.1} GB/s",
        layout.bytes() as f64 / fld / 1e6
    );

    let mut fp = Vec::new();
    for k in 0..args.baseline_iters + 1 {
        let i = k % names.len();
        let t = Instant::now();
        slots.switch_fastptm(b, names[i], &tenant_dir(i))?;
        if k > 0 {
            fp.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let fpm = median(&fp);
    println!("fastptm (re-read file, copy in place): {fpm:.2} ms (runs {fp:.1?})");
    let mut full = Vec::new();
    for k in 0..args.baseline_iters {
        let i = k % names.len();
        let t = Instant::now();
        let m = load_full(&tenant_dir(i), dtype, ordinal, options)?;
        m.synchronize()?;
        full.push(t.elapsed().as_secs_f64() * 1e3);
        drop(m);
    }
    let fullm = median(&full);
    println!(
        "full (read file, new model, upload tensor by tensor): {fullm:.1} ms (runs {full:.1?})"
    );

    // Overlap: slot A replays its graph alone, then while slot B switches back to back.
    slots.switch(a, &mut cache, names[0])?;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let rows: Vec<Vec<u32>> = (0..args.batch)
        .map(|_| {
            (0..args.seq)
                .map(|_| rng.random_range(1000..cfg0.vocab_size as u32))
                .collect()
        })
        .collect();
    let input = Batch::from_rows(&rows, cfg0.pad_token_id, None)?;
    slots.forward(a, &input)?;
    let bucket = ptm_runtime::gpu::bucket(args.batch, args.seq, cfg0.max_tokens());
    let alone = |slots: &mut SlotSet| -> anyhow::Result<f64> {
        let (e0, e1) = slots.replay(a, bucket, args.replays)?;
        Ok(event_ms(&e0, &e1)? / args.replays as f64)
    };
    alone(&mut slots)?;
    let alone1 = alone(&mut slots)?;
    let window = alone1 * args.replays as f64;
    let switches = (window / swd).ceil() as usize + 2;
    slots.wait(b)?;
    let c0 = slots.copy_event()?;
    for k in 0..switches {
        slots.switch(b, &mut cache, names[k % names.len()])?;
    }
    let c1 = slots.copy_event()?;
    let (a0, a1) = slots.replay(a, bucket, args.replays)?;
    let during = event_ms(&a0, &a1)? / args.replays as f64;
    let (ca0, ca1, cc1) = (
        event_ms(&c0, &a0)?,
        event_ms(&c0, &a1)?,
        event_ms(&c0, &c1)?,
    );
    let covered = (ca1.min(cc1) - ca0.max(0.0)).max(0.0) / (ca1 - ca0);
    slots.wait(b)?;
    let alone2 = alone(&mut slots)?;
    let undisturbed = (alone1 + alone2) / 2.0;
    let slowdown = during / undisturbed - 1.0;
    println!("overlap: slot A batch {}×{}: {undisturbed:.4} ms/replay alone ({alone1:.4}, {alone2:.4}), {during:.4} ms/replay while slot B made {switches} switches ({:.1} GB/s over {cc1:.1} ms); copies covered {:.0}% of A's window; slowdown {:+.2}%",
        args.batch, args.seq, switches as f64 * layout.bytes() as f64 / cc1 / 1e6, covered * 100.0, slowdown * 100.0);

    let dirs: Vec<PathBuf> = (0..names.len()).map(tenant_dir).collect();
    let t = super::bench_tiers::bench(
        ordinal,
        &layout,
        &names,
        &dirs,
        &input,
        (args.iters, args.cold_iters),
    )?;
    let tiers = format!(
        "| {} | {dtype} | {mb:.1} | {:.4} ({:.4}) | {:.4} ({:.4}) | {:.3} ({:.3}) | {:.2} ({:.2}, {:.2}; {} runs) | {:.2} |",
        zoo.arch,
        t.floor_ms.0,
        t.floor_ms.1,
        t.pool_ms.0,
        t.pool_ms.1,
        t.pool_ms.0 / t.floor_ms.0,
        t.pool_ms.1 / t.floor_ms.1,
        t.cold_ms.0,
        t.cold_ms.1,
        t.cold_ms.2,
        t.cold_runs,
        t.cold_ms.3
    );
    let switch = format!(
        "| {} | {dtype} | {mb:.1} | {fld:.3} ({:.1}) | {sw:.3} (dev {swd:.3}) | {:.3} (dev {:.3}) | {fpm:.2} | {fullm:.1} | {:.1} | {:.0} | {:.2} (median of {}, max {:.2}) | {undisturbed:.4} / {during:.4} | {:+.2}% | {:.0}% |",
        zoo.arch,
        layout.bytes() as f64 / fld / 1e6,
        sw / fl,
        swd / fld,
        fpm / sw,
        fullm / sw,
        median(&cold),
        cold.len(),
        cold.iter().copied().fold(0.0, f64::max),
        slowdown * 100.0,
        covered * 100.0
    );
    Ok((switch, tiers))
}
