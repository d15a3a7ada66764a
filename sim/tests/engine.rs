//! Integration tests of the engine and the schedulers: determinism, conservation, closed forms.

use ptm_sim::engine::{self, LoadingMode, Preload, Run, RunOptions, Serving, Setup};
use ptm_sim::metrics::Report;
use ptm_sim::profile::{Dist, Profile};
use ptm_sim::scheduler::{self, PolicyOptions, Shape, POLICIES};
use ptm_sim::workload::{
    self, Arrivals, NoFiles, Popularity, RequestDefaults, Workload, WorkloadSpec,
};

/// The example profile with noisy costs and contention, so that determinism is tested on random
/// draws, not constants.
fn noisy_profile() -> Profile {
    let mut p = Profile::example();
    let m = p.models.get_mut("bert-base").unwrap();
    m.switch.split.ms = Dist::Normal {
        mean: 100.0,
        std: 20.0,
    };
    m.switch.split.stretch = vec![1.0, 1.2, 1.5];
    m.cold_load.ms = Dist::LogNormal {
        median: 900.0,
        sigma: 0.2,
    };
    m.forward.points[0].ms = Dist::Empirical(vec![(0.0, 3.0), (50.0, 4.0), (100.0, 7.0)]);
    m.forward.stretch = vec![1.0, 1.3, 1.6, 1.9];
    p
}

