//! Loads from the GPU weight pool beside forward passes through the engine: with the profile's
//! `pool_contention` they run on the pool stream's track and slow the passes beside them as
//! measured (and are slowed by them); without it they keep the stretch at their start, the
//! passes never slow for them, and the report says the figure was not measured.

use ptm_sim::engine::{self, LoadingMode, Run, RunOptions, Serving, Setup, SpanKind};
use ptm_sim::ledger::Capacity;
use ptm_sim::metrics::Report;
use ptm_sim::profile::{PoolCopyContention, Profile};
use ptm_sim::scheduler::{self, PolicyOptions, Shape};
use ptm_sim::workload::{Request, Tenant, Workload};

#[path = "support/contention_profile.rs"]
mod contention_profile;

use contention_profile::shared_profile;

const MS: u64 = 1_000_000;

/// The example profile (4 ms forwards, 2.5 ms pool loads, 100 ms switches) with contention
/// figures (SMs shared, no cross factor for host copies) and, if given, pool-copy figures.
fn profile(pool: Option<(f64, f64)>) -> Profile {
    let mut p = shared_profile(vec![1.0, 1.5]);
    let m = p.models.get_mut("bert-base").unwrap();
    m.pool_contention = pool.map(|(f, c)| PoolCopyContention {
        forward_during_pool_copy: f,
        pool_copy_during_forward: c,
        tokens: 128,
        method: "set by the test".into(),
    });
    p
}

/// 120 one-sample requests 3 ms apart cycling over 4 tenants, for 3 executors and a pool of 4:
/// after the first switches, tenants come from the pool while other executors run passes.
fn workload() -> Workload {
    Workload {
        tenants: (0..4)
            .map(|i| Tenant {
                name: format!("t{i}"),
                model: "bert-base".into(),
            })
            .collect(),
        requests: (0..120u64)
            .map(|i| Request {
                tenant: (i % 4) as u32,
                samples: 1,
                seq_len: 128,
                arrival_ns: i * 3 * MS,
                deadline_ns: 10_000 * MS,
            })
            .collect(),
    }
}

fn simulate(profile: &Profile, w: &Workload) -> (Run, Report) {
    let serving = Serving {
        instances: 3,
        loading: LoadingMode::Split,
        forward_batch: 1,
        gpu_pool: Some(Capacity::Tenants(4)),
        ..Serving::default()
    };
    let setup = Setup::new(profile, "test", w, serving).unwrap();
    let shape = Shape {
        instances: 3,
        tenants: w.tenants.len(),
    };
    let mut s = scheduler::by_name("fcfs-rr", &PolicyOptions::default(), shape).unwrap();
    let options = RunOptions {
        timeline: true,
        ..RunOptions::default()
    };
    let run = engine::simulate(&setup, s.as_mut(), 5, options).unwrap();
    let report = Report::new("test", "fcfs-rr", 5, &setup, &run);
    (run, report)
}

fn mean_ms(run: &Run, kind: SpanKind) -> f64 {
    let spans: Vec<u64> = run
        .timeline
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.end_ns - s.start_ns)
        .collect();
    assert!(!spans.is_empty(), "no {kind:?} span");
    spans.iter().sum::<u64>() as f64 / spans.len() as f64 / 1e6
}

#[test]
fn passes_slow_beside_pool_loads_only_as_measured() {
    let w = workload();
    let (plain_run, plain) = simulate(&profile(None), &w);
    let (neutral_run, neutral) = simulate(&profile(Some((1.0, 1.0))), &w);
    let (slowed_run, slowed) = simulate(&profile(Some((3.0, 2.0))), &w);
    for r in [&plain, &neutral, &slowed] {
        assert_eq!(r.completed, 120);
        assert!(r.pool_loads > 10, "{} pool loads", r.pool_loads);
    }
    assert!(
        plain
            .cost_model
            .contains("pool loads stretched at their start")
            && plain.cost_model.contains("not measured for bert-base"),
        "{}",
        plain.cost_model
    );
    assert!(
        slowed
            .cost_model
            .contains("pool loads on the pool stream beside passes as measured"),
        "{}",
        slowed.cost_model
    );
    // Neutral factors: passes as without the figures (a pass is slowed by nothing else here
    // but the SMs' sharing, and the schedules agree while the pool loads' times do).
    let (inf_neutral, inf_slowed) = (
        mean_ms(&neutral_run, SpanKind::Inference),
        mean_ms(&slowed_run, SpanKind::Inference),
    );
    assert!(
        inf_slowed > inf_neutral * 1.05,
        "passes beside pool loads slowed ×3: {inf_slowed} ms against {inf_neutral} ms"
    );
    // A pool load alone takes the profile's 2.5 ms; slowed ×2 beside passes it takes more, never
    // more than twice that plus queueing behind others on the one pool stream.
    let pool_neutral = mean_ms(&neutral_run, SpanKind::PoolLoad);
    let pool_slowed = mean_ms(&slowed_run, SpanKind::PoolLoad);
    assert!(pool_neutral >= 2.5, "{pool_neutral}");
    assert!(
        pool_slowed > pool_neutral,
        "{pool_slowed} vs {pool_neutral}"
    );
    // Without figures the passes never slow for pool loads.
    assert!(mean_ms(&plain_run, SpanKind::Inference) < inf_slowed);
}

#[test]
fn runs_with_pool_figures_are_deterministic_across_threads() {
    let w = workload();
    let p = profile(Some((1.7, 1.3)));
    let json = || serde_json::to_string(&simulate(&p, &w).1).unwrap();
    let here = json();
    let there = std::thread::scope(|s| s.spawn(json).join().unwrap());
    assert_eq!(here, there);
}
