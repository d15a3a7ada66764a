//! `ptm`: calibrate a GPU, simulate multi-tenant serving of fine-tuned models, sweep and plot.
//!
//! `main` parses the command line into a typed [`cli::Command`] once, runs it, and turns any
//! error into a message on standard error and exit code 2.

mod cli;
mod embedded;
mod table;

use std::process::ExitCode;

fn main() -> ExitCode {
    // `ptm run | head` closes the pipe early: that ends the output, it is not a crash.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains("Broken pipe") {
            std::process::exit(0);
        }
        default_hook(info);
    }));
    let command = cli::parse();
    match cli::execute(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ptm: error: {}", message(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already
/// holds (errors that print their source, such as "cannot read X: No such file (os error 2)").
fn message(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
