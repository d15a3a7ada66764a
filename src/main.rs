//! `ptm`: calibrate a GPU, simulate multi-tenant serving of fine-tuned models, sweep and plot.
//!
//! `main` parses the command line into a typed [`cli::Command`] once, runs it, and turns any
//! error into a message on standard error and exit code 2.

mod cli;
mod embedded;
mod live;
mod table;

use std::process::ExitCode;

fn main() -> ExitCode {
    let command = cli::parse();
    match cli::execute(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ptm: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
