//! Calibration of parameter-efficient tenants: what a mixed pass costs per distinct tenant and
//! what a delta's load costs, measured on a PET zoo (`ptm zoo make --pet …`) with the runtime's
//! mixed-batch forward — the profile's [`PetCosts`] for that kind, over the backbone's model.
//!
//! Everything is measured through the runtime's PET slot, the path live mode and `ptm serve`
//! run (on the CPU its twin, on a GPU the GPU slot):
//!
//! - **overhead, segment**: mixed passes of `rows` rows over 1, `rows/4` and `rows` distinct
//!   tenants (every delta in the GPU pool) against the backbone's plain pass of the same rows,
//!   at the plan's largest shape and at 4 rows of its shortest sequences; a least-squares line
//!   through (tenants, time) gives the time a segment adds (large shape); the two intercepts
//!   against the plain passes split into the delta kernels' fraction of the backbone's pass
//!   (`overhead`) and a fixed time per pass (`overhead_ms`: the plan, its tables, the outputs
//!   per segment), which dominates small passes;
//! - **loads**: a delta into the GPU pool from the host tier, and from its file (out of both
//!   tiers first); `delta_bytes` is its packed block's size; a GPU slot's misses are copied
//!   under the pass (pipelined), the CPU twin's are not.

use crate::stats;
use crate::{Error, Plan, Result};
use ptm_runtime::pet::{PetSlot, PetSlotConfig, PetZoo, Tier};
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::{Batch, DType, Device, Model};
use ptm_sim::profile::{Cost, PetCosts, PetKind};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rows of the small shape (the plan's shortest sequences) that splits a mixed pass's extra
/// time into a fraction of the backbone's pass and a fixed time per pass.
const SMALL_ROWS: usize = 4;

/// Splits the intercepts `(plain pass, mixed pass at one tenant less a segment)` of a small and
/// a large shape into the delta kernels' fraction of the backbone's pass and a fixed time per
/// pass (host work: the plan, its tables, the outputs per segment): `icpt = base × (1 + f) + c`
/// at both shapes, `f` and `c` clamped at 0 (the other then refitted to the large shape).
pub fn split_overhead((base_s, icpt_s): (f64, f64), (base_l, icpt_l): (f64, f64)) -> (f64, f64) {
    let db = base_l - base_s;
    if db <= 1e-9 {
        return ((icpt_l / base_l - 1.0).clamp(0.0, 100.0), 0.0);
    }
    let f = (icpt_l - icpt_s) / db - 1.0;
    if f < 0.0 {
        return (0.0, (icpt_l - base_l).max(0.0));
    }
    let f = f.min(100.0);
    let c = icpt_l - base_l * (1.0 + f);
    if c < 0.0 {
        return ((icpt_l / base_l - 1.0).clamp(0.0, 100.0), 0.0);
    }
    (f, c)
}

/// The profile key of the zoo's tenants (`lora-r8`, `houlsby-f16`, …) and the kind.
pub fn kind_of(zoo: &PetZoo) -> PetKind {
    use ptm_runtime::pet::PetSpec;
    match &zoo.spec {
        PetSpec::Lora { rank, .. } => PetKind::Lora { rank: *rank as u32 },
        PetSpec::Adapter {
            placement,
            reduction_factor,
        } => match placement {
            ptm_runtime::pet::zoo::Placement::Houlsby => PetKind::Houlsby {
                reduction: *reduction_factor as u32,
            },
            ptm_runtime::pet::zoo::Placement::Pfeiffer => PetKind::Pfeiffer {
                reduction: *reduction_factor as u32,
            },
        },
        PetSpec::Bitfit => PetKind::Bitfit,
    }
}

fn time<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let t = Instant::now();
    let v = f()?;
    Ok((t.elapsed(), v))
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Measures the PET zoo at `dir` on `device` in `dtype` with `plan`'s warm-up and repeats,
/// through the runtime's PET slot (what live mode and `ptm serve` run); returns the profile
/// model it belongs to (`<arch>-<dtype>`), the kind and its costs.
pub fn calibrate_pet(
    dir: &Path,
    device: Device,
    dtype: DType,
    plan: &Plan,
) -> Result<(String, PetKind, PetCosts)> {
    let zoo = PetZoo::read(dir)?;
    let need = plan.batches.iter().copied().max().unwrap_or(1).max(4) as usize;
    if zoo.tenants.len() < 4 {
        return Err(Error::Invalid(format!(
            "{}: a PET zoo of at least 4 tenants is needed (make one with --tenants {need})",
            dir.display()
        )));
    }
    let backbone_dir = dir.join(&zoo.backbone);
    let cfg = ptm_runtime::Config::from_file(&backbone_dir.join("config.json"))?;
    let used = zoo.tenants.len().min(need);
    let seq = plan.seq_lens.iter().copied().max().unwrap_or(16);
    let config = PetSlotConfig::for_zoo(&zoo, &cfg, dtype, (used, used), (used, seq as usize));
    let mut slot = PetSlot::new(&backbone_dir, dtype, device, config)?;
    let dirs: Vec<_> = zoo.tenants[..used]
        .iter()
        .map(|t| dir.join(&t.name))
        .collect();
    let ids = slot.register_all(&dirs, 4)?;
    let mut plain = Model::load(&backbone_dir, device, dtype)?;
    let repeats = plan.repeats.max(3);
    let mut state = 17u64;
    // A shape's plain pass, and the least-squares line through (distinct tenants, mixed pass)
    // over 1, rows/4 and all rows' tenants (every delta in the GPU pool): its slope and its
    // intercept.
    let mut shape = |rows: usize, seq: u32| -> Result<(f64, f64, f64)> {
        let tokens = random_rows(&cfg, rows as u32, seq, &mut state);
        let batch = Batch::from_rows(&tokens, cfg.pad_token_id, None)?;
        let measure = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
            let mut v = Vec::with_capacity(repeats);
            for k in 0..plan.warmup + repeats {
                let (d, _) = time(&mut *f)?;
                if k >= plan.warmup {
                    v.push(d);
                }
            }
            Ok(median_ms(v))
        };
        let base_ms = measure(&mut || {
            plain.forward(&batch)?;
            Ok(())
        })?;
        let mut points: Vec<(f64, f64)> = Vec::new();
        for k in [1, (rows / 4).max(2), rows] {
            let tenants: Vec<_> = (0..rows).map(|r| ids[r * k / rows]).collect();
            let ms = measure(&mut || {
                slot.forward_mixed(&batch, &tenants)?;
                Ok(())
            })?;
            points.push((k as f64, ms));
        }
        let n = points.len() as f64;
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
        let (mx, my) = (sx / n, sy / n);
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = (sxy / sxx).max(0.0);
        Ok((base_ms, (my - slope * mx).max(0.0), slope))
    };
    // The large shape gives the segment's time; with the small one too, the intercepts of
    // both split into a fraction of the backbone's pass and a fixed time per pass.
    let (base_l, icpt_l, segment_ms) = shape(used, seq)?;
    let small_seq = plan.seq_lens.iter().copied().min().unwrap_or(seq);
    let small_rows = SMALL_ROWS.min(used);
    let (overhead, overhead_ms) = if small_rows < used || small_seq < seq {
        let (base_s, icpt_s, _) = shape(small_rows, small_seq)?;
        split_overhead((base_s, icpt_s), (base_l, icpt_l))
    } else {
        ((icpt_l / base_l - 1.0).clamp(0.0, 100.0), 0.0)
    };
    // Loads of one delta into the GPU pool: from the host tier, and from its file (out of
    // both tiers first).
    let t = ids[0];
    let mut host = Vec::with_capacity(repeats);
    let mut file = Vec::with_capacity(repeats);
    for r in 0..plan.warmup + repeats {
        slot.evict(t, Tier::Gpu)?;
        let (h, _) = time(|| {
            slot.load(t, Tier::Gpu, None)?;
            Ok(slot.wait_loads()?)
        })?;
        slot.evict(t, Tier::Gpu)?;
        slot.evict(t, Tier::Host)?;
        let (f, _) = time(|| {
            slot.load(t, Tier::Gpu, None)?;
            Ok(slot.wait_loads()?)
        })?;
        if r >= plan.warmup {
            host.push(h.as_secs_f64() * 1e3);
            file.push(f.as_secs_f64() * 1e3);
        }
    }
    let cost = |v: &[f64]| Cost {
        measured: Some(stats::summarise(v)),
        ..Cost::flat(stats::fit(v))
    };
    let delta_bytes = slot.layout(t)?.bytes().max(1) as u64;
    let model = format!("{}-{}", zoo.arch.name(), dtype);
    Ok((
        model,
        kind_of(&zoo),
        PetCosts {
            overhead,
            overhead_ms,
            segment_ms: ptm_sim::profile::Dist::Constant(segment_ms),
            delta_bytes,
            load_host: cost(&host),
            load_file: cost(&file),
            // A GPU slot copies a miss stage by stage under the pass; the CPU twin does not.
            pipelined: device != Device::Cpu,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::split_overhead;

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn two_shapes_split_into_a_fraction_and_a_fixed_time() {
        // icpt = base × 1.1 + 0.3 at both shapes.
        let (f, c) = split_overhead((0.5, 0.5 * 1.1 + 0.3), (2.0, 2.0 * 1.1 + 0.3));
        assert!(near(f, 0.1) && near(c, 0.3), "{f} {c}");
    }

    #[test]
    fn a_negative_part_is_clamped_and_the_other_fits_the_large_shape() {
        // The small shape costs more than the line allows: no fraction, all fixed.
        let (f, c) = split_overhead((0.5, 1.2), (2.0, 2.4));
        assert!(near(f, 0.0) && near(c, 0.4), "{f} {c}");
        // A fixed part below 0: all fraction.
        let (f, c) = split_overhead((0.5, 0.5), (2.0, 2.6));
        assert!(near(f, 0.3) && near(c, 0.0), "{f} {c}");
        // One shape only (the same base twice): all fraction.
        let (f, c) = split_overhead((2.0, 2.2), (2.0, 2.2));
        assert!(near(f, 0.1) && near(c, 0.0), "{f} {c}");
    }
}
