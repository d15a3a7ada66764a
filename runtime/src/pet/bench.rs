//! The measurements of `ptm bench pet` on a PET slot (any device; the device times need a
//! GPU): registering a zoo's tenants, loading them all into the pool, timing resident passes,
//! and timing passes with tenants missing from the pool — their loads pipelined under the
//! backbone, or made and waited for before the pass (what pipelining saves).
//!
//! Call times are wall clock around whole calls (inputs up, tables, replay, outputs down);
//! device times are CUDA events around the graph replay alone (copy waits included), the
//! measure `GpuModel::time_forward` reports for a plain model (none on the CPU twin, whose
//! runs CI uses to check the measurements' bookkeeping).

use super::residency::Tier;
use super::slot::{PetId, PetSlot};
use super::zoo::PetZoo;
use crate::error::Result;
use crate::gpu::timing::Timing;
use crate::tokenize::Batch;
use std::path::Path;
use std::time::Instant;

/// Registers the first `n` tenants of the zoo at `dir` on `threads` threads; their ids and
/// the seconds it took.
pub fn register_zoo(
    slot: &mut PetSlot,
    dir: &Path,
    zoo: &PetZoo,
    n: usize,
    threads: usize,
) -> Result<(Vec<PetId>, f64)> {
    let dirs: Vec<_> = zoo
        .tenants
        .iter()
        .take(n)
        .map(|t| dir.join(&t.name))
        .collect();
    let start = Instant::now();
    let ids = slot.register_all(&dirs, threads)?;
    Ok((ids, start.elapsed().as_secs_f64()))
}

/// Loads every tenant of `ids` into the GPU pool and waits for the copies; seconds.
pub fn load_all(slot: &mut PetSlot, ids: &[PetId]) -> Result<f64> {
    let start = Instant::now();
    for &t in ids {
        slot.load(t, Tier::Gpu, None)?;
    }
    slot.wait_loads()?;
    Ok(start.elapsed().as_secs_f64())
}

/// The device milliseconds of the slot's last pass (none on the CPU).
fn device_ms(slot: &PetSlot) -> Result<Option<f64>> {
    match slot.device() {
        crate::device::Device::Cpu => Ok(None),
        _ => slot.last_pass_ms().map(Some),
    }
}

/// `iters` passes of `batch` with `tenants` (all resident after the warm-up passes).
pub fn time_resident(
    slot: &mut PetSlot,
    batch: &Batch,
    tenants: &[PetId],
    warmup: usize,
    iters: usize,
) -> Result<Timing> {
    for _ in 0..warmup.max(1) {
        slot.forward_mixed(batch, tenants)?;
    }
    let mut t = Timing::default();
    for _ in 0..iters {
        let start = Instant::now();
        let loads = slot.forward_mixed(batch, tenants)?.loads.len();
        t.call_ms.push(start.elapsed().as_secs_f64() * 1e3);
        t.device_ms.extend(device_ms(slot)?);
        if loads > 0 {
            return Err(crate::error::Error::Input(format!(
                "{loads} loads in a resident pass: the pool is too small for the batch's tenants"
            )));
        }
    }
    Ok(t)
}

/// `iters` passes of `batch` with `tenants` whose first `missing` distinct tenants are evicted
/// from the GPU pool before each pass (they stay in the host tier). `pipelined`: the pass loads
/// them (copies under the backbone); else they are loaded and waited for first, inside the
/// timed call. Device times are the pass's alone.
pub fn time_misses(
    slot: &mut PetSlot,
    batch: &Batch,
    tenants: &[PetId],
    missing: usize,
    pipelined: bool,
    iters: usize,
) -> Result<Timing> {
    let mut distinct: Vec<PetId> = Vec::new();
    for t in tenants {
        if !distinct.contains(t) {
            distinct.push(*t);
        }
    }
    let evict = &distinct[..missing.min(distinct.len())];
    // Warm-up: both graphs (after loads, resident) exist before timing.
    for _ in 0..2 {
        for &t in evict {
            slot.evict(t, Tier::Gpu)?;
        }
        slot.forward_mixed(batch, tenants)?;
    }
    let mut out = Timing::default();
    for _ in 0..iters {
        for &t in evict {
            slot.evict(t, Tier::Gpu)?;
        }
        let start = Instant::now();
        if !pipelined {
            for &t in evict {
                slot.load(t, Tier::Gpu, None)?;
            }
            slot.wait_loads()?;
        }
        let m = slot.forward_mixed(batch, tenants)?;
        out.call_ms.push(start.elapsed().as_secs_f64() * 1e3);
        out.device_ms.extend(device_ms(slot)?);
        let loaded = m.loads.len();
        let expect = if pipelined { evict.len() } else { 0 };
        if loaded != expect {
            return Err(crate::error::Error::Input(format!(
                "{loaded} loads in a pass that should make {expect}: is every tenant in the host tier?"
            )));
        }
    }
    Ok(out)
}
