//! Integration tests of the serving model v2: the GPU weight pool, eviction, prefetch and
//! cross-request batching, through the engine and every policy.

use ptm_sim::engine::{self, Batching, Preload, Run, RunOptions, Serving, Setup};
use ptm_sim::ledger::{Capacity, Eviction, Load};
use ptm_sim::metrics::Report;
use ptm_sim::profile::{Dist, Profile};
use ptm_sim::scheduler::{self, PolicyOptions, Shape, POLICIES};
use ptm_sim::workload::{
    self, Arrivals, NoFiles, Popularity, RequestDefaults, Workload, WorkloadSpec,
};

fn generated(requests: usize, rate_rps: f64, tenants: u32, samples: u32) -> Workload {
    let spec = WorkloadSpec::Generate {
        requests,
        arrivals: Arrivals::Gamma { rate_rps, cv: 2.0 },
        tenants,
        popularity: Popularity::Zipf { s: 1.0 },
    };
    let defaults = RequestDefaults {
        samples,
        ..RequestDefaults::default()
    };
    workload::build(&spec, &defaults, "bert-base", 3, &NoFiles).unwrap()
}

fn serving(instances: usize, pool: Option<u32>, eviction: Eviction, batch: bool) -> Serving {
    Serving {
        instances,
        forward_batch: 16,
        gpu_pool: pool.map(Capacity::Tenants),
        eviction,
        batching: batch.then_some(Batching { max_wait_ms: 0.0 }),
        ..Serving::default()
    }
}

/// The example profile with a sub-linear batch curve: a pass of 16 rows takes 3 × one of 1.
fn profile() -> Profile {
    let mut p = Profile::example();
    let forward = &mut p.models.get_mut("bert-base").unwrap().forward;
    let mut point = forward.points[0].clone();
    point.batch = 16;
    point.ms = Dist::Constant(12.0);
    forward.points.push(point);
    p
}

fn run(w: &Workload, serving: Serving, policy: &str) -> (Run, Report) {
    let profile = profile();
    let setup = Setup::new(&profile, "example", w, serving).unwrap();
    let shape = Shape {
        instances: serving.instances,
        tenants: w.tenants.len(),
    };
    let mut s = scheduler::by_name(policy, &PolicyOptions::default(), shape).unwrap();
    let options = RunOptions {
        preload: Preload::Empty,
        timeline: false,
    };
    let run = engine::simulate(&setup, s.as_mut(), 5, options).unwrap();
    let report = Report::new("tiers", policy, 5, &setup, &run);
    (run, report)
}

#[test]
fn a_pool_that_holds_every_tenant_loads_each_from_the_host_once() {
    let w = generated(3000, 40.0, 30, 4);
    for policy in POLICIES {
        let (run, r) = run(&w, serving(3, Some(30), Eviction::Lru, false), policy);
        let used = run.tenant_loads.iter().filter(|&&n| n > 0).count() as u64;
        if r.prefetches == 0 {
            assert_eq!(r.switches, used, "{policy}: one host load per tenant used");
        } else {
            // A prefetch brings a tenant from the host too; one may still be in flight when
            // an executor needs it.
            assert!(
                r.switches <= used && r.switches + r.prefetches >= used,
                "{policy}"
            );
        }
        assert_eq!(r.cold_loads, 0, "{policy}: the host holds every tenant");
        assert_eq!(r.pool_evictions, 0, "{policy}");
        assert_eq!(
            r.switches + r.pool_loads,
            run.tenant_loads.iter().sum::<u64>(),
            "{policy}: loads by tier add up"
        );
    }
}

#[test]
fn without_a_pool_nothing_comes_from_one() {
    let w = generated(2000, 40.0, 30, 4);
    for policy in POLICIES {
        let (run, r) = run(&w, serving(3, None, Eviction::Lru, false), policy);
        assert_eq!(
            r.pool_loads + r.pool_evictions + r.prefetches,
            0,
            "{policy}"
        );
        assert!(run.load.iter().all(|&l| l != Load::Pool));
    }
}

