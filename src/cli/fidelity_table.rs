//! `ptm fidelity-table FILE…`: the sim-vs-live fidelity table (markdown) of `ptm run --live
//! --compare --json` outputs, judged against targets, with bootstrap intervals on p99 and the
//! phase breakdown of every miss (`ptm_sim::fidelity`).

use anyhow::Context as _;
use clap::Args;
use ptm_sim::fidelity::{self, Cell, Targets};
use std::path::PathBuf;

/// Flags of `ptm fidelity-table`.
#[derive(Debug, Args)]
pub struct FidelityTableArgs {
    /// JSON files of `ptm run --live --compare --json`; each cell is labelled by its file's name.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Bootstrap resamples of each cell's p99 (0: no intervals).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub resamples: u64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cells with fewer requests are shown, not judged.
    #[arg(long, default_value_t = 1000)]
    pub min_requests: usize,
    /// Throughput target, percent of live.
    #[arg(long, default_value_t = 1.0)]
    pub throughput_pct: f64,
    /// Mean latency target, percent of live.
    #[arg(long, default_value_t = 3.0)]
    pub mean_pct: f64,
    /// p99 latency target, percent of live.
    #[arg(long, default_value_t = 8.0)]
    pub p99_pct: f64,
    /// Also write the table here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `ptm fidelity-table`.
pub fn execute(args: FidelityTableArgs) -> anyhow::Result<()> {
    for (name, v) in [
        ("--throughput-pct", args.throughput_pct),
        ("--mean-pct", args.mean_pct),
        ("--p99-pct", args.p99_pct),
    ] {
        anyhow::ensure!(
            v.is_finite() && v >= 0.0,
            "{name} {v}: expected a finite percentage ≥ 0"
        );
    }
    let mut cells = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: Vec<Cell> = serde_json::from_str(&text).map_err(|e| {
            ptm_sim::Error::from_json(
                &format!(
                    "{} (expected `ptm run --live --compare --json` output)",
                    path.display()
                ),
                &e,
            )
        })?;
        let label = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        );
        cells.extend(file.into_iter().map(|c| (label.clone(), c)));
    }
    let targets = Targets {
        throughput_pct: args.throughput_pct,
        mean_pct: args.mean_pct,
        p99_pct: args.p99_pct,
        min_requests: args.min_requests,
    };
    let table = fidelity::table(&cells, &targets, args.resamples as usize, args.seed);
    print!("{table}");
    if let Some(out) = &args.out {
        super::run::create_parent(out)?;
        std::fs::write(out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}
