//! Contention by resource through the engine: processor sharing conserves work, re-timing
//! follows phases starting and ending, FIFO copies, cross-resource factors, the host's work per
//! dispatch, determinism, and the stretch model kept (and stated) for profiles without figures.

use ptm_sim::engine::{self, LoadingMode, Preload, Run, RunOptions, Serving, Setup, SpanKind};
use ptm_sim::metrics::Report;
use ptm_sim::profile::{Dist, HostOverhead, Profile};
use ptm_sim::scheduler::{self, PolicyOptions, Shape, POLICIES};
use ptm_sim::workload::{
    self, Arrivals, NoFiles, Popularity, Request, RequestDefaults, Tenant, Workload, WorkloadSpec,
};

#[path = "support/contention_profile.rs"]
mod contention_profile;

use contention_profile::shared_profile;

const MS: u64 = 1_000_000;

fn tenants(n: usize) -> Vec<Tenant> {
    (0..n)
        .map(|i| Tenant {
            name: format!("t{i}"),
            model: "bert-base".into(),
        })
        .collect()
}

/// Requests (tenant, samples, arrival ms) of 128 tokens.
fn requests(spec: &[(u32, u32, u64)], tenant_count: usize) -> Workload {
    Workload {
        tenants: tenants(tenant_count),
        requests: spec
            .iter()
            .map(|&(tenant, samples, at_ms)| Request {
                tenant,
                samples,
                seq_len: 128,
                arrival_ns: at_ms * MS,
                deadline_ns: 10_000 * MS,
            })
            .collect(),
    }
}

fn simulate(
    profile: &Profile,
    w: &Workload,
    instances: usize,
    policy: &str,
    preload: Preload,
) -> (Run, Report) {
    let serving = Serving {
        instances,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    let setup = Setup::new(profile, "test", w, serving).unwrap();
    let shape = Shape {
        instances,
        tenants: w.tenants.len(),
    };
    let mut s = scheduler::by_name(policy, &PolicyOptions::default(), shape).unwrap();
    let options = RunOptions {
        preload,
        timeline: true,
    };
    let run = engine::simulate(&setup, s.as_mut(), 7, options).unwrap();
    let report = Report::new("test", policy, 7, &setup, &run);
    (run, report)
}

/// Two forwards of 4 ms and 8 ms alone start together on instances that hold their tenants
/// (FastPTM's preload: instance i holds tenant i): with the SMs shared at factor 2 for two, the
/// first ends at 8 ms and the second has 4 ms left alone, so it ends at 12 ms — their summed
/// work at the shared rate. At factor 1.6 for two (a total rate of 1.25): the first ends at
/// 6.4 ms, when the second has done 4 ms; its 4 ms left end at 10.4 ms.
#[test]
fn processor_sharing_conserves_work() {
    for (curve, first, second) in [
        (vec![1.0, 2.0], 8 * MS, 12 * MS),
        (vec![1.0, 1.6], 6_400_000, 10_400_000),
    ] {
        let profile = shared_profile(curve.clone());
        let w = requests(&[(1, 1, 0), (2, 2, 0)], 3);
        let (run, report) = simulate(&profile, &w, 3, "affinity", Preload::FastPtm);
        assert_eq!(report.switches + report.cold_loads, 0, "{curve:?}");
        assert_eq!(run.end_ns, vec![first, second], "{curve:?}");
        assert!(
            report.cost_model.contains("by resource"),
            "{}",
            report.cost_model
        );
    }
}

/// A phase's remaining work is re-timed when another starts later: a 8 ms forward runs alone for
/// 2 ms, then shares the SMs (factor 2) with a 4 ms forward: the second ends at 2 + 8 = 10 ms,
/// the first has 8 − 2 − 4 = 2 ms left alone and ends at 12 ms.
#[test]
fn a_later_phase_re_times_the_running_one() {
    let profile = shared_profile(vec![1.0, 2.0]);
    let w = requests(&[(1, 2, 0), (2, 1, 2)], 3);
    let (run, _) = simulate(&profile, &w, 3, "affinity", Preload::FastPtm);
    assert_eq!(run.end_ns, vec![12 * MS, 10 * MS]);
}

/// Copies are FIFO on the copy engine: two switches started together land after 100 and 200 ms;
/// a forward slows by `forward_during_copy` while a copy is in flight and copies by
/// `copy_during_forward` while a forward runs.
#[test]
fn copies_queue_and_cross_factors_slow_both_sides() {
    let mut profile = shared_profile(vec![1.0, 1.0]);
    // Instances 1 and 2 hold tenants 1 and 2 and switch; instance 0 holds nothing and loads
    // cold (1 s on the host, which copies do not wait on).
    let w = requests(&[(3, 1, 0), (4, 1, 0), (5, 1, 0)], 6);
    let (run, _) = simulate(&profile, &w, 3, "affinity", Preload::FastPtm);
    let spans = run.timeline.unwrap();
    let mut switches: Vec<(u64, u64)> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Switch)
        .map(|s| (s.start_ns, s.end_ns))
        .collect();
    switches.sort_unstable();
    assert_eq!(switches, vec![(0, 100 * MS), (0, 200 * MS)]);
    // The first request's forward (100 → 104 ms) runs while the second switch copies: both slow.
    let c = profile
        .models
        .get_mut("bert-base")
        .unwrap()
        .contention
        .as_mut()
        .unwrap();
    c.forward_during_copy = 1.5;
    c.copy_during_forward = 2.0;
    let (run, _) = simulate(&profile, &w, 3, "affinity", Preload::FastPtm);
    // Forward: 4 ms at 1/1.5 while the copy runs → 6 ms (ends at 106 ms). The second copy from
    // 100 ms: 6 ms at ½ (3 ms of work) while the forward runs, then 97 ms alone → lands at 203 ms;
    // its forward then runs alone: 207 ms. The cold load's forward runs alone at 1 s.
    let mut ends = run.end_ns.clone();
    ends.sort_unstable();
    assert_eq!(ends, vec![106 * MS, 207 * MS, 1004 * MS]);
}

