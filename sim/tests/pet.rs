//! Integration tests of parameter-efficient tenants in the simulator: deltas in a GPU pool,
//! mixed-tenant batches, 10,000 tenants, through every policy.

use ptm_sim::engine::{self, Batching, PetServing, Preload, Run, RunOptions, Serving, Setup};
use ptm_sim::ledger::{Capacity, Load};
use ptm_sim::metrics::Report;
use ptm_sim::profile::{Dist, PetKind, Profile};
use ptm_sim::scheduler::{self, PolicyOptions, Shape, POLICIES};
use ptm_sim::workload::{
    self, Arrivals, NoFiles, Popularity, RequestDefaults, Workload, WorkloadSpec,
};

fn generated(requests: usize, rate_rps: f64, tenants: u32) -> Workload {
    let spec = WorkloadSpec::Generate {
        requests,
        arrivals: Arrivals::Gamma { rate_rps, cv: 2.0 },
        tenants,
        popularity: Popularity::Zipf { s: 1.0 },
    };
    let defaults = RequestDefaults {
        samples: 4,
        ..RequestDefaults::default()
    };
    workload::build(&spec, &defaults, "bert-base", 7, &NoFiles).unwrap()
}

/// The example profile with a sub-linear batch curve (a pass of 32 rows takes 3 × one of 1).
fn profile() -> Profile {
    let mut p = Profile::example();
    let forward = &mut p.models.get_mut("bert-base").unwrap().forward;
    let mut point = forward.points[0].clone();
    point.batch = 32;
    point.ms = Dist::Constant(12.0);
    forward.points.push(point);
    p
}

fn serving(pet: bool, delta_pool: u32, batch: bool) -> Serving {
    Serving {
        instances: 2,
        forward_batch: 32,
        batching: batch.then_some(Batching { max_wait_ms: 0.0 }),
        pet: pet.then_some(PetServing {
            kind: PetKind::Lora { rank: 8 },
            delta_pool: Capacity::Tenants(delta_pool),
        }),
        ..Serving::default()
    }
}

fn run(w: &Workload, serving: Serving, policy: &str) -> (Run, Report) {
    run_on(&profile(), w, serving, policy)
}

fn run_on(profile: &Profile, w: &Workload, serving: Serving, policy: &str) -> (Run, Report) {
    let setup = Setup::new(profile, "example", w, serving).unwrap();
    let shape = Shape {
        instances: serving.instances,
        tenants: w.tenants.len(),
    };
    let mut s = scheduler::by_name(policy, &PolicyOptions::default(), shape).unwrap();
    let options = RunOptions {
        preload: Preload::Empty,
        timeline: false,
    };
    let run = engine::simulate(&setup, s.as_mut(), 3, options).unwrap();
    let report = Report::new("pet", policy, 3, &setup, &run);
    (run, report)
}

#[test]
fn ten_thousand_pet_tenants_run_through_every_policy() {
    let w = generated(20_000, 300.0, 10_000);
    for policy in POLICIES {
        let (run, r) = run(&w, serving(true, 2_000, true), policy);
        assert_eq!(r.completed, 20_000, "{policy}");
        // Deltas load from the host once per miss; executors never switch weights.
        assert!(run.load.iter().all(|&l| l != Load::Pool), "{policy}");
        assert_eq!(r.cold_loads, 0, "{policy}: every delta is in host memory");
        assert!(
            r.switches > 0 && r.switches < 20_000,
            "{policy}: {}",
            r.switches
        );
        assert_eq!(r.switches, run.tenant_loads.iter().sum::<u64>(), "{policy}");
    }
}

#[test]
fn a_delta_load_is_part_of_the_pass_not_a_weight_switch() {
    // One request of a tenant whose delta is in host memory: its pass (4 rows, 4.77 ms on the
    // backbone, 3 % more and a 15 µs segment) with the 20 µs delta copy pipelined under it —
    // not the backbone's 100 ms weight switch before it, which the executor never makes.
    // With a fixed time per pass (`overhead_ms`), the pass takes that much longer.
    let w = generated(1, 10.0, 1);
    for overhead_ms in [0.0, 0.25] {
        let mut p = profile();
        let model = p.models.get_mut("bert-base").unwrap();
        model.pet.get_mut("lora-r8").unwrap().overhead_ms = overhead_ms;
        for policy in ["fcfs", "pets", "deadline-mixed"] {
            let (run, r) = run_on(&p, &w, serving(true, 10, true), policy);
            assert_eq!(r.switches, 1, "{policy}: one delta load from the host");
            let latency_ms = (run.end_ns[0] - w.requests[0].arrival_ns) as f64 / 1e6;
            let pass_ms = (4.0 + 3.0 / 31.0 * 8.0) * 1.03 + overhead_ms + 0.015;
            assert!(
                (latency_ms - pass_ms).abs() < 1e-3,
                "{policy}: {latency_ms} ms, the pass alone takes {pass_ms}"
            );
        }
    }
}

