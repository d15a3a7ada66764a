//! `ptm trace`: export a scenario's workload (a trace, or a generator's output) as FastPTM JSON,
//! CSV or JSONL, chosen by the output's extension.

use crate::embedded;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use ptm_sim::workload::{self, fastptm, trace, WorkloadSpec};
use std::path::PathBuf;

/// `ptm trace` subcommands.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Write a workload to a file: `.json` (FastPTM), `.csv` or `.jsonl` (ours).
    Export(ExportArgs),
}

/// Flags of `ptm trace export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Scenario whose workload and request defaults to use (default: fastptm/overall).
    pub scenario: Option<PathBuf>,
    /// Read this trace instead of the scenario's workload (converts formats).
    #[arg(long, conflicts_with = "workload")]
    pub trace: Option<PathBuf>,
    /// A workload spec in the scenario syntax, e.g.
    /// 'Generate(requests: 480, arrivals: FastPtm(mu_s: 0.08), tenants: 12)'.
    #[arg(long)]
    pub workload: Option<String>,
    /// Seed for generators.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file; its extension picks the format.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `ptm trace …`.
pub fn execute(cmd: TraceCommand) -> anyhow::Result<()> {
    let TraceCommand::Export(args) = cmd;
    let loaded = embedded::load_scenario(args.scenario.as_deref())?;
    let mut scenario = loaded.scenario;
    if let Some(t) = &args.trace {
        scenario.workload = WorkloadSpec::Trace(super::absolute(t)?);
    }
    if let Some(spec) = &args.workload {
        scenario.workload =
            ron::from_str(spec).map_err(|e| ptm_sim::Error::from_ron("--workload", e))?;
    }
    let w = workload::build(
        &scenario.workload,
        &scenario.request,
        &scenario.model,
        args.seed,
        loaded.files.as_ref(),
    )?;
    let text = match args.out.extension().and_then(|e| e.to_str()) {
        Some("json") => fastptm::write(&w, &scenario.request)?,
        Some("csv") => trace::write_csv(&w, &scenario.model),
        Some("jsonl") => trace::write_jsonl(&w, &scenario.model),
        _ => bail!(
            "{}: expected an extension .json (FastPTM), .csv or .jsonl",
            args.out.display()
        ),
    };
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} requests of {} tenants to {}",
        w.requests.len(),
        w.tenants.len(),
        args.out.display()
    );
    Ok(())
}
