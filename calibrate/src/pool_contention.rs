//! How loads from the GPU weight pool and forward passes slow each other, measured through the
//! live path ([`crate::slot_path`], made with a pool): the profile's `pool_contention`
//! ([`ptm_sim::profile::PoolCopyContention`]).
//!
//! A pool load is a device-to-device copy of a tenant's packed weights (a BERT-base fp16 tenant
//! is 219 MB) into an executor's arena: it reads and writes device memory while the other
//! executors' passes read their weights and activations from it. The two factors, as the
//! copy engine's `forward_during_copy` / `copy_during_forward` are for host-cache switches:
//!
//! - **forward during a pool copy**: forward requests of the plan's stretch shape timed on slot 0
//!   while slot 1 loads from the pool back to back, median over the median of the same requests
//!   alone;
//! - **pool copy during a forward**: pool loads timed on slot 0 while slot 1 runs those forward
//!   requests back to back, median over the median of pool loads alone.
//!
//! A path without a pool (or fewer than 2 slots) measures nothing: the profile then lacks the
//! section and the simulator says so.

use crate::contention::PASSES;
use crate::slot_path::{LivePath, PathOp};
use crate::{stats, Plan, Result};
use ptm_sim::profile::PoolCopyContention;
use std::time::Duration;

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Medians of `op` on slot 0 alone over the plan's repeats (after its warm-up).
fn alone(path: &mut dyn LivePath, op: PathOp, plan: &Plan) -> Result<f64> {
    let mut out = Vec::with_capacity(plan.repeats);
    for round in 0..plan.warmup + plan.repeats {
        let d = path.together(op, 1)?;
        if round >= plan.warmup {
            out.extend(d.iter().map(ms));
        }
    }
    Ok(stats::median(&out))
}

/// The median of `op` timed beside `background` over `base` (1 when `base` is 0).
fn beside(
    path: &mut dyn LivePath,
    op: PathOp,
    background: PathOp,
    base: f64,
    plan: &Plan,
) -> Result<f64> {
    let ds: Vec<f64> = path
        .during(op, background, plan.repeats)?
        .iter()
        .map(ms)
        .collect();
    Ok(if base > 0.0 {
        stats::median(&ds) / base
    } else {
        1.0
    })
}

/// The two factors on `path` following `plan` (forward requests of its stretch shape, as the
/// copy engine's cross factors use); `None` when the path has no pool or fewer than 2 slots.
pub fn measure(path: &mut dyn LivePath, plan: &Plan) -> Result<Option<PoolCopyContention>> {
    if !path.has_pool() || path.instances() < 2 {
        return Ok(None);
    }
    let (batch, seq_len) = plan.stretch_shape();
    let forward = PathOp::Forward {
        batch,
        seq_len,
        passes: PASSES,
    };
    let forward_alone = alone(path, forward, plan)?;
    let pool_alone = alone(path, PathOp::PoolLoad, plan)?;
    let forward_during_pool_copy = beside(path, forward, PathOp::PoolLoad, forward_alone, plan)?;
    let pool_copy_during_forward = beside(path, PathOp::PoolLoad, forward, pool_alone, plan)?;
    Ok(Some(PoolCopyContention {
        forward_during_pool_copy,
        pool_copy_during_forward,
        tokens: batch.saturating_mul(seq_len),
        method: format!(
            "{n} requests of {PASSES} passes of batch {batch} × {seq_len} tokens on one executor \
             while another loads from the GPU weight pool back to back, over {n} alone \
             (median {forward_alone:.4} ms); {n} pool loads while another executor runs those \
             requests back to back, over {n} alone (median {pool_alone:.4} ms); medians",
            n = plan.repeats,
        ),
    }))
}