/// With a measured link occupancy `o`, a switch's `(1 − o)` is latency that overlaps the copy
/// ahead of it and only `o` of it holds the link: two switches of 100 ms started together land
/// at 100 ms (10 of latency, 90 on the link) and 190 ms (its latency overlapped the first's
/// copy, then 90 on the link) — k at once end at `(1 − o + k·o)` of one alone, the FIFO curve
/// calibration measures.
#[test]
fn a_copys_latency_overlaps_the_copy_ahead() {
    let mut profile = shared_profile(vec![1.0, 1.0]);
    profile
        .models
        .get_mut("bert-base")
        .unwrap()
        .contention
        .as_mut()
        .unwrap()
        .link_occupancy = Some(0.9);
    let w = requests(&[(3, 1, 0), (4, 1, 0), (5, 1, 0)], 6);
    let (run, _) = simulate(&profile, &w, 3, "affinity", Preload::FastPtm);
    let mut switches: Vec<(u64, u64)> = run
        .timeline
        .unwrap()
        .iter()
        .filter(|s| s.kind == SpanKind::Switch)
        .map(|s| (s.start_ns, s.end_ns))
        .collect();
    switches.sort_unstable();
    assert_eq!(switches, vec![(0, 100 * MS), (0, 190 * MS)]);
}

/// The host's work per dispatch is added unshared: the hand-off to the first phase, the staging
/// (and its per-pass part) to the inference.
#[test]
fn host_overhead_is_paid_once_per_dispatch() {
    let mut profile = shared_profile(vec![1.0, 2.0]);
    profile.models.get_mut("bert-base").unwrap().host = Some(HostOverhead {
        handoff_ms: Dist::Constant(0.1),
        handoff_busy_ms: None,
        staging_ms: Dist::Constant(0.2),
        staging_per_pass_ms: 0.05,
        method: "test".into(),
    });
    // One request of 3 passes on an instance holding its tenant: 0.1 + 0.2 + 2 × 0.05 + 12 ms.
    // One of 1 pass on the empty instance: 0.1 + 1000 ms (cold load), then 0.2 + 4 ms.
    let w = requests(&[(1, 3, 0), (5, 1, 0)], 6);
    let (run, report) = simulate(&profile, &w, 2, "affinity", Preload::FastPtm);
    assert_eq!(run.end_ns[0], 12_400_000);
    assert_eq!(run.end_ns[1], 1_004_300_000);
    assert!(report
        .cost_model
        .contains("host overhead per dispatch measured"));
    // The estimates schedulers see include it.
    let setup = Setup::new(
        &profile,
        "test",
        &w,
        Serving {
            instances: 2,
            ..Serving::default()
        },
    )
    .unwrap();
    assert_eq!(setup.estimates.service_ns(0), 12_400_000);
}

