//! The figures contention by resource and the host overhead need, measured through the live
//! path ([`crate::slot_path`]): how `k` forward requests, switches and cold loads at once share
//! the SMs, the copy engine and the host; how forwards and switches slow each other; and what a
//! dispatch costs the host besides its load and its passes.
//!
//! - **Sharing of a resource** (`k` = 1 … the plan's instances; cold loads up to its slow
//!   instances): each round runs the operation on `k` slots at once (forward requests of the
//!   plan's stretch shape, of its largest batch at its largest length when larger, and of the
//!   sizes of [`sm_shapes`] in between: how passes share the SMs depends on their size, and
//!   not log-linearly between the two ends); the curve's `k`-th value
//!   is the median over rounds of the *last* finish over the median time of one alone (what
//!   processor sharing needs: the resource's total rate with `k`). The resource is FIFO when,
//!   at the largest `k` measured, the first of the `k` finished within the middle of `1/k` and
//!   1 of the last (median over rounds of first/last below `(1 + 1/k)/2`): one at a time, not
//!   shared.
//!   A FIFO resource also gets its occupancy ([`fifo_occupancy`]: the curve's slope, the
//!   fraction of one operation alone that holds it while the rest overlaps the one ahead).
//! - **Across resources**: a forward request timed on one slot while another switches back to
//!   back, over it alone; a switch timed while another slot runs forward requests back to back,
//!   over alone — with requests of the stretch shape and then of each larger size of
//!   [`copy_shapes`]: the plan's batches at the stretch shape's length, at least twice the
//!   tokens of the size before, and its largest batch at its largest length (how much a copy
//!   slows depends on the passes beside it, and serving runs passes of every size between).
//! - **Host overhead**: a job handed to a parked worker thread and reported back (the
//!   hand-off to a parked worker), and the same back to back (each job sent the instant the
//!   previous report arrives: the busy hand-off, a dispatch to an instance that just
//!   finished); requests of 1 and of [`PASSES_MANY`] passes through a worker as live runs
//!   them, sent back to back as the busy hand-offs are, less the *busy* hand-off's median and
//!   the passes as the profile's forward table has them: the rest is the staging of one
//!   request and, per further pass, the slope. Staging and the busy hand-off are measured
//!   under the same conditions, so their split is consistent (the difference of a parked
//!   request and a parked hand-off splits the wake-up's noise between the two at random); what
//!   a worker parked for a while costs more is the parked hand-off's excess over the busy one,
//!   charged to a dispatch to a parked worker, never to the staging every inference pays.

use crate::slot_path::{LivePath, PathOp};
use crate::{stats, Plan, Result};
use ptm_sim::profile::{Contention, HostOverhead, Sharing};
use std::time::Duration;

/// Progress steps [`measure`] reports.
pub const STEPS: usize = 5;

/// Passes of the forward requests whose sharing is measured.
pub const PASSES: u32 = 5;
/// Passes of the longer request the host overhead's per-pass slope is measured with (FastPTM's
/// requests: 16 samples in batch-1 passes).
pub const PASSES_MANY: u32 = 16;
/// Passes of the forward requests of the largest shape.
pub const PASSES_LARGE: u32 = 2;

/// The larger pass shapes `(rows, tokens, passes a request)` switches are timed beside, after
/// the stretch shape: the plan's batches at the stretch shape's length whose tokens are at
/// least twice the size before (requests of [`PASSES`] passes), then its largest batch at its
/// largest length when larger still (requests of [`PASSES_LARGE`] passes); at most
/// `MAX_COPY_SIZES`.
pub fn copy_shapes(plan: &Plan) -> Vec<(u32, u32, u32)> {
    let (b0, s0) = plan.stretch_shape();
    let mut last = b0.saturating_mul(s0) as u64;
    let mut out = Vec::new();
    let mut batches = plan.batches.clone();
    batches.sort_unstable();
    for b in batches {
        let tokens = b.saturating_mul(s0) as u64;
        if tokens >= 2 * last {
            out.push((b, s0, PASSES));
            last = tokens;
        }
    }
    if let Some(&(b, s)) = shapes(plan).get(1) {
        if b.saturating_mul(s) as u64 > last {
            out.push((b, s, PASSES_LARGE));
        }
    }
    let max = ptm_sim::profile::MAX_COPY_SIZES;
    if out.len() > max {
        // Keep the largest, and the smallest sizes before it.
        let largest = out[out.len() - 1];
        out.truncate(max - 1);
        out.push(largest);
    }
    out
}

