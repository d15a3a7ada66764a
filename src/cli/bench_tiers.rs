//! The weight tiers in `ptm bench switch`, through the runtime's `Slot` calls a live instance
//! makes: a load from the GPU weight pool (tier 1 → arena) beside the device-to-device copy
//! floor measured in the same run, and the cold path (a checkpoint in the page cache → the
//! first output of a pass).

use ptm_runtime::gpu::timing::median;
use ptm_runtime::slot::{Executors, PoolSize};
use ptm_runtime::{ArchLayout, Batch, Config, Device, Eviction, KernelOptions, SlotHost};
use std::path::PathBuf;
use std::time::Instant;

/// What the tier benchmark measured for one architecture.
pub struct TierFigures {
    /// Median wall and device ms of a plain device-to-device copy of one tenant (the floor).
    pub floor_ms: (f64, f64),
    /// Median wall and device ms of `Slot::load_pool` (enqueue to landed; copy on the stream).
    pub pool_ms: (f64, f64),
    /// Cold path: median, 90th percentile and max ms from the start of the load to the first
    /// pass's outputs, and the median of the load alone.
    pub cold_ms: (f64, f64, f64, f64),
    /// Cold runs.
    pub cold_runs: usize,
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

/// Measures the tiers for tenants `names` (checkpoints in `dirs`, already in the page cache) of
/// layout `layout` on GPU `ordinal`: `iters` pool loads alternating between two pool slots,
/// each followed by one floor copy; `cold_iters` cold loads, each followed by one pass of
/// `input` (its graph captured before).
pub fn bench(
    ordinal: usize,
    layout: &ArchLayout,
    names: &[&str],
    dirs: &[PathBuf],
    input: &Batch,
    (iters, cold_iters): (usize, usize),
) -> anyhow::Result<TierFigures> {
    anyhow::ensure!(names.len() >= 2, "the tier benchmark needs 2 tenants");
    let executors = Executors {
        count: 1,
        max_batch: input.batch,
        max_seq: input.seq,
    };
    let host = SlotHost::new(
        Device::Cuda(ordinal),
        layout.clone(),
        2,
        Eviction::Refuse,
        KernelOptions::default(),
    )?
    .with_pool(PoolSize::Tenants(2), executors)?;
    for (i, name) in names[..2].iter().enumerate() {
        host.register(name, &dirs[i])?;
        host.prefetch(i as u32, name)?;
    }
    let mut slot = host.slot(input.batch, input.seq)?;
    let cfgs: Vec<Config> = dirs[..2]
        .iter()
        .map(|d| Config::from_file(&d.join("config.json")))
        .collect::<Result<_, _>>()?;
    let tenants: Vec<(&str, &Config)> = names[..2].iter().copied().zip(&cfgs).collect();
    slot.warm_up(&host, &tenants, &[(input.batch, input.seq)], 7)?;

    let (mut pool_wall, mut pool_dev, mut floor_wall, mut floor_dev) =
        (vec![], vec![], vec![], vec![]);
    for k in 0..iters + 3 {
        let t = k % 2;
        let (w, d) = slot.time_load_pool(&host, t as u32, names[t])?;
        let f = host.time_pool_floor(t as u32, 1)?;
        if k >= 3 {
            pool_wall.push(w);
            pool_dev.push(d);
            floor_wall.push(f[0].0);
            floor_dev.push(f[0].1);
        }
    }
    let floor_ms = (median(&floor_wall), median(&floor_dev));
    let pool_ms = (median(&pool_wall), median(&pool_dev));
    println!(
        "pool load (tier 1 → arena, Slot::load_pool): wall {:.4} ms, device {:.4} ms; d2d floor: wall {:.4} ms, device {:.4} ms = {:.0} GB/s; ratio wall {:.3}, device {:.3} (medians of {iters})",
        pool_ms.0,
        pool_ms.1,
        floor_ms.0,
        floor_ms.1,
        layout.bytes() as f64 / floor_ms.1 / 1e6,
        pool_ms.0 / floor_ms.0,
        pool_ms.1 / floor_ms.1
    );

    // The cold path: the file (in the page cache) to the first output.
    let (mut total, mut load) = (Vec::new(), Vec::new());
    for k in 0..cold_iters + 1 {
        let t = k % 2;
        let start = Instant::now();
        slot.load_file(&host, names[t], &dirs[t])?;
        let loaded = start.elapsed().as_secs_f64() * 1e3;
        slot.forward_many(std::slice::from_ref(input))?;
        let first = start.elapsed().as_secs_f64() * 1e3;
        if k > 0 {
            total.push(first);
            load.push(loaded);
        }
    }
    let cold_ms = (
        median(&total),
        quantile(&total, 0.9),
        total.iter().copied().fold(0.0, f64::max),
        median(&load),
    );
    println!(
        "cold path (page cache → first output of a {}×{} pass): median {:.2} ms, p90 {:.2} ms, max {:.2} ms (load alone: median {:.2} ms) over {cold_iters} runs",
        input.batch, input.seq, cold_ms.0, cold_ms.1, cold_ms.2, cold_ms.3
    );
    Ok(TierFigures {
        floor_ms,
        pool_ms,
        cold_ms,
        cold_runs: cold_iters,
    })
}
