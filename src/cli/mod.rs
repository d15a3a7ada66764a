//! The command line: flags parsed by `clap` into one typed [`Command`], then executed.

mod bench;
mod capacity;
mod run;
mod sweep;
mod trace;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
    /// Run every cell of a scenario's grid in parallel; write per-cell JSON and CSV tables.
    Sweep(sweep::SweepArgs),
    /// Per policy, the highest offered rate that meets an SLO target (bisection).
    Capacity(capacity::CapacityArgs),
    /// Convert, generate and export workload traces.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// List the scenarios, profiles and traces built into this binary.
    List,
}

/// Parses the process's arguments. No subcommand means `ptm run` on the embedded default.
pub fn parse() -> Command {
    Cli::parse()
        .command
        .unwrap_or_else(|| Command::Run(run::RunArgs::default()))
}

/// Runs `command`.
pub fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::execute(args),
        Command::Sweep(args) => sweep::execute(args),
        Command::Capacity(args) => capacity::execute(args),
        Command::Trace(cmd) => trace::execute(cmd),
        Command::Bench(cmd) => bench::execute(cmd),
        Command::List => {
            for name in crate::embedded::names() {
                println!("{name}");
            }
            Ok(())
        }
    }
}

/// A path given on the command line, made absolute against the working directory so that it
/// means the same whether the scenario comes from disk or is embedded.
fn absolute(path: &PathBuf) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}
