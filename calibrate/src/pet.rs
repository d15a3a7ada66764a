//! Calibration of parameter-efficient tenants: what a mixed pass costs per distinct tenant and
//! what a delta's load costs, measured on a PET zoo (`ptm zoo make --pet …`) with the runtime's
//! mixed-batch forward — the profile's [`PetCosts`] for that kind, over the backbone's model.
//!
//! - **overhead, segment**: passes of `rows` rows over 1, `rows/4` and `rows` distinct tenants
//!   (one segment each) against the backbone's plain pass of the same rows; a least-squares
//!   line through (tenants, time) gives the time a segment adds, its intercept against the
//!   plain pass the delta kernels' fixed fraction;
//! - **loads**: a delta from its file (the tenant's files read and checked against the
//!   backbone) and from the host (its tensors copied); `delta_bytes` is its files' size.
//!
//! On the CPU the pass reads deltas in host memory; the GPU's delta pool is measured by the GPU
//! PET slot once it exists (this module then measures through it, as live mode runs).

use crate::stats;
use crate::{Error, Plan, Result};
use ptm_runtime::pet::{Backbone, PetSet, PetTenant, PetZoo, Segment};
use ptm_runtime::tokenize::random_rows;
use ptm_runtime::{Batch, DType, Device, Model};
use ptm_sim::profile::{Cost, PetCosts, PetKind};
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Measures the PET zoo at `dir` on `device` in `dtype` with `plan`'s warm-up and repeats;
/// returns the profile model it belongs to (`<arch>-<dtype>`), the kind and its costs.
pub fn calibrate_pet(
    dir: &Path,
    device: Device,
    dtype: DType,
    plan: &Plan,
) -> Result<(String, PetKind, PetCosts)> {
    if device != Device::Cpu {
        return Err(Error::Invalid(format!(
            "{}: parameter-efficient tenants are calibrated on the CPU so far (the GPU's mixed \
             passes are the runtime's next step)",
            dir.display()
        )));
    }
    let zoo = PetZoo::read(dir)?;
    let need = plan.batches.iter().copied().max().unwrap_or(1).max(4) as usize;
    if zoo.tenants.len() < 2 {
        return Err(Error::Invalid(format!(
            "{}: a PET zoo of at least 2 tenants is needed (make one with --tenants {need})",
            dir.display()
        )));
    }
    let backbone_dir = dir.join(&zoo.backbone);
    let used = zoo.tenants.len().min(need);
    let mut set = PetSet::new(Backbone::load(&backbone_dir, dtype)?, used);
    for t in &zoo.tenants[..used] {
        set.register(&dir.join(&t.name))?;
    }
    let mut plain = Model::load(&backbone_dir, device, dtype)?;
    let cfg = set.backbone.config().clone();
    let rows = used as u32;
    let seq = plan.seq_lens.iter().copied().max().unwrap_or(16);
    let mut state = 17u64;
    let ids = random_rows(&cfg, rows, seq, &mut state);
    let batch = Batch::from_rows(&ids, cfg.pad_token_id, None)?;
    let repeats = plan.repeats.max(3);
    // The backbone's plain pass.
    let mut base = Vec::with_capacity(repeats);
    for k in 0..plan.warmup + repeats {
        let (d, _) = time(|| Ok(plain.forward(&batch)?))?;
        if k >= plan.warmup {
            base.push(d);
        }
    }
    let base_ms = median_ms(base);
    // Mixed passes over 1, rows/4 and rows distinct tenants.
    let mut points: Vec<(f64, f64)> = Vec::new();
    for k in [1, (used / 4).max(2), used] {
        let per = used / k;
        let segments: Vec<Segment> = (0..k)
            .map(|t| Segment {
                tenant: t,
                rows: if t + 1 == k {
                    used - per * (k - 1)
                } else {
                    per
                },
            })
            .collect();
        let mut v = Vec::with_capacity(repeats);
        for r in 0..plan.warmup + repeats {
            let (d, _) = time(|| Ok(set.forward(&batch, &segments)?))?;
            if r >= plan.warmup {
                v.push(d);
            }
        }
        points.push((k as f64, median_ms(v)));
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let segment_ms = (sxy / sxx).max(0.0);
    let intercept = (my - segment_ms * mx).max(0.0);
    let overhead = (intercept / base_ms - 1.0).clamp(0.0, 100.0);
    // Loads of one delta: from its file (read and checked against the backbone), and from
    // the host (a copy of its bytes: on the CPU the pass then reads it in place).
    let tenant_dir = dir.join(&zoo.tenants[0].name);
    let delta_bytes = zoo.tenants[0].file_bytes.max(1);
    let source = vec![1u8; delta_bytes as usize];
    let mut dest = vec![0u8; delta_bytes as usize];
    let mut file = Vec::with_capacity(repeats);
    let mut host = Vec::with_capacity(repeats);
    for r in 0..plan.warmup + repeats {
        let (d, _) = time(|| Ok(PetTenant::load(&tenant_dir, &set.backbone)?))?;
        let (c, _) = time(|| {
            dest.copy_from_slice(&source);
            Ok(std::hint::black_box(&dest).len())
        })?;
        if r >= plan.warmup {
            file.push(d.as_secs_f64() * 1e3);
            host.push(c.as_secs_f64() * 1e3);
        }
    }
    let cost = |v: &[f64]| Cost {
        measured: Some(stats::summarise(v)),
        ..Cost::flat(stats::fit(v))
    };
    let model = format!("{}-{}", zoo.arch.name(), dtype);
    Ok((
        model,
        kind_of(&zoo),
        PetCosts {
            overhead,
            segment_ms: ptm_sim::profile::Dist::Constant(segment_ms),
            delta_bytes,
            load_host: cost(&host),
            load_file: cost(&file),
            pipelined: false,
        },
    ))
}