#[test]
fn mixed_batches_share_a_pass_within_the_row_limit() {
    let w = generated(4_000, 2_000.0, 500);
    for policy in ["pets", "deadline-mixed"] {
        let (record, r) = run(&w, serving(true, 1_000, true), policy);
        let mut batches = std::collections::BTreeMap::<u32, (u32, Vec<u32>)>::new();
        for (i, &b) in record.batch.iter().enumerate() {
            let e = batches.entry(b).or_default();
            e.0 += w.requests[i].samples;
            if !e.1.contains(&w.requests[i].tenant) {
                e.1.push(w.requests[i].tenant);
            }
        }
        assert!(batches.values().all(|(rows, _)| *rows <= 32), "{policy}");
        let mixed = batches.values().filter(|(_, t)| t.len() > 1).count();
        assert!(mixed > 0, "{policy}: some batches mix tenants");
        assert_eq!(batches.len() as u64, r.batches, "{policy}");
        for (i, &b) in record.batch.iter().enumerate() {
            let first = record.batch.iter().position(|&x| x == b).unwrap();
            assert_eq!(record.end_ns[i], record.end_ns[first], "{policy}: one pass");
        }
    }
}

#[test]
fn mixed_batches_serve_more_than_one_tenant_a_batch() {
    // At a load one tenant per batch cannot carry, batches across tenants keep up.
    let w = generated(6_000, 400.0, 2_000);
    let (_, mixed) = run(&w, serving(true, 2_000, true), "pets");
    let (_, full) = run(&w, serving(false, 0, true), "fcfs");
    assert!(
        mixed.throughput_rps > full.throughput_rps * 1.5,
        "PET {} req/s vs full fine-tunes {} req/s",
        mixed.throughput_rps,
        full.throughput_rps
    );
    assert!(mixed.latency_ms.p99 < full.latency_ms.p99);
}

#[test]
fn without_pet_a_batch_stays_one_tenants() {
    let w = generated(3_000, 1_000.0, 50);
    for policy in ["pets", "deadline-mixed"] {
        let (record, _) = run(&w, serving(false, 0, true), policy);
        let mut tenant_of = std::collections::BTreeMap::new();
        for (i, &b) in record.batch.iter().enumerate() {
            let t = *tenant_of.entry(b).or_insert(w.requests[i].tenant);
            assert_eq!(t, w.requests[i].tenant, "{policy}: batch {b}");
        }
    }
}

#[test]
fn pet_runs_are_deterministic_and_refusals_name_the_figure() {
    let w = generated(2_000, 500.0, 1_000);
    for policy in ["pets", "deadline-mixed", "tier-affinity"] {
        let a = run(&w, serving(true, 500, true), policy).1;
        let b = run(&w, serving(true, 500, true), policy).1;
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }
    let profile = profile();
    let mut s = serving(true, 500, true);
    s.pet = Some(PetServing {
        kind: PetKind::Bitfit,
        delta_pool: Capacity::Auto,
    });
    let err = Setup::new(&profile, "example", &w, s)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pet.bitfit") && err.contains("lora-r8"),
        "{err}"
    );
    // Two executors of 32-row batches may hold 64 deltas at once.
    let err = Setup::new(&profile, "example", &w, serving(true, 10, true))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("10 slots") && err.contains("64 deltas"),
        "{err}"
    );
}

#[test]
fn a_bounded_host_cache_holds_deltas_or_needs_a_weight_pool() {
    use ptm_sim::scenario::Scenario;
    let text = |serving: &str| {
        format!(
            r#"Scenario(name: "h", profile: "p.ron", model: "bert-base", instances: 2, {serving}
               host_cache: Some(Tenants(50)),
               workload: Generate(requests: 10, arrivals: Poisson(rate_rps: 1.0), tenants: 100))"#
        )
    };
    // Deltas in host memory for 50 of the 100 tenants: accepted, like a pool of full weights.
    assert!(Scenario::from_ron(&text("pet: Some((kind: Lora(rank: 8))),"), "h.ron").is_ok());
    assert!(Scenario::from_ron(&text("gpu_pool: Some(Tenants(10)),"), "h.ron").is_ok());
    // FastPTM's model keeps every tenant in host memory: a bound there is refused.
    let err = Scenario::from_ron(&text(""), "h.ron")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("host_cache") && err.contains("needs a gpu_pool"),
        "{err}"
    );
}
