//! Capacity in steady state and planning: the capacity never exceeds what the executors can
//! serve (a property over random scenarios), "not reached" instead of a number, and the
//! cheapest configuration that meets the SLO.

use proptest::prelude::*;
use ptm_sim::capacity::{self, steady, CapacityOptions};
use ptm_sim::engine::Setup;
use ptm_sim::plan::{self, Space};
use ptm_sim::profile::{Dist, Profile};
use ptm_sim::scenario::Scenario;
use ptm_sim::scheduler::POLICIES;
use ptm_sim::workload::{FileSource, NoFiles};
use std::path::Path;

/// Serves a profile as `p.ron`: the example's, with noise and contention.
struct Files(Profile);

impl FileSource for Files {
    fn read(&self, path: &Path) -> ptm_sim::Result<(String, String)> {
        if path == Path::new("p.ron") {
            Ok((ron::ser::to_string(&self.0).unwrap(), "p.ron".into()))
        } else {
            NoFiles.read(path)
        }
    }
}

fn profile(stretch: Vec<f64>) -> Profile {
    let mut p = Profile::example();
    let m = p.models.get_mut("bert-base").unwrap();
    m.forward.points[0].ms = Dist::Normal {
        mean: 4.0,
        std: 0.5,
    };
    m.forward.stretch = stretch;
    p
}

fn scenario(workload: &str, instances: usize, policy: &str, deadline_ms: f64) -> Scenario {
    Scenario::from_ron(
        &format!(
            r#"Scenario(name: "cap", profile: "p.ron", model: "bert-base", instances: {instances},
               workload: {workload}, request: (samples: 4, seq_len: 128, deadline_ms: {deadline_ms}),
               policies: ["{policy}"], seeds: [1])"#
        ),
        "cap.ron",
    )
    .unwrap()
}

fn options(slo: f64) -> CapacityOptions {
    CapacityOptions {
        slo,
        tolerance: 0.02,
        min_requests: 2_000,
        warmup_frac: 0.1,
    }
}

/// instances / mean service time (one busy instance), computed here from the setup.
fn naive_bound(s: &Scenario, files: &Files) -> f64 {
    let (p, name) = s.load_profile(files).unwrap();
    let w = s.load_workload(files, 1).unwrap();
    let setup = Setup::new(&p, &name, &w, s.serving()).unwrap();
    s.instances as f64 / (steady::mean_service_ns(&setup) / 1e9)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Whatever the workload, policy and SLO, capacity ≤ instances / mean service time (what
    /// FastPTM's 480-request trace broke: 10484575 req/s for SJF).
    #[test]
    fn capacity_never_exceeds_what_the_executors_serve(
        instances in 1usize..4,
        policy in 0usize..POLICIES.len(),
        tenants in 1u32..30,
        rate in 1.0f64..400.0,
        deadline_ms in prop_oneof![Just(3000.0), Just(200.0), Just(60_000.0)],
        slo in prop_oneof![Just(0.9), Just(0.99), Just(1.0)],
        trace in any::<bool>(),
        stretch in prop_oneof![Just(vec![]), Just(vec![1.0, 1.3, 1.6])],
    ) {
        // A short "trace" (a fixed sequence, as FastPTM's files) or a generator.
        let workload = if trace {
            format!("Sequence(repeat: 20, types: {}, gap_ms: {})", tenants.min(26), 1000.0 / rate)
        } else {
            format!("Generate(requests: 300, arrivals: Poisson(rate_rps: {rate}), tenants: {tenants})")
        };
        let s = scenario(&workload, instances, POLICIES[policy], deadline_ms);
        let files = Files(profile(stretch));
        let c = capacity::search(&s, &files, POLICIES[policy], &options(slo)).unwrap();
        let bound = naive_bound(&s, &files);
        prop_assert!(c.bound_rps <= bound * (1.0 + 1e-9), "{c:?} vs {bound}");
        match c.capacity_rps {
            Some(r) => {
                prop_assert!(r <= c.bound_rps && r > 0.0, "{c:?}");
                prop_assert!(c.slo_attainment.unwrap() >= slo, "{c:?}");
                prop_assert!(c.not_reached.is_none());
            }
            None => {
                // Never "capacity 0 with attainment 1.0": no number, and why.
                prop_assert!(c.slo_attainment.is_none() && c.not_reached.is_some(), "{c:?}");
            }
        }
    }
}

#[test]
fn an_unmeetable_deadline_is_not_reached_rather_than_zero() {
    // 4 samples × 4 ms = 16 ms of service against a 10 ms deadline: no rate meets it.
    let s = scenario(
        "Generate(requests: 100, arrivals: Poisson(rate_rps: 20.0), tenants: 3)",
        2,
        "affinity",
        10.0,
    );
    let c = capacity::search(&s, &Files(profile(vec![])), "affinity", &options(1.0)).unwrap();
    assert_eq!((c.capacity_rps, c.slo_attainment), (None, None), "{c:?}");
    let why = c.not_reached.unwrap();
    assert!(
        why.starts_with("not reached") && why.contains("SLO attainment 0"),
        "{why}"
    );
}

#[test]
fn a_growing_queue_misses_even_when_deadlines_hold() {
    // A one-minute deadline: a finite run above the service rate meets it, steady state does not.
    let s = scenario(
        "Generate(requests: 100, arrivals: Poisson(rate_rps: 20.0), tenants: 1)",
        1,
        "fcfs",
        60_000.0,
    );
    let c = capacity::search(&s, &Files(profile(vec![])), "fcfs", &options(0.99)).unwrap();
    // One tenant, no switches: the service rate is 1 / 16 ms = 62.5 req/s.
    let r = c.capacity_rps.unwrap();
    assert!(r <= 62.5 && r > 50.0, "{c:?}");
}

#[test]
fn the_plan_picks_the_cheapest_configuration_that_meets_the_slo() {
    let s = scenario(
        "Generate(requests: 500, arrivals: Poisson(rate_rps: 20.0), tenants: 8, popularity: Zipf(s: 1.1))",
        1,
        "fcfs",
        3000.0,
    );
    let files = Files(profile(vec![1.0, 1.1, 1.2]));
    let space = Space::new(&[1, 2, 3], &["fcfs-rr".into(), "affinity".into()]);
    let rate = 70.0; // above one instance's service rate (62.5 req/s)
    let p = plan::plan(&s, &files, &space, &options(0.99), &[rate, 1e6]).unwrap();
    assert_eq!(p.rows.len(), 6);
    let a = &p.answers[0];
    let chosen = &p.rows[a.choice.expect("a configuration meets 70 req/s")];
    assert!(a.check.unwrap().met && a.check.unwrap().rate_rps == rate);
    let m: usize = chosen.get("instances").unwrap().parse().unwrap();
    // Cheapest: no configuration with fewer instances reaches the rate.
    for r in &p.rows {
        let rm: usize = r.get("instances").unwrap().parse().unwrap();
        if rm < m {
            assert!(
                r.capacity_rps().unwrap_or(0.0) < rate * 0.98,
                "{r:?} is cheaper"
            );
        }
        if let Some(c) = r.capacity_rps() {
            assert!(c <= r.capacity.as_ref().unwrap().bound_rps);
        }
    }
    assert!(m >= 2, "one instance serves at most 62.5 req/s");
    // A million requests per second: no configuration, and the note says so.
    assert!(p.answers[1].choice.is_none() && p.answers[1].note.is_some());
}