/// How much larger (in tokens) each of [`sm_shapes`] is than the size before, at least.
pub const SM_SIZE_STEP: u64 = 4;

/// The pass shapes `(rows, tokens)` the SMs' sharing is measured at between the stretch shape
/// and the largest ([`shapes`]), requests of [`PASSES`] passes: the plan's batches at the
/// stretch shape's length whose tokens are at least [`SM_SIZE_STEP`] times the size before and
/// below the largest shape's; at most `MAX_SM_SIZES` (the smallest kept). The H200 plan
/// (batches 1–32, lengths 32–512, stretch 1 × 128): 4 × 128 and 16 × 128 (512 and 2,048
/// tokens).
pub fn sm_shapes(plan: &Plan) -> Vec<(u32, u32)> {
    let all = shapes(plan);
    let (b0, s0) = all[0];
    let (bl, sl) = all[all.len() - 1];
    let large = bl.saturating_mul(sl) as u64;
    let mut last = b0.saturating_mul(s0) as u64;
    let mut batches = plan.batches.clone();
    batches.sort_unstable();
    batches.dedup();
    let mut out = Vec::new();
    for b in batches {
        let tokens = b.saturating_mul(s0) as u64;
        if tokens >= SM_SIZE_STEP * last && tokens < large {
            out.push((b, s0));
            last = tokens;
        }
    }
    out.truncate(ptm_sim::profile::MAX_SM_SIZES);
    out
}

