//! `ptm run --live`: replay every cell of a scenario on the real runtime in real time, with the
//! same schedulers, and (`--compare`) beside the simulator's prediction from the scenario's
//! profile: the fidelity table and the mean phase durations that explain its gaps.

use crate::fleet::{Fleet, FleetShape};
use ptm_calibrate::{Check, Expected};
use ptm_runtime::gpu::bucket;
use ptm_runtime::{DType, Device};
use ptm_sim::engine::Setup;
pub use ptm_sim::fidelity::Phases;
use ptm_sim::metrics::Report;
use ptm_sim::resimulate::latencies_ns;
use ptm_sim::scenario::Scenario;
use ptm_sim::scheduler::{self, Shape};
use ptm_sim::workload::{FileSource, Request};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// How to run live.
pub struct LiveOptions<'a> {
    /// The zoo whose models serve the tenants.
    pub zoo: &'a Path,
    /// Where the runtime runs.
    pub device: Device,
    /// Weight dtype.
    pub dtype: DType,
    /// Also simulate and compare.
    pub compare: bool,
    /// Compare against a profile of another model, device or dtype all the same (warned about
    /// instead of refused).
    pub allow_profile_mismatch: bool,
    /// The runtime's kernel options (the default but for A/B runs: `ptm run --live
    /// --pageable-staging`, `--pinned-uploads`); a profile measured with others is warned about.
    pub options: ptm_runtime::KernelOptions,
    /// Told before each cell starts (and once at the end), for a progress display.
    pub progress: Option<&'a (dyn Fn(&Progress<'_>) + Sync)>,
}

/// Where a live run stands. A replay takes at least its workload's span of arrivals in wall
/// time, which gives the time left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress<'a> {
    /// Cells finished.
    pub done: usize,
    /// Cells in all.
    pub total: usize,
    /// The cell about to start (`None` at the end).
    pub next: Option<(&'a str, u64)>,
    /// Seconds of replay finished (the finished cells' arrival spans).
    pub done_s: f64,
    /// Seconds of replay left at least (the remaining cells' arrival spans).
    pub left_s: f64,
}

/// A live cell and, with `--compare`, its simulated twin (the one type `ptm fidelity-table`
/// reads and `ptm run --resimulate` rewrites).
pub type LiveCell = ptm_sim::fidelity::Cell;

