//! `ptm run`: simulate one scenario's (policy, seed) cells and print a table or JSON.

use crate::embedded;
use clap::{Args, ValueEnum};
use ptm_sim::engine::LoadingMode;
use ptm_sim::workload::WorkloadSpec;
use std::path::PathBuf;

/// Flags of `ptm run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Scenario file, or the name of an embedded one (default: fastptm/overall).
    pub scenario: Option<PathBuf>,
    /// Replace the workload with this trace (FastPTM JSON, or our CSV / JSONL).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Replace the GPU profile.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Run only these policies (repeatable).
    #[arg(long = "policy", value_name = "NAME")]
    pub policies: Vec<String>,
    /// Replace the number of instances.
    #[arg(long)]
    pub instances: Option<usize>,
    /// Replace the loading mode.
    #[arg(long, value_enum)]
    pub loading: Option<Loading>,
    /// Replace the seeds (repeatable).
    #[arg(long = "seed", value_name = "S")]
    pub seeds: Vec<u64>,
    /// Print a JSON array of reports instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--loading` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Loading {
    /// Swap weights into a resident model (FastPTM's fast loading).
    Split,
    /// Rebuild the model on every switch.
    Full,
}

/// Runs `ptm run`.
pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let mut loaded = embedded::load_scenario(args.scenario.as_deref())?;
    let s = &mut loaded.scenario;
    if let Some(trace) = &args.trace {
        s.workload = WorkloadSpec::Trace(super::absolute(trace)?);
        // The grid belongs to the scenario's own workload.
        s.sweep = None;
    }
    if let Some(profile) = &args.profile {
        s.profile = super::absolute(profile)?;
    }
    if !args.policies.is_empty() {
        s.policies = args.policies.clone();
    }
    if let Some(n) = args.instances {
        s.instances = n;
    }
    if let Some(l) = args.loading {
        s.loading = match l {
            Loading::Split => LoadingMode::Split,
            Loading::Full => LoadingMode::Full,
        };
    }
    if !args.seeds.is_empty() {
        s.seeds = args.seeds.clone();
    }
    s.validate("command line")?;
    let reports = s.run(loaded.files.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", crate::table::reports(&reports));
    }
    Ok(())
}
