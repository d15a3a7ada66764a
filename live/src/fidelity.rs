//! `ptm run --live`: replay every cell of a scenario on the real runtime in real time, with the
//! same schedulers, and (`--compare`) beside the simulator's prediction from the scenario's
//! profile: the fidelity table and the mean phase durations that explain its gaps.

use crate::fleet::{Fleet, FleetShape};
use ptm_calibrate::{Check, Expected};
use ptm_runtime::gpu::bucket;
use ptm_runtime::{DType, Device};
use ptm_sim::engine::{Setup, Span, SpanKind};
use ptm_sim::metrics::Report;
use ptm_sim::scenario::Scenario;
use ptm_sim::scheduler::{self, Shape};
use ptm_sim::workload::{FileSource, Request};
use serde::Serialize;
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

/// A live cell and, with `--compare`, its simulated twin.
#[derive(Debug, Serialize)]
pub struct LiveCell {
    /// What the real runtime did.
    pub live: Report,
    /// Mean phase durations of the live run.
    pub live_phases: Phases,
    /// What the simulator predicted from the profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated: Option<Report>,
    /// Mean phase durations of the simulation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulated_phases: Option<Phases>,
}

/// Mean durations of an instance's phases: where a fidelity gap comes from (the mean wait is
/// the report's `wait_ms`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Phases {
    /// Mean cold load (an empty instance reading a checkpoint), ms.
    pub cold_load_ms: f64,
    /// Mean switch (weights from the host cache), ms.
    pub switch_ms: f64,
    /// Mean load from the GPU weight pool, ms.
    pub pool_load_ms: f64,
    /// Mean inference of a request, ms.
    pub inference_ms: f64,
}

impl Phases {
    /// The means over a run's timeline (zero where a phase never happened).
    pub fn of(timeline: &[Span]) -> Self {
        let mean = |kind: SpanKind| {
            let (n, total) = timeline
                .iter()
                .filter(|s| s.kind == kind)
                .fold((0u64, 0u64), |(n, t), s| {
                    (n + 1, t + (s.end_ns - s.start_ns))
                });
            if n == 0 {
                0.0
            } else {
                total as f64 / n as f64 / 1e6
            }
        };
        Phases {
            cold_load_ms: mean(SpanKind::ColdLoad),
            switch_ms: mean(SpanKind::Switch),
            pool_load_ms: mean(SpanKind::PoolLoad),
            inference_ms: mean(SpanKind::Inference),
        }
    }
}

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
        let run = Expected::run(Some(o.zoo), Some(device), Some(dtype))?;
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
            let (simulated, simulated_phases) = if o.compare {
                let (report, timeline) = s.run_cell_with_timeline(&setup, policy, seed, true)?;
                let phases = Phases::of(timeline.as_deref().unwrap_or_default());
                (Some(report), Some(phases))
            } else {
                (None, None)
            };
            out.push(LiveCell {
                live,
                live_phases,
                simulated,
                simulated_phases,
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
/// of `forward_batch` rows and the remainders; with cross-request `batching`, passes joining
/// several requests' rows, of every bucket up to `forward_batch` rows), and the largest rows
/// and tokens.
pub fn pass_shapes(
    requests: &[Request],
    forward_batch: u32,
    batching: bool,
) -> (Vec<(usize, usize)>, usize, usize) {
    let fb = forward_batch.max(1);
    let mut shapes = BTreeMap::new();
    for r in requests {
        let seq = r.seq_len.max(1) as usize;
        let full = fb.min(r.samples.max(1)) as usize;
        let rest = (r.samples % fb) as usize;
        for rows in [full, rest] {
            if rows > 0 {
                shapes.insert(bucket(rows, seq, usize::MAX), (rows, seq));
            }
        }
        if batching {
            let mut rows = 1;
            while rows < fb {
                shapes.insert(bucket(rows as usize, seq, usize::MAX), (rows as usize, seq));
                rows *= 2;
            }
            shapes.insert(bucket(fb as usize, seq, usize::MAX), (fb as usize, seq));
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
        // Batches of requests: every bucket up to 12 rows (16) at each request length.
        let (shapes, rows, _) = pass_shapes(&reqs[2..3], 12, true);
        let buckets: Vec<_> = shapes
            .iter()
            .map(|&(r, s)| bucket(r, s, usize::MAX))
            .collect();
        assert_eq!(
            buckets,
            vec![(1, 128), (2, 128), (4, 128), (8, 128), (16, 128)]
        );
        assert_eq!(rows, 12);
    }

    #[test]
    fn phases_are_means_per_kind() {
        let span = |kind, start_ns, end_ns| Span {
            instance: 0,
            kind,
            request: 0,
            start_ns,
            end_ns,
        };
        let timeline = [
            span(SpanKind::ColdLoad, 1_000_000, 3_000_000),
            span(SpanKind::Inference, 3_000_000, 4_000_000),
            span(SpanKind::Switch, 5_000_000, 9_000_000),
            span(SpanKind::Inference, 9_000_000, 12_000_000),
        ];
        assert_eq!(
            Phases::of(&timeline),
            Phases {
                cold_load_ms: 2.0,
                switch_ms: 4.0,
                pool_load_ms: 0.0,
                inference_ms: 2.0,
            }
        );
        assert_eq!(Phases::of(&[]), Phases::default());
    }
}