/// A dispatch to an instance the instant its batch ended pays the busy hand-off; one to an
/// instance idle for a while, the parked one. One empty instance, 1 s cold loads, 4 ms
/// forwards, hand-off 0.1 ms parked and 0.03 ms busy, staging 0.2 ms: request 0 (at 0) ends at
/// 0.1 + 1000 + 0.2 + 4 = 1004.3 ms; request 1 (arrived at 1 ms, waiting) starts when it ends
/// and ends 0.03 + 0.2 + 4 ms later, at 1008.53 ms; request 2 (at 2 s, the instance idle since 1008.53 ms) ends
/// at 2000 + 0.1 + 0.2 + 4 = 2004.3 ms. Without the busy figure request 1 pays 0.1 ms too.
#[test]
fn a_dispatch_at_a_batch_end_pays_the_busy_hand_off() {
    let w = requests(&[(0, 1, 0), (0, 1, 1), (0, 1, 2000)], 1);
    for (busy, second) in [(Some(0.03), 1_008_530_000), (None, 1_008_600_000)] {
        let mut profile = shared_profile(vec![1.0, 2.0]);
        profile.models.get_mut("bert-base").unwrap().host = Some(HostOverhead {
            handoff_ms: Dist::Constant(0.1),
            handoff_busy_ms: busy.map(Dist::Constant),
            staging_ms: Dist::Constant(0.2),
            staging_per_pass_ms: 0.0,
            method: "test".into(),
        });
        let (run, _) = simulate(&profile, &w, 1, "affinity", Preload::FastPtm);
        assert_eq!(
            run.end_ns,
            vec![1_004_300_000, second, 2_004_300_000],
            "{busy:?}"
        );
    }
}

fn noisy(contention: bool) -> Profile {
    let mut p = shared_profile(vec![1.0, 1.4, 1.9, 2.3]);
    let m = p.models.get_mut("bert-base").unwrap();
    m.switch.split.ms = Dist::Normal {
        mean: 20.0,
        std: 4.0,
    };
    m.cold_load.ms = Dist::LogNormal {
        median: 300.0,
        sigma: 0.2,
    };
    m.forward.points[0].ms = Dist::Empirical(vec![(0.0, 3.0), (50.0, 4.0), (100.0, 7.0)]);
    m.forward.stretch = vec![1.0, 1.3, 1.6, 1.9];
    m.host = Some(HostOverhead {
        handoff_ms: Dist::LogNormal {
            median: 0.05,
            sigma: 0.3,
        },
        handoff_busy_ms: None,
        staging_ms: Dist::Normal {
            mean: 0.2,
            std: 0.02,
        },
        staging_per_pass_ms: 0.01,
        method: String::new(),
    });
    if let Some(c) = &mut m.contention {
        c.forward_during_copy = 1.1;
        c.copy_during_forward = 1.2;
    }
    if !contention {
        m.contention = None;
    }
    p
}

fn bursty(requests: usize, seed: u64) -> Workload {
    let spec = WorkloadSpec::Generate {
        requests,
        arrivals: Arrivals::Gamma {
            rate_rps: 150.0,
            cv: 3.0,
        },
        tenants: 30,
        popularity: Popularity::Zipf { s: 1.1 },
    };
    workload::build(
        &spec,
        &RequestDefaults::default(),
        "bert-base",
        seed,
        &NoFiles,
    )
    .unwrap()
}

/// Under contention by resource every policy completes every request exactly once, and the
/// same cell gives byte-identical JSON again and on other threads.
#[test]
fn contention_by_resource_is_deterministic_and_conserves_requests() {
    let profile = noisy(true);
    let w = bursty(2000, 5);
    let json = |policy: &str| {
        let (run, report) = simulate(&profile, &w, 4, policy, Preload::Policy);
        assert_eq!(report.completed, 2000, "{policy}");
        assert!(run.end_ns.iter().zip(&run.start_ns).all(|(e, s)| e >= s));
        serde_json::to_string(&report).unwrap()
    };
    let here: Vec<String> = POLICIES.iter().map(|p| json(p)).collect();
    let threads: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = POLICIES.iter().rev().map(|p| s.spawn(|| json(p))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .rev()
            .collect()
    });
    assert_eq!(here, threads);
}

/// A profile without contention figures keeps the stretch model and says so; with them the
/// same workload gives other times (the figures are used).
#[test]
fn profiles_without_figures_keep_the_stretch_model_and_say_so() {
    let w = bursty(500, 3);
    let (_, legacy) = simulate(&noisy(false), &w, 4, "fcfs", Preload::Policy);
    assert!(
        legacy.cost_model.contains("stretch by busy instances")
            && legacy.cost_model.contains("bert-base"),
        "{}",
        legacy.cost_model
    );
    let (_, shared) = simulate(&noisy(true), &w, 4, "fcfs", Preload::Policy);
    assert_ne!(legacy.latency_ms, shared.latency_ms);
    let mut plain = noisy(false);
    plain.models.get_mut("bert-base").unwrap().host = None;
    let (_, r) = simulate(&plain, &w, 4, "fcfs", Preload::Policy);
    assert!(
        r.cost_model.contains("no host overhead"),
        "{}",
        r.cost_model
    );
}

