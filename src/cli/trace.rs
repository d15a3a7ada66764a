//! `ptm trace`: export a scenario's workload (a trace, or a generator's output) as FastPTM JSON,
//! CSV or JSONL, chosen by the output's extension; import a real log (`ptm_sim::workload::import`).

use crate::embedded;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use ptm_sim::workload::import::{self, Columns, EpochUnit, Import};
use ptm_sim::workload::{self, fastptm, trace, Popularity, Workload, WorkloadSpec};
use std::path::{Path, PathBuf};

/// `ptm trace` subcommands.
#[derive(Debug, Subcommand)]
pub enum TraceCommand {
    /// Write a workload to a file: `.json` (FastPTM), `.csv` or `.jsonl` (ours).
    Export(ExportArgs),
    /// Turn a real request log (CSV with a header, or JSON Lines) into our trace format.
    Import(ImportArgs),
}

/// `--popularity` values: `uniform` or `zipf:S`.
fn parse_popularity(s: &str) -> Result<Popularity, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "uniform" => Ok(Popularity::Uniform),
        other => other
            .strip_prefix("zipf:")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(|s| Popularity::Zipf { s })
            .ok_or_else(|| format!("expected uniform or zipf:S with S > 0, got {s:?}")),
    }
}

/// `--epoch-unit` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Unit {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    Ns,
}

/// Flags of `ptm trace import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The log: CSV with a header, or JSON Lines.
    pub log: PathBuf,
    /// Which column holds what: `arrival=COL` (required), and any of `tenant=`, `samples=`,
    /// `seq_len=`, `deadline_ms=`, `model=`, e.g. `arrival=TIMESTAMP,seq_len=ContextTokens`.
    #[arg(long, value_parser = |s: &str| Columns::parse(s).map_err(|e| e.to_string()))]
    pub columns: Columns,
    /// Unit of numeric (epoch) timestamps; ISO-8601 timestamps need none.
    #[arg(long, value_enum, default_value = "s")]
    pub epoch_unit: Unit,
    /// Replay this many times faster (arrival gaps divided by it).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// With no tenant column: draw tenants among this many.
    #[arg(long, default_value_t = 100)]
    pub tenants: u32,
    /// With no tenant column: their popularity, `uniform` or `zipf:S`.
    #[arg(long, default_value = "zipf:1.1", value_parser = parse_popularity)]
    pub popularity: Popularity,
    /// Seed of the tenant draw.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Samples per request with no samples column.
    #[arg(long, default_value_t = 1)]
    pub samples: u32,
    /// Tokens per sample with no seq_len column.
    #[arg(long, default_value_t = 128)]
    pub seq_len: u32,
    /// Clip sequence lengths to this (the model's maximum).
    #[arg(long, default_value_t = 512)]
    pub max_seq_len: u32,
    /// Deadline with no deadline column, ms.
    #[arg(long, default_value_t = 3000.0)]
    pub deadline_ms: f64,
    /// Profile model of every tenant with no model column (written only if not the default).
    #[arg(long, default_value = "bert-base-fp16")]
    pub model: String,
    /// Output: `.csv` or `.jsonl` (ours), or `.json` (FastPTM's, ≤ 26 tenants).
    #[arg(long)]
    pub out: PathBuf,
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
    match cmd {
        TraceCommand::Export(args) => export(args),
        TraceCommand::Import(args) => import_log(args),
    }
}

/// Writes `w` to `out` in the format its extension names.
fn write_trace(
    w: &Workload,
    out: &Path,
    model: &str,
    defaults: &workload::RequestDefaults,
) -> anyhow::Result<()> {
    let text = match out.extension().and_then(|e| e.to_str()) {
        Some("json") => fastptm::write(w, defaults)?,
        Some("csv") => trace::write_csv(w, model),
        Some("jsonl") => trace::write_jsonl(w, model),
        _ => bail!(
            "{}: expected an extension .json (FastPTM), .csv or .jsonl",
            out.display()
        ),
    };
    super::run::create_parent(out)?;
    std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

fn import_log(args: ImportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.log)
        .with_context(|| format!("cannot read {}", args.log.display()))?;
    let mut spec = Import::new(args.columns.clone());
    spec.epoch_unit = match args.epoch_unit {
        Unit::S => EpochUnit::S,
        Unit::Ms => EpochUnit::Ms,
        Unit::Us => EpochUnit::Us,
        Unit::Ns => EpochUnit::Ns,
    };
    spec.speedup = args.speedup;
    spec.tenants = args.tenants;
    spec.popularity = args.popularity;
    spec.seed = args.seed;
    spec.samples = args.samples;
    spec.seq_len = args.seq_len;
    spec.max_seq_len = args.max_seq_len;
    spec.deadline_ms = args.deadline_ms;
    spec.model = args.model.clone();
    let w = import::import(&text, &args.log.display().to_string(), &spec)?;
    let defaults = workload::RequestDefaults {
        samples: args.samples,
        seq_len: args.seq_len,
        deadline_ms: args.deadline_ms,
    };
    write_trace(&w, &args.out, &args.model, &defaults)?;
    let span_s = w.requests.last().map_or(0, |r| r.arrival_ns) as f64 / 1e9;
    eprintln!(
        "imported {} requests of {} tenants over {span_s:.3} s ({:.3} req/s) → {}",
        w.requests.len(),
        w.tenants.len(),
        ptm_sim::offered::offered_rps(&w),
        args.out.display()
    );
    Ok(())
}

fn export(args: ExportArgs) -> anyhow::Result<()> {
    let loaded = embedded::load_scenario(args.scenario.as_deref())?;
    let mut scenario = loaded.scenario;
    if let Some(t) = &args.trace {
        scenario.workload = WorkloadSpec::Trace(embedded::flag_path(t)?);
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
    write_trace(&w, &args.out, &scenario.model, &scenario.request)?;
    eprintln!(
        "wrote {} requests of {} tenants to {}",
        w.requests.len(),
        w.tenants.len(),
        args.out.display()
    );
    Ok(())
}