/// Replays every (policy, seed) cell of `s` live.
pub fn run_cells(
    s: &Scenario,
    files: &dyn FileSource,
    o: &LiveOptions<'_>,
) -> anyhow::Result<Vec<LiveCell>> {
    let (device, dtype) = (o.device, o.dtype);
    let (profile, profile_name) = s.load_profile(files)?;
    if o.compare {
        // The simulation answers for the profile's machine and model: refuse another one.
        let run = Expected::run(Some(o.zoo), Some(device), Some(dtype))?.with_options(o.options);
        let check = Check::new(&profile, &profile_name, Some(&s.model), &run)?;
        for w in check.enforce(o.allow_profile_mismatch)? {
            eprintln!("ptm: warning: {w}");
        }
    }
    let mut out = Vec::new();
    let span_s = |w: &ptm_sim::workload::Workload| match (w.requests.first(), w.requests.last()) {
        (Some(a), Some(b)) => (b.arrival_ns - a.arrival_ns) as f64 / 1e9,
        _ => 0.0,
    };
    let mut spans = Vec::with_capacity(s.seeds.len());
    for &seed in &s.seeds {
        spans.push(span_s(&s.load_workload(files, seed)?));
    }
    let total = s.seeds.len() * s.policies.len();
    let per_seed = s.policies.len() as f64;
    let (mut done, mut done_s, mut left_s) = (0, 0.0, spans.iter().sum::<f64>() * per_seed);
    let tell = |next: Option<(&str, u64)>, done: usize, done_s: f64, left_s: f64| {
        if let Some(f) = o.progress {
            f(&Progress {
                done,
                total,
                next,
                done_s,
                left_s,
            });
        }
    };
    for (si, &seed) in s.seeds.iter().enumerate() {
        let workload = s.load_workload(files, seed)?;
        let setup = Setup::new(&profile, &profile_name, &workload, s.serving())?;
        let (warm, rows, seq) =
            pass_shapes(&workload.requests, s.forward_batch, s.batching.is_some());
        let fleet = Fleet::read(
            o.zoo,
            workload.tenants.len(),
            dtype,
            device,
            FleetShape {
                max_rows: rows,
                max_seq: seq,
                pool: setup
                    .tiers
                    .pool_tenants
                    .map(|n| ptm_sim::ledger::Capacity::Tenants(n as u32)),
                instances: s.instances,
                pet: s.pet.is_some(),
                delta_slots: setup.tiers.pool_tenants.unwrap_or(1),
                options: o.options,
            },
        )?;
        fleet.check_fit(s.instances)?;
        for policy in &s.policies {
            tell(Some((policy, seed)), done, done_s, left_s);
            let shape = Shape {
                instances: s.instances,
                tenants: workload.tenants.len(),
            };
            let mut scheduler = scheduler::by_name(policy, &s.policy_options, shape)?;
            let executors = fleet.executors(s.instances, s.forward_batch, seed, &warm)?;
            let prefetcher = fleet.prefetcher();
            let run = crate::replay(&setup, scheduler.as_mut(), executors, prefetcher, s.preload)?;
            let mut live = Report::new(&s.name, policy, seed, &setup, &run);
            live.gpu = format!("live: {device} ({dtype})");
            let live_phases = Phases::of(run.timeline.as_deref().unwrap_or_default());
            let live_latencies_ns = latencies_ns(&workload.requests, &run);
            let (simulated, simulated_phases, simulated_latencies_ns) = if o.compare {
                let (report, sim) = s.run_cell_full(&setup, policy, seed, true)?;
                let phases = Phases::of(sim.timeline.as_deref().unwrap_or_default());
                let latencies = latencies_ns(&workload.requests, &sim);
                (Some(report), Some(phases), latencies)
            } else {
                (None, None, Vec::new())
            };
            out.push(LiveCell {
                live,
                live_phases,
                simulated,
                simulated_phases,
                live_latencies_ns,
                simulated_latencies_ns,
            });
            done += 1;
            done_s += spans[si];
            left_s = (left_s - spans[si]).max(0.0);
        }
    }
    tell(None, done, done_s, left_s);
    Ok(out)
}

/// The pass shapes `(rows, tokens)` the requests run in (one per runtime bucket: full passes
/// of `forward_batch` rows and the remainders; with cross-request `batching`, also every row
/// count up to `forward_batch` at each request length, as a batch's passes may hold several
/// requests' rows), and the largest rows and tokens.
pub fn pass_shapes(
    requests: &[Request],
    forward_batch: u32,
    batching: bool,
) -> (Vec<(usize, usize)>, usize, usize) {
    let fb = forward_batch.max(1);
    let mut shapes: BTreeMap<(usize, usize), (usize, usize)> = BTreeMap::new();
    // One shape per bucket: the most rows seen in it (the slots are sized for them).
    let mut add = |rows: usize, seq: usize| {
        let s = shapes
            .entry(bucket(rows, seq, usize::MAX))
            .or_insert((rows, seq));
        *s = (s.0.max(rows), s.1.max(seq));
    };
    for r in requests {
        let seq = r.seq_len.max(1) as usize;
        let full = fb.min(r.samples.max(1)) as usize;
        let rest = (r.samples % fb) as usize;
        for rows in [full, rest] {
            if rows > 0 {
                add(rows, seq);
            }
        }
        if batching {
            for rows in 1..=fb as usize {
                add(rows, seq);
            }
        }
    }
    let rows = shapes.values().map(|s| s.0).max().unwrap_or(1);
    let seq = shapes.values().map(|s| s.1).max().unwrap_or(1);
    (shapes.into_values().collect(), rows, seq)
}