/// Pool loads and prefetches are copies: under contention by resource they queue on the copy
/// engine with switches, and a tiered run with prefetches completes every request, the same on
/// any thread.
#[test]
fn pool_loads_and_prefetches_share_the_copy_engine() {
    use ptm_sim::ledger::Capacity;
    let profile = noisy(true);
    let w = bursty(1500, 9);
    let json = |policy: &str| {
        let serving = Serving {
            instances: 3,
            loading: LoadingMode::Split,
            forward_batch: 4,
            gpu_pool: Some(Capacity::Tenants(6)),
            ..Serving::default()
        };
        let setup = Setup::new(&profile, "test", &w, serving).unwrap();
        let shape = Shape {
            instances: 3,
            tenants: w.tenants.len(),
        };
        let mut s = scheduler::by_name(policy, &PolicyOptions::default(), shape).unwrap();
        let run = engine::simulate(&setup, s.as_mut(), 3, RunOptions::default()).unwrap();
        let report = Report::new("test", policy, 3, &setup, &run);
        assert_eq!(report.completed, 1500, "{policy}");
        assert!(report.pool_loads > 0, "{policy}");
        serde_json::to_string(&report).unwrap()
    };
    let here: Vec<String> = ["tier-affinity", "affinity"]
        .iter()
        .map(|p| json(p))
        .collect();
    assert!(here[0].contains("\"prefetches\":") && !here[0].contains("\"prefetches\":0,"));
    let again: Vec<String> = std::thread::scope(|s| {
        let h: Vec<_> = ["tier-affinity", "affinity"]
            .iter()
            .map(|p| s.spawn(move || json(p)))
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(here, again);
}

/// The two optional figures round-trip through a profile's text; a profile without them (the
/// shipped H200 one with both taken out, as profiles measured before them read) writes neither,
/// so it reads and writes as before; the shipped H200 profile, measured with both, keeps both.
#[test]
fn the_optional_figures_round_trip_and_old_profiles_write_neither() {
    let shipped = include_str!("../../scenarios/profiles/h200.ron");
    let measured = Profile::from_ron(shipped, "h200.ron").unwrap();
    let text = ron::ser::to_string_pretty(&measured, Default::default()).unwrap();
    assert!(text.contains("handoff_busy_ms") && text.contains("copy_during_forward_sizes"));
    assert_eq!(Profile::from_ron(&text, "again.ron").unwrap(), measured);
    let h100 = include_str!("../../scenarios/profiles/h100.ron");
    let h100 = Profile::from_ron(h100, "h100.ron").unwrap();
    let text = ron::ser::to_string_pretty(&h100, Default::default()).unwrap();
    assert!(!text.contains("handoff_busy_ms") && !text.contains("copy_during_forward_sizes"));
    let mut old = measured.clone();
    for m in old.models.values_mut() {
        if let Some(h) = &mut m.host {
            h.handoff_busy_ms = None;
        }
        if let Some(c) = &mut m.contention {
            c.copy_during_forward_sizes.clear();
        }
    }
    let text = ron::ser::to_string_pretty(&old, Default::default()).unwrap();
    assert!(!text.contains("handoff_busy_ms") && !text.contains("copy_during_forward_sizes"));
    assert_eq!(Profile::from_ron(&text, "again.ron").unwrap(), old);
    let mut new = old.clone();
    for m in new.models.values_mut() {
        if let Some(h) = &mut m.host {
            h.handoff_busy_ms = Some(Dist::LogNormal {
                median: 0.05,
                sigma: 0.4,
            });
        }
        if let Some(c) = &mut m.contention {
            c.copy_during_forward_sizes = vec![(c.sm_tokens * 8, 1.2), (c.sm_tokens * 64, 1.1)];
        }
    }
    let text = ron::ser::to_string_pretty(&new, Default::default()).unwrap();
    assert!(text.contains("handoff_busy_ms") && text.contains("copy_during_forward_sizes"));
    let again = Profile::from_ron(&text, "new.ron").unwrap();
    assert_eq!(again, new);
    assert_ne!(again, old);
}