#[test]
fn belady_misses_least_on_one_executor() {
    // One executor, FIFO: the tenants' access sequence is the trace, so MIN is optimal.
    let w = generated(4000, 30.0, 60, 4);
    let misses = |e: Eviction| run(&w, serving(1, Some(8), e, false), "fcfs").1.switches;
    let min = misses(Eviction::Belady);
    for e in [Eviction::Lru, Eviction::Lfu, Eviction::Gdsf] {
        assert!(
            min <= misses(e),
            "belady {min} > {} {}",
            e.name(),
            misses(e)
        );
    }
    assert!(
        min < misses(Eviction::Lru),
        "the trace has reuse MIN exploits"
    );
}

#[test]
fn tinylfu_keeps_the_zipf_head_that_lru_lets_the_tail_push_out() {
    // One executor, FIFO, a pool of 8 of 60 Zipf(1.0) tenants: LRU admits every tail tenant's
    // one request and evicts a warmer one for it; TinyLFU admits only the more frequent.
    let w = generated(4000, 30.0, 60, 4);
    let misses = |e: Eviction| run(&w, serving(1, Some(8), e, false), "fcfs").1.switches;
    let (lru, tinylfu) = (misses(Eviction::Lru), misses(Eviction::TinyLfu));
    assert!(tinylfu < lru, "tinylfu {tinylfu} ≥ lru {lru}");
    assert!(misses(Eviction::Belady) <= tinylfu);
}

#[test]
fn batches_join_one_tenants_requests_within_the_row_limit() {
    // 4 rows a request, 16 rows a batch: at most 4 requests a batch.
    let w = generated(3000, 400.0, 5, 4);
    for policy in [
        "fcfs",
        "omls",
        "affinity",
        "deadline-batch",
        "tier-affinity",
    ] {
        let (record, r) = run(&w, serving(2, Some(5), Eviction::Lru, true), policy);
        assert!(
            r.batches < r.requests as u64,
            "{policy}: some requests share a batch"
        );
        let mut sizes = std::collections::BTreeMap::<u32, (u32, u32)>::new();
        for (i, &b) in record.batch.iter().enumerate() {
            let e = sizes.entry(b).or_insert((0, w.requests[i].tenant));
            e.0 += w.requests[i].samples;
            assert_eq!(
                e.1, w.requests[i].tenant,
                "{policy}: batch {b} mixes tenants"
            );
        }
        assert!(sizes.values().all(|&(rows, _)| rows <= 16), "{policy}");
        assert_eq!(sizes.len() as u64, r.batches, "{policy}");
        // A batch's requests start and end together.
        for (i, &b) in record.batch.iter().enumerate() {
            let first = record.batch.iter().position(|&x| x == b).unwrap();
            assert_eq!(record.start_ns[i], record.start_ns[first]);
            assert_eq!(record.end_ns[i], record.end_ns[first]);
        }
        // Batching serves the same load with less GPU time.
        let (_, alone) = run(&w, serving(2, Some(5), Eviction::Lru, false), policy);
        assert!(
            r.latency_ms.mean < alone.latency_ms.mean,
            "{policy}: {} ms batched vs {} ms alone",
            r.latency_ms.mean,
            alone.latency_ms.mean
        );
    }
}

#[test]
fn tier_affinity_prefetches_into_the_pool() {
    let w = generated(3000, 40.0, 200, 4);
    let (_, r) = run(
        &w,
        serving(3, Some(50), Eviction::Lru, true),
        "tier-affinity",
    );
    assert!(r.prefetches > 0);
    assert!(r.pool_loads > 0);
}

#[test]
fn tiered_runs_are_deterministic() {
    let w = generated(2000, 60.0, 100, 4);
    for e in Eviction::ALL {
        for policy in ["omls", "deadline-batch", "tier-affinity"] {
            let a = run(&w, serving(3, Some(20), e, true), policy).1;
            let b = run(&w, serving(3, Some(20), e, true), policy).1;
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                serde_json::to_string(&b).unwrap()
            );
        }
    }
}