/// The pass shapes (rows, tokens) the live path times: the plan's stretch shape and, when it is
/// larger, its largest batch at its largest length.
pub fn shapes(plan: &Plan) -> Vec<(u32, u32)> {
    let small = plan.stretch_shape();
    let large = (
        plan.batches.iter().copied().max().unwrap_or(1),
        plan.seq_lens.iter().copied().max().unwrap_or(1),
    );
    if large.0.saturating_mul(large.1) > small.0.saturating_mul(small.1) {
        vec![small, large]
    } else {
        vec![small]
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The fraction of an operation's time alone that holds a FIFO resource, from its measured
/// last-finish curve (`curve[k-1]`: `k` at once until the last finished, over one alone): `k`
/// operations queued at once end at `L + k·X` for a latency `L` that overlaps the operation
/// ahead and a time `X` on the resource, so `curve[k-1] = 1 + (k − 1)·o` with `o = X / (L +
/// X)`; `o` is the least-squares slope through `(1, 1)`, clamped to `(0, 1]`. `None` with
/// fewer than two points or no positive slope.
pub fn fifo_occupancy(curve: &[f64]) -> Option<f64> {
    let (num, den) = curve
        .iter()
        .enumerate()
        .skip(1)
        .fold((0.0, 0.0), |(n, d), (i, &c)| {
            (n + i as f64 * (c - 1.0), d + (i * i) as f64)
        });
    let o = num / den;
    (den > 0.0 && o.is_finite() && o > 0.0).then(|| o.min(1.0))
}

/// One resource's sharing: curve of last-finish medians and the FIFO test (see the module
/// doc); for a FIFO resource also its occupancy ([`fifo_occupancy`]).
fn sharing(
    path: &mut dyn LivePath,
    op: PathOp,
    max_k: usize,
    warmup: usize,
    repeats: usize,
) -> Result<(Sharing, Vec<f64>, Option<f64>)> {
    let mut alone = Vec::new();
    let mut curve = Vec::with_capacity(max_k);
    let mut first_over_last = Vec::new();
    for k in 1..=max_k {
        let mut last = Vec::with_capacity(repeats);
        first_over_last.clear();
        for round in 0..warmup + repeats {
            let ds: Vec<f64> = path.together(op, k)?.iter().map(ms).collect();
            if round < warmup {
                continue;
            }
            let hi = ds.iter().copied().fold(0.0, f64::max);
            let lo = ds.iter().copied().fold(f64::INFINITY, f64::min);
            if k == 1 {
                alone.push(hi);
            }
            last.push(hi);
            if hi > 0.0 {
                first_over_last.push(lo / hi);
            }
        }
        curve.push(stats::median(&last));
    }
    let base = stats::median(&alone);
    let curve: Vec<f64> = curve
        .iter()
        .map(|m| if base > 0.0 { m / base } else { 1.0 })
        .collect();
    let fifo = max_k >= 2 && {
        let threshold = (1.0 + 1.0 / max_k as f64) / 2.0;
        stats::median(&first_over_last) < threshold
    };
    let (s, occupancy) = if fifo {
        (Sharing::Fifo, fifo_occupancy(&curve))
    } else {
        (Sharing::Shared(curve.clone()), None)
    };
    Ok((s, alone, occupancy))
}

/// The staging of a request of one pass (one sample per request) and the host work each
/// further pass adds (ms, ≥ 0): `reps` requests of 1 and of [`PASSES_MANY`] passes of `batch`
/// × `seq_len` sent back to back, less the median of `handoff_busy` (round trips measured back
/// to back too, ms) and the passes at `forward_ms` (the forward table's pass); see the module
/// doc.
pub fn staging(
    path: &mut dyn LivePath,
    batch: u32,
    seq_len: u32,
    reps: usize,
    handoff_busy: &[f64],
    forward_ms: &dyn Fn(u32, u32) -> f64,
) -> Result<(Vec<f64>, f64)> {
    let handoff_busy_median = stats::median(handoff_busy);
    let pass_ms = forward_ms(batch, seq_len);
    let mut beyond = |passes: u32| -> Result<Vec<f64>> {
        Ok(path
            .requests_busy(batch, seq_len, passes, reps)?
            .iter()
            .map(|d| ms(d) - handoff_busy_median - passes as f64 * pass_ms)
            .collect())
    };
    let one = beyond(1)?;
    let many = beyond(PASSES_MANY)?;
    let per_pass = (stats::median(&many) - stats::median(&one)) / (PASSES_MANY - 1) as f64;
    let one = one.into_iter().map(|x| x.max(0.0)).collect();
    Ok((one, per_pass.max(0.0)))
}

/// What [`measure`] found: the contention figures and the host overhead.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// How phases share the resources.
    pub contention: Contention,
    /// The host's work per dispatch.
    pub host: HostOverhead,
}

/// Measures the figures on `path` following `plan` (forward requests of the plan's stretch
/// shape); `forward_ms(batch, seq_len)` is the profile's mean pass (the forward table just
/// measured), which the host overhead excludes. Needs at least 2 slots; `step` is told after
/// each figure.
pub fn measure(
    path: &mut dyn LivePath,
    plan: &Plan,
    forward_ms: &dyn Fn(u32, u32) -> f64,
    step: &mut dyn FnMut(&str),
) -> Result<Figures> {
    let max_k = plan.max_instances.min(path.instances());
    if max_k < 2 {
        return Err(crate::Error::Invalid(format!(
            "contention needs at least 2 instances ({} asked, {} slots)",
            plan.max_instances,
            path.instances()
        )));
    }
    let (batch, seq_len) = plan.stretch_shape();
    let forward = PathOp::Forward {
        batch,
        seq_len,
        passes: PASSES,
    };
    let (sm, forward_alone, _) = sharing(path, forward, max_k, plan.warmup, plan.repeats)?;
    let sm_large = match shapes(plan).get(1) {
        Some(&(b, s)) => {
            let op = PathOp::Forward {
                batch: b,
                seq_len: s,
                passes: PASSES_LARGE,
            };
            Some((
                b.saturating_mul(s),
                sharing(path, op, max_k, plan.warmup, plan.repeats)?.0,
            ))
        }
        None => None,
    };
    let sm_sizes = sm_shapes(plan)
        .into_iter()
        .map(|(b, s)| {
            let op = PathOp::Forward {
                batch: b,
                seq_len: s,
                passes: PASSES,
            };
            let sharing = sharing(path, op, max_k, plan.warmup, plan.repeats)?.0;
            Ok((b.saturating_mul(s), sharing))
        })
        .collect::<Result<Vec<_>>>()?;
    step("forward requests on 1–k instances at once (SMs), small, intermediate and large passes");
    let (link, switch_alone, link_occupancy) =
        sharing(path, PathOp::Switch, max_k, plan.warmup, plan.repeats)?;
    step("switches on 1–k instances at once (copy engine)");
    let slow_k = plan.slow_max_instances.clamp(1, max_k);
    let (host, _, _) = sharing(
        path,
        PathOp::ColdLoad,
        slow_k,
        plan.warmup.min(1),
        plan.slow_repeats,
    )?;
    step("cold loads on 1–k instances at once (host)");
    let during = |path: &mut dyn LivePath, op, bg, alone: &[f64]| -> Result<f64> {
        let ds: Vec<f64> = path.during(op, bg, plan.repeats)?.iter().map(ms).collect();
        let base = stats::median(alone);
        Ok(if base > 0.0 {
            stats::median(&ds) / base
        } else {
            1.0
        })
    };
    let forward_during_copy = during(path, forward, PathOp::Switch, &forward_alone)?;
    let copy_during_forward = during(path, PathOp::Switch, forward, &switch_alone)?;
    let copy_during_forward_sizes = copy_shapes(plan)
        .into_iter()
        .map(|(b, s, passes)| {
            let beside = PathOp::Forward {
                batch: b,
                seq_len: s,
                passes,
            };
            let f = during(path, PathOp::Switch, beside, &switch_alone)?;
            Ok((b.saturating_mul(s), f))
        })
        .collect::<Result<Vec<_>>>()?;
    step("forwards during switches, switches during small and large forwards");
    let reps = plan.repeats.max(2);
    let handoff: Vec<f64> = path.handoffs(reps * 4)?.iter().map(ms).collect();
    let handoff_busy: Vec<f64> = path.handoffs_busy(reps * 4)?.iter().map(ms).collect();
    let (staging, per_pass) = staging(path, batch, seq_len, reps, &handoff_busy, forward_ms)?;
    step("host overhead: hand-offs parked and back to back, requests of 1 and 16 passes back to back");
    Ok(Figures {
        contention: Contention {
            sm,
            sm_tokens: batch.saturating_mul(seq_len),
            sm_large,
            sm_sizes,
            link,
            host,
            forward_during_copy,
            copy_during_forward,
            copy_during_forward_sizes,
            link_occupancy,
        },
        host: HostOverhead {
            handoff_ms: stats::fit(&handoff),
            handoff_busy_ms: Some(stats::fit(&handoff_busy)),
            staging_ms: stats::fit(&staging),
            staging_per_pass_ms: per_pass,
            method: format!(
                "hand-off: {n} round trips of a job to a worker thread parked {park} ms before \
                 each (a dispatch to a parked worker: what parking costs more lands here); busy \
                 hand-off: {n} round trips back to back (each job sent the instant the previous \
                 report arrived, as live dispatches to an instance that just reported; the \
                 first, untimed, starts the sequence); staging: {reps} requests of 1 and of \
                 {PASSES_MANY} passes of batch {batch} × {seq_len} tokens through a worker, back \
                 to back as the busy hand-offs (hand-off to report, the first untimed), less \
                 the busy hand-off's median {busy:.4} ms and the forward table's {pass:.4} ms \
                 per pass, clipped at 0; per further pass: the two requests' medians' \
                 difference over {extra}, clipped at 0",
                n = reps * 4,
                park = crate::slot_path::PARK.as_secs_f64() * 1e3,
                busy = stats::median(&handoff_busy),
                pass = forward_ms(batch, seq_len),
                extra = PASSES_MANY - 1,
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_occupancy_is_the_slope_of_the_last_finish_curve() {
        // Copies of 4.17 ms alone, 0.12 of it latency that overlaps the copy ahead: k at once
        // end at 0.12 + 4.05·k.
        let alone = 4.17;
        let curve: Vec<f64> = (1..=8).map(|k| (0.12 + 4.05 * k as f64) / alone).collect();
        let o = fifo_occupancy(&curve).unwrap();
        assert!((o - 4.05 / alone).abs() < 1e-12, "{o}");
        // Pure FIFO (no overlap): 1; a curve above it is clamped to 1.
        assert_eq!(fifo_occupancy(&[1.0, 2.0, 3.0]), Some(1.0));
        assert_eq!(fifo_occupancy(&[1.0, 2.5]), Some(1.0));
        // Nothing to fit, or no positive slope.
        assert_eq!(fifo_occupancy(&[1.0]), None);
        assert_eq!(fifo_occupancy(&[]), None);
        assert_eq!(fifo_occupancy(&[1.0, 0.9]), None);
    }

    #[test]
    fn the_sms_are_measured_at_each_quadrupling_between_the_small_and_large_passes() {
        // The H200 plan: 512 and 2,048 tokens between 1 × 128 and 32 × 512.
        let plan = Plan {
            batches: vec![1, 2, 4, 8, 16, 32],
            seq_lens: vec![32, 64, 128, 256, 512],
            ..Plan::full()
        };
        assert_eq!(sm_shapes(&plan), vec![(4, 128), (16, 128)]);
        // Nothing at or above the largest shape's tokens; one shape only: nothing between.
        let plan = Plan {
            batches: vec![1, 4, 16],
            seq_lens: vec![128],
            ..Plan::full()
        };
        assert_eq!(sm_shapes(&plan), vec![(4, 128)]);
        let plan = Plan {
            batches: vec![1],
            seq_lens: vec![128],
            ..Plan::full()
        };
        assert!(sm_shapes(&plan).is_empty());
        let plan = Plan {
            batches: (0..40).map(|i| 1u32 << i.min(31)).collect(),
            seq_lens: vec![1, 2],
            ..Plan::full()
        };
        // u32 tokens hold 15 quadruplings above 2 tokens: within MAX_SM_SIZES, increasing.
        let sizes = sm_shapes(&plan);
        assert_eq!(sizes.len(), 15);
        assert!(sizes.len() <= ptm_sim::profile::MAX_SM_SIZES);
        assert!(sizes.windows(2).all(|w| w[1].0 == 4 * w[0].0), "{sizes:?}");
    }

    #[test]
    fn switches_are_timed_beside_each_doubling_of_the_plan_s_pass_sizes() {
        // The H200 plan: batches 1–32, lengths 32–512; stretch shape 1 × 128.
        let plan = Plan {
            batches: vec![1, 2, 4, 8, 16, 32],
            seq_lens: vec![32, 64, 128, 256, 512],
            ..Plan::full()
        };
        assert_eq!(
            copy_shapes(&plan),
            vec![
                (2, 128, PASSES),
                (4, 128, PASSES),
                (8, 128, PASSES),
                (16, 128, PASSES),
                (32, 128, PASSES),
                (32, 512, PASSES_LARGE),
            ]
        );
        // Batches closer than a doubling are skipped; one shape only: nothing beside.
        let plan = Plan {
            batches: vec![4, 3, 1, 5, 9],
            seq_lens: vec![128],
            ..Plan::full()
        };
        assert_eq!(copy_shapes(&plan), vec![(3, 128, PASSES), (9, 128, PASSES)]);
        let plan = Plan {
            batches: vec![1],
            seq_lens: vec![128],
            ..Plan::full()
        };
        assert!(copy_shapes(&plan).is_empty());
        // Many batches: at most MAX_COPY_SIZES sizes, the largest kept.
        let plan = Plan {
            batches: (0..24).map(|i| 1u32 << i).collect(),
            seq_lens: vec![1, 2], // the stretch length is 2, the largest shape too
            ..Plan::full()
        };
        let sizes = copy_shapes(&plan);
        assert_eq!(sizes.len(), ptm_sim::profile::MAX_COPY_SIZES);
        assert_eq!(sizes.last(), Some(&(1 << 23, 2, PASSES)));
    }
}
