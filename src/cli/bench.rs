//! `ptm bench sim`: how fast the simulator replays a large workload, per policy, on one core.

use crate::embedded::Files;
use clap::{Args, Subcommand};
use ptm_sim::engine::{self, LoadingMode, RunOptions, Serving, Setup};
use ptm_sim::profile::Profile;
use ptm_sim::scheduler::{self, PolicyOptions, Shape};
use ptm_sim::workload::FileSource as _;
use ptm_sim::workload::{self, Arrivals, Popularity, RequestDefaults, WorkloadSpec};
use std::path::Path;
use std::time::Instant;

/// `ptm bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Simulated requests per second of wall time, per policy (single-threaded).
    Sim(SimArgs),
    /// GPU inference latency of zoo-shaped models (CUDA graphs, eager, whole calls).
    Infer(super::bench_infer::InferArgs),
    /// Weight switching: host cache vs the pinned floor, FastPTM's mode and a full load.
    Switch(super::bench_switch::SwitchArgs),
    /// Parameter-efficient tenants in a GPU PET slot: thousands registered, a mixed batch vs
    /// the plain backbone, misses pipelined under the backbone.
    Pet(super::bench_pet::PetArgs),
    /// HTTP load against `ptm serve`: processes × concurrency, Zipf tenants, bounded count.
    Load(super::bench_load::LoadArgs),
    /// A long loopback run against a `ptm serve` it starts, its resident memory sampled.
    ServeSoak(super::bench_load::SoakArgs),
}

/// Flags of `ptm bench sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Requests to simulate.
    #[arg(long, default_value_t = 1_000_000)]
    pub requests: usize,
    /// Instances on the GPU.
    #[arg(long, default_value_t = 8)]
    pub instances: usize,
    /// Tenants (Zipf popularity).
    #[arg(long, default_value_t = 100_000)]
    pub tenants: u32,
    /// Zipf exponent.
    #[arg(long, default_value_t = 1.1)]
    pub zipf: f64,
    /// Offered load, Poisson requests per second.
    #[arg(long, default_value_t = 15.0)]
    pub rate: f64,
    /// Policies to time (repeatable; default fcfs-rr, omls, affinity).
    #[arg(long = "policy", value_name = "NAME")]
    pub policies: Vec<String>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Repeats per policy (the fastest is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
}

const PROFILE: &str = "profiles/rtx3090-fastptm.ron";
const MODEL: &str = "bert-wwm-base-chinese";

/// Runs `ptm bench …`.
pub fn execute(cmd: BenchCommand) -> anyhow::Result<()> {
    let args = match cmd {
        BenchCommand::Sim(args) => args,
        BenchCommand::Infer(args) => return super::bench_infer::run(args),
        BenchCommand::Switch(args) => return super::bench_switch::run(args),
        BenchCommand::Pet(args) => return super::bench_pet::run(args),
        BenchCommand::Load(args) => return super::bench_load::load(args),
        BenchCommand::ServeSoak(args) => return super::bench_load::soak(args),
    };
    let files = Files::at_root();
    let (text, name) = files.read(Path::new(PROFILE))?;
    let profile = Profile::from_ron(&text, &name)?;
    let spec = WorkloadSpec::Generate {
        requests: args.requests,
        arrivals: Arrivals::Poisson {
            rate_rps: args.rate,
        },
        tenants: args.tenants,
        popularity: Popularity::Zipf { s: args.zipf },
    };
    let t = Instant::now();
    let w = workload::build(
        &spec,
        &RequestDefaults::default(),
        MODEL,
        args.seed,
        &workload::NoFiles,
    )?;
    let generate_s = t.elapsed().as_secs_f64();
    let serving = Serving {
        instances: args.instances,
        loading: LoadingMode::Split,
        forward_batch: 1,
        ..Serving::default()
    };
    let t = Instant::now();
    let setup = Setup::new(&profile, &name, &w, serving)?;
    let setup_s = t.elapsed().as_secs_f64();
    println!(
        "ptm bench sim: {} requests, {} Zipf({}) tenants, Poisson {} req/s, {} instances, profile {}",
        args.requests, args.tenants, args.zipf, args.rate, args.instances, PROFILE
    );
    println!(
        "workload generated in {generate_s:.3} s, setup in {setup_s:.3} s (not counted below)\n"
    );
    println!(
        "| policy | wall s (best of {}) | simulated requests/s | switches | overtimes |",
        args.repeats
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    let policies = if args.policies.is_empty() {
        vec![
            "fcfs-rr".to_string(),
            "omls".to_string(),
            "affinity".to_string(),
        ]
    } else {
        args.policies.clone()
    };
    let shape = Shape {
        instances: args.instances,
        tenants: w.tenants.len(),
    };
    for policy in &policies {
        let mut best = f64::INFINITY;
        let mut last = None;
        for _ in 0..args.repeats.max(1) {
            let mut s = scheduler::by_name(policy, &PolicyOptions::default(), shape)?;
            let t = Instant::now();
            let run = engine::simulate(&setup, s.as_mut(), args.seed, RunOptions::default())?;
            best = best.min(t.elapsed().as_secs_f64());
            last = Some(run);
        }
        let run = last.expect("at least one repeat");
        let report = ptm_sim::metrics::Report::new("bench", policy, args.seed, &setup, &run);
        println!(
            "| {policy} | {best:.3} | {:.0} | {} | {} |",
            args.requests as f64 / best,
            report.switches,
            report.overtimes
        );
    }
    Ok(())
}