fn generated(requests: usize, rate_rps: f64, tenants: u32, seed: u64) -> Workload {
    let spec = WorkloadSpec::Generate {
        requests,
        arrivals: Arrivals::Gamma { rate_rps, cv: 2.0 },
        tenants,
        popularity: Popularity::Zipf { s: 1.0 },
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

fn run(
    profile: &Profile,
    w: &Workload,
    instances: usize,
    policy: &str,
    seed: u64,
    preload: Preload,
) -> (Run, Report) {
    let serving = Serving {
        instances,
        loading: LoadingMode::Split,
        forward_batch: 4,
        ..Serving::default()
    };
    let setup = Setup::new(profile, "noisy", w, serving).unwrap();
    let shape = Shape {
        instances,
        tenants: w.tenants.len(),
    };
    let mut s = scheduler::by_name(policy, &PolicyOptions::default(), shape).unwrap();
    let options = RunOptions {
        preload,
        timeline: true,
    };
    let run = engine::simulate(&setup, s.as_mut(), seed, options).unwrap();
    let report = Report::new("test", policy, seed, &setup, &run);
    (run, report)
}

#[test]
fn same_scenario_and_seed_give_byte_identical_reports_on_any_thread() {
    let profile = noisy_profile();
    let w = generated(3000, 60.0, 40, 11);
    let json = |policy: &str| {
        serde_json::to_string(&run(&profile, &w, 4, policy, 11, Preload::Policy).1).unwrap()
    };
    let here: Vec<String> = POLICIES.iter().map(|p| json(p)).collect();
    let again: Vec<String> = POLICIES.iter().map(|p| json(p)).collect();
    assert_eq!(here, again);
    // The same cells computed on other threads, concurrently, in reverse order.
    let threads: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = POLICIES.iter().rev().map(|p| s.spawn(|| json(p))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .rev()
            .collect()
    });
    assert_eq!(here, threads);
    // And a different seed does change things (the test can fail).
    let other = serde_json::to_string(
        &run(
            &profile,
            &generated(3000, 60.0, 40, 12),
            4,
            "fcfs",
            12,
            Preload::Policy,
        )
        .1,
    )
    .unwrap();
    assert_ne!(here[2], other);
}

#[test]
fn every_request_completes_exactly_once_under_every_policy() {
    let profile = noisy_profile();
    // Overloaded: 4 instances, 100 tenants, arrivals faster than the GPU can switch.
    let w = generated(5000, 80.0, 100, 5);
    for policy in POLICIES {
        let (run, report) = run(&profile, &w, 4, policy, 5, Preload::Policy);
        assert_eq!(report.completed, w.requests.len(), "{policy}");
        let per_instance: u64 = run.instances.iter().map(|i| i.requests).sum();
        assert_eq!(per_instance as usize, w.requests.len(), "{policy}");
        let per_tenant: u64 = report.per_tenant.iter().map(|t| t.requests).sum();
        assert_eq!(per_tenant as usize, w.requests.len(), "{policy}");
        let loads: u64 = run.tenant_loads.iter().sum();
        assert_eq!(loads, report.switches + report.cold_loads, "{policy}");
        // Each request has exactly one inference span, on the instance that served it, and
        // instances never run two phases at once.
        let timeline = run.timeline.as_ref().unwrap();
        let mut inferences = vec![0u32; w.requests.len()];
        for span in timeline {
            if span.kind == engine::SpanKind::Inference {
                inferences[span.request as usize] += 1;
                assert_eq!(run.served_by[span.request as usize], span.instance);
                assert_eq!(run.end_ns[span.request as usize], span.end_ns);
            }
        }
        assert!(inferences.iter().all(|&n| n == 1), "{policy}");
        for i in 0..4u32 {
            let mut spans: Vec<_> = timeline.iter().filter(|s| s.instance == i).collect();
            spans.sort_by_key(|s| s.start_ns);
            assert!(
                spans.windows(2).all(|p| p[0].end_ns <= p[1].start_ns),
                "{policy}: overlap on {i}"
            );
        }
        for (id, r) in w.requests.iter().enumerate() {
            assert!(run.start_ns[id] >= r.arrival_ns && run.end_ns[id] > run.start_ns[id]);
        }
        assert!(report.overtimes > 0, "{policy}: the overload must show");
    }
}

#[test]
fn fcfs_rr_switches_match_the_closed_form_on_fixed_sequences() {
    // ABCDEFGHIJKL × N dealt round-robin to m instances: instance j sees types j, j+m, j+2m, …
    // (mod 12), so consecutive requests on an instance differ unless m is a multiple of 12.
    // Starting empty, each used instance pays one cold load and every later request switches:
    // switches = 12·N − m (or 0 when 12 | m).
    let profile = Profile::example();
    for (n, m) in [(10usize, 1usize), (10, 3), (7, 5), (4, 8), (3, 12)] {
        let spec = WorkloadSpec::Sequence {
            repeat: n,
            types: 12,
            shuffle: false,
            gap_ms: 50.0,
        };
        let w =
            workload::build(&spec, &RequestDefaults::default(), "bert-base", 1, &NoFiles).unwrap();
        let (_, report) = run(&profile, &w, m, "fcfs-rr", 1, Preload::Empty);
        let expected = if m % 12 == 0 { 0 } else { 12 * n - m };
        assert_eq!(report.switches as usize, expected, "N = {n}, m = {m}");
        assert_eq!(report.cold_loads as usize, m);
    }
}

#[test]
fn fastptm_preload_saves_cold_loads() {
    let profile = Profile::example();
    let spec = WorkloadSpec::Sequence {
        repeat: 2,
        types: 4,
        shuffle: false,
        gap_ms: 2000.0,
    };
    let w = workload::build(&spec, &RequestDefaults::default(), "bert-base", 1, &NoFiles).unwrap();
    let (_, empty) = run(&profile, &w, 4, "fcfs-mod", 1, Preload::Empty);
    let (_, preloaded) = run(&profile, &w, 4, "fcfs-mod", 1, Preload::FastPtm);
    assert_eq!((empty.cold_loads, empty.switches), (4, 0));
    // Instances 1..3 hold B, C, D already; instance 0 still loads A cold.
    assert_eq!(
        (
            preloaded.cold_loads,
            preloaded.switches,
            preloaded.preloaded
        ),
        (1, 0, 3)
    );
}

#[test]
fn instances_that_do_not_fit_are_refused() {
    let profile = Profile::example(); // 2 GB instances on 24 GiB: 12 fit
    let w = generated(10, 1.0, 2, 1);
    let serving = Serving {
        instances: 13,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    let err = Setup::new(&profile, "p.ron", &w, serving)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("13 instances") && err.contains("at most 12"),
        "{err}"
    );
}

#[test]
fn contention_stretches_service() {
    // One tenant, no switches: with 4 instances busy each forward takes 1.9× as long.
    let profile = noisy_profile();
    let spec = WorkloadSpec::Generate {
        requests: 400,
        arrivals: Arrivals::Fixed { gap_ms: 0.001 },
        tenants: 1,
        popularity: Popularity::Uniform,
    };
    let w = workload::build(&spec, &RequestDefaults::default(), "bert-base", 1, &NoFiles).unwrap();
    let (_, one) = run(&profile, &w, 1, "fcfs", 1, Preload::FastPtm);
    let (_, four) = run(&profile, &w, 4, "fcfs", 1, Preload::Empty);
    // Throughput with 4 instances ≈ 4 / 1.9 of one instance's (cold loads aside).
    let ratio = four.throughput_rps / one.throughput_rps;
    assert!((ratio - 4.0 / 1.9).abs() < 0.25, "{ratio}");
}