/// The fidelity table of one cell: per metric, simulated, live and the simulation's error
/// (sim − live) / live: positive when the simulator predicts more than live measured.
pub fn fidelity_table(cell: &LiveCell) -> String {
    let mut out = String::new();
    let live = &cell.live;
    let Some(sim) = &cell.simulated else {
        return out;
    };
    let _ = writeln!(
        out,
        "fidelity: {} / {} / seed {}: simulated on {} vs {}",
        live.scenario, live.policy, live.seed, sim.gpu, live.gpu
    );
    let _ = writeln!(
        out,
        "{:<18} {:>12} {:>12} {:>16}",
        "metric", "simulated", "live", "(sim − live)/live"
    );
    let rows: [(&str, f64, f64); 7] = [
        ("throughput req/s", sim.throughput_rps, live.throughput_rps),
        ("latency mean ms", sim.latency_ms.mean, live.latency_ms.mean),
        ("latency p50 ms", sim.latency_ms.p50, live.latency_ms.p50),
        ("latency p99 ms", sim.latency_ms.p99, live.latency_ms.p99),
        ("switches", sim.switches as f64, live.switches as f64),
        ("cold loads", sim.cold_loads as f64, live.cold_loads as f64),
        ("overtimes", sim.overtimes as f64, live.overtimes as f64),
    ];
    let phases = cell.simulated_phases.unwrap_or_default();
    let lp = cell.live_phases;
    let rows = rows.into_iter().chain([
        ("mean wait ms", sim.wait_ms.mean, live.wait_ms.mean),
        ("mean switch ms", phases.switch_ms, lp.switch_ms),
        ("mean pool load ms", phases.pool_load_ms, lp.pool_load_ms),
        ("mean cold load ms", phases.cold_load_ms, lp.cold_load_ms),
        ("mean inference ms", phases.inference_ms, lp.inference_ms),
    ]);
    for (name, s, l) in rows {
        let err = if l != 0.0 {
            format!("{:+.1} %", 100.0 * (s - l) / l)
        } else if s == 0.0 {
            "0 %".into()
        } else {
            "n/a".into()
        };
        let _ = writeln!(out, "{name:<18} {s:>12.3} {l:>12.3} {err:>16}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(arrival_ns: u64, samples: u32, seq_len: u32) -> Request {
        Request {
            arrival_ns,
            tenant: 0,
            samples,
            seq_len,
            deadline_ns: 0,
        }
    }

    #[test]
    fn pass_shapes_cover_full_passes_and_remainders_once_per_bucket() {
        // 16 samples in passes of 8; 20 samples: 8, 8 and a remainder of 4; 3 samples: one
        // pass of 3 (the bucket of 4, already covered by the remainder of 4 at 128 tokens).
        let reqs = [
            request(0, 16, 128),
            request(1, 20, 128),
            request(2, 3, 100),
            request(3, 8, 40),
        ];
        let (shapes, rows, seq) = pass_shapes(&reqs, 8, false);
        let buckets: Vec<_> = shapes
            .iter()
            .map(|&(r, s)| bucket(r, s, usize::MAX))
            .collect();
        assert_eq!(buckets, vec![(4, 128), (8, 64), (8, 128)]);
        assert_eq!((rows, seq), (8, 128));
        assert_eq!(pass_shapes(&[], 8, false), (vec![], 1, 1));
        // With batching, a batch's passes may hold 1–8 rows at any request length.
        let (shapes, rows, _) = pass_shapes(&[request(0, 2, 128), request(1, 1, 40)], 8, true);
        let buckets: Vec<_> = shapes
            .iter()
            .map(|&(r, s)| bucket(r, s, usize::MAX))
            .collect();
        assert_eq!(
            buckets,
            vec![
                (1, 64),
                (1, 128),
                (2, 64),
                (2, 128),
                (4, 64),
                (4, 128),
                (8, 64),
                (8, 128)
            ]
        );
        assert_eq!(rows, 8);
    }
}