#[test]
fn a_pool_that_does_not_fit_is_refused_with_the_numbers() {
    let w = generated(10, 1.0, 3, 4);
    let profile = Profile::example();
    // 24 GiB, 3 executors of 2 GB: 19.7 GB left, 89 slots of 220 MB.
    let err = Setup::new(
        &profile,
        "example",
        &w,
        serving(3, Some(500), Eviction::Lru, false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("500 tenants") && err.contains("at most 89 fit"),
        "{err}"
    );
    let auto = Serving {
        gpu_pool: Some(Capacity::Auto),
        ..serving(3, None, Eviction::Lru, false)
    };
    let setup = Setup::new(&profile, "example", &w, auto).unwrap();
    assert_eq!(setup.tiers.pool_tenants, Some(89));
    let mut no_pool = profile.clone();
    no_pool.models.get_mut("bert-base").unwrap().pool_switch = None;
    let err = Setup::new(
        &no_pool,
        "old.ron",
        &w,
        serving(3, Some(5), Eviction::Lru, false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pool_switch") && err.contains("recalibrate"),
        "{err}"
    );
}

#[test]
fn a_pool_load_waits_for_the_promotion_it_reads() {
    // Two requests of one tenant, 1 ms apart, two empty executors, a pool: the first loads the
    // tenant from the host (10 ms), which promotes it into the pool (a 2.5 ms copy once the
    // load has landed); the second is booked a pool load at 1 ms but can only read the pool
    // copy from 12.5 ms on — as the runtime orders it (the slot's fence) — not at once.
    let mut p = Profile::example();
    let m = p.models.get_mut("bert-base").unwrap();
    m.switch.split = ptm_sim::profile::Cost::flat(Dist::Constant(10.0));
    m.cold_load = ptm_sim::profile::Cost::flat(Dist::Constant(10.0));
    m.pool_switch = Some(ptm_sim::profile::Cost::flat(Dist::Constant(2.5)));
    m.forward.points.truncate(1);
    m.forward.points[0].ms = Dist::Constant(5.0);
    m.forward.stretch = vec![1.0];
    m.request_overhead_ms = Dist::Constant(0.0);
    let spec = WorkloadSpec::Generate {
        requests: 2,
        arrivals: Arrivals::Fixed { gap_ms: 1.0 },
        tenants: 1,
        popularity: Popularity::Uniform,
    };
    let defaults = RequestDefaults {
        samples: 1,
        ..RequestDefaults::default()
    };
    let w = workload::build(&spec, &defaults, "bert-base", 1, &NoFiles).unwrap();
    let setup = Setup::new(&p, "example", &w, serving(2, Some(2), Eviction::Lru, false)).unwrap();
    let shape = Shape {
        instances: 2,
        tenants: 1,
    };
    let mut s = scheduler::by_name("fcfs", &PolicyOptions::default(), shape).unwrap();
    let options = RunOptions {
        preload: Preload::Empty,
        timeline: false,
    };
    let run = engine::simulate(&setup, s.as_mut(), 1, options).unwrap();
    assert_eq!(run.load, vec![Load::Switch, Load::Pool]);
    assert_ne!(run.served_by[0], run.served_by[1]);
    let a0 = w.requests[0].arrival_ns;
    let a1 = w.requests[1].arrival_ns;
    assert_eq!(a1 - a0, 1_000_000);
    // The first: its 10 ms load, then its 5 ms pass.
    assert_eq!(run.end_ns[0] - a0, 15_000_000);
    // The second: waits for the promotion (10 + 2.5 ms after the first started), then its own
    // 2.5 ms pool copy and its 5 ms pass.
    assert_eq!(run.end_ns[1] - a0, 20_000_000);
}
