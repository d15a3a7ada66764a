//! `ptm run`: simulate one scenario's (policy, seed) cells and print a table or JSON.

use crate::embedded;
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use ptm_live::fidelity;
use ptm_runtime::{DType, Device};
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
    /// Replace the profile model every tenant is a fine-tune of (e.g. one a calibrated profile
    /// describes).
    #[arg(long)]
    pub model: Option<String>,
    /// Replace the loading mode.
    #[arg(long, value_enum)]
    pub loading: Option<Loading>,
    /// Replace the seeds (repeatable).
    #[arg(long = "seed", value_name = "S")]
    pub seeds: Vec<u64>,
    /// Print a JSON array of reports instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the per-instance timeline (CSV) of the run; needs exactly one (policy, seed) cell.
    #[arg(long, value_name = "PATH")]
    pub timeline: Option<PathBuf>,
    /// Replay the workload in real time on the real runtime (the same schedulers decide).
    #[arg(long, requires = "zoo", conflicts_with = "timeline")]
    pub live: bool,
    /// With --live: the zoo whose models serve the tenants (`ptm zoo make`).
    #[arg(long)]
    pub zoo: Option<PathBuf>,
    /// With --live: `cpu` or `cuda[:N]`.
    #[arg(long, default_value = "cpu")]
    pub device: Device,
    /// With --live: fp32, fp16 or bf16.
    #[arg(long, default_value = "fp32")]
    pub dtype: DType,
    /// With --live: also simulate each cell from the profile and print both (fidelity). A
    /// profile of another model architecture, device or dtype than the zoo is refused.
    #[arg(long, requires = "live")]
    pub compare: bool,
    /// With --compare: compare against a profile of another model, device or dtype anyway.
    #[arg(long, requires = "compare")]
    pub allow_profile_mismatch: bool,
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
    if let Some(m) = &args.model {
        s.model = m.clone();
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
    if args.live {
        let zoo = args
            .zoo
            .as_deref()
            .expect("clap requires --zoo with --live");
        let options = fidelity::LiveOptions {
            zoo,
            device: args.device,
            dtype: args.dtype,
            compare: args.compare,
            allow_profile_mismatch: args.allow_profile_mismatch,
        };
        let cells = fidelity::run_cells(s, loaded.files.as_ref(), &options)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&cells)?);
        } else {
            let reports: Vec<_> = cells.iter().map(|c| c.live.clone()).collect();
            print!("{}", crate::table::reports(&reports));
            for c in &cells {
                print!("{}", fidelity::fidelity_table(c));
            }
        }
        return Ok(());
    }
    let reports = match &args.timeline {
        None => s.run(loaded.files.as_ref())?,
        Some(path) => vec![run_with_timeline(s, loaded.files.as_ref(), path)?],
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", crate::table::reports(&reports));
    }
    Ok(())
}

/// Runs the scenario's single cell and writes its timeline to `path`.
fn run_with_timeline(
    s: &ptm_sim::scenario::Scenario,
    files: &dyn ptm_sim::workload::FileSource,
    path: &std::path::Path,
) -> anyhow::Result<ptm_sim::metrics::Report> {
    if s.policies.len() != 1 || s.seeds.len() != 1 {
        anyhow::bail!(
            "--timeline records one cell, but this run has {} policies × {} seeds: pass one --policy and one --seed",
            s.policies.len(),
            s.seeds.len()
        );
    }
    let (profile, profile_name) = s.load_profile(files)?;
    let workload = s.load_workload(files, s.seeds[0])?;
    let setup = ptm_sim::engine::Setup::new(&profile, &profile_name, &workload, s.serving())?;
    let (report, spans) = s.run_cell_with_timeline(&setup, &s.policies[0], s.seeds[0], true)?;
    let spans = spans.expect("a timeline was asked for");
    let csv = ptm_sim::metrics::timeline::csv(&spans, s.instances, &workload);
    std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(report)
}
