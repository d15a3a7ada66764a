//! The command line: flags parsed by `clap` into one typed [`Command`], then executed.

mod bench;
mod bench_infer;
mod bench_load;
mod bench_pet;
mod bench_switch;
mod bench_tiers;
mod calibrate;
mod capacity;
mod compare;
mod fidelity_table;
mod infer;
mod plan;
mod plot;
mod profile;
mod run;
mod scenario_flags;
mod serve;
mod staging;
mod sweep;
mod trace;
mod zoo;

use clap::{Parser, Subcommand};

/// Calibrate, simulate, sweep, plot and serve many fine-tuned pre-trained models on one GPU.
#[derive(Debug, Parser)]
#[command(name = "ptm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulate a scenario: every (policy, seed) cell, a table or JSON reports.
    Run(run::RunArgs),
    /// Measure a device with the real runtime and write a simulator profile.
    Calibrate(calibrate::CalibrateArgs),
    /// Inspect profiles: `ptm profile diff A B` compares two calibrations figure by figure.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Serve a zoo's tenants over HTTP on loopback, scheduled by a policy.
    Serve(serve::ServeArgs),
    /// Run every cell of a scenario's grid in parallel; write per-cell JSON and CSV tables.
    Sweep(sweep::SweepArgs),
    /// Render PNG and SVG figures of a sweep (and of a `--timeline` CSV).
    Plot(plot::PlotArgs),
    /// Per policy, the highest offered rate that meets an SLO target in steady state.
    Capacity(capacity::CapacityArgs),
    /// Which policy and how many instances: the cheapest configuration meeting an SLO at a
    /// rate, capacity against instances (table and figure).
    Plan(plan::PlanArgs),
    /// Compare two runs (`ptm run --json` files) or two sweeps (folders), cell by cell.
    Compare(compare::CompareArgs),
    /// The sim-vs-live fidelity table of `ptm run --live --compare --json` files: errors,
    /// bootstrap intervals on p99, misses with their phase breakdown.
    FidelityTable(fidelity_table::FidelityTableArgs),
    /// Convert, generate and export workload traces.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Make or inspect model zoos (seeded fine-tunes in the Hugging Face layout).
    Zoo(zoo::ZooArgs),
    /// Run a model on texts and print token ids and the head's output.
    Infer(infer::InferArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// List the scenarios, profiles and traces built into this binary, one line each.
    List,
    /// Print an embedded file (a scenario, profile or trace; names as `ptm list` shows them).
    Show {
        /// Its name, e.g. fastptm/overall or profiles/h200.ron.
        name: String,
    },
    /// No subcommand: the main job on embedded defaults — `ptm run` of the default scenario
    /// (table), then its sweep and figures written to `results/<scenario>/`.
    #[command(skip)]
    Default,
}

/// Parses the process's arguments. No subcommand means `ptm run` on the embedded default.
pub fn parse() -> Command {
    Cli::parse().command.unwrap_or(Command::Default)
}

/// Runs `command`.
pub fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::execute(args),
        Command::Sweep(args) => sweep::execute(args),
        Command::Capacity(args) => capacity::execute(args),
        Command::Plan(args) => plan::execute(args),
        Command::Compare(args) => compare::execute(args),
        Command::FidelityTable(args) => fidelity_table::execute(args),
        Command::Calibrate(args) => calibrate::execute(args),
        Command::Plot(args) => plot::execute(args),
        Command::Serve(args) => serve::execute(args),
        Command::Profile(cmd) => profile::execute(cmd),
        Command::Trace(cmd) => trace::execute(cmd),
        Command::Bench(cmd) => bench::execute(cmd),
        Command::Zoo(args) => zoo::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Default => {
            run::execute(run::RunArgs::default())?;
            let out = std::path::PathBuf::from("results").join("fastptm-overall");
            sweep::execute(sweep::SweepArgs {
                scenario: Some(crate::embedded::DEFAULT_SCENARIO.into()),
                out: Some(out.clone()),
                shard: None,
                merge: Vec::new(),
                jobs: None,
                quiet: true,
            })?;
            let figures = out.join("plots");
            plot::execute(plot::PlotArgs {
                dir: Some(out),
                timeline: None,
                window: None,
                out: Some(figures.clone()),
                quiet: true,
            })
            .map(|_| eprintln!("figures in {}", figures.display()))
        }
        Command::List => {
            let names: Vec<&str> = crate::embedded::names().collect();
            let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
            for name in names {
                println!("{name:<width$}  {}", crate::embedded::describe(name));
            }
            Ok(())
        }
        Command::Show { name } => {
            print!("{}", crate::embedded::show(&name)?);
            Ok(())
        }
    }
}
