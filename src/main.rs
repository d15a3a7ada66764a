//! `ptm`: the command-line interface (zoo making, inference, benchmarks; the simulator's
//! subcommands join here).

mod cli;

use clap::{Parser, Subcommand};

/// Calibrate a GPU, simulate multi-tenant serving of fine-tuned pre-trained models, serve.
#[derive(Debug, Parser)]
#[command(name = "ptm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make or inspect model zoos.
    Zoo(cli::zoo::ZooArgs),
    /// Run a model on texts and print token ids and the head's output.
    Infer(cli::infer::InferArgs),
    /// Benchmarks of the runtime.
    Bench(cli::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Zoo(a) => cli::zoo::run(a),
        Command::Infer(a) => cli::infer::run(a),
        Command::Bench(a) => cli::bench::run(a),
    }
}
